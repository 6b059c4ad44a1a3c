// The on-device per-step statistics (the path of the native backend), run here on the cpu backend
// and checked against the worker's pure-JS statistics (stats.ts) on the same values: the batched
// formula, its second pass (scaled norms where float32 sums of squares are unsafe, NaN/Inf counts on
// a non-finite step), and paramNorm/updateNorm only for the weighed tensors.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DeviceStats, type DeviceEntry } from '../../../src/probe/tfjs/deviceStats';
import { diffNorm, l2Norm, stepStats } from '../../../src/probe/tfjs/stats';

function close(actual: number, expected: number, what: string, rel = 1e-5): void {
  if (Number.isNaN(expected)) return assert.ok(Number.isNaN(actual), `${what}: NaN, got ${actual}`);
  if (!Number.isFinite(expected)) return assert.equal(actual, expected, what);
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected) + 1e-45, `${what}: ${actual} vs ${expected}`);
}

function rand(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = ((s / 2147483648) * 2 - 1) * scale;
  }
  return out;
}

interface Case {
  g: Float32Array;
  shape: number[];
  before?: Float32Array;
  after?: Float32Array;
}

/** Runs one step of `cases` through DeviceStats and checks every value against stats.ts. */
function check(cases: Case[], loss: number | null): DeviceStats {
  const dev = new DeviceStats(tf);
  const vars = cases.map((c, i) => (c.before ? tf.variable(tf.tensor(c.before, c.shape), true, `v${i}_${Math.random()}`) : null));
  cases.forEach((c, i) => vars[i] && dev.snapshot(i, vars[i]));
  // The update: the variable takes its new value (as an optimizer's assign does).
  cases.forEach((c, i) => vars[i]?.assign(tf.tensor(c.after!, c.shape)));
  const gs = cases.map((c) => tf.tensor(c.g, c.shape));
  const entries: DeviceEntry[] = cases.map((c, i) => ({ id: i, g: gs[i], v: vars[i], weigh: vars[i] !== null }));
  const lossT = loss === null ? null : tf.scalar(loss);
  const before = tf.memory().numTensors;
  const { stats, loss: l } = dev.compute(entries, lossT);
  assert.equal(tf.memory().numTensors, before - cases.filter((c) => c.before).length, 'no tensor left behind (the snapshots are released)');
  if (loss === null) assert.ok(Number.isNaN(l));
  else close(l, loss, 'loss');
  cases.forEach((c, i) => {
    const s = stepStats(c.g);
    const row = stats.subarray(i * 6, i * 6 + 6);
    close(row[0], s.norm, `norm ${i}`);
    close(row[1], s.maxAbs, `maxAbs ${i}`);
    assert.equal(row[2], s.nanCount, `nanCount ${i}`);
    assert.equal(row[3], s.infCount, `infCount ${i}`);
    if (c.before) {
      close(row[4], l2Norm(c.after!), `paramNorm ${i}`);
      close(row[5], diffNorm(c.after!, c.before), `updateNorm ${i}`);
    } else {
      assert.ok(Number.isNaN(row[4]) && Number.isNaN(row[5]), `not weighed ${i}: NaN (unknown)`);
    }
  });
  tf.dispose([...gs, ...vars.filter((v) => v !== null), ...(lossT ? [lossT] : [])]);
  return dev;
}

describe('on-device statistics (batched)', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('ordinary gradients and weights: the same values as the worker, in one read', () => {
    const w0 = rand(24, 0.5, 3);
    const w1 = w0.map((x, i) => x - 0.01 * (i % 5));
    const dev = check(
      [
        { g: rand(24, 1, 1), shape: [4, 6], before: w0, after: w1 },
        { g: rand(6, 0.1, 2), shape: [6] },
        { g: new Float32Array(5), shape: [5], before: new Float32Array(5), after: new Float32Array([0, 0, 0.5, 0, 0]) },
      ],
      2.5,
    );
    assert.equal(dev.lastReads, 1);
  });

  it('overflowing and vanishing tensors take the scaled formula (a second read), and stay exact', () => {
    const huge = rand(50, 1e30, 5); // g² overflows float32
    const tiny = rand(50, 1e-25, 6); // g² underflows float32
    const dev = check(
      [
        { g: huge, shape: [50], before: huge, after: huge.map((x) => x * 2) },
        { g: tiny, shape: [5, 10], before: tiny, after: tiny.map((x) => x * 3) },
        { g: rand(8, 1, 7), shape: [8] },
      ],
      null,
    );
    assert.equal(dev.lastReads, 2);
  });

  it('NaN and Inf are counted per tensor and kept out of norm and max', () => {
    const g = rand(10, 2, 8);
    g[1] = NaN;
    g[4] = Infinity;
    g[7] = -Infinity;
    const dev = check(
      [
        { g, shape: [10] },
        { g: rand(4, 1, 9), shape: [2, 2] },
      ],
      1,
    );
    assert.equal(dev.lastReads, 2);
  });

  it('an empty tensor has zero statistics', () => {
    check(
      [
        { g: new Float32Array(0), shape: [0] },
        { g: rand(3, 1, 10), shape: [3] },
      ],
      null,
    );
  });
});
