// The main demo: an MLP whose weights are initialised too large (random-normal with stddev 0.4,
// where He initialisation for 64 inputs would use sqrt(2 / 64) ≈ 0.18), trained with plain SGD.
// Each layer amplifies its input instead of preserving its scale, so the first loss and gradients
// are already large; every update overshoots, and the gradient norm grows by orders of magnitude
// within a few steps until it overflows to Infinity/NaN (around step 8 here).
const tf = require('@tensorflow/tfjs');

const N = 512;
const x = tf.randomUniform([N, 20], -1, 1, 'float32', 1);
// A smooth regression target.
const y = x.matMul(tf.randomNormal([20, 1], 0, 1, 'float32', 2)).sin();

const badInit = tf.initializers.randomNormal({ mean: 0, stddev: 0.4, seed: 3 });

const model = tf.sequential();
model.add(tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: badInit, inputShape: [20] }));
model.add(tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: badInit }));
model.add(tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: badInit }));
model.add(tf.layers.dense({ units: 1, kernelInitializer: badInit }));
model.compile({ optimizer: tf.train.sgd(0.007), loss: 'meanSquaredError' });

model
  .fit(x, y, {
    epochs: 10,
    batchSize: 64,
    shuffle: false, // deterministic: the same run every time
    verbose: 0,
    callbacks: {
      onBatchEnd: (batch, logs) => {
        if (batch % 4 === 0) console.log(`batch ${batch}: loss ${logs.loss}`);
      },
    },
  })
  .then(() => console.log('done'));
