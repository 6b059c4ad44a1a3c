// A small convolutional network on synthetic 16×16 images (a bright bar, horizontal or vertical,
// somewhere in noise). Trains fine, including on the wasm backend.
const tf = require('@tensorflow/tfjs');

function makeImages(n) {
  return tf.tidy(() => {
    const noise = tf.randomNormal([n, 16, 16, 1], 0, 0.3, 'float32', 31);
    const labels = tf.randomUniform([n], 0, 1, 'float32', 32).greater(0.5).toFloat();
    const pos = tf.randomUniform([n], 2, 14, 'int32', 33);
    const rows = tf.oneHot(pos, 16).toFloat().reshape([n, 16, 1, 1]); // horizontal bar at row pos
    const cols = tf.oneHot(pos, 16).toFloat().reshape([n, 1, 16, 1]); // vertical bar at column pos
    const lab = labels.reshape([n, 1, 1, 1]);
    const bars = rows.mul(lab).add(cols.mul(tf.scalar(1).sub(lab)));
    return { x: noise.add(bars.mul(2)), y: labels.reshape([n, 1]) };
  });
}

async function main() {
  const { x, y } = makeImages(512);
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, activation: 'relu', padding: 'same', inputShape: [16, 16, 1] }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.averagePooling2d({ poolSize: 2 }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 1, activation: 'sigmoid' }));
  model.compile({ optimizer: tf.train.adam(0.005), loss: 'binaryCrossentropy', metrics: ['accuracy'] });
  await model.fit(x, y, {
    epochs: 6,
    batchSize: 32,
    verbose: 0,
    callbacks: { onEpochEnd: (e, logs) => console.log(`epoch ${e + 1}: loss ${logs.loss.toFixed(4)}, accuracy ${logs.acc.toFixed(3)}`) },
  });
}

main();
