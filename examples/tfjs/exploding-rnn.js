// A SimpleRNN trained with plain SGD at a learning rate far too high for a recurrent net: the
// recurrent kernel is applied at every time step, so a large update of it compounds over the
// sequence and the gradients of the recurrent weights blow up (then go non-finite).
const tf = require('@tensorflow/tfjs');

const SEQ = 30;
const N = 256;
// Task: predict the running sum of a noisy sequence (long dependencies).
const x = tf.randomNormal([N, SEQ, 1], 0, 1, 'float32', 11);
const y = x.sum(1);

const model = tf.sequential();
model.add(tf.layers.simpleRNN({ units: 32, inputShape: [SEQ, 1], activation: 'relu' }));
model.add(tf.layers.dense({ units: 1 }));
model.compile({ optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError' });

model
  .fit(x, y, {
    epochs: 20,
    batchSize: 32,
    verbose: 0,
    callbacks: { onEpochEnd: (epoch, logs) => console.log(`epoch ${epoch + 1}: loss ${logs.loss}`) },
  })
  .then(() => console.log('done'));
