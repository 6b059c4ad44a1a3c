import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activationFromSource, torchActivationFromSource } from '../../../src/core/analysis/activation';
import { buildLayers, gainOf } from '../../../src/core/analysis/model';

describe('activation from the construction line', () => {
  const src = [
    "model.add(tf.layers.dense({ units: 8, activation: 'relu', inputShape: [4] }));",
    'model.add(tf.layers.dense({',
    '  units: 8,',
    "  activation: 'sigmoid',",
    '}));',
    'model.add(tf.layers.dense({ units: 1 }));',
    'const w = tf.variable(tf.zeros([2, 2]));',
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
    assert.deepEqual(
      layers.map((l) => l.name),
      ['enc', 'dec'],
    );
    assert.deepEqual(layerOf, [0, 0, 1]);
    assert.deepEqual(layers[0].kernels, [0]);
    // He normal for fan-in 64: rms sqrt(2/64), gain √2.
    assert.ok(Math.abs(gainOf(Math.sqrt(2 / 64) * 64, [64, 64]) - Math.SQRT2) < 1e-9);
  });
});

describe('activation of a PyTorch layer from the script', () => {
  const src = [
    'class Net(nn.Module):', // 1
    '    def __init__(self):', // 2
    '        super().__init__()', // 3
    '        self.inp = nn.Linear(16, 32)  # gs:layer', // 4
    '        self.mid = nn.Linear(32, 32)', // 5
    '        self.out = nn.Linear(32, 1)', // 6
    '        self.body = nn.Sequential(', // 7
    '            nn.Conv2d(1, 8, 3),', // 8
    '            # a comment between', // 9
    '            nn.LeakyReLU(0.1),', // 10
    '            nn.Linear(8, 8),', // 11
    '            nn.Tanh(),', // 12
    '            nn.Linear(8, 4),', // 13
    '            nn.Dropout(0.1),', // 14
    '        )', // 15
    '    def forward(self, x):', // 16
    '        x = torch.sigmoid(self.inp(x))', // 17
    '        x = F.relu(self . mid(x))', // 18
    '        return self.out(x)', // 19
  ].join('\n');
  it('reads the function its output goes through, or the module after it in a Sequential', () => {
    assert.equal(torchActivationFromSource(src, 4), 'sigmoid');
    assert.equal(torchActivationFromSource(src, 5), 'relu');
    assert.equal(torchActivationFromSource(src, 6), null, 'no activation after the head: unknown, not guessed');
    assert.equal(torchActivationFromSource(src, 8), 'relu');
    assert.equal(torchActivationFromSource(src, 11), 'tanh');
    assert.equal(torchActivationFromSource(src, 13), null, 'Dropout is not an activation');
    assert.equal(torchActivationFromSource(src, 16), null, 'no layer built on the line');
    assert.equal(torchActivationFromSource(src, 99), null);
  });
});
