// Probe overhead on the wasm backend: median training-step time of a script run through the real
// runner (dist/probe/tfjs/runner.js) with the probe on, divided by the same script through the
// same runner with no channel (same backend, no hooks). Two models: an MLP 784-256-256-10 at
// batch 128 and a small conv net; two probe settings: the per-step tier only (detail tier never
// scheduled) and the detail tier on every step. The host side decodes every frame with the real
// FrameDecoder, in this process, as the extension would.
//
// Runs are interleaved (baseline, per-step, detail, baseline, …) so drift hits all settings alike;
// each figure is the median over runs of each run's median step time. Targets (not asserted):
// ≤ 1.02 per-step tier, ≤ 1.05 with the detail tier.
//
//   node bench/probeOverhead.mjs            (needs `npm run build` first)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTs, median, repoRoot } from './lib/bundle.mjs';

const RUNNER = join(repoRoot, 'dist', 'probe', 'tfjs', 'runner.js');

// The training script, written to a temp folder (so it also exercises the runner's fallback to the
// extension's own tfjs). It reports its step times on stdout as one JSON line.
const SCRIPT = `
const tf = require('@tensorflow/tfjs');
const kind = process.argv[2];
const steps = Number(process.argv[3]);
const warm = 5;
let model, x, y, batch;
if (kind === 'mlp') {
  batch = 128;
  model = tf.sequential({ layers: [
    tf.layers.dense({ units: 256, activation: 'relu', inputShape: [784] }),
    tf.layers.dense({ units: 256, activation: 'relu' }),
    tf.layers.dense({ units: 10, activation: 'softmax' }),
  ] });
  x = tf.randomNormal([batch * (steps + warm), 784], 0, 1, 'float32', 1);
} else {
  batch = 64;
  model = tf.sequential({ layers: [
    tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu', inputShape: [28, 28, 1] }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.flatten(),
    tf.layers.dense({ units: 10, activation: 'softmax' }),
  ] });
  x = tf.randomNormal([batch * (steps + warm), 28, 28, 1], 0, 1, 'float32', 1);
}
y = tf.oneHot(tf.randomUniform([batch * (steps + warm)], 0, 10, 'int32', 2), 10).toFloat();
model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
const times = [];
let last = 0;
model.fit(x, y, { batchSize: batch, epochs: 1, shuffle: false, verbose: 0, callbacks: { onBatchEnd: () => {
  const now = performance.now();
  if (last) times.push(now - last);
  last = now;
} } }).then(() => {
  const t = times.slice(warm).sort((a, b) => a - b);
  console.log(JSON.stringify({ medianMs: t[t.length >> 1], n: t.length, backend: tf.getBackend() }));
});
`;

async function runOnce(script, kind, steps, mode, FrameDecoder) {
  const env = { ...process.env, GRADSCOPE_BACKEND: 'wasm' };
  delete env.GRADSCOPE_CHANNEL_FD;
  if (mode !== 'baseline') {
    env.GRADSCOPE_CHANNEL_FD = '3';
    env.GRADSCOPE_DETAIL_EVERY = mode === 'detail' ? '1' : '1000000000';
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--enable-source-maps', RUNNER, script, kind, String(steps)], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env,
    });
    let out = '';
    let err = '';
    let frames = 0;
    let details = 0;
    let bytes = 0;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const dec = new FrameDecoder();
    child.stdio[3].on('data', (c) => {
      bytes += c.length;
      dec.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), (f) => {
        frames++;
        if (f.message.type === 'detail') details++;
      });
    });
    child.on('exit', (code) => {
      const line = out.trim().split('\n').pop();
      if (code !== 0 || !line) return reject(new Error(`${kind}/${mode} exited ${code}: ${err}`));
      const r = JSON.parse(line);
      resolve({ ...r, frames, details, bytes, decodeError: dec.error?.message ?? null });
    });
  });
}

export async function run({ rounds = 3, steps = 40, log = () => {} } = {}) {
  if (!existsSync(RUNNER)) throw new Error('dist/probe/tfjs/runner.js is missing: run `npm run build` first');
  const { FrameDecoder } = await loadTs('src/core/protocol/codec.ts');
  const dir = mkdtempSync(join(tmpdir(), 'gradscope-bench-'));
  const script = join(dir, 'train.js');
  writeFileSync(script, SCRIPT);
  const modes = ['baseline', 'step', 'detail'];
  const figures = {};
  try {
    for (const kind of ['mlp', 'conv']) {
      const per = { baseline: [], step: [], detail: [] };
      let lastRun = {};
      for (let r = 0; r < rounds; r++) {
        for (const mode of modes) {
          const res = await runOnce(script, kind, steps, mode, FrameDecoder);
          if (res.decodeError) throw new Error(`decoder error: ${res.decodeError}`);
          per[mode].push(res.medianMs);
          lastRun[mode] = res;
          log(`${kind} ${mode} round ${r + 1}: ${res.medianMs.toFixed(2)} ms/step (${res.backend}, ${res.frames} frames, ${res.details} details)`);
        }
      }
      const base = median(per.baseline);
      figures[kind] = {
        backend: lastRun.baseline.backend,
        baselineMsPerStep: base,
        perStepTierMsPerStep: median(per.step),
        detailEveryStepMsPerStep: median(per.detail),
        ratioPerStepTier: median(per.step) / base,
        ratioDetailEveryStep: median(per.detail) / base,
        // On a shared 2-core machine run-to-run noise is large; the fastest run of each setting is
        // the least disturbed one, so its ratio is printed too.
        ratioPerStepTierBest: Math.min(...per.step) / Math.min(...per.baseline),
        ratioDetailEveryStepBest: Math.min(...per.detail) / Math.min(...per.baseline),
        runsMs: per,
        detailFramesPerRun: lastRun.detail.details,
        bytesPerRunDetail: lastRun.detail.bytes,
      };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { rounds, stepsPerRun: steps, targets: { perStepTier: 1.02, detailTier: 1.05 }, ...figures };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await run({ log: (s) => console.log(s) });
  for (const kind of ['mlp', 'conv']) {
    const f = r[kind];
    console.log(
      `${kind}: baseline ${f.baselineMsPerStep.toFixed(2)} ms/step on ${f.backend}; ` +
        `per-step tier ×${f.ratioPerStepTier.toFixed(3)} (best runs ×${f.ratioPerStepTierBest.toFixed(3)}; target ≤ 1.02); ` +
        `detail tier every step ×${f.ratioDetailEveryStep.toFixed(3)} (best runs ×${f.ratioDetailEveryStepBest.toFixed(3)}; target ≤ 1.05)`,
    );
  }
}
