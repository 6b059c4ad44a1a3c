import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activationFromSource } from '../../../src/core/analysis/activation';
import { buildLayers, gainOf } from '../../../src/core/analysis/model';

describe('activation from the construction line', () => {
  const src = [
    "model.add(tf.layers.dense({ units: 8, activation: 'relu', inputShape: [4] }));",
    'model.add(tf.layers.dense({',
    '  units: 8,',
    "  activation: 'sigmoid',",
    '}));',
    'model.add(tf.layers.dense({ units: 1 }));',
    "const w = tf.variable(tf.zeros([2, 2]));",
    'model.add(tf.layers.simpleRNN({ units: 4 }));',
  ].join('\n');
  it('reads one-line and multi-line calls, defaults, and ignores raw variables', () => {
    assert.equal(activationFromSource(src, 1, 'Dense'), 'relu');
    assert.equal(activationFromSource(src, 2, 'Dense'), 'sigmoid');
    assert.equal(activationFromSource(src, 6, 'Dense'), 'linear');
    assert.equal(activationFromSource(src, 7, 'Variable'), null);
    assert.equal(activationFromSource(src, 8, 'SimpleRNN'), 'tanh');
    assert.equal(activationFromSource(src, 99, 'Dense'), null);
  });
  it('groups raw variables by name prefix and computes initialisation gains', () => {
    const t = (id: number, name: string, shape: number[]) => ({ id, name, layer: '', layerType: 'Variable', shape, source: null });
    const { layers, layerOf } = buildLayers([t(0, 'enc/w', [8, 16]), t(1, 'enc/b', [16]), t(2, 'dec/w', [16, 1])]);
    assert.deepEqual(layers.map((l) => l.name), ['enc', 'dec']);
    assert.deepEqual(layerOf, [0, 0, 1]);
    assert.deepEqual(layers[0].kernels, [0]);
    // He normal for fan-in 64: rms sqrt(2/64), gain √2.
    assert.ok(Math.abs(gainOf(Math.sqrt(2 / 64) * 64, [64, 64]) - Math.SQRT2) < 1e-9);
  });
});
