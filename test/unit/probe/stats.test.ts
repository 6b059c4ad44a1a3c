// The pure statistics the stats worker computes, against values worked out by hand.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnomalyTracker, HIST_BINS, HIST_LO, JUMP_DETAIL_GAP, detailStats, diffNorm, histBin, l2Norm, paramAndUpdateNorm, stepStats, view2d } from '../../../src/probe/tfjs/stats';
import { StatsState, runJob } from '../../../src/probe/tfjs/statsJob';
import type { StepJob } from '../../../src/probe/tfjs/workerProtocol';

describe('stepStats', () => {
  it('computes norm and max over finite entries and counts NaN and Inf apart', () => {
    const s = stepStats(new Float32Array([3, -4, NaN, Infinity, -Infinity, 0]));
    assert.equal(s.norm, 5);
    assert.equal(s.maxAbs, 4);
    assert.equal(s.nanCount, 1);
    assert.equal(s.infCount, 2);
  });

  it('does not overflow where a float32 sum of squares would', () => {
    // 3e30² = 9e60 overflows float32 (max ~3.4e38); the norm itself (5e30) is representable.
    const g = new Float32Array([3e30, 4e30]);
    const s = stepStats(g);
    assert.ok(Math.abs(s.norm / 5e30 - 1) < 1e-6, `norm ${s.norm}`);
    // And tiny values do not underflow to 0.
    const t = stepStats(new Float32Array([3e-30, 4e-30]));
    assert.ok(Math.abs(t.norm / 5e-30 - 1) < 1e-6, `norm ${t.norm}`);
  });

  it('agrees with a plain pass over the finite values, with and without non-finite ones', () => {
    const g = new Float32Array(1000).map((_, i) => Math.fround(Math.sin(i * 12.9898) * 43758.5453) % 3);
    const plain = (xs: Float32Array): number[] => {
      const f = [...xs].filter(Number.isFinite);
      return [Math.sqrt(f.reduce((a, x) => a + x * x, 0)), Math.max(0, ...f.map(Math.abs))];
    };
    const same = (xs: Float32Array, counts: number[]): void => {
      const s = stepStats(xs);
      const [norm, max] = plain(xs);
      assert.ok(Math.abs(s.norm / norm - 1) < 1e-12, `norm ${s.norm} vs ${norm}`);
      assert.deepEqual([s.maxAbs, s.nanCount, s.infCount], [max, ...counts]);
    };
    same(g, [0, 0]);
    same(g.subarray(0, 999), [0, 0]); // a length that is not a multiple of 4
    g[10] = NaN;
    g[500] = -Infinity;
    same(g, [1, 1]);
  });

  it('gives zeros for an all-non-finite gradient', () => {
    const s = stepStats(new Float32Array([NaN, NaN]));
    assert.deepEqual([s.norm, s.maxAbs, s.nanCount, s.infCount], [0, 0, 2, 0]);
  });
});

describe('norms of parameters', () => {
  it('l2Norm and diffNorm', () => {
    assert.equal(l2Norm([3, 4]), 5);
    assert.equal(diffNorm([1, 1], [4, 5]), 5);
    assert.ok(Number.isNaN(diffNorm([1], [1, 2])));
    assert.deepEqual(paramAndUpdateNorm([4, 5, 0], [1, 1, 0]), [Math.sqrt(41), 5]);
    assert.deepEqual(paramAndUpdateNorm([3, 4], [3, 4, 5]), [5, NaN]);
    assert.ok(paramAndUpdateNorm([NaN, 1], [0, 0]).every(Number.isNaN));
  });
});

describe('detail tier', () => {
  it('histogram bins are decades of |g| clamped at the edges', () => {
    assert.equal(histBin(1), -HIST_LO);
    assert.equal(histBin(9.99), -HIST_LO);
    assert.equal(histBin(10), -HIST_LO + 1);
    assert.equal(histBin(0.1), -HIST_LO - 1);
    assert.equal(histBin(0.099), -HIST_LO - 2);
    assert.equal(histBin(1e-30), 0);
    assert.equal(histBin(1e30), HIST_BINS - 1);
  });

  it('bins float32 values by their exponent exactly as histBin does, powers of ten and the edges included', () => {
    const xs: number[] = [];
    for (let k = -46; k <= 39; k++) {
      const p = Math.fround(Number(`1e${k}`));
      // The float32 nearest a power of ten, and its neighbours on both sides.
      for (const x of [p, p * (1 + 1e-7), p * (1 - 1e-7), p * 2, p * 5, p * 9.999999]) if (x > 0 && Number.isFinite(Math.fround(x))) xs.push(Math.fround(x));
    }
    let seed = 1;
    for (let i = 0; i < 20000; i++) {
      seed = (seed * 16807) % 2147483647;
      xs.push(Math.fround(10 ** ((seed / 2147483647) * 90 - 48))); // beyond float32's range: Inf, left out
    }
    xs.push(1.4e-45, 1e-40, 3.4e38); // denormals, the largest float32
    const g = new Float32Array(xs.flatMap((x) => [x, -x]));
    const want = new Array<number>(HIST_BINS).fill(0);
    for (const x of g) if (x !== 0 && Number.isFinite(x)) want[histBin(Math.abs(x))]++;
    assert.deepEqual([...detailStats(g, [g.length]).hist], want);
    // A plain array (no float32 bits to read) takes histBin itself: the same counts.
    assert.deepEqual([...detailStats([...g], [g.length]).hist], want);
  });

  it('mean, std, zero fraction, histogram and thumbnail of a small matrix', () => {
    const d = detailStats(new Float32Array([3, -4, 0, 12, NaN, 0]), [3, 2]);
    // finite values 3, -4, 0, 12, 0: mean 11/5; E[x²] = 169/5
    assert.ok(Math.abs(d.mean - 2.2) < 1e-12);
    assert.ok(Math.abs(d.std - Math.sqrt(169 / 5 - 2.2 * 2.2)) < 1e-12);
    assert.equal(d.zeroFrac, 2 / 6);
    const bins = [...d.hist];
    assert.equal(bins[-HIST_LO], 2); // 3 and 4
    assert.equal(bins[-HIST_LO + 1], 1); // 12
    assert.equal(
      bins.reduce((a, b) => a + b, 0),
      3,
    ); // zeros and NaN excluded
    assert.equal(d.thumbRows, 3);
    assert.equal(d.thumbCols, 2);
    assert.deepEqual([...d.thumb.slice(0, 4)], [3, 4, 0, 12]);
    assert.ok(Number.isNaN(d.thumb[4])); // a cell with only a NaN
    assert.equal(d.thumb[5], 0);
  });

  it('folds conv kernels to [kh·kw·in, out] and pools big matrices to at most 32×32', () => {
    assert.deepEqual(view2d([3, 3, 8, 16]), [72, 16]);
    assert.equal(view2d([10]), null);
    const g = new Float32Array(64 * 100).map((_, i) => (i % 100 < 50 ? 1 : 3));
    const d = detailStats(g, [64, 100]);
    assert.equal(d.thumbRows, 32);
    assert.equal(d.thumbCols, 32);
    assert.equal(d.thumb[0], 1);
    assert.equal(d.thumb[31], 3);
  });
});

describe('anomalies and the job runner', () => {
  it('flags the first non-finite tensor once and norm jumps', () => {
    const a = new AnomalyTracker();
    assert.deepEqual(a.observe([0, 1], [1, 1], [0, 0]), { firstNonFinite: null, jump: false });
    assert.deepEqual(a.observe([0, 1], [1, 20], [0, 3]), { firstNonFinite: 1, jump: true });
    assert.deepEqual(a.observe([0, 1], [1, 20], [2, 3]), { firstNonFinite: null, jump: false });
  });

  it('gives a norm jump the detail tier at most once per JUMP_DETAIL_GAP steps of any detail tier, a first non-finite value always', () => {
    const a = new AnomalyTracker();
    const none = { firstNonFinite: null, jump: false };
    const jump = { firstNonFinite: null, jump: true };
    assert.equal(a.wantsDetail(0, none, true), true, 'scheduled');
    assert.equal(a.wantsDetail(1, none, false), false);
    assert.equal(a.wantsDetail(3, jump, false), false, 'a jump 3 steps after a detail tier');
    assert.equal(a.wantsDetail(JUMP_DETAIL_GAP, jump, false), true);
    assert.equal(a.wantsDetail(JUMP_DETAIL_GAP + 1, jump, false), false);
    assert.equal(a.wantsDetail(JUMP_DETAIL_GAP + 2, { firstNonFinite: 4, jump: true }, false), true, 'the first non-finite value');
    // The automatic schedule's interval, when longer, is the gap (jumps stay within the budget).
    const b = new AnomalyTracker();
    assert.equal(b.wantsDetail(0, none, true), true);
    assert.equal(b.wantsDetail(JUMP_DETAIL_GAP, jump, false, 30), false);
    assert.equal(b.wantsDetail(30, jump, false, 30), true);
    assert.equal(b.wantsDetail(45, jump, false, 5), true, 'never shorter than JUMP_DETAIL_GAP, which 15 steps satisfy');
    // Through the job runner: a tensor whose norm jumps 100× on two steps running gets one detail tier.
    const st = new StatsState();
    const job = (step: number, x: number): StepJob => ({
      kind: 'step',
      jumpGap: 0,
      seq: step,
      step,
      detail: false,
      ids: [0],
      shapes: [[1]],
      sizes: [1],
      g: new Float32Array([x]),
      weighted: [],
      w: null,
      w0: null,
    });
    assert.equal(runJob(st, job(0, 1)).details.length, 0);
    const r1 = runJob(st, job(1, 100));
    assert.equal(r1.details.length, 1);
    assert.equal(r1.anomaly, 'gradient norm jump');
    const r2 = runJob(st, job(2, 1e4));
    assert.equal(r2.details.length, 0);
    assert.equal(r2.anomaly, null);
  });

  it('reads packed tensors: gradient statistics for every row, paramNorm/updateNorm only for the weighed ones', () => {
    const st = new StatsState();
    // Tensor 7: g = (3, 4); tensor 9: g = (0, 1, NaN). Only tensor 9 is weighed: w0 = (1, 1, 1) → w = (1, 3, 1).
    const g = new Float32Array([3, 4, 0, 1, NaN]);
    const w = new Float32Array([1, 3, 1]);
    const w0 = new Float32Array([1, 1, 1]);
    const r = runJob(st, { kind: 'step', jumpGap: 0, seq: 0, step: 0, detail: true, ids: [7, 9], shapes: [[2], [3]], sizes: [2, 3], g, weighted: [1], w, w0 });
    const row = (i: number): number[] => [...r.stats!.subarray(i * 6, i * 6 + 6)];
    assert.deepEqual(row(0).slice(0, 4), [5, 4, 0, 0]);
    assert.ok(row(0).slice(4).every(Number.isNaN), 'not weighed: unknown, not zero');
    assert.deepEqual(row(1), [1, 1, 1, 0, Math.sqrt(11), 2]);
    assert.deepEqual(r.ids, [7, 9]);
    assert.equal(r.firstNonFinite, 9);
    assert.deepEqual(
      r.details.map((d) => [d.tensorId, d.mean]),
      [
        [7, 3.5],
        [9, 0.5],
      ],
    );
    // The job's buffers come back for reuse.
    assert.deepEqual(
      r.recycle.map((b) => b.byteLength),
      [20, 12, 12],
    );
    assert.ok(r.recycle.includes(g.buffer) && r.recycle.includes(w.buffer) && r.recycle.includes(w0.buffer));
  });

  it('refuses packed buffers that do not match their sizes', () => {
    const st = new StatsState();
    assert.throws(
      () => runJob(st, { kind: 'step', jumpGap: 0, seq: 0, step: 0, detail: false, ids: [0], shapes: [[3]], sizes: [3], g: new Float32Array(2), weighted: [], w: null, w0: null }),
      /packed/,
    );
    assert.throws(
      () =>
        runJob(st, {
          kind: 'step',
          jumpGap: 0,
          seq: 0,
          step: 0,
          detail: false,
          ids: [0],
          shapes: [[2]],
          sizes: [2],
          g: new Float32Array(2),
          weighted: [0],
          w: new Float32Array(2),
          w0: new Float32Array(3),
        }),
      /packed weights/,
    );
  });
});
