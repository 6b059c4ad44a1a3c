import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RunStore } from '../../../src/core/store/runStore';
import type { StatName } from '../../../src/core/protocol/messages';
import { decodeAll, encodeMessage } from '../../../src/core/protocol/codec';
import { buildAppend, buildHeatmap, buildLayerNorms, buildSnapshot, buildTensorDetail, layersInOrder, reportData, runHeader } from '../../../src/panel/snapshot';
import type { PanelRunHeader } from '../../../src/panel/messages';
import { absentRun, absentRunMessages } from '../support/absentRun';

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

const header: PanelRunHeader = { runId: 'r', script: 's.js', backend: 'wasm', device: 'cpu', backendReason: null, status: 'running', statusMessage: '', step: 0, stepsPerSec: null, droppedFrames: 0, clipNorm: null, warnings: [] };

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
    const h = buildHeatmap(storeWith(2, () => 1), 'updateRatio');
    assert.ok(Math.abs((h.values[0] as number) - Math.log10(0.001)) < 1e-6, "the store keeps float32");
  });

  it('append carries only the steps after the given one', () => {
    const s = storeWith(10, (step) => step + 1);
    const a = buildAppend(s, 6, 3, header, 'norm', null);
    assert.deepEqual(a.globalNorm.steps, [7, 8, 9]);
    assert.deepEqual(a.heatmap.steps, [7, 8, 9]);
    assert.equal(a.heatmap.values.length, 2 * 3);
    assert.deepEqual(a.tensors, []);
    assert.deepEqual(a.layerNorms.d2.steps, [7, 8, 9]);
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
    s.ingest({ type: 'detail', step: 2, tensorId: 0, mean: 0.1, std: 0.2, zeroFrac: 0.5, histLo: -20, histHi: 12, hist: new Uint32Array(32).fill(1), thumbRows: 2, thumbCols: 2, thumb: Float32Array.from([1, 2, 3, 4]) });
    const snap = buildSnapshot(s, { header, findings: [], metric: 'zeroFrac', compare: null, savedRuns: [] });
    assert.deepEqual(snap.layers, layersInOrder(s.tensors));
    assert.equal(snap.tensors.length, 3);
    assert.equal(snap.heatmap.values[0 * 3 + 2], 0.5, "zero fraction over the tensors of the layer that have a detail at that step");
    assert.equal(snap.heatmap.values[0 * 3 + 1], null, "no detail, no value");
    assert.deepEqual(snap.loss.values.map((v) => Number(v?.toFixed(3))), [1, 0.5, 0.333]);
    const d = buildTensorDetail(s, 0, 2);
    assert.deepEqual(d.thumbnail?.values, [1, 2, 3, 4]);
    assert.equal(d.histograms.length, 1);
    assert.equal(d.stats?.zeroFrac, 0.5);
    assert.equal(buildTensorDetail(s, 0, 1).thumbnail, null, 'no thumbnail before its step');
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
    assert.deepEqual(row('head').map((v) => (typeof v === 'number' ? 'value' : v)), h.steps.map((st) => (st % 2 === 1 ? 'absent' : 'value')));
    assert.equal(row('l2')[13], 'NaN');
    assert.ok(!h.values.includes(null), 'every cell is a value, NaN or absent');
    const ln = buildLayerNorms(s);
    assert.deepEqual(ln.head.absent, [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    assert.ok(ln.head.absent!.every((i) => ln.head.values[i] === null));
    assert.equal(ln.head.nan, undefined, 'no NaN point for an absent step');
    assert.deepEqual(ln.frozen.absent?.length, 20);
    assert.deepEqual(ln.l2.nan, [13]);
    // The global norm curve has no NaN point but the real one.
    const snap = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    assert.deepEqual(snap.globalNorm.nan, [13]);
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
    assert.deepEqual(head.slice(n - 8).map((v) => (typeof v === 'number' ? 'value' : v)), ['value', 'absent', 'value', 'absent', 'value', 'absent', 'value', 'absent']);
    assert.ok(!h.values.includes('NaN'));
  });

  it('lists the optimizers and restricts the heatmap and layer curves to one optimizer’s steps', () => {
    const s = absentRun({ steps: 20, twoOptimizers: true });
    const all = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    assert.deepEqual(all.optimizers.map((o) => [o.id, o.name, o.steps]), [
      [0, 'opt', 10],
      [1, 'opt_head', 10],
    ]);
    assert.equal(all.optimizer, null);
    assert.equal(all.heatmap.steps.length, 20);
    const head = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [], optimizer: 1 });
    assert.equal(head.optimizer, 1);
    assert.deepEqual(head.heatmap.steps, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    assert.deepEqual(head.layerNorms.head.steps, head.heatmap.steps);
    assert.equal(head.layerNorms.head.absent, undefined, 'the head has a gradient at every step of its optimizer');
    const body = buildAppend(s, 9, s.tensors.length, header, 'norm', null, 0);
    assert.deepEqual(body.heatmap.steps, [11, 13, 15, 17, 19]);
    assert.equal(buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [], optimizer: 7 }).optimizer, null, 'an unknown id shows all');
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
});
