import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fanIn, gainOf } from '../../../src/core/analysis/model';

describe('kernel layout per framework', () => {
  it('fan-in: tfjs [in, out] / [kh, kw, cin, cout], torch [out, in] / [cout, cin, kh, kw]', () => {
    assert.equal(fanIn([784, 256]), 784);
    assert.equal(fanIn([3, 3, 16, 32]), 3 * 3 * 16);
    assert.equal(fanIn([256, 784], 'torch'), 784);
    assert.equal(fanIn([32, 16, 3, 3], 'torch'), 16 * 3 * 3);
  });

  it('He-initialised weights have gain √2 in both layouts', () => {
    // rms(W) = sqrt(2 / fanIn) → ‖W‖ = rms · sqrt(n)
    const heNorm = (fin: number, n: number): number => Math.sqrt(2 / fin) * Math.sqrt(n);
    assert.ok(Math.abs(gainOf(heNorm(784, 784 * 10), [784, 10]) - Math.SQRT2) < 1e-12);
    assert.ok(Math.abs(gainOf(heNorm(784, 784 * 10), [10, 784], 'torch') - Math.SQRT2) < 1e-12);
    // The same torch weight read with the tfjs layout would look 8.9× too large or small.
    assert.ok(Math.abs(gainOf(heNorm(784, 784 * 10), [10, 784]) - Math.SQRT2) > 1);
  });
});
