// Host side of the panel: what one 50 ms flush costs the extension host. A RunStore of 200 tensors
// × 6 statistics fed 4,096 steps (so the default ring has folded into envelope buckets), then 60
// flushes of 2 new steps each: buildAppend (the view of the new steps) plus JSON.stringify of the
// message (what postMessage serialises). `--before <git ref>` bundles that commit's store and view
// builder too and runs both in alternating rounds. Prints figures; asserts nothing.
//   node bench/viewBuild.mjs [--before <git ref>] [--rounds 5]
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { median, repoRoot } from './lib/bundle.mjs';

const TENSORS = 200;
const STATS = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
const WARM = 4096;
const FLUSHES = 60;
const header = {
  runId: 'r',
  script: 's.py',
  backend: 'cpu',
  device: 'cpu',
  backendReason: null,
  status: 'running',
  statusMessage: '',
  step: 0,
  stepsPerSec: null,
  droppedFrames: 0,
  clipNorm: null,
  warnings: [],
};

/** The store and view builder of the working tree, or of commit `ref` (read with git archive). */
async function load(ref = null) {
  const dir = ref ? mkdtempSync(join(tmpdir(), 'gs-view-bench-')) : repoRoot;
  try {
    if (ref) {
      execFileSync('git', ['archive', '--format=tar', '-o', join(dir, 'tree.tar'), ref, 'src'], { cwd: repoRoot });
      execFileSync('tar', ['-xf', 'tree.tar'], { cwd: dir });
    }
    const outfile = join(mkdtempSync(join(tmpdir(), 'gs-view-bench-out-')), 'view.cjs');
    await build({
      stdin: { contents: `export { RunStore } from './src/core/store/runStore'; export { buildAppend } from './src/core/view/snapshot';`, resolveDir: dir, loader: 'ts' },
      outfile,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      logLevel: 'error',
    });
    return createRequire(import.meta.url)(outfile);
  } finally {
    if (ref) rmSync(dir, { recursive: true, force: true });
  }
}

function stepMsg(step) {
  const columns = STATS.map((_, k) => Float64Array.from({ length: TENSORS }, (_, t) => (k === 2 || k === 3 ? 0 : 1 + Math.sin(step / 50 + t) * 0.5)));
  return { type: 'step', step, optimizer: 0, loss: 1 / (step + 1), wallMs: step, stats: STATS, columns, nTensors: TENSORS };
}

/** One round: a fresh store, warmed, then FLUSHES flushes; ms per flush (build + stringify) and bytes per message. */
function round({ RunStore, buildAppend }) {
  const store = new RunStore();
  const tensors = Array.from({ length: TENSORS }, (_, id) => ({
    id,
    name: `l${id >> 1}/${id % 2 ? 'bias' : 'kernel'}`,
    layer: `l${id >> 1}`,
    layerType: 'Dense',
    shape: [64, 64],
    source: null,
  }));
  store.ingest({ type: 'tensors', tensors });
  for (let s = 0; s < WARM; s++) store.ingest(stepMsg(s));
  // The two signatures: (store, since, known, header, metric, findings, optimizer) before issue 16, (store, ctx) after.
  const append = (since) =>
    buildAppend.length > 2
      ? buildAppend(store, since, TENSORS, header, 'norm', null, null)
      : buildAppend(store, { since, knownTensors: TENSORS, header, metric: 'norm', findings: null, optimizer: null });
  const times = [];
  let bytes = 0;
  let step = WARM;
  for (let f = 0; f < FLUSHES; f++) {
    const since = store.lastStep;
    store.ingest(stepMsg(step++));
    store.ingest(stepMsg(step++));
    const t0 = performance.now();
    const json = JSON.stringify({ type: 'append', ...append(since) });
    times.push(performance.now() - t0);
    bytes = json.length;
  }
  return { ms: median(times), bytes };
}

export async function run({ before = null, rounds = 5, print = console.log } = {}) {
  const variants = [{ name: 'now', mod: await load() }];
  if (before) variants.push({ name: `before (${before})`, mod: await load(before) });
  const res = new Map(variants.map((v) => [v.name, []]));
  for (let r = 0; r < rounds; r++) for (const v of r % 2 ? [...variants].reverse() : variants) res.get(v.name).push(round(v.mod));
  print(
    `GradScope panel host side: ${TENSORS} tensors × ${STATS.length} statistics, ${WARM} steps held, then ${FLUSHES} flushes of 2 steps (${rounds} rounds${before ? ', alternating' : ''})`,
  );
  for (const v of variants) {
    const rs = res.get(v.name);
    print(
      `  ${v.name.padEnd(24)} buildAppend + JSON.stringify per flush, median ${median(rs.map((x) => x.ms)).toFixed(2)} ms (rounds ${rs.map((x) => x.ms.toFixed(2)).join(', ')}); message ${rs[0].bytes} bytes`,
    );
  }
}

const args = parseArgs({ options: { before: { type: 'string' }, rounds: { type: 'string' } } }).values;
await run({ before: args.before ?? null, rounds: Number(args.rounds ?? 5) });
