// The closing-note table for the fix engine: for every recorded run with findings (the examples and
// the diagnosis fixtures), each finding's best applicable remedy is computed on the real script and
// verified (verifyFix: the original and a fixed copy, each for the same number of steps), and the
// table says whether it cured the run, with the max global norm and the first non-finite step
// before → after. When the best remedy does not cure, the next applicable ones are verified in rank
// order, as `gradscope fix --verify` does (at most MAX_VERIFY_RUNS = 3 remedies per finding): the
// table reports the cure rate of the top fix and of the verified fix separately.
// `--all` tries every ranked remedy, not only until one cures.
// Recorded fresh and verified the same way: the PyTorch examples (examples/torch/*.py) and the
// scripts of test/fixtures/fixes/verify/ (.js with TF.js, .py with PyTorch).
// Usage: node bench/fix-table.mjs [--steps N] [--all] [--markdown] [--only NAME] [--skip-remedy ID] [--no-torch]   (after npm run build)
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { loadTs, repoRoot } from './lib/bundle.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const steps = Number(opt('--steps', 100));
const all = argv.includes('--all');
const only = opt('--only', null);
/** Leave this remedy out (e.g. --skip-remedy normalize-inputs: what the ranking did before it). */
const skipRemedy = opt('--skip-remedy', null);

const { readRunFile } = await loadTs('src/core/store/runFile.ts');
const { Analyzer } = await loadTs('src/core/analysis/analyzer.ts');
const { activationFromFiles } = await loadTs('src/process/activationFromFiles.ts');
const { computeFix, prepareFixes } = await loadTs('src/process/fixEngine.ts');
const { globalNormsOf } = await loadTs('src/core/fixes/measure.ts');
const { verifyFix } = await loadTs('src/process/verifyFix.ts');

const relocate = (file) => {
  if (existsSync(file)) return file;
  const m = /[\\/]((?:test[\\/]fixtures|examples)[\\/].*)$/.exec(file);
  return m ? join(repoRoot, m[1]) : file;
};
const fmt = (v) => (v === null || v === undefined ? '–' : v >= 1e4 || (v !== 0 && v < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(3))));
const short = (k) =>
  ({ 'exploding-gradient': 'exploding', 'vanishing-gradient': 'vanishing', 'non-finite-gradient': 'non-finite', 'dead-units': 'dead-units', 'update-ratio': 'update-ratio' })[k] ?? k;

// A private copy of the built probe: a concurrent `npm run build` empties dist/ while it rebuilds.
const probeDir = join(repoRoot, 'bench', 'out', 'fix-table-probe');
if (!existsSync(join(repoRoot, 'dist', 'probe', 'tfjs', 'runner.js'))) throw new Error('the probe is not built: npm run build');
rmSync(probeDir, { recursive: true, force: true });
cpSync(join(repoRoot, 'dist', 'probe'), probeDir, { recursive: true });

const runsDir = join(repoRoot, 'test', 'fixtures', 'diagnosis', 'runs');
// PyTorch scripts (recorded or fresh) run with GRADSCOPE_PYTHON or /usr/bin/python3 (it must import torch).
const python = process.env.GRADSCOPE_PYTHON || '/usr/bin/python3';
const rows = [['script', 'finding', 'rank', 'remedy', 'cured', 'max norm before → after', '1st non-finite before → after', 'loss after', 'findings after']];
let cured = 0;
let tried = 0;
/** Findings with an applicable remedy; of those, cured by the top remedy, and by the verified one (the first that cured, ≤ 3 tried). */
const tally = { findings: 0, top: 0, verified: 0 };
/** `gradscope fix --verify`'s bound (src/cli/fix.ts MAX_VERIFY_RUNS). */
const MAX_VERIFY_RUNS = 3;
const t0 = Date.now();
/** One verified fix: a table row, the tally, a progress line. */
function record(label, f, res, v, rank) {
  tried++;
  if (v.cured) cured++;
  rows.push([
    label,
    short(f.kind),
    String(rank),
    res.remedy,
    v.cured ? 'yes' : 'no',
    `${fmt(v.before.maxNorm)} → ${fmt(v.after.maxNorm)}`,
    `${v.before.firstNonFiniteStep ?? '–'} → ${v.after.firstNonFiniteStep ?? '–'}`,
    v.after.loss.first === null ? '–' : `${fmt(v.after.loss.first)} → ${fmt(v.after.loss.last)}`,
    v.after.kinds.map(short).join(', ') || 'none',
  ]);
  process.stderr.write(`${label} ${f.kind} #${rank} ${res.remedy}: ${v.summary}\n`);
}
/**
 * Verifies the applicable remedies of one finding in rank order until one cures (every one with
 * --all, else at most MAX_VERIFY_RUNS). `run` holds verifyFix's options but the fixed text; `state`
 * carries the baseline measure between findings of the same script.
 */
async function verifyInTurn(label, f, candidates, run, state) {
  if (candidates.length === 0) {
    rows.push([label, short(f.kind), '–', '(none applies)', '–', '–', '–', '–', '–']);
    return;
  }
  tally.findings++;
  let curedBy = null;
  for (let i = 0; i < candidates.length && (all || (i < MAX_VERIFY_RUNS && curedBy === null)); i++) {
    const res = candidates[i];
    const v = await verifyFix({ ...run, fixedText: res.after, steps, baseline: state.baseline, kind: f.kind, probeDir });
    state.baseline = v.before;
    record(label, f, res, v, i + 1);
    if (v.cured && i === 0) tally.top++;
    if (v.cured && curedBy === null && i < MAX_VERIFY_RUNS) curedBy = res.remedy;
  }
  if (curedBy !== null) tally.verified++;
}
for (const run of readdirSync(runsDir)
  .filter((f) => f.endsWith('.gsrun'))
  .sort()) {
  if (only && !run.includes(only)) continue;
  const { store, meta } = readRunFile(join(runsDir, run));
  const findings = new Analyzer(store, { activationOf: activationFromFiles() }).finish();
  if (findings.length === 0) continue;
  const script = relocate(meta.script);
  const norms = globalNormsOf(store);
  await prepareFixes(script);
  const state = { baseline: undefined };
  const seenKinds = new Set();
  for (const f0 of findings) {
    if (seenKinds.has(f0.kind)) continue;
    seenKinds.add(f0.kind);
    const f = f0.source ? { ...f0, source: { ...f0.source, file: relocate(f0.source.file) } } : f0;
    const file = f.source?.file ?? script;
    const text = readFileSync(file, 'utf8');
    const candidates = f.remedies.map((r) => computeFix(text, f, r.id, { file, globalNorms: norms })).filter((r) => r.ok && r.remedy !== skipRemedy);
    const label = relative(repoRoot, script)
      .replace(/^test\/fixtures\/diagnosis\//, '')
      .replace(/^examples\/tfjs\//, 'examples/');
    const run = { script, args: meta.args ?? [], cwd: meta.cwd && existsSync(meta.cwd) ? meta.cwd : repoRoot, pythonPath: python };
    await verifyInTurn(label, f, candidates, run, state);
  }
}
// Recorded fresh: the PyTorch examples (examples/torch/*.py) and the scripts of
// test/fixtures/fixes/verify/ (TF.js .js, PyTorch .py), PyTorch with the interpreter GRADSCOPE_PYTHON
// or /usr/bin/python3 (it must import torch).
const hasTorch = !argv.includes('--no-torch') && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
if (!hasTorch && !argv.includes('--no-torch')) process.stderr.write(`fix-table: ${python} cannot import torch: the PyTorch scripts are left out\n`);
const scratch = join(repoRoot, 'bench', 'out', 'fix-table-fresh');
const fresh = [];
for (const dir of ['examples/torch', 'test/fixtures/fixes/verify']) {
  const abs = join(repoRoot, dir);
  if (!existsSync(abs)) continue;
  for (const name of readdirSync(abs).sort()) {
    if (name.endsWith('.py') ? hasTorch : /\.(c|m)?js$/.test(name)) fresh.push({ dir, name });
  }
}
for (const { dir, name } of fresh) {
  if (only && !name.includes(only)) continue;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  // Inside the repository: require('@tensorflow/tfjs') resolves from its node_modules.
  const script = join(scratch, name);
  cpSync(join(repoRoot, dir, name), script);
  const rec = spawnSync(process.execPath, [join(repoRoot, 'bin', 'gradscope.js'), 'run', script, '--steps', String(steps), '--json', '--out', scratch], {
    cwd: scratch,
    encoding: 'utf8',
    env: { ...process.env, GRADSCOPE_PYTHON: python },
  });
  let doc;
  try {
    doc = JSON.parse(rec.stdout);
  } catch {
    process.stderr.write(`fix-table: ${dir}/${name} was not recorded: ${rec.stderr.slice(-500)}\n`);
    continue;
  }
  const { store } = readRunFile(doc.runFile);
  const findings = new Analyzer(store, { activationOf: activationFromFiles() }).finish();
  await prepareFixes(script);
  const norms = globalNormsOf(store);
  const text = readFileSync(script, 'utf8');
  const state = { baseline: undefined };
  const seenKinds = new Set();
  for (const f of findings) {
    if (seenKinds.has(f.kind)) continue;
    seenKinds.add(f.kind);
    const candidates = f.remedies.map((r) => computeFix(text, f, r.id, { file: script, globalNorms: norms })).filter((r) => r.ok && r.remedy !== skipRemedy);
    await verifyInTurn(`${dir.replace(/^test\/fixtures\//, '')}/${name}`, f, candidates, { script, args: [], cwd: scratch, pythonPath: python }, state);
  }
}
rmSync(scratch, { recursive: true, force: true });

if (argv.includes('--markdown')) {
  console.log(`| ${rows[0].join(' | ')} |\n| ${rows[0].map(() => '---').join(' | ')} |`);
  for (const r of rows.slice(1)) console.log(`| ${r.join(' | ')} |`);
} else {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows)
    console.log(
      r
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    );
}
const pct = (n) => (tally.findings ? `${((100 * n) / tally.findings).toFixed(0)} %` : '–');
console.log(`\ncured: ${cured}/${tried} verified fixes (${steps} steps each run; ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(
  `top fix cured ${tally.top}/${tally.findings} findings (${pct(tally.top)}); verified fix (first of ≤ ${MAX_VERIFY_RUNS} remedies in rank order that cured) ${tally.verified}/${tally.findings} (${pct(tally.verified)})`,
);
