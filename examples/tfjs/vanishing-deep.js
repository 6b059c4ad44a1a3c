// A deep stack of sigmoid layers with small initial weights: each layer multiplies the backward
// signal by sigmoid'(z) ≤ 0.25 and by small weights, so the gradients of the first layers are
// orders of magnitude smaller than those of the last ones, and the early layers barely learn.
const tf = require('@tensorflow/tfjs');

const N = 512;
const x = tf.randomUniform([N, 16], -1, 1, 'float32', 21);
const y = x.slice([0, 0], [N, 1]).mul(x.slice([0, 1], [N, 1])).greater(0).toFloat();

const small = tf.initializers.randomNormal({ mean: 0, stddev: 0.1, seed: 22 });

const model = tf.sequential();
model.add(tf.layers.dense({ units: 32, activation: 'sigmoid', kernelInitializer: small, inputShape: [16] }));
for (let i = 0; i < 8; i++) {
  model.add(tf.layers.dense({ units: 32, activation: 'sigmoid', kernelInitializer: small }));
}
model.add(tf.layers.dense({ units: 1, activation: 'sigmoid', kernelInitializer: small }));
model.compile({ optimizer: tf.train.sgd(0.1), loss: 'binaryCrossentropy' });

model
  .fit(x, y, {
    epochs: 12,
    batchSize: 64,
    verbose: 0,
    callbacks: { onEpochEnd: (epoch, logs) => console.log(`epoch ${epoch + 1}: loss ${logs.loss.toFixed(4)}`) },
  })
  .then(() => console.log('done'));
