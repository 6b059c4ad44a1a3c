// No false alarms from the shape of normal training, on hand-built stores: an nn.Embedding's
// row-sparse gradient is not dead units and is not offered He initialisation, and a script that
// already clips is not told to add clipping (while an explosion before clipping is still reported).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyzeStore } from '../../../src/core/analysis/analyzer';
import { adjustForClipping, clipInEffect } from '../../../src/core/analysis/clipping';
import type { Finding } from '../../../src/core/analysis/finding';
import type { DetailMsg, EventMsg, StatName, TensorInfo } from '../../../src/core/protocol/messages';
import { RunStore } from '../../../src/core/store/runStore';

const STATS: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
const SCRIPT = '/tmp/lm.py';

interface Spec {
  name: string;
  layer: string;
  layerType: string;
  shape: number[];
  /** Parameter norm at every step (the first step's decides the initial gain). */
  paramNorm: number;
}

const tensorsOf = (specs: Spec[]): TensorInfo[] =>
  specs.map((s, id) => ({ id, name: s.name, layer: s.layer, layerType: s.layerType, shape: s.shape, source: { file: SCRIPT, line: 10 + id, column: 5 } }));

/** A torch run: `norm(step, tensor)` per step, `loss(step)` (1 throughout by default), update ratio 1e-3. */
function torchStore(
  specs: Spec[],
  steps: number,
  norm: (step: number, t: number) => number,
  extra: (store: RunStore, step: number) => void = () => {},
  loss: (step: number) => number = () => 1,
): RunStore {
  const store = new RunStore();
  store.ingest({ type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: SCRIPT, detailEvery: 2 });
  store.ingest({ type: 'tensors', tensors: tensorsOf(specs) });
  for (let step = 0; step < steps; step++) {
    const col = (stat: StatName): Float64Array =>
      Float64Array.from(specs, (s, t) =>
        stat === 'norm' ? norm(step, t) : stat === 'maxAbs' ? norm(step, t) / 10 : stat === 'paramNorm' ? s.paramNorm : stat === 'updateNorm' ? s.paramNorm * 1e-3 : 0,
      );
    store.ingest({ type: 'step', step, optimizer: 0, loss: loss(step), wallMs: step, stats: STATS, columns: STATS.map(col), nTensors: specs.length });
    extra(store, step);
  }
  return store;
}

function detail(step: number, tensorId: number, zeroFrac: number): DetailMsg {
  return { type: 'detail', step, tensorId, mean: 0, std: 1e-3, zeroFrac, histLo: -12, histHi: 2, hist: new Uint32Array(32), thumbRows: 0, thumbCols: 0, thumb: new Float32Array(0) };
}

const clipEvent = (maxNorm: number, clipBy?: 'norm' | 'value'): EventMsg => ({
  type: 'event',
  kind: 'clip',
  step: 0,
  value: maxNorm,
  ...(clipBy ? { clipBy } : {}),
  message: clipBy === 'value' ? `the script clips gradients with clip_grad_value_(clip_value=${maxNorm})` : `the script clips gradients with clip_grad_norm_(max_norm=${maxNorm})`,
});
const kinds = (fs: readonly Finding[]): string[] => fs.map((f) => f.kind).sort();
const remedyIds = (f: Finding | undefined): string[] => (f ? f.remedies.map((r) => r.id) : []);

// A tiny language model: token table N(0, 1) (‖W‖ = √(5000·32) = 400), He-initialised MLP.
const vocab = 5000;
const dim = 32;
const heNorm = (out: number, fin: number): number => Math.sqrt(2 / fin) * Math.sqrt(out * fin);
const lm = (tableType: string): Spec[] => [
  { name: 'tok.weight', layer: 'tok', layerType: tableType, shape: [vocab, dim], paramNorm: Math.sqrt(vocab * dim) },
  { name: 'hidden.weight', layer: 'hidden', layerType: 'Linear', shape: [64, dim], paramNorm: heNorm(64, dim) },
  { name: 'hidden.bias', layer: 'hidden', layerType: 'Linear', shape: [64], paramNorm: 0.1 },
  { name: 'head.weight', layer: 'head', layerType: 'Linear', shape: [vocab, 64], paramNorm: heNorm(vocab, 64) },
  { name: 'head.bias', layer: 'head', layerType: 'Linear', shape: [vocab], paramNorm: 0.1 },
];

/** 40 healthy steps; every 4th step a DETAIL per tensor, the table's 97 % zeros (only the batch's rows). */
function healthyLm(tableType: string): RunStore {
  return torchStore(
    lm(tableType),
    40,
    (step, t) => 0.5 + 0.1 * t + 0.01 * Math.sin(step + t),
    (store, step) => {
      if (step % 4) return;
      for (let t = 0; t < 5; t++) store.ingest(detail(step, t, t === 0 ? 0.974 + 0.001 * Math.sin(step) : 0.02));
    },
  );
}

describe('lookup layers (nn.Embedding) are not dead units', () => {
  it('a healthy language model whose embedding gradient is 97 % zeros has no finding', () => {
    assert.deepEqual(kinds(analyzeStore(healthyLm('Embedding'))), []);
    assert.deepEqual(kinds(analyzeStore(healthyLm('EmbeddingBag'))), []);
    assert.deepEqual(kinds(analyzeStore(healthyLm('VocabParallelEmbedding'))), []);
  });

  it('the same numbers on a bias-less layer of another type are dead units (the rule is the layer type)', () => {
    const fs = analyzeStore(healthyLm('Linear'));
    assert.deepEqual(kinds(fs), ['dead-units']);
    assert.equal(fs[0].layer, 'tok');
  });

  it('an embedding whose gradient is exactly zero for 10 steps is still reported, without init or bias remedies', () => {
    const store = torchStore(lm('Embedding'), 30, (_step, t) => (t === 0 ? 0 : 0.5 + 0.1 * t));
    const f = analyzeStore(store).find((x) => x.kind === 'dead-units');
    assert.ok(f, 'dead-units on the silent embedding');
    assert.equal(f.layer, 'tok');
    assert.equal(f.evidence.signal, 'zero-norm');
    for (const id of ['he-init', 'glorot-init', 'zero-bias-init']) assert.ok(!remedyIds(f).includes(id), `${id} not offered for a lookup table: ${remedyIds(f).join(', ')}`);
    assert.ok(f.remedies.length > 0);
  });

  it("an explosion in a language model does not blame the embedding's N(0, 1) initialisation", () => {
    // The embedding's "gain" by the fan-in formula is √32 ≈ 5.7 (≥ 2 would read as too large).
    const explode = (step: number, t: number): number => (0.5 + 0.1 * t) * (step < 15 ? 1 + 0.01 * Math.sin(step) : 1000);
    const fs = analyzeStore(torchStore(lm('Embedding'), 16, explode));
    const f = fs.find((x) => x.kind === 'exploding-gradient');
    assert.ok(f, kinds(fs).join(', '));
    assert.notEqual(f.evidence.cause, 'initialisation', f.message);
    assert.ok(!remedyIds(f).includes('he-init'), remedyIds(f).join(', '));
    // Control: a table of another type with the same norms is judged by its gain, and blamed.
    const g = analyzeStore(torchStore(lm('Linear'), 16, explode)).find((x) => x.kind === 'exploding-gradient');
    assert.equal(g?.evidence.cause, 'initialisation');
    assert.equal(g?.layer, 'tok');
  });
});

describe('a script that already clips is not told to add clipping', () => {
  const mlp: Spec[] = [
    { name: 'fc1.weight', layer: 'fc1', layerType: 'Linear', shape: [64, 32], paramNorm: heNorm(64, 32) },
    { name: 'fc1.bias', layer: 'fc1', layerType: 'Linear', shape: [64], paramNorm: 0.1 },
    { name: 'fc2.weight', layer: 'fc2', layerType: 'Linear', shape: [10, 64], paramNorm: heNorm(10, 64) },
  ];
  // Every layer grows together (a global explosion: clipping ranked first), to a pre-clip norm of ~1000.
  const explode = (step: number, t: number): number => (0.5 + 0.1 * t) * (step < 15 ? 1 + 0.01 * Math.sin(step) : 1000);
  const exploding = (clip: number | null, by?: 'norm' | 'value'): Finding | undefined => {
    const store = torchStore(mlp, 16, explode, (s, step) => {
      if (step === 0 && clip !== null) s.ingest(clipEvent(clip, by));
    });
    return analyzeStore(store).find((f) => f.kind === 'exploding-gradient');
  };

  it('without clipping, an explosion ranks clip-global-norm first', () => {
    assert.deepEqual(remedyIds(exploding(null)), ['clip-global-norm', 'lower-lr']);
  });

  it('clipping that acted (pre-clip norms above the threshold): the explosion is still reported, clipping is not offered', () => {
    const f = exploding(1);
    assert.ok(f, 'the explosion measured before clipping is reported');
    assert.equal(f.severity, 'error');
    assert.deepEqual(remedyIds(f), ['lower-lr']);
    assert.equal(f.evidence.clipMaxNorm, 1);
    assert.equal(f.evidence.clipActed, 'yes');
    assert.ok(typeof f.evidence.normAtDetection === 'number' && f.evidence.normAtDetection > 100, 'the norm is the pre-clip one');
    assert.match(f.message, /already clips gradients to a global norm of 1: the norms here are measured before clipping/);
  });

  it("clipping above every norm seen: the remedy is to lower the threshold, at clipping's rank", () => {
    const f = exploding(1e6);
    assert.ok(f);
    assert.deepEqual(remedyIds(f), ['lower-clip-threshold', 'lower-lr']);
    assert.match(f.remedies[0].title, /from 1\.00e\+6/); // formatNumber (core/protocol/float.ts), as the CLI, hover and panel write it
    assert.equal(f.evidence.clipActed, 'no');
    assert.match(f.message, /never acted/);
  });

  it('clip_grad_value_ is a bound on each element, not a global norm: said so, and judged by the tensor norms', () => {
    // The pre-clip tensor norms reach 700 (global ~1100): a value of 1 may well have acted.
    const f = exploding(1, 'value');
    assert.ok(f);
    assert.deepEqual(remedyIds(f), ['lower-lr']);
    assert.equal(f.evidence.clipValue, 1);
    assert.equal(f.evidence.clipMaxNorm, undefined);
    assert.equal(f.evidence.clipActed, 'unknown');
    assert.match(f.message, /already clips each gradient element to ±1 \(clip_grad_value_\): the norms here are measured before clipping/);
    assert.doesNotMatch(f.message, /global norm of/);
    // 800: above every tensor's norm (so above every element), below the global norm a norm clip
    // would be judged by: a value clip that never acted, where a norm clip at 800 did.
    const g = exploding(800, 'value');
    assert.ok(g);
    assert.deepEqual(remedyIds(g), ['lower-clip-threshold', 'lower-lr']);
    assert.match(g.remedies[0].title, /^Lower the clip value \(clip_grad_value_ clip_value \/ gradient_clip_val\) from 800; the largest tensor's norm seen is 7\d\d/);
    assert.equal(g.evidence.clipActed, 'no');
    assert.match(g.message, /clips each gradient element to ±800 \(clip_grad_value_\), and no tensor's gradient norm reached it/);
    assert.deepEqual(remedyIds(exploding(800, 'norm')), ['lower-lr']);
  });

  it('clipInEffect takes the latest finite threshold, a norm clip before a value clip; findings without clipping remedies are unchanged', () => {
    const e = (v: number | undefined, kind: EventMsg['kind'] = 'clip'): EventMsg => ({ type: 'event', kind, message: '', ...(v !== undefined ? { value: v } : {}) });
    assert.equal(clipInEffect([]), null);
    assert.equal(clipInEffect([e(5, 'info'), e(undefined), e(NaN)]), null);
    assert.equal(clipInEffect([e(5), e(0.5), e(NaN)])?.maxNorm, 0.5);
    // Both kinds in one script: the norm clip, whichever came last; a value clip alone is taken.
    const v = (x: number): EventMsg => ({ ...e(x), clipBy: 'value' });
    assert.deepEqual(clipInEffect([e(2), v(0.1)]), { maxNorm: 2, by: 'norm', step: null });
    assert.deepEqual(clipInEffect([v(0.1), e(2), v(0.3)]), { maxNorm: 2, by: 'norm', step: null });
    assert.deepEqual(clipInEffect([v(0.1), v(0.3)]), { maxNorm: 0.3, by: 'value', step: null });
    const f: Finding = {
      id: 'vanishing-gradient:a',
      kind: 'vanishing-gradient',
      severity: 'warning',
      step: 1,
      stepRange: [0, 1],
      tensors: [],
      layer: 'a',
      source: null,
      message: 'm',
      evidence: {},
      remedies: [{ id: 'he-init', title: 'He' }],
    };
    assert.equal(adjustForClipping(f, { maxNorm: 1, by: 'norm', step: 0 }, { global: 10, tensor: 8 }, 'torch'), f);
    // (run files from before clipBy: a norm clip)
    assert.equal(clipInEffect([e(2)])?.by, 'norm');
  });
});

describe("several optimizers: each one's steps are judged on their own", () => {
  const STATS_G: StatName[] = [...STATS, 'hasGrad'];
  const specs: Spec[] = [
    { name: 'items.weight', layer: 'items', layerType: 'EmbeddingBag', shape: [2000, 16], paramNorm: 178 },
    { name: 'users.weight', layer: 'users', layerType: 'Embedding', shape: [2000, 16], paramNorm: 178 },
    { name: 'mlp.weight', layer: 'mlp', layerType: 'Linear', shape: [1, 32], paramNorm: heNorm(1, 32) },
    { name: 'mlp.bias', layer: 'mlp', layerType: 'Linear', shape: [1], paramNorm: 0.1 },
  ];
  /** SparseAdam (optimizer 0: the tables) and Adam (1: the MLP) step in turn; `dense(i)` is the MLP's norm at its i-th step. */
  function twoOptimizers(dense: (i: number) => number): RunStore {
    const store = new RunStore();
    store.ingest({ type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: SCRIPT, detailEvery: 0 });
    store.ingest({ type: 'tensors', tensors: tensorsOf(specs) });
    store.ingest({ type: 'optimizer', id: 0, name: 'sparse_opt', className: 'SparseAdam', mode: 'optimizer', tensorIds: [0, 1] });
    store.ingest({ type: 'optimizer', id: 1, name: 'dense_opt', className: 'Adam', mode: 'optimizer', tensorIds: [2, 3] });
    for (let step = 0; step < 40; step++) {
      const optimizer = step % 2;
      const present = (t: number): boolean => (t < 2 ? optimizer === 0 : optimizer === 1);
      const norm = (t: number): number => (optimizer === 0 ? 0.02 : dense(step >> 1)) * (1 + 0.01 * Math.sin(step + t));
      const col = (stat: StatName): Float64Array =>
        Float64Array.from(specs, (s, t) => {
          if (stat === 'hasGrad') return present(t) ? 1 : 0;
          if (!present(t)) return NaN;
          return stat === 'norm' ? norm(t) : stat === 'maxAbs' ? norm(t) / 10 : stat === 'paramNorm' ? s.paramNorm : stat === 'updateNorm' ? s.paramNorm * 1e-3 : 0;
        });
      store.ingest({ type: 'step', step, optimizer, loss: 1, wallMs: step, stats: STATS_G, columns: STATS_G.map(col), nTensors: specs.length });
    }
    return store;
  }

  it("SparseAdam's small norms beside Adam's ×10 larger ones are not an explosion", () => {
    assert.deepEqual(kinds(analyzeStore(twoOptimizers(() => 0.25))), []);
  });

  it("an explosion in one optimizer's steps is found and named after it", () => {
    const fs = analyzeStore(twoOptimizers((i) => (i < 15 ? 0.25 : 250)));
    const f = fs.find((x) => x.kind === 'exploding-gradient');
    assert.ok(f, kinds(fs).join(', '));
    assert.match(f.id, /@dense_opt$/);
    assert.match(f.message, /^\[dense_opt\] Exploding gradients/);
    assert.equal(f.evidence.optimizer, 'dense_opt');
  });
});

describe('a gradient spike the run comes back from is a transient, not an explosion', () => {
  const mlp: Spec[] = [
    { name: 'rnn.weight_hh', layer: 'rnn', layerType: 'LSTM', shape: [64, 16], paramNorm: heNorm(64, 16) },
    { name: 'rnn.bias', layer: 'rnn', layerType: 'LSTM', shape: [64], paramNorm: 0.1 },
    { name: 'head.weight', layer: 'head', layerType: 'Linear', shape: [10, 64], paramNorm: heNorm(10, 64) },
  ];
  // An LSTM at a high learning rate: ×14 at steps 4, 6, … 14 (every other step), then calm.
  const spiky = (step: number, t: number): number => (0.1 + 0.05 * t) * (step >= 4 && step <= 14 && step % 2 === 0 ? 16 - step / 2 : 1 + 0.05 * Math.sin(step));
  const falling = (step: number): number => 9.8 - 3 * (1 - Math.exp(-step / 20));
  const exploding = (steps: number, norm = spiky, loss = falling, extra?: (s: RunStore, step: number) => void): Finding | undefined =>
    analyzeStore(torchStore(mlp, steps, norm, extra, loss)).find((f) => f.kind === 'exploding-gradient');

  it('settled (norm back, loss below where it was): info, with where and how it settled', () => {
    const f = exploding(60)!;
    assert.equal(f.severity, 'info');
    assert.equal(f.step, 4);
    assert.equal(f.evidence.settled, 1);
    assert.equal(f.evidence.settledSteps, '5–24');
    assert.ok((f.evidence.settledNorm as number) < 3 * (f.evidence.normAtStart as number));
    assert.match(f.message, /^A gradient spike across all layers: .* It settled: over steps 5–24 the median norm was .* a transient the run came back from\.$/);
    // The same run seen only up to step 20: not settled yet, an explosion.
    assert.equal(exploding(20)?.severity, 'error');
  });

  it('the norm back but the loss not below where it was (a model the spike broke): still an error', () => {
    assert.equal(exploding(60, spiky, () => 9.8)?.severity, 'error');
    const rising = (step: number): number => 9.8 + step / 10;
    assert.equal(exploding(60, spiky, rising)?.severity, 'error');
  });

  it('a non-finite step before it settled: still an error; one after it settled is not put down to it', () => {
    const nanAt =
      (at: number) =>
      (step: number, t: number): number =>
        step === at ? Infinity : spiky(step, t);
    assert.equal(exploding(60, nanAt(15))?.severity, 'error');
    const fs = analyzeStore(torchStore(mlp, 60, nanAt(30), undefined, falling));
    assert.deepEqual(fs.map((f) => [f.kind, f.severity]).sort(), [
      ['exploding-gradient', 'info'],
      ['non-finite-gradient', 'error'],
    ]);
    const nf = fs.find((f) => f.kind === 'non-finite-gradient')!;
    assert.equal(nf.evidence.explodingFlaggedAt, null, nf.message);
  });

  it('a second, larger explosion after it settled is an error again, from its own baseline', () => {
    const twice = (step: number, t: number): number => (step >= 40 ? spiky(step, t) * 10 ** (step - 39) : spiky(step, t));
    const f = exploding(45, twice, (step) => (step >= 40 ? 9 : falling(step)))!;
    assert.equal(f.severity, 'error');
    assert.ok(f.step >= 40, `detected at ${f.step}`);
    assert.equal(f.evidence.settled, undefined);
    // The same spike again at the same height is the same behaviour: still the transient.
    const again = (step: number, t: number): number => (step === 40 ? spiky(4, t) : spiky(step, t));
    assert.equal(exploding(60, again)?.severity, 'info');
  });

  it('under a clip that acted, the note says the clip bounded the updates through the spike', () => {
    const f = exploding(60, spiky, falling, (s, step) => {
      if (step === 0) s.ingest(clipEvent(0.25));
    })!;
    assert.equal(f.severity, 'info');
    assert.match(f.message, /clips gradients to a global norm of 0\.25: the norms here are measured before clipping, which bounded the updates through the spike\.$/);
    assert.deepEqual(remedyIds(f), ['lower-lr']);
  });
});

describe('a jump over a baseline of one or two steps must be larger', () => {
  const mlp: Spec[] = [
    { name: 'l.weight', layer: 'l', layerType: 'Linear', shape: [500, 784], paramNorm: heNorm(500, 784) },
    { name: 'l.bias', layer: 'l', layerType: 'Linear', shape: [500], paramNorm: 0.1 },
  ];
  const falling = (step: number): number => 1.13 - 0.4 * (1 - Math.exp(-step / 5));
  const found = (norm: (step: number, t: number) => number): Finding | undefined => analyzeStore(torchStore(mlp, 30, norm, undefined, falling)).find((f) => f.kind === 'exploding-gradient');

  it("a first step ×12 below the next ones (the Forward-Forward example's) is no explosion", () => {
    // 6.5e-4, 0.0083, then the norm swings between 0.005 and 0.035 while the loss falls.
    assert.equal(
      found((step, t) => (step === 0 ? 6.5e-4 : step === 1 ? 0.0083 : 0.02 + 0.015 * Math.sin(step)) * (1 + t)),
      undefined,
    );
  });

  it('a jump of ×30 or more at step 1 still is one, and ×12 over a baseline of three steps', () => {
    assert.equal(found((step, t) => (step === 1 ? 87 : 1) * (1 + t))?.step, 1);
    assert.equal(found((step, t) => (step === 3 ? 12 : 1) * (1 + t))?.step, 3);
  });
});

describe('large first updates that settle are no learning rate too high', () => {
  // A one-weight linear regression from a random start (pytorch-tutorial's): the weight moves 40 % a
  // step at first, then less and less, while the loss falls.
  const lin: Spec[] = [{ name: 'linear.weight', layer: 'linear', layerType: 'Linear', shape: [1, 1], paramNorm: 1 }];
  // torchStore's update norm is paramNorm × 1e-3: a store whose update ratio follows `ratio(step)`.
  function run(steps: number, ratio: (step: number) => number, loss: (step: number) => number): Finding | undefined {
    const store = new RunStore();
    store.ingest({ type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: SCRIPT, detailEvery: 2 });
    store.ingest({ type: 'tensors', tensors: tensorsOf(lin) });
    for (let step = 0; step < steps; step++) {
      const cols = STATS.map((stat) => Float64Array.of(stat === 'norm' ? 1 : stat === 'maxAbs' ? 0.1 : stat === 'paramNorm' ? 1 : stat === 'updateNorm' ? ratio(step) : 0));
      store.ingest({ type: 'step', step, optimizer: 0, loss: loss(step), wallMs: step, stats: STATS, columns: cols, nTensors: 1 });
    }
    return analyzeStore(store).find((f) => f.kind === 'update-ratio');
  }
  const fast = (step: number): number => 0.4 * Math.exp(-step / 10);
  const falling = (step: number): number => 28.6 * Math.exp(-step / 5) + 0.34;

  it('settled (a later window all under 10 %, the loss lower): info, no remedy', () => {
    const f = run(60, fast, falling)!;
    assert.equal(f.severity, 'info');
    assert.equal(f.evidence.settled, 1);
    assert.deepEqual(f.remedies, []);
    assert.match(f.message, /^Large first updates, then settled: .* as a fresh model does\.$/);
    // Seen only up to step 25: not settled yet, a warning.
    assert.equal(run(25, fast, falling)?.severity, 'warning');
  });

  it('updates that stay large, or a loss that does not fall, are still a learning rate too high', () => {
    assert.equal(run(60, () => 0.3, falling)?.severity, 'warning');
    assert.equal(run(60, fast, () => 5)?.severity, 'warning');
    // Settled, then too high again later: a warning again.
    assert.equal(run(90, (step) => (step >= 60 ? 0.3 : fast(step)), falling)?.severity, 'warning');
  });
});
