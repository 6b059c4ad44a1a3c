#!/usr/bin/env node
// `npm run test:host`: runs the extension-host suite (dist/test/suite/index.js) inside a real VS Code
// through @vscode/test-electron's runTests(), twice:
//   1. trusted   — Workspace Trust disabled, as runTests does by default: runs, terminal, status bar, stop, crash;
//   2. untrusted — Workspace Trust on and the folder not trusted: Train & Inspect must refuse.
// The "VS Code executable" is test/host/code-standin.mjs (code-server 4.100.3 + Debian chromium),
// because this machine cannot download VS Code. Builds nothing: `npm test` builds first.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const require = createRequire(import.meta.url);
const standin = join(here, 'code-standin.mjs');
const suite = join(root, 'dist', 'test', 'suite', 'index.js');
const HARD_TIMEOUT_S = Number(process.env.GRADSCOPE_HOST_TIMEOUT_S || 240);

function fail(msg) {
  console.error(`test:host: ${msg}`);
  process.exit(1);
}

// 1. A real VS Code to run in.
if (!existsSync(join(here, 'node_modules', 'code-server', 'out', 'node', 'entry.js'))) {
  const aptReady = ['/usr/bin/chromium', '/usr/bin/rg', '/usr/include/gssapi.h'].every((p) => existsSync(p));
  if (!aptReady) {
    fail(
      'code-server is not installed in test/host. Run (as root) `bash test/host/setup.sh` once: it installs chromium, ripgrep, libkrb5-dev and build-essential from apt and code-server 4.100.3 from npm.',
    );
  }
  console.log('test:host: installing code-server into test/host (one time, about a minute) …');
  execFileSync('bash', [join(here, 'setup.sh')], { stdio: 'inherit' });
}
if (!existsSync(join(root, 'dist', 'extension.js')) || !existsSync(suite)) {
  fail('dist/extension.js or dist/test/suite/index.js is missing: run `npm run build` first (`npm test` does).');
}

// 2. Per mode, a scratch workspace with copies of the examples and the suite's own fixture scripts
//    (outside the repo, so the scripts find tfjs the way a user's would: their own, else GradScope's).
const scratch = mkdtempSync(join(tmpdir(), 'gradscope-host-'));
function makeWorkspace(mode) {
  const workspace = join(scratch, `workspace-${mode}`);
  mkdirSync(workspace, { recursive: true });
  if (existsSync(join(root, 'examples'))) cpSync(join(root, 'examples'), join(workspace, 'examples'), { recursive: true });
  cpSync(join(here, '..', 'fixtures', 'workspace'), workspace, { recursive: true });
  return workspace;
}
const screenshots = join(root, 'screenshots');

const { runTests } = require('@vscode/test-electron');
// runTests spawns the stand-in as an executable; a checkout may have lost the mode bit.
chmodSync(standin, 0o755);

async function runMode(mode) {
  const results = join(scratch, `results-${mode}.json`);
  const started = Date.now();
  let code = 0;
  let error;
  try {
    await runTests({
      vscodeExecutablePath: standin,
      extensionDevelopmentPath: root,
      extensionTestsPath: suite,
      launchArgs: [
        makeWorkspace(mode),
        `--user-data-dir=${join(scratch, `user-data-${mode}`)}`,
        `--extensions-dir=${join(scratch, 'extensions')}`,
        ...(mode === 'trusted' ? ['--disable-workspace-trust'] : []),
      ],
      extensionTestsEnv: {
        GRADSCOPE_HOST_TRUST: mode,
        GRADSCOPE_TEST_RESULTS: results,
        GRADSCOPE_SCREENSHOT_DIR: screenshots,
        // The refusal run is short; give it less rope.
        GRADSCOPE_HOST_TIMEOUT_S: String(mode === 'trusted' ? HARD_TIMEOUT_S : Math.min(HARD_TIMEOUT_S, 120)),
      },
    });
  } catch (e) {
    code = typeof e?.code === 'number' ? e.code : 1;
    error = e;
  }
  let counts = { passed: 0, failed: 0, pending: 0 };
  if (existsSync(results)) counts = JSON.parse(readFileSync(results, 'utf8'));
  else if (!error) error = new Error('the suite wrote no results');
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`test:host [${mode}]: ${counts.passed} passed, ${counts.failed} failed (${secs}s)${error ? ` — ${error.message}` : ''}`);
  return { mode, code, error, counts };
}

const t0 = Date.now();
const outcomes = [];
try {
  for (const mode of ['trusted', 'untrusted']) outcomes.push(await runMode(mode));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
const passed = outcomes.reduce((n, o) => n + o.counts.passed, 0);
const failed = outcomes.reduce((n, o) => n + o.counts.failed + (o.error && o.counts.failed === 0 ? 1 : 0), 0);
console.log(`test:host: ${((Date.now() - t0) / 1000).toFixed(1)}s in all`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || outcomes.some((o) => o.code !== 0) ? 1 : 0);
