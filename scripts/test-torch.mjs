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
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const matrix = [
  { label: 'oldest', python: process.env.GRADSCOPE_TEST_PYTHON || '/usr/bin/python3', nodeTests: false },
  { label: 'current', python: process.env.GRADSCOPE_TEST_PYTHON2 || join(root, '.venv-torch2', 'bin', 'python'), nodeTests: true },
];
const only = process.argv[2]; // `oldest` or `current`: one row of the matrix

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

function run(cmd, args, env) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GRADSCOPE_')));
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...base, ...env } });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const results = [];
let failed = false;
for (const row of matrix) {
  if (only && row.label !== only) continue;
  const v = torchVersion(row.python);
  if (v.error) {
    console.error(`[torch matrix] torch ${row.label}: ${v.error} (run scripts/setup-torch.sh)`);
    failed = true;
    results.push(`${row.label}: NOT RUN (${v.error})`);
    continue;
  }
  console.log(`\n== torch ${row.label}: ${v.version} (${row.python})`);
  // (The Python tests check that no GRADSCOPE_* variable reaches the script: they get none.)
  let status = run(row.python, ['-B', '-m', 'unittest', 'discover', '-s', 'src/probe/torch/tests', '-t', 'src/probe/torch'], {});
  if (row.nodeTests && status === 0) status = run(process.execPath, ['--test', 'dist/test/unit/torch/'], { GRADSCOPE_TEST_PYTHON: row.python });
  results.push(`${row.label}: torch ${v.version}: ${status === 0 ? 'passed' : 'FAILED'}`);
  if (status !== 0) failed = true;
}
console.log(`\n== torch matrix\n${results.map((r) => `  ${r}`).join('\n')}`);
process.exit(failed ? 1 : 0);
