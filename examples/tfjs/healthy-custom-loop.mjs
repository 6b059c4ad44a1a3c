// A custom training loop in an ES module: raw tf.variable parameters, a hand-written two-layer
// network, and optimizer.minimize. Linear regression with a hidden layer; trains smoothly.
import * as tf from '@tensorflow/tfjs';

const N = 256;
const x = tf.randomUniform([N, 4], -1, 1, 'float32', 41);
const trueW = tf.tensor2d([[1.5], [-2], [0.5], [1]]);
const y = x.matMul(trueW).add(tf.randomNormal([N, 1], 0, 0.05, 'float32', 42));

const w1 = tf.variable(tf.randomNormal([4, 16], 0, Math.sqrt(2 / 4), 'float32', 43), true, 'hidden/w');
const b1 = tf.variable(tf.zeros([16]), true, 'hidden/b');
const w2 = tf.variable(tf.randomNormal([16, 1], 0, Math.sqrt(1 / 16), 'float32', 44), true, 'out/w');
const b2 = tf.variable(tf.zeros([1]), true, 'out/b');

const predict = (input) => input.matMul(w1).add(b1).relu().matMul(w2).add(b2);
const optimizer = tf.train.adam(0.02);

for (let step = 0; step < 200; step++) {
  const loss = optimizer.minimize(() => tf.losses.meanSquaredError(y, predict(x)), true);
  if (step % 20 === 0) console.log(`step ${step}: loss ${loss.dataSync()[0].toFixed(5)}`);
  loss.dispose();
  await tf.nextFrame(); // let other work (and the event loop) run between steps
}
console.log('done');
