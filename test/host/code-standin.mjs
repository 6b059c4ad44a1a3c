#!/usr/bin/env node
// Stands in for the VS Code executable that @vscode/test-electron's runTests() launches: it takes
// the same arguments, runs a real VS Code workbench (code-server 4.100.3, which bundles VS Code
// 1.100.3 and its Node extension host) and drives it with Debian's chromium through playwright-core.
// The extension-host test suite is passed in the workbench URL's `payload`, as VS Code's own browser
// integration tests do; its exit code comes back through `codeAutomationExit`.
//
// Environment (set through runTests' extensionTestsEnv; it also reaches the extension host):
//   GRADSCOPE_HOST_TRUST=untrusted   keep Workspace Trust on (runTests always passes --disable-workspace-trust)
//   GRADSCOPE_SCREENSHOT_DIR=DIR     where screenshots requested by the suite go
//   GRADSCOPE_HOST_TIMEOUT_S=N       hard limit for the whole run (default 240)
//   GRADSCOPE_HOST_VERBOSE=1         also print code-server's own log
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { format } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const CODE_SERVER = join(here, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const CHROMIUM = process.env.GRADSCOPE_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_S = Number(process.env.GRADSCOPE_HOST_TIMEOUT_S || 240);
const untrusted = process.env.GRADSCOPE_HOST_TRUST === 'untrusted';
const verbose = process.env.GRADSCOPE_HOST_VERBOSE === '1';
/** Workbench chatter that says nothing about the suite (shown with GRADSCOPE_HOST_VERBOSE=1). */
const NOISE = [
  /open-vsx\.org/,
  /^Resolv(ing|ed) connection token/,
  /^Creating a socket/,
  /^Updating additional builtin extensions cache/,
  /^\[Service Worker\]/,
  /^ChatSessionStore:/,
  /vsda/,
];
/** Lines the suite prints to ask for a screenshot: `[gradscope-host] screenshot NAME`. */
const SCREENSHOT_REQUEST = /^\[gradscope-host\] screenshot ([\w.-]+)$/;

function log(...a) {
  console.log('[standin]', ...a);
}

function parseArgs(argv) {
  const o = { devPaths: [], testsPath: undefined, userDataDir: undefined, extensionsDir: undefined, folder: undefined, disableTrust: false };
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (!m) {
      o.folder ??= resolve(a);
      continue;
    }
    const [, k, v] = m;
    if (k === 'extensionDevelopmentPath') o.devPaths.push(resolve(v));
    else if (k === 'extensionTestsPath') o.testsPath = resolve(v);
    else if (k === 'user-data-dir') o.userDataDir = resolve(v);
    else if (k === 'extensions-dir') o.extensionsDir = resolve(v);
    else if (k === 'disable-workspace-trust') o.disableTrust = true;
    // --no-sandbox, --disable-gpu-sandbox, --disable-updates, --skip-welcome, … mean nothing here.
  }
  if (untrusted) o.disableTrust = false;
  return o;
}

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function waitHealthy(url, child, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`code-server exited early (code ${child.exitCode})`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`code-server did not answer ${url} within ${ms} ms`);
}

async function takeScreenshot(page, file) {
  mkdirSync(dirname(file), { recursive: true });
  try {
    // Let notifications finish fading in, so they are legible.
    if (await page.locator('.notification-toast').count()) {
      await page
        .locator('.notification-toast.notification-fade-in-done')
        .first()
        .waitFor({ timeout: 2000 })
        .catch(() => {});
    }
    await page.screenshot({ path: file + '.tmp.png' });
    // Renamed into place only when complete: the suite polls for the file.
    renameSync(file + '.tmp.png', file);
    log(`screenshot ${file}`);
  } catch (e) {
    log(`screenshot failed: ${e.message}`);
  }
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

const opts = parseArgs(process.argv.slice(2));
if (!opts.testsPath || opts.devPaths.length === 0) {
  console.error('code-standin: expected --extensionTestsPath=… and --extensionDevelopmentPath=… (as runTests passes them)');
  process.exit(2);
}

const scratch = mkdtempSync(join(tmpdir(), 'gradscope-standin-'));
const userDataDir = opts.userDataDir ?? join(scratch, 'user-data');
const extensionsDir = opts.extensionsDir ?? join(scratch, 'extensions');
const home = join(scratch, 'home');
for (const d of [userDataDir, extensionsDir, home, join(userDataDir, 'User')]) mkdirSync(d, { recursive: true });
writeFileSync(
  join(userDataDir, 'User', 'settings.json'),
  JSON.stringify(
    {
      'workbench.startupEditor': 'none',
      'telemetry.telemetryLevel': 'off',
      'update.mode': 'none',
      'extensions.autoUpdate': false,
      'extensions.autoCheckUpdates': false,
      'workbench.tips.enabled': false,
      'security.workspace.trust.startupPrompt': 'never',
      'security.workspace.trust.banner': 'always',
      'terminal.integrated.enablePersistentSessions': false,
      'window.commandCenter': false,
    },
    null,
    2,
  ),
);

let server;
let context;
let exitCode = 1;
let finishing = false;

async function finish(code, why) {
  if (finishing) return;
  finishing = true;
  exitCode = code;
  if (why) log(why);
  try {
    await Promise.race([context?.close(), new Promise((r) => setTimeout(r, 5000))]);
  } catch {
    // the browser may already be gone
  }
  if (server?.pid) {
    // code-server runs in its own process group (its file watchers and extension host included).
    killGroup(server.pid, 'SIGTERM');
    const end = Date.now() + 3000;
    while (Date.now() < end && killGroup(server.pid, 0)) await new Promise((r) => setTimeout(r, 100));
    killGroup(server.pid, 'SIGKILL');
  }
  rmSync(scratch, { recursive: true, force: true });
  process.exit(exitCode);
}

process.on('SIGINT', () => void finish(130, 'interrupted'));
process.on('SIGTERM', () => void finish(143, 'terminated'));
const hardTimer = setTimeout(() => void finish(124, `hard timeout: no result after ${TIMEOUT_S}s`), TIMEOUT_S * 1000);

try {
  const port = await freePort();
  const args = [
    CODE_SERVER,
    '--bind-addr',
    `127.0.0.1:${port}`,
    '--auth',
    'none',
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-getting-started-override',
    '--user-data-dir',
    userDataDir,
    '--extensions-dir',
    extensionsDir,
  ];
  if (opts.disableTrust) args.push('--disable-workspace-trust');
  const started = Date.now();
  server = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      HOME: home,
      XDG_CONFIG_HOME: join(home, '.config'),
      XDG_DATA_HOME: join(home, '.local', 'share'),
      XDG_CACHE_HOME: join(home, '.cache'),
    },
  });
  const serverLog = [];
  const onServerOut = (d) => {
    const s = d.toString();
    serverLog.push(s);
    if (serverLog.length > 200) serverLog.shift();
    if (verbose) process.stdout.write(`[code-server] ${s}`);
  };
  server.stdout.on('data', onServerOut);
  server.stderr.on('data', onServerOut);
  server.on('exit', (code, signal) => {
    if (!finishing) {
      process.stdout.write(serverLog.join(''));
      void finish(1, `code-server exited unexpectedly (${code ?? signal})`);
    }
  });
  const base = `http://127.0.0.1:${port}`;
  await waitHealthy(`${base}/healthz`, server, 30_000);
  log(
    `code-server ${require(join(here, 'node_modules', 'code-server', 'package.json')).version} ready on ${base} in ${Date.now() - started} ms (workspace trust ${opts.disableTrust ? 'off' : 'on'})`,
  );

  const remote = (p) => `vscode-remote://127.0.0.1:${port}${p}`;
  const payload = [...opts.devPaths.map((p) => ['extensionDevelopmentPath', remote(p)]), ['extensionTestsPath', remote(opts.testsPath)]];
  const url = new URL(base + '/');
  if (opts.folder) url.searchParams.set('folder', opts.folder);
  url.searchParams.set('payload', JSON.stringify(payload));

  const { chromium } = require('playwright-core');
  context = await chromium.launchPersistentContext(join(scratch, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const shotDir = process.env.GRADSCOPE_SCREENSHOT_DIR;

  await page.exposeFunction('codeAutomationExit', (code) => void finish(Number(code) || 0, `suite finished with exit code ${code}`));
  await page.exposeFunction('codeAutomationLog', async (type, args) => {
    // The extension host's console calls arrive with their format string unapplied.
    const text = Array.isArray(args) ? format(...args) : format(args);
    const shot = SCREENSHOT_REQUEST.exec(text.trim());
    if (shot) {
      if (shotDir) await takeScreenshot(page, join(shotDir, `${shot[1]}.png`));
      return;
    }
    if (!verbose && NOISE.some((re) => re.test(text))) return;
    const fn = console[type] ?? console.log;
    fn.call(console, text);
  });
  page.on('pageerror', (e) => verbose && log('page error:', e.message));
  await page.goto(url.toString());
  log('workbench opened; running the suite');
} catch (e) {
  clearTimeout(hardTimer);
  console.error(e);
  void finish(1, 'could not start the workbench');
}
