// The closing-note table for the fix engine: for every recorded run with findings (the examples and
// the diagnosis fixtures), each finding's best applicable remedy is computed on the real script and
// verified (verifyFix: the original and a fixed copy, each for the same number of steps), and the
// table says whether it cured the run, with the max global norm and the first non-finite step
// before → after. `--all` tries every ranked remedy, not only the best applicable one.
// The PyTorch examples (examples/torch/*.py) are recorded fresh and verified the same way.
// Usage: node bench/fix-table.mjs [--steps N] [--all] [--markdown] [--only NAME] [--no-torch]   (after npm run build)
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { loadTs, repoRoot } from './lib/bundle.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const steps = Number(opt('--steps', 100));
const all = argv.includes('--all');
const only = opt('--only', null);

const { readRunFile } = await loadTs('src/core/store/runFile.ts');
const { Analyzer } = await loadTs('src/core/analysis/analyzer.ts');
const { activationFromFiles } = await loadTs('src/process/activationFromFiles.ts');
const { computeFix } = await loadTs('src/core/fixes/index.ts');
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
const rows = [['script', 'finding', 'remedy', 'cured', 'max norm before → after', '1st non-finite before → after', 'loss after', 'findings after']];
let cured = 0;
let tried = 0;
const t0 = Date.now();
/** One verified fix: a table row, the tally, a progress line. */
function record(label, f, res, v) {
  tried++;
  if (v.cured) cured++;
  rows.push([
    label,
    short(f.kind),
    res.remedy,
    v.cured ? 'yes' : 'no',
    `${fmt(v.before.maxNorm)} → ${fmt(v.after.maxNorm)}`,
    `${v.before.firstNonFiniteStep ?? '–'} → ${v.after.firstNonFiniteStep ?? '–'}`,
    v.after.loss.first === null ? '–' : `${fmt(v.after.loss.first)} → ${fmt(v.after.loss.last)}`,
    v.after.kinds.map(short).join(', ') || 'none',
  ]);
  process.stderr.write(`${label} ${f.kind} ${res.remedy}: ${v.summary}\n`);
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
  let baseline;
  const seenKinds = new Set();
  for (const f0 of findings) {
    if (seenKinds.has(f0.kind)) continue;
    seenKinds.add(f0.kind);
    const f = f0.source ? { ...f0, source: { ...f0.source, file: relocate(f0.source.file) } } : f0;
    const file = f.source?.file ?? script;
    const text = readFileSync(file, 'utf8');
    const candidates = [];
    for (const r of f.remedies) {
      const res = computeFix(text, f, r.id, { file, globalNorms: norms });
      if (res.ok) candidates.push(res);
      if (res.ok && !all) break;
    }
    if (candidates.length === 0) {
      rows.push([basename(script), short(f.kind), '(none applies)', '–', '–', '–', '–', '–']);
      continue;
    }
    for (const res of candidates) {
      const v = await verifyFix({
        script,
        args: meta.args ?? [],
        cwd: meta.cwd && existsSync(meta.cwd) ? meta.cwd : repoRoot,
        fixedText: res.after,
        steps,
        baseline,
        kind: f.kind,
        probeDir,
      });
      baseline = v.before;
      record(
        relative(repoRoot, script)
          .replace(/^test\/fixtures\/diagnosis\//, '')
          .replace(/^examples\/tfjs\//, 'examples/'),
        f,
        res,
        v,
      );
    }
  }
}
// PyTorch: the examples in examples/torch/, each recorded fresh (there are no recorded torch runs
// in the fixtures), with the interpreter GRADSCOPE_PYTHON or /usr/bin/python3 (it must import torch).
const { prepareFixes } = await loadTs('src/core/fixes/index.ts');
const python = process.env.GRADSCOPE_PYTHON || '/usr/bin/python3';
const torchDir = join(repoRoot, 'examples', 'torch');
const hasTorch = !argv.includes('--no-torch') && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
if (!hasTorch && !argv.includes('--no-torch')) process.stderr.write(`fix-table: ${python} cannot import torch: the PyTorch examples are left out\n`);
const scratch = join(repoRoot, 'bench', 'out', 'fix-table-torch');
for (const name of hasTorch
  ? readdirSync(torchDir)
      .filter((f) => f.endsWith('.py'))
      .sort()
  : []) {
  if (only && !name.includes(only)) continue;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const script = join(scratch, name);
  cpSync(join(torchDir, name), script);
  const rec = spawnSync(process.execPath, [join(repoRoot, 'bin', 'gradscope.js'), 'run', script, '--steps', String(steps), '--json', '--out', scratch], {
    cwd: scratch,
    encoding: 'utf8',
    env: { ...process.env, GRADSCOPE_PYTHON: python },
  });
  const doc = JSON.parse(rec.stdout);
  const { store } = readRunFile(doc.runFile);
  const findings = new Analyzer(store, { activationOf: activationFromFiles() }).finish();
  await prepareFixes(script);
  const norms = globalNormsOf(store);
  const text = readFileSync(script, 'utf8');
  let baseline;
  const seenKinds = new Set();
  for (const f of findings) {
    if (seenKinds.has(f.kind)) continue;
    seenKinds.add(f.kind);
    const res = f.remedies.map((r) => computeFix(text, f, r.id, { file: script, globalNorms: norms })).find((r) => r.ok);
    if (!res) {
      rows.push([`examples/torch/${name}`, short(f.kind), '(none applies)', '–', '–', '–', '–', '–']);
      continue;
    }
    const v = await verifyFix({ script, args: [], cwd: scratch, fixedText: res.after, steps, baseline, kind: f.kind, probeDir, pythonPath: python });
    baseline = v.before;
    record(`examples/torch/${name}`, f, res, v);
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
console.log(`\ncured: ${cured}/${tried} verified fixes (${steps} steps each run; ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
