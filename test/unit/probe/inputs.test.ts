// The TF.js probe's input scale (src/probe/tfjs/inputs.ts) on real tfjs layers: the first layer
// with trainable weights is found on the first call with data (the model itself, a container, is
// not it), its input is measured on the sampled calls only, and token ids are left alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { INPUT_DENSE, INPUT_EVERY, InputScale } from '../../../src/probe/tfjs/inputs';
import type { EventMsg } from '../../../src/core/protocol/messages';

function watched(build: (watch: (l: object) => void) => tf.LayersModel): { model: tf.LayersModel; events: EventMsg[]; warnings: string[] } {
  const events: EventMsg[] = [];
  const warnings: string[] = [];
  const scale = new InputScale({
    send: (m) => void events.push(m),
    steps: () => 7,
    tensorIdOf: (n) => (n.endsWith('/kernel') ? 0 : undefined),
    warn: (w, e) => void warnings.push(`${w}: ${String(e)}`),
  });
  return { model: build((l) => scale.watch(l)), events, warnings };
}

describe('tfjs probe: input scale', () => {
  it('measures the first dense layer’s input on the sampled calls of fit-style execution', () => {
    const { model, events, warnings } = watched((watch) => {
      const m = tf.sequential();
      const d1 = tf.layers.dense({ units: 4, inputShape: [3] });
      const d2 = tf.layers.dense({ units: 1 });
      m.add(d1);
      m.add(d2);
      for (const l of [m, d1, d2]) watch(l);
      return m;
    });
    // Columns of scale 1000, 1 and 0: RMS over all entries = sqrt((1000² + 1 + 0) / 3).
    const x = tf.tensor2d([
      [1000, 1, 0],
      [-1000, -1, 0],
    ]);
    for (let i = 0; i < INPUT_EVERY + 1; i++) tf.tidy(() => model.predict(x));
    tf.tidy(() => model.apply(x) as tf.Tensor); // the Container.call path (layer.call directly)
    assert.deepEqual(warnings, []);
    assert.equal(events.length, INPUT_DENSE + 1, 'calls 0, 1, 2 and 50');
    for (const e of events) {
      assert.equal(e.kind, 'input-scale');
      assert.ok(Math.abs((e.value ?? 0) - Math.sqrt((1000 ** 2 + 1) / 3)) < 1e-3, String(e.value));
      assert.equal(e.max, 1000);
      assert.equal(e.step, 7);
      assert.equal(e.tensorId, 0);
    }
  });

  it('reports nothing for token ids into an embedding (int32 or float)', () => {
    const { model, events } = watched((watch) => {
      const m = tf.sequential();
      const emb = tf.layers.embedding({ inputDim: 10, outputDim: 2, inputLength: 3 });
      m.add(emb);
      m.add(tf.layers.flatten());
      m.add(tf.layers.dense({ units: 1 }));
      for (const l of [m, ...m.layers]) watch(l);
      return m;
    });
    tf.tidy(() => model.predict(tf.tensor2d([[1, 2, 3]], [1, 3], 'int32')));
    tf.tidy(() => model.predict(tf.tensor2d([[7, 8, 9]], [1, 3]))); // float ids, as tfjs embeddings accept
    assert.deepEqual(events, []);
  });
});
