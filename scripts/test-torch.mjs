#!/usr/bin/env node
// The torch version matrix of `npm test`: the probe's Python tests on every interpreter of the
// matrix, and the TypeScript tests that drive real torch (dist/test/unit/torch/) on current torch.
// (Those TypeScript tests run on the oldest torch within `npm run test:unit`, whose default
// interpreter is /usr/bin/python3: running them again here would only repeat them.)
//
//   oldest:  GRADSCOPE_TEST_PYTHON  or /usr/bin/python3         (Debian's python3-torch, 1.13)
//   current: GRADSCOPE_TEST_PYTHON2 or .venv-torch2/bin/python   (torch 2.x, Lightning, transformers)
//
// scripts/setup-torch.sh installs both (`npm test` runs it first). An interpreter without torch is an
// error: a green run never hides a skipped row of the matrix.
//
// Two lanes run at once: the Python tests (oldest, then current) and the TypeScript tests on current
// torch. Each lane keeps about one core busy (a run of `time` over each: user + sys ≈ wall), and
// the two share nothing (their own temporary folders, ephemeral ports, the probe from src/ against the
// one in dist/), so on two cores the matrix takes about as long as its longer lane instead of the
// sum of both. Each lane's lines are prefixed with its name. GRADSCOPE_TORCH_SERIAL=1 runs the lanes
// one after the other, with the output as it comes.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const matrix = [
  { label: 'oldest', python: process.env.GRADSCOPE_TEST_PYTHON || '/usr/bin/python3', nodeTests: false },
  { label: 'current', python: process.env.GRADSCOPE_TEST_PYTHON2 || join(root, '.venv-torch2', 'bin', 'python'), nodeTests: true },
];
const only = process.argv[2]; // `oldest` or `current`: one row of the matrix
const serial = process.env.GRADSCOPE_TORCH_SERIAL === '1';

function torchVersion(python) {
  if (python.includes('/') && !existsSync(python)) return { error: `${python} does not exist` };
  const r = spawnSync(python, ['-c', 'import torch, sys; print(torch.__version__, "python", sys.version.split()[0])'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.error) return { error: `${python} cannot be run (${r.error.message})` };
  if (r.status !== 0) return { error: `torch does not import with ${python}: ${(r.stderr || '').trim().split('\n').pop()}` };
  return { version: r.stdout.trim() };
}

/** Runs one command to its end; its output streams line by line, each line prefixed in parallel mode. */
function run(prefix, cmd, args, env) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GRADSCOPE_')));
  const say = (line) => process.stdout.write(serial ? `${line}\n` : `[${prefix}] ${line}\n`);
  say(`$ ${cmd} ${args.join(' ')}`);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: serial ? 'inherit' : ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } });
    if (!serial) {
      for (const stream of [child.stdout, child.stderr]) {
        let rest = '';
        stream.setEncoding('utf8');
        stream.on('data', (chunk) => {
          const lines = (rest + chunk).split('\n');
          rest = lines.pop();
          for (const l of lines) say(l);
        });
        stream.on('end', () => rest && say(rest));
      }
    }
    child.on('error', (e) => {
      say(`cannot run ${cmd}: ${e.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => {
      say(`exit ${code ?? signal} after ${Math.round((Date.now() - t0) / 1000)} s`);
      resolve(code ?? 1);
    });
  });
}

const results = [];
const rows = [];
for (const row of matrix) {
  if (only && row.label !== only) continue;
  const v = torchVersion(row.python);
  if (v.error) {
    console.error(`[torch matrix] torch ${row.label}: ${v.error} (run scripts/setup-torch.sh)`);
    results.push({ label: `${row.label}: NOT RUN (${v.error})`, ok: false });
    continue;
  }
  console.log(`== torch ${row.label}: ${v.version} (${row.python})`);
  rows.push({ ...row, version: v.version });
}

// (The Python tests check that no GRADSCOPE_* variable reaches the script: they get none.)
const pythonLane = async () => {
  for (const row of rows) {
    const status = await run(`python ${row.label}`, row.python, ['-B', '-m', 'unittest', 'discover', '-s', 'src/probe/torch/tests', '-t', 'src/probe/torch'], {});
    results.push({ label: `${row.label}: torch ${row.version}: Python tests ${status === 0 ? 'passed' : 'FAILED'}`, ok: status === 0 });
  }
};
const nodeLane = async () => {
  for (const row of rows.filter((r) => r.nodeTests)) {
    const status = await run(`node ${row.label}`, process.execPath, ['--test', 'dist/test/unit/torch/'], { GRADSCOPE_TEST_PYTHON: row.python });
    results.push({ label: `${row.label}: torch ${row.version}: TypeScript tests ${status === 0 ? 'passed' : 'FAILED'}`, ok: status === 0 });
  }
};
if (serial) {
  await pythonLane();
  await nodeLane();
} else {
  await Promise.all([pythonLane(), nodeLane()]);
}
console.log(`\n== torch matrix\n${results.map((r) => `  ${r.label}`).join('\n')}`);
process.exit(results.every((r) => r.ok) && results.length ? 0 : 1);
