// The pure statistics the stats worker computes, against values worked out by hand.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnomalyTracker, HIST_BINS, HIST_LO, detailStats, diffNorm, histBin, l2Norm, stepStats, view2d } from '../../../src/probe/tfjs/stats';
import { StatsState, runJob } from '../../../src/probe/tfjs/statsJob';

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

  it('keeps the previous weights to give the update norm without a second read', () => {
    const st = new StatsState();
    const r0 = runJob(st, {
      kind: 'step',
      seq: 0,
      step: 0,
      detail: false,
      tensors: [{ id: 0, shape: [2], g: new Float32Array([3, 4]), w: new Float32Array([1, 1]), w0: new Float32Array([0, 0]) }],
    });
    assert.deepEqual([...r0.stats!], [5, 4, 0, 0, Math.SQRT2, Math.SQRT2]);
    const r1 = runJob(st, { kind: 'step', seq: 1, step: 1, detail: true, tensors: [{ id: 0, shape: [2], g: new Float32Array([0, 1]), w: new Float32Array([4, 5]), w0: null }] });
    assert.equal(r1.stats![5], 5); // ‖(4,5) − (1,1)‖
    assert.equal(r1.details.length, 1);
  });
});
