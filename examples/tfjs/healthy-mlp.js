// A small, healthy multilayer perceptron: synthetic two-class data, He initialisation, Adam.
// Gradients stay in a narrow band and the loss falls steadily.
const tf = require('@tensorflow/tfjs');

function makeData(n) {
  // Points in 8-D; the label is whether the first two coordinates point the same way.
  const x = tf.randomNormal([n, 8], 0, 1, 'float32', 7);
  const y = x.slice([0, 0], [n, 1]).mul(x.slice([0, 1], [n, 1])).greater(0).toFloat();
  return { x, y };
}

async function main() {
  const { x, y } = makeData(2048);
  const model = tf.sequential();
  model.add(tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: 'heNormal', inputShape: [8] }));
  model.add(tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: 'heNormal' }));
  model.add(tf.layers.dense({ units: 1, activation: 'sigmoid' }));
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'binaryCrossentropy', metrics: ['accuracy'] });
  await model.fit(x, y, {
    epochs: 3,
    batchSize: 64,
    verbose: 0,
    callbacks: {
      onEpochEnd: (epoch, logs) => console.log(`epoch ${epoch + 1}: loss ${logs.loss.toFixed(4)}, accuracy ${logs.acc.toFixed(3)}`),
    },
  });
}

main();
