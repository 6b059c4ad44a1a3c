// GradScope's cost on TF.js as a user sees it: the same training script run in one go as
//   plain       `node train.js`, nothing of GradScope loaded (the baseline of every ratio);
//   gradscope   `gradscope run train.js` (dist/cli.js, what bin/gradscope.js loads), the CLI with its
//               defaults (automatic detail tier), the host decoding and storing every frame;
//   step        the same with `--detail-every 1000000000`: the every-step tier only (the detail tier
//               still runs at step 0, at the first non-finite value and at norm jumps, at most once
//               per 10 steps);
//   detail      the same with `--detail-every 1`: histograms and thumbnails every step;
//   norms       the TF.js peer: plain node, with hand-written per-tensor norms in the script,
//               `tf.tidy(() => g.norm().dataSync()[0])` per gradient each step (the optimizer's
//               applyGradients wrapped on the instance: model.fit → minimize → applyGradients).
//               tfjs-vis, the other TF.js tool, renders into a browser page only: it cannot run in
//               Node, so it has no row here.
// Diagnostics, only when asked for in GRADSCOPE_BENCH_MODES:
//   runner      the probe runner with no channel: backend set-up and module hooks, no probe (the
//               baseline this bench used to divide by). On the deep workload it has measured 5–10 %
//               faster than plain node on this machine, for reasons not found (not the wasm
//               backend's error listeners, not the young-generation size): gradscope ÷ runner is
//               the probe's own cost there;
//   device      `step` with the per-step tier computed by tf ops (GRADSCOPE_STATS=device: the path of
//               the native backend, which cannot be installed here), on wasm.
// With `--before <git ref>` (or GRADSCOPE_BENCH_BEFORE) that commit's src/ is built into a temp folder
// and its CLI and probe run as before:gradscope, before:step, before:detail (and before:<diagnostic>
// for those asked for), interleaved with the rest: the table before and after a change, in one run.
//
// Backend: the runner picks tfjs-node(-gpu) where it loads, else wasm (src/probe/tfjs/backend.ts);
// here neither native package is installed, so it runs wasm. For the same backend in the plain run,
// the script itself does `require('@tensorflow/tfjs-backend-wasm')` and `await tf.setBackend('wasm')`
// (a no-op under the runner, which has done it already). The wasm backend ships no
// Conv2DBackpropFilter kernel, so a conv net cannot train on it as shipped: for the conv workload the
// plain script registers GradScope's composed kernels (src/probe/tfjs/wasmKernels.ts, bundled to
// bench/out/) itself, as a user training a conv net on wasm would have to; that is the only GradScope
// code a plain run loads, and the runner registers the very same kernels.
//
// Workloads: mlp (784-256-256-10, batch 128, 6 tensors), conv (two 3×3 convs + dense, batch 64,
// 6 tensors), deep (152 dense layers of 32 units with biases, batch 32, 304 tensors: per-tensor
// costs). All Adam, model.fit, on random data.
//
// Timing, identical in every mode and taken inside the script: performance.now() between consecutive
// onBatchEnd callbacks (whatever a tool does anywhere in the step counts), after 20 warm-up steps
// (GRADSCOPE_BENCH_WARM): the steady state. GradScope's first 20 steps also measure paramNorm and
// updateNorm on every step (weightsSchedule.ts), which later steps do on a tuned interval; CPU
// per step is process.cpuUsage() (user + system, all threads of the training process: the stats
// worker included) over the timed steps. "run CPU" is the whole process tree (bash `times`: the
// GradScope host, start-up and module loading included).
//
// Rounds are interleaved and alternate their order (plain, gradscope, …, then the reverse); each
// ratio is the median over rounds of (mode ÷ plain of the same round), with the min–max over rounds.
// Identical runs on a shared 2-core machine differ by ±15 %: trust a median over ≥ 7 rounds, and the
// CPU figures (less sensitive to neighbours) over the wall-time ones.
//
// Env: GRADSCOPE_BENCH_ROUNDS (default 5), GRADSCOPE_BENCH_STEPS (timed steps per run, default 60),
// GRADSCOPE_BENCH_WARM (default 20), GRADSCOPE_BENCH_MODES (comma list of the modes above; plain
// always runs), GRADSCOPE_BENCH_WORKLOADS (comma list of mlp, conv, deep).
//
//   node bench/probeOverhead.mjs [--before HEAD]      (needs `npm run build` first, for the CLI)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { repoRoot } from './lib/bundle.mjs';
import { figuresVsPlain } from './lib/vsPlain.mjs';

const PER_STEP_ONLY = ['--detail-every', '1000000000'];
/** How each mode runs: plain node, the runner alone, or the CLI (with these arguments and environment). */
const MODE_SPECS = {
  plain: { via: 'node' },
  gradscope: { via: 'cli', args: [] },
  step: { via: 'cli', args: PER_STEP_ONLY },
  detail: { via: 'cli', args: ['--detail-every', '1'] },
  norms: { via: 'node', env: { GRADSCOPE_BENCH_PEER: 'norms' } },
  runner: { via: 'runner' },
  device: { via: 'cli', args: PER_STEP_ONLY, env: { GRADSCOPE_STATS: 'device' } },
};
export const MODES = Object.keys(MODE_SPECS);
const DIAGNOSTIC = ['runner', 'device'];
const DEFAULT_MODES = MODES.filter((m) => !DIAGNOSTIC.includes(m));
/** Modes that also run on the `--before` build. */
const GRADSCOPE_MODES = ['gradscope', 'step', 'detail', ...DIAGNOSTIC];
export const WORKLOADS = ['mlp', 'conv', 'deep'];
const KERNELS = join(repoRoot, 'bench', 'out', 'wasmKernels.bench.cjs');
const now = { cli: join(repoRoot, 'dist', 'cli.js'), runner: join(repoRoot, 'dist', 'probe', 'tfjs', 'runner.js') };

// The user's script. CommonJS, run by plain node or by the runner (the script's @tensorflow/tfjs is
// then routed to the copy the runner hooked: the same files, through the temp folder's node_modules
// link). It writes its figures as JSON to GRADSCOPE_BENCH_RESULT.
const SCRIPT = `
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const { writeFileSync } = require('node:fs');
const kind = process.argv[2];
const steps = Number(process.argv[3]);
const peer = process.env.GRADSCOPE_BENCH_PEER || 'none';
const warm = Number(process.env.GRADSCOPE_BENCH_WARM);

function build() {
  const n = steps + warm;
  if (kind === 'mlp') {
    const model = tf.sequential({ layers: [
      tf.layers.dense({ units: 256, activation: 'relu', inputShape: [784] }),
      tf.layers.dense({ units: 256, activation: 'relu' }),
      tf.layers.dense({ units: 10, activation: 'softmax' }),
    ] });
    return { model, batch: 128, x: tf.randomNormal([128 * n, 784], 0, 1, 'float32', 1), classes: 10 };
  }
  if (kind === 'conv') {
    const model = tf.sequential({ layers: [
      tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu', inputShape: [28, 28, 1] }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 10, activation: 'softmax' }),
    ] });
    return { model, batch: 64, x: tf.randomNormal([64 * n, 28, 28, 1], 0, 1, 'float32', 1), classes: 10 };
  }
  // deep: 151 hidden layers + the output layer, kernel and bias each: 304 tensors.
  const layers = [tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: 'heNormal', inputShape: [32] })];
  for (let i = 0; i < 150; i++) layers.push(tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: 'heNormal' }));
  layers.push(tf.layers.dense({ units: 10, activation: 'softmax' }));
  return { model: tf.sequential({ layers }), batch: 32, x: tf.randomNormal([32 * n, 32], 0, 1, 'float32', 1), classes: 10 };
}

async function main() {
  if (kind === 'conv' && !tf.getKernel('Conv2DBackpropFilter', 'wasm')) require(process.env.GRADSCOPE_BENCH_KERNELS).registerMissingWasmKernels(tf);
  await tf.setBackend('wasm');
  await tf.ready();
  const { model, batch, x, classes } = build();
  const y = tf.oneHot(tf.randomUniform([x.shape[0]], 0, classes, 'int32', 2), classes).toFloat();
  const optimizer = tf.train.adam(1e-3);
  const norms = [];
  if (peer === 'norms') {
    // The hand-written peer: one norm per gradient, read back each step.
    const apply = optimizer.applyGradients.bind(optimizer);
    optimizer.applyGradients = (grads) => {
      const list = Array.isArray(grads) ? grads.map((g) => g.tensor) : Object.values(grads);
      norms.push(list.map((g) => tf.tidy(() => g.norm().dataSync()[0])));
      return apply(grads);
    };
  }
  model.compile({ optimizer, loss: 'categoricalCrossentropy' });
  const times = [];
  let last = 0;
  let cpu0 = null;
  let cpu1 = null;
  let batchIndex = 0;
  await model.fit(x, y, { batchSize: batch, epochs: 1, shuffle: false, verbose: 0, callbacks: { onBatchEnd: () => {
    const now = performance.now();
    if (batchIndex >= warm) times.push(now - last);
    if (batchIndex === warm - 1) cpu0 = process.cpuUsage();
    last = now;
    batchIndex++;
    if (batchIndex === steps + warm) cpu1 = process.cpuUsage(cpu0);
  } } });
  const t = [...times].sort((a, b) => a - b);
  writeFileSync(process.env.GRADSCOPE_BENCH_RESULT, JSON.stringify({
    medianMs: t[t.length >> 1],
    meanMs: t.reduce((a, b) => a + b, 0) / t.length,
    n: t.length,
    cpuMsPerStep: (cpu1.user + cpu1.system) / 1000 / t.length,
    tensors: model.trainableWeights.length,
    params: model.countParams(),
    backend: tf.getBackend(),
    normsRead: norms.length,
  }));
}
main();
`;

const envInt = (name, dflt) => {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};
const envList = (name, all, dflt) => {
  const asked = (process.env[name] ?? '').split(',').filter((m) => all.includes(m));
  return asked.length ? all.filter((m) => asked.includes(m)) : dflt;
};

/** Runs `argv` under bash so that `times` gives the CPU of the whole process tree it waited for. */
function runTimed(argv, { env, cwd }) {
  const cpuFile = join(cwd, 'times.txt');
  const sh = '"$@"; s=$?; times > "$GS_TIMES_FILE"; exit $s';
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('bash', ['-c', sh, 'bash', ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, GS_TIMES_FILE: cpuFile }, cwd });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallS = (performance.now() - t0) / 1000;
      if (code !== 0) return reject(new Error(`${argv.join(' ')} exited ${code}: ${err.slice(-1500)}`));
      // `times`: line 1 the shell itself, line 2 its children, e.g. "0m1.234s 0m0.056s".
      const line = readFileSync(cpuFile, 'utf8').trim().split('\n')[1] ?? '';
      const secs = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      resolve({ wallS, treeCpuS: secs.length === 2 ? secs[0] + secs[1] : NaN, stderr: err });
    });
  });
}

/**
 * Builds the CLI and the tfjs probe of git ref `ref` into a temp folder (dist/cli.js, dist/probe/tfjs/…,
 * laid out as the CLI looks for its probe). Returns the paths and a clean-up.
 */
async function buildRef(ref) {
  const dir = mkdtempSync(join(tmpdir(), 'gs-tfjs-bench-before-'));
  execFileSync('git', ['archive', '--format=tar', '-o', join(dir, 'tree.tar'), ref, 'src', 'package.json'], { cwd: repoRoot });
  execFileSync('tar', ['-xf', 'tree.tar'], { cwd: dir });
  const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  const common = {
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'error',
    external: ['vscode', '@tensorflow/*'],
    nodePaths: [join(repoRoot, 'node_modules')],
    define: { PACKAGE_VERSION: JSON.stringify(version) },
  };
  const src = (p) => join(dir, 'src', p);
  await build({
    ...common,
    entryPoints: { cli: src('cli/main.ts'), 'probe/tfjs/runner': src('probe/tfjs/runner.ts'), 'probe/tfjs/statsWorker': src('probe/tfjs/statsWorker.ts') },
    outdir: join(dir, 'dist'),
  });
  await build({ ...common, entryPoints: { 'probe/tfjs/esmHooks': src('probe/tfjs/esmHooks.ts') }, format: 'esm', outExtension: { '.js': '.mjs' }, outdir: join(dir, 'dist') });
  return { cli: join(dir, 'dist', 'cli.js'), runner: join(dir, 'dist', 'probe', 'tfjs', 'runner.js'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function runOnce({ script, dir, kind, steps, warm, mode, builds }) {
  const [variant, name] = mode.includes(':') ? mode.split(':') : ['now', mode];
  const spec = MODE_SPECS[name];
  const paths = builds[variant];
  const tmp = mkdtempSync(join(dir, `${kind}-${mode.replace(':', '-')}-`));
  const result = join(tmp, 'result.json');
  const env = { ...process.env, GRADSCOPE_BENCH_RESULT: result, GRADSCOPE_BENCH_KERNELS: KERNELS, GRADSCOPE_BENCH_WARM: String(warm) };
  for (const k of Object.keys(env)) if (k.startsWith('GRADSCOPE_') && !k.startsWith('GRADSCOPE_BENCH_')) delete env[k];
  delete env.NODE_OPTIONS;
  Object.assign(env, spec.env);
  const scriptArgs = [script, kind, String(steps)];
  let argv;
  if (spec.via === 'node') argv = [process.execPath, ...scriptArgs];
  else if (spec.via === 'runner') argv = [process.execPath, '--enable-source-maps', paths.runner, ...scriptArgs];
  else argv = [process.execPath, paths.cli, 'run', ...scriptArgs, '--out', join(tmp, 'runs'), ...spec.args];
  try {
    const tree = await runTimed(argv, { env, cwd: tmp });
    if (!existsSync(result)) throw new Error(`${kind}/${mode}: the script wrote no result; stderr: ${tree.stderr.slice(-1500)}`);
    const r = JSON.parse(readFileSync(result, 'utf8'));
    if (r.backend !== 'wasm') throw new Error(`${kind}/${mode} ran on ${r.backend}, not wasm`);
    if (/\[gradscope\] warning/.test(tree.stderr)) throw new Error(`${kind}/${mode}: probe warning: ${tree.stderr.slice(-1500)}`);
    return { ...r, wallS: tree.wallS, treeCpuS: tree.treeCpuS };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export async function run({
  rounds = envInt('GRADSCOPE_BENCH_ROUNDS', 5),
  steps = envInt('GRADSCOPE_BENCH_STEPS', 60),
  warm = envInt('GRADSCOPE_BENCH_WARM', 20),
  modes: asked = envList('GRADSCOPE_BENCH_MODES', MODES, DEFAULT_MODES),
  workloads = envList('GRADSCOPE_BENCH_WORKLOADS', WORKLOADS, WORKLOADS),
  before = process.env.GRADSCOPE_BENCH_BEFORE || null,
  log = () => {},
} = {}) {
  if (!existsSync(now.cli) || !existsSync(now.runner)) throw new Error('the CLI or the runner is not built: run `npm run build` first');
  await build({
    entryPoints: [join(repoRoot, 'src', 'probe', 'tfjs', 'wasmKernels.ts')],
    outfile: KERNELS,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'error',
  });
  const modes = ['plain', ...asked.filter((m) => m !== 'plain')];
  const builds = { now };
  if (before) {
    builds.before = await buildRef(before);
    modes.push(...modes.filter((m) => GRADSCOPE_MODES.includes(m)).map((m) => `before:${m}`));
  }
  const machine = { cpus: cpus().length, loadAverageAtStart: loadavg().map((x) => Number(x.toFixed(2))) };
  log(`machine: ${machine.cpus} CPUs, load average ${machine.loadAverageAtStart.join(' ')} at start; ${rounds} rounds × ${steps} timed steps after ${warm}; modes ${modes.join(', ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'gradscope-tfjs-bench-'));
  // The script's folder sees the repo's node_modules (a link, resolved to the same real files).
  symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const script = join(dir, 'train.js');
  writeFileSync(script, SCRIPT);
  const out = {};
  try {
    for (const kind of workloads) {
      const runs = Object.fromEntries(modes.map((m) => [m, []]));
      for (let r = 0; r < rounds; r++) {
        for (const mode of r % 2 ? [...modes].reverse() : modes) {
          const res = await runOnce({ script, dir, kind, steps, warm, mode, builds });
          runs[mode].push(res);
          log(
            `${kind} round ${r + 1} ${mode}: median ${res.medianMs.toFixed(2)}, mean ${res.meanMs.toFixed(2)} ms/step, CPU ${res.cpuMsPerStep.toFixed(2)} ms/step, ` +
              `run ${res.wallS.toFixed(1)} s wall, ${res.treeCpuS.toFixed(1)} s CPU`,
          );
        }
      }
      const figures = figuresVsPlain(runs, modes);
      const first = runs.plain[0];
      out[kind] = { tensors: first.tensors, params: first.params, backend: first.backend, modes: figures };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    builds.before?.cleanup();
  }
  machine.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
  return {
    rounds,
    stepsPerRun: steps,
    warmUpSteps: warm,
    before,
    targets: { everyStepTier: 1.02, detailTier: 1.05 },
    machine,
    tfjsVis: 'browser-only (renders into a web page): no Node peer',
    workloads: out,
  };
}

export function table(r) {
  const f2 = (x) => x.toFixed(2);
  const ratio = (s) => `×${s.median.toFixed(3)} (${s.min.toFixed(3)}–${s.max.toFixed(3)})`;
  const head = ['workload', 'mode', 'ratio, median step (min–max)', 'ratio, mean step (min–max)', 'ratio, CPU/step (min–max)', 'median step ms', 'CPU ms/step', 'run CPU s'];
  const rows = [];
  for (const [kind, w] of Object.entries(r.workloads)) {
    for (const [m, f] of Object.entries(w.modes)) {
      rows.push([`${kind} (${w.tensors} tensors)`, m, ratio(f.ratioMedianStep), ratio(f.ratioMeanStep), ratio(f.ratioCpu), f2(f.medianStepMs), f2(f.cpuMsPerStep), f2(f.runCpuS)]);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row) =>
    row
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { before: { type: 'string' } } });
  const r = await run({ log: (s) => console.log(s), ...(values.before ? { before: values.before } : {}) });
  console.log(
    `\nTF.js wasm; ${r.rounds} rounds × ${r.stepsPerRun} timed steps after ${r.warmUpSteps} warm-up steps${r.before ? `; before = ${r.before}` : ''}; load average ${r.machine.loadAverageAtStart.join(' ')} → ${r.machine.loadAverageAtEnd.join(' ')} on ${r.machine.cpus} CPUs`,
  );
  console.log('ratios: per round, mode ÷ plain `node train.js` of the same round; median over rounds (min–max). Targets: every-step tier ≤ 1.02, detail tier ≤ 1.05.');
  console.log('tfjs-vis is browser-only (it renders into a web page), so it has no row: the TF.js peer is hand-written tfjs norms (mode "norms").\n');
  console.log(table(r));
}
