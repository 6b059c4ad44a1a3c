import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_CURVE_OPTIMIZERS, RunStore, seriesMemoryBound, SERIES_STAT_NAMES } from '../../../src/core/store/runStore';
import type { EventMsg, StatName } from '../../../src/core/protocol/messages';
import { decodeAll, encodeMessage } from '../../../src/core/protocol/codec';
import { buildAppend, buildSnapshot, buildTensorDetail, buildView, byOptimizerShape, layersInOrder, reportData, runHeader } from '../../../src/core/view/snapshot';
import type { HeatmapMetric, PanelCurve, PanelRunHeader } from '../../../src/core/view/messages';
import type { WireName } from '../../../src/core/protocol/float';
import { absentRun, absentRunMessages } from '../support/absentRun';
import { parseDetail } from '../../../webview/hostMessages';

const STATS: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
const tensor = (id: number, layer: string, name: string) => ({ id, name: `${layer}/${name}`, layer, layerType: 'Dense', shape: [2, 2], source: null });

/** norms[t] per step; nan marks (step, tensor) pairs with NaN entries. */
function storeWith(steps: number, norm: (step: number, t: number) => number, nanAt?: [number, number]): RunStore {
  const s = new RunStore();
  s.ingest({ type: 'tensors', tensors: [tensor(0, 'd1', 'kernel'), tensor(1, 'd1', 'bias'), tensor(2, 'd2', 'kernel')] });
  for (let step = 0; step < steps; step++) {
    const cols = STATS.map(() => new Float64Array(3));
    for (let t = 0; t < 3; t++) {
      cols[0][t] = norm(step, t);
      cols[1][t] = norm(step, t) / 2;
      cols[2][t] = nanAt && nanAt[0] === step && nanAt[1] === t ? 3 : 0;
      cols[4][t] = 10;
      cols[5][t] = 0.01;
    }
    s.ingest({ type: 'step', step, optimizer: 0, loss: 1 / (step + 1), wallMs: step, stats: STATS, columns: cols, nTensors: 3 });
  }
  return s;
}

const header: PanelRunHeader = {
  runId: 'r',
  script: 's.js',
  backend: 'wasm',
  device: 'cpu',
  backendReason: null,
  status: 'running',
  statusMessage: '',
  step: 0,
  stepsPerSec: null,
  droppedFrames: 0,
  clipNorm: null,
  warnings: [],
};

const buildHeatmap = (s: RunStore, metric: HeatmapMetric) => buildView(s, { metric }).heatmap;
const buildLayerNorms = (s: RunStore) => buildView(s, { metric: 'norm' }).layerNorms;
/** buildAppend of the steps after `since`, as the panel calls it. */
const append = (s: RunStore, since: number, knownTensors: number, optimizer: number | null = null) =>
  buildAppend(s, { since, knownTensors, header, metric: 'norm', findings: null, optimizer });
/** Indices of the points of a wire curve carrying this name (NaN, Inf, absent). */
const where = (c: PanelCurve, name: WireName): number[] => c.values.flatMap((v, i) => (v === name ? [i] : []));

describe('panel snapshot', () => {
  it('layer norms combine the layer tensors as sqrt of the sum of squares', () => {
    const s = storeWith(5, (step, t) => (t === 0 ? 3 : t === 1 ? 4 : step + 1));
    const ln = buildLayerNorms(s);
    assert.deepEqual(Object.keys(ln), ['d1', 'd2']);
    assert.deepEqual(ln.d1.values, [5, 5, 5, 5, 5]);
    assert.deepEqual(ln.d2.values, [1, 2, 3, 4, 5]);
    assert.deepEqual(ln.d2.steps, [0, 1, 2, 3, 4]);
  });

  it('heatmap holds log10 norms in model order and marks a NaN cell as NaN, never dropped', () => {
    const s = storeWith(4, () => 100, [2, 2]);
    const h = buildHeatmap(s, 'norm');
    assert.deepEqual(h.layers, ['d1', 'd2']);
    assert.deepEqual(h.steps, [0, 1, 2, 3]);
    assert.equal(h.values.length, 8);
    assert.ok(Math.abs((h.values[0] as number) - Math.log10(Math.sqrt(2) * 100)) < 1e-9);
    assert.equal(h.values[1 * 4 + 2], 'NaN');
    assert.equal(h.values[0 * 4 + 2], Math.log10(Math.sqrt(2) * 100));
  });

  it('update ratio heatmap is log10(update norm / param norm)', () => {
    const h = buildHeatmap(
      storeWith(2, () => 1),
      'updateRatio',
    );
    assert.ok(Math.abs((h.values[0] as number) - Math.log10(0.001)) < 1e-6, 'the store keeps float32');
  });

  it('append carries only the steps after the given one', () => {
    const s = storeWith(10, (step) => step + 1);
    const a = append(s, 6, 3);
    assert.deepEqual(a.globalNorm.steps, [7, 8, 9]);
    assert.deepEqual(a.heatmap.steps, [7, 8, 9]);
    assert.equal(a.heatmap.values.length, 2 * 3);
    assert.deepEqual(a.tensors, []);
    assert.deepEqual(a.layerNorms.d2.steps, [7, 8, 9]);
  });

  it('an append (since) is the whole view cut after that step, folded buckets included: the grid is read once, the same way', () => {
    const s = new RunStore({ recentSteps: 16, envelopeBuckets: 8 });
    s.ingest({ type: 'tensors', tensors: [tensor(0, 'd1', 'kernel'), tensor(1, 'd2', 'kernel')] });
    for (let step = 0; step < 150; step++) {
      const cols = STATS.map(() => Float64Array.from([1 + (step % 7), 2 + (step % 5)]));
      cols[2][1] = step === 140 ? 1 : 0;
      s.ingest({ type: 'step', step, optimizer: 0, loss: step, wallMs: 0, stats: STATS, columns: cols, nTensors: 2 });
    }
    const whole = buildView(s, { metric: 'norm' });
    for (const since of [-1, 20, whole.heatmap.steps[3], 133, 140, 149]) {
      const part = buildView(s, { metric: 'norm', since });
      const from = whole.heatmap.steps.findIndex((x) => x > since);
      const n = whole.heatmap.steps.length;
      const cut = from < 0 ? n : from;
      assert.deepEqual(part.heatmap.steps, whole.heatmap.steps.slice(cut), `heatmap steps after ${since}`);
      assert.deepEqual(part.heatmap.values, [...whole.heatmap.values.slice(cut, n), ...whole.heatmap.values.slice(n + cut)], `heatmap cells after ${since}`);
      assert.deepEqual(part.layerNorms.d2.values, whole.layerNorms.d2.values.slice(cut));
      const g = whole.globalNorm.steps.findIndex((x) => x > since);
      assert.deepEqual(part.globalNorm.steps, g < 0 ? [] : whole.globalNorm.steps.slice(g));
      const ser = s.series(1, 'norm', { since });
      assert.ok(ser.steps.every((x) => x > since) && ser.envelope.stepLast.every((x) => x > since));
    }
  });

  it('keeps a NaN visible after old steps are folded into envelopes', () => {
    const s = new RunStore({ recentSteps: 16, envelopeBuckets: 8 });
    s.ingest({ type: 'tensors', tensors: [tensor(0, 'd1', 'kernel')] });
    for (let step = 0; step < 200; step++) {
      const cols = STATS.map(() => new Float64Array(1).fill(1));
      cols[2][0] = step === 5 ? 1 : 0;
      s.ingest({ type: 'step', step, optimizer: 0, loss: NaN, wallMs: 0, stats: STATS, columns: cols, nTensors: 1 });
    }
    const h = buildHeatmap(s, 'norm');
    assert.ok(h.steps.length < 200 && h.steps.length > 16);
    assert.equal(h.values.filter((v) => v === 'NaN').length, 1);
  });

  it('snapshot and tensor detail', () => {
    const s = storeWith(3, () => 1);
    s.ingest({
      type: 'detail',
      step: 2,
      tensorId: 0,
      mean: 0.1,
      std: 0.2,
      zeroFrac: 0.5,
      histLo: -20,
      histHi: 12,
      hist: new Uint32Array(32).fill(1),
      thumbRows: 2,
      thumbCols: 2,
      thumb: Float32Array.from([1, 2, 3, 4]),
    });
    const snap = buildSnapshot(s, { header, findings: [], metric: 'zeroFrac', compare: null, savedRuns: [] });
    assert.deepEqual(snap.layers, layersInOrder(s.tensors));
    assert.equal(snap.tensors.length, 3);
    assert.equal(snap.heatmap.values[0 * 3 + 2], 0.5, 'zero fraction over the tensors of the layer that have a detail at that step');
    assert.equal(snap.heatmap.values[0 * 3 + 1], null, 'no detail, no value');
    assert.deepEqual(
      snap.loss.values.map((v) => Number((v as number).toFixed(3))),
      [1, 0.5, 0.333],
    );
    const d = buildTensorDetail(s, 0, 2);
    assert.deepEqual(d.thumbnail?.values, [1, 2, 3, 4]);
    assert.equal(d.histograms.length, 1);
    assert.equal(d.stats?.zeroFrac, 0.5);
    assert.equal(buildTensorDetail(s, 0, 1).thumbnail, null, 'no thumbnail before its step');
  });
});

describe('non-finite values in a tensor detail', () => {
  it('a NaN gradient’s moments and thumbnail travel through the float codec, and the webview takes them', () => {
    const s = storeWith(1, () => 1);
    s.ingest({
      type: 'detail',
      step: 0,
      tensorId: 0,
      mean: NaN,
      std: NaN,
      zeroFrac: 0,
      histLo: -20,
      histHi: 12,
      hist: new Uint32Array(32),
      thumbRows: 1,
      thumbCols: 2,
      thumb: Float32Array.from([NaN, Infinity]),
    });
    const d = buildTensorDetail(s, 0, null);
    assert.deepEqual(d.stats, { step: 0, mean: 'NaN', std: 'NaN', zeroFrac: 0 });
    assert.deepEqual(d.thumbnail?.values, ['NaN', 'Inf']);
    assert.deepEqual(parseDetail(JSON.parse(JSON.stringify(d))), d);
  });
});

describe('absent gradients and optimizers in the view model', () => {
  it('an absent cell is "absent" in the heatmap (not NaN, not empty), a gap in the layer curve, NaN stays NaN', () => {
    const s = absentRun({ steps: 20, nanAt: [13, 3] });
    const h = buildHeatmap(s, 'norm');
    const L = h.layers;
    assert.deepEqual(L, ['frozen', 'l1', 'l2', 'head']);
    const n = h.steps.length;
    assert.equal(n, 20);
    const row = (layer: string): unknown[] => h.values.slice(L.indexOf(layer) * n, (L.indexOf(layer) + 1) * n);
    assert.ok(row('frozen').every((v) => v === 'absent'));
    assert.deepEqual(
      row('head').map((v) => (typeof v === 'number' ? 'value' : v)),
      h.steps.map((st) => (st % 2 === 1 ? 'absent' : 'value')),
    );
    assert.equal(row('l2')[13], 'NaN');
    assert.ok(!h.values.includes(null), 'every cell is a value, NaN or absent');
    const ln = buildLayerNorms(s);
    assert.deepEqual(where(ln.head, 'absent'), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    assert.deepEqual(where(ln.head, 'NaN'), [], 'no NaN point for an absent step');
    assert.deepEqual(where(ln.frozen, 'absent').length, 20);
    assert.deepEqual(where(ln.l2, 'NaN'), [13]);
    // The global norm curve has no NaN point but the real one.
    const snap = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    assert.deepEqual(where(snap.globalNorm, 'NaN'), [13]);
    // The HTML report embeds the same view model.
    assert.deepEqual(reportData(s, header, []).snapshot.heatmap, h);
  });

  it('stays absent after folding into envelopes (buckets of absent cells only), present where any step had a gradient', () => {
    const s = new RunStore({ recentSteps: 8, envelopeBuckets: 8 });
    for (const m of absentRunMessages({ steps: 200 })) s.ingest(m);
    const h = buildHeatmap(s, 'norm');
    const n = h.steps.length;
    assert.ok(n < 200 && n > 8);
    const L = h.layers;
    const row = (layer: string): unknown[] => h.values.slice(L.indexOf(layer) * n, (L.indexOf(layer) + 1) * n);
    assert.ok(row('frozen').every((v) => v === 'absent'));
    // Folded buckets of the head hold present and absent steps: a value; recent odd steps: absent.
    const head = row('head');
    assert.ok(head.slice(0, n - 8).every((v) => typeof v === 'number'));
    assert.deepEqual(
      head.slice(n - 8).map((v) => (typeof v === 'number' ? 'value' : v)),
      ['value', 'absent', 'value', 'absent', 'value', 'absent', 'value', 'absent'],
    );
    assert.ok(!h.values.includes('NaN'));
  });

  it('lists the optimizers and restricts the heatmap and layer curves to one optimizer’s steps', () => {
    const s = absentRun({ steps: 20, twoOptimizers: true });
    const all = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    assert.deepEqual(
      all.optimizers.map((o) => [o.id, o.name, o.steps]),
      [
        [0, 'opt', 10],
        [1, 'opt_head', 10],
      ],
    );
    assert.equal(all.optimizer, null);
    assert.equal(all.heatmap.steps.length, 20);
    const head = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [], optimizer: 1 });
    assert.equal(head.optimizer, 1);
    assert.deepEqual(head.heatmap.steps, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    assert.deepEqual(head.layerNorms.head.steps, head.heatmap.steps);
    assert.deepEqual(where(head.layerNorms.head, 'absent'), [], 'the head has a gradient at every step of its optimizer');
    const body = append(s, 9, s.tensors.length, 0);
    assert.deepEqual(body.heatmap.steps, [11, 13, 15, 17, 19]);
    assert.equal(buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [], optimizer: 7 }).optimizer, null, 'an unknown id shows all');
  });
});

/**
 * A GAN-like run: the discriminator (tensors 0, 1; `opt_d`, id 0) steps on even steps with a global
 * norm of 5·k, the generator (tensors 2, 3; `opt_g`, id 1) on odd steps with 0.5·k, k = 1 + step/100.
 * Each step's norm is over that optimizer's tensors only (the others absent). `genLoss`: whether the
 * generator's steps carry a loss (1.5 and 0.7); `gFrom`: the generator steps from this step on only
 * (before, the discriminator takes every step).
 */
function ganStore(steps: number, o: { genLoss?: boolean; gFrom?: number; optimizers?: number } = {}): RunStore {
  const s = new RunStore();
  const STATS7: StatName[] = [...STATS, 'hasGrad'];
  s.ingest({ type: 'tensors', tensors: [tensor(0, 'netD.0', 'weight'), tensor(1, 'netD.0', 'bias'), tensor(2, 'netG.0', 'weight'), tensor(3, 'netG.0', 'bias')] });
  const n = o.optimizers ?? 2;
  for (let id = 0; id < n; id++)
    s.ingest({ type: 'optimizer', id, name: id === 0 ? 'opt_d' : id === 1 ? 'opt_g' : `opt_${id}`, className: 'Adam', mode: 'optimizer', tensorIds: id === 0 ? [0, 1] : [2, 3] });
  for (let step = 0; step < steps; step++) {
    const gen = step % 2 === 1 && step >= (o.gFrom ?? 0);
    const opt = gen ? (n > 2 ? 1 + (Math.floor(step / 2) % (n - 1)) : 1) : 0;
    const k = 1 + step / 100;
    const cols = STATS7.map(() => new Float64Array(4));
    for (let t = 0; t < 4; t++) {
      const mine = gen ? t >= 2 : t < 2;
      const base = gen ? [0, 0, 0.3, 0.4][t] : [3, 4, 0, 0][t];
      cols[0][t] = mine ? base * k : NaN;
      cols[1][t] = mine ? base * k : NaN;
      cols[4][t] = 1;
      cols[5][t] = 0.01;
      cols[6][t] = mine ? 1 : 0;
    }
    const loss = gen ? (o.genLoss === false ? NaN : 0.7) : 1.5;
    s.ingest({ type: 'step', step, optimizer: opt, loss, wallMs: step, stats: STATS7, columns: cols, nTensors: 4 });
  }
  return s;
}

const close = (a: PanelCurve['values'], b: readonly number[]): boolean => a.length === b.length && a.every((v, i) => typeof v === 'number' && Math.abs(v - b[i]) < 1e-9 * Math.max(1, b[i]));

describe('several optimizers: one global norm and loss per optimizer', () => {
  const ctx = { header, findings: [], metric: 'norm' as const, compare: null, savedRuns: [] };

  it('draws each optimizer over its own steps only, with its own values and name', () => {
    const s = ganStore(20);
    const snap = buildSnapshot(s, ctx);
    assert.deepEqual(
      snap.byOptimizer.map((c) => [c.id, c.name]),
      [
        [0, 'opt_d'],
        [1, 'opt_g'],
      ],
    );
    const [d, g] = snap.byOptimizer;
    const even = Array.from({ length: 10 }, (_, i) => 2 * i);
    const odd = even.map((x) => x + 1);
    assert.deepEqual(d.globalNorm.steps, even);
    assert.deepEqual(g.globalNorm.steps, odd);
    assert.ok(
      close(
        d.globalNorm.values,
        even.map((st) => 5 * (1 + st / 100)),
      ),
      String(d.globalNorm.values),
    );
    assert.ok(
      close(
        g.globalNorm.values,
        odd.map((st) => 0.5 * (1 + st / 100)),
      ),
      String(g.globalNorm.values),
    );
    assert.deepEqual(d.loss, { steps: even, values: even.map(() => 1.5) });
    assert.deepEqual(g.loss, { steps: odd, values: odd.map(() => 0.7) });
    // The run's own curve still alternates (what the per-optimizer lines replace in the chart).
    assert.equal(snap.globalNorm.steps.length, 20);
    assert.ok(close(snap.globalNorm.values.slice(0, 2), [5, 0.5 * 1.01]));
    assert.equal(byOptimizerShape(snap), '0+loss,1+loss');
  });

  it('keeps one loss (the run’s) when only one optimizer’s steps carry a loss', () => {
    const s = ganStore(10, { genLoss: false });
    const snap = buildSnapshot(s, ctx);
    assert.equal(snap.byOptimizer.length, 2);
    assert.deepEqual(
      snap.byOptimizer.map((c) => c.loss),
      [null, null],
    );
    assert.deepEqual(snap.loss.steps, [0, 2, 4, 6, 8]);
    assert.equal(byOptimizerShape(snap), '0,1');
  });

  it('the picker narrows the global norm and loss too, to the chosen optimizer’s steps', () => {
    const s = ganStore(20);
    const g = buildSnapshot(s, { ...ctx, optimizer: 1 });
    assert.equal(g.optimizer, 1);
    assert.deepEqual(g.byOptimizer, []);
    assert.deepEqual(g.globalNorm.steps, [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    assert.ok(g.globalNorm.values.every((v) => typeof v === 'number' && v < 1));
    assert.deepEqual(g.loss.steps, g.globalNorm.steps);
    assert.deepEqual(g.heatmap.steps, g.globalNorm.steps);
    const a = append(s, 12, s.tensors.length, 0);
    assert.deepEqual(a.globalNorm.steps, [14, 16, 18]);
    assert.deepEqual(a.byOptimizer, []);
  });

  it('an append carries each optimizer’s new points; the shape changes when a second optimizer starts', () => {
    const s = ganStore(20);
    const a = append(s, 15, s.tensors.length);
    assert.deepEqual(
      a.byOptimizer.map((c) => [c.id, c.globalNorm.steps, c.loss?.steps]),
      [
        [0, [16, 18], [16, 18]],
        [1, [17, 19], [17, 19]],
      ],
    );
    // The discriminator alone until step 9: its own curve then reaches back to step 0.
    const late = ganStore(9, { gFrom: 9 });
    assert.equal(byOptimizerShape(append(late, 5, late.tensors.length)), '', 'one optimizer so far');
    late.ingest({ type: 'step', step: 9, optimizer: 1, loss: 0.7, wallMs: 9, stats: ['norm'], columns: [new Float64Array([NaN, NaN, 0.3, 0.4])], nTensors: 4 });
    const full = buildSnapshot(late, ctx);
    assert.deepEqual(full.byOptimizer[0].globalNorm.steps, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(full.byOptimizer[1].globalNorm.steps, [9]);
    assert.equal(byOptimizerShape(append(late, 8, late.tensors.length)), '0+loss,1+loss');
  });

  it('one optimizer: nothing changes (no per-optimizer curves, the run’s global norm and loss)', () => {
    const s = storeWith(6, (step) => step + 1);
    s.ingest({ type: 'optimizer', id: 0, name: 'opt', className: 'Adam', mode: 'optimizer', tensorIds: [0, 1, 2] });
    const snap = buildSnapshot(s, ctx);
    assert.deepEqual(snap.byOptimizer, []);
    assert.deepEqual(snap.globalNorm.steps, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(snap.globalNorm.values, Array.from(s.globalNorm().values));
    assert.deepEqual(buildSnapshot(s, { ...ctx, optimizer: 0 }).globalNorm, snap.globalNorm, 'its own curve is the run’s');
    assert.deepEqual(append(s, 3, 3).byOptimizer, []);
    assert.deepEqual(reportData(s, header, []).views, []);
  });

  it('the report embeds one view per optimizer for its picker', () => {
    const s = ganStore(10);
    const { snapshot, views } = reportData(s, header, []);
    assert.equal(snapshot.optimizer, null);
    assert.equal(snapshot.byOptimizer.length, 2);
    assert.deepEqual(
      views.map((v) => [v.optimizer, v.globalNorm.steps, v.heatmap.steps, v.byOptimizer.length]),
      [
        [0, [0, 2, 4, 6, 8], [0, 2, 4, 6, 8], 0],
        [1, [1, 3, 5, 7, 9], [1, 3, 5, 7, 9], 0],
      ],
    );
  });

  it('stays within the stated memory bound, with own curves for at most MAX_CURVE_OPTIMIZERS', () => {
    const one = storeWith(4, () => 1);
    const bound1 = seriesMemoryBound(3, SERIES_STAT_NAMES.length);
    assert.ok(one.memoryBytes() <= bound1 + 2000, 'one optimizer: no extra curves');
    const many = ganStore(60, { optimizers: MAX_CURVE_OPTIMIZERS + 4 });
    assert.equal(many.curveOptimizers.length, MAX_CURVE_OPTIMIZERS);
    const bound = seriesMemoryBound(4, SERIES_STAT_NAMES.length, {}, MAX_CURVE_OPTIMIZERS + 4);
    const meta = 20_000; // tensor and optimizer metadata
    assert.ok(many.memoryBytes() <= bound + meta, `${many.memoryBytes()} ≤ ${bound} + ${meta}`);
    assert.ok(many.memoryBytes() > bound1 + (MAX_CURVE_OPTIMIZERS - 1) * 34 * 16384, 'the own curves are counted');
    assert.equal(many.globalNorm({ optimizer: MAX_CURVE_OPTIMIZERS + 3 }).steps.length, 0, 'beyond the cap: no curve of its own');
  });
});

describe('clip threshold', () => {
  it('a clip event travels the wire and sets the header clipNorm (the panel draws its line)', () => {
    const s = storeWith(2, () => 1);
    assert.equal(runHeader(s, { runId: 'r', script: 's', status: 'running', statusMessage: '' }).clipNorm, null);
    const { messages, error } = decodeAll(encodeMessage({ type: 'event', kind: 'clip', message: 'clips at 5', step: 1, value: 5 }, 0));
    assert.equal(error, null);
    s.ingest(messages[0].message);
    assert.equal(runHeader(s, { runId: 'r', script: 's', status: 'running', statusMessage: '' }).clipNorm, 5);
  });

  it("a clip by value (clipBy: 'value', through the wire) draws no global-norm line; a bad clipBy is a protocol error", () => {
    const s = storeWith(2, () => 1);
    const { messages, error } = decodeAll(encodeMessage({ type: 'event', kind: 'clip', message: 'clip_grad_value_', step: 1, value: 0.5, clipBy: 'value' }, 0));
    assert.equal(error, null);
    assert.equal((messages[0].message as EventMsg).clipBy, 'value');
    s.ingest(messages[0].message);
    assert.equal(runHeader(s, { runId: 'r', script: 's', status: 'running', statusMessage: '' }).clipNorm, null);
    const bad = decodeAll(encodeMessage({ type: 'event', kind: 'clip', message: 'x', value: 1, clipBy: 'rows' as unknown as 'norm' }, 0));
    assert.equal(bad.error?.code, 'bad-field');
    assert.match(bad.error?.message ?? '', /field "clipBy" must be norm or value/);
  });
});
