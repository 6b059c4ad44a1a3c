// Harness for the end-to-end UI suite: starts code-server 4.100.3 (installed in test/host) in its own
// process group with HOME/XDG in a scratch folder, with GradScope installed from its .vsix into a
// fresh extensions folder (`--install-extension`, as a user gets it), or loaded as a development
// extension through the workbench URL's payload when no .vsix is given; opens it in Debian's
// chromium via playwright-core, and offers the UI helpers the scenarios use (palette, quick open,
// hover, webview frame, canvas pixels, notifications, /proc scans).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '..', '..', '..');
export const CODE_SERVER = join(ROOT, 'test', 'host', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const CHROMIUM = process.env.GRADSCOPE_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
export const verbose = process.env.GRADSCOPE_E2E_VERBOSE === '1';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function log(...a) {
  console.log('[e2e]', ...a);
}

/** Polls `fn` until it returns something truthy; throws with `what` after `ms`. */
export async function waitFor(what, fn, ms = 15_000, every = 200) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
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

export function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Every process whose command line matches `re` (a /proc scan). */
export function processes(re) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (cmd && re.test(cmd)) out.push({ pid: Number(d), cmd });
    } catch {
      // gone
    }
  }
  return out;
}

const USER_SETTINGS = {
  'workbench.startupEditor': 'none',
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'security.workspace.trust.startupPrompt': 'never',
  'security.workspace.trust.banner': 'always',
  'terminal.integrated.enablePersistentSessions': false,
  // The DOM renderer: the terminal's text is then in .xterm-rows.
  'terminal.integrated.gpuAcceleration': 'off',
  'window.commandCenter': false,
  'files.simpleDialog.enable': true,
  'git.enabled': false,
  'chat.disableAIFeatures': true,
  'editor.hover.delay': 300,
  'editor.minimap.enabled': false,
  'workbench.editor.enablePreview': false,
};

/**
 * Installs `vsix` with code-server's CLI into the extensions folder `exts`; returns the folder the
 * extension was unpacked to (<publisher>.<name>-<version>).
 */
export function installVsix(vsix, { userData, exts, env }) {
  const out = execFileSync(process.execPath, [CODE_SERVER, '--user-data-dir', userData, '--extensions-dir', exts, '--install-extension', vsix], {
    env,
    encoding: 'utf8',
    timeout: 120_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { publisher, name, version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const dir = join(exts, `${publisher}.${name}-${version}`);
  if (!existsSync(join(dir, 'package.json'))) throw new Error(`code-server did not install ${vsix} into ${dir}: ${out}`);
  return dir;
}

/**
 * Starts code-server on `workspace` (trust disabled unless `trust: true`) and opens the workbench in
 * chromium with the extension installed from `vsix`, or, without one, loaded from the repository.
 * Returns { page, context, port, stop(), extensionDir }.
 */
export async function startWorkbench({ scratch, name, workspace, trust = false, vsix }) {
  const dir = join(scratch, name);
  const userData = join(dir, 'user-data');
  const exts = join(dir, 'extensions');
  const home = join(dir, 'home');
  for (const d of [join(userData, 'User'), exts, home]) mkdirSync(d, { recursive: true });
  writeFileSync(join(userData, 'User', 'settings.json'), JSON.stringify(USER_SETTINGS, null, 2));
  const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_DATA_HOME: join(home, '.local', 'share'), XDG_CACHE_HOME: join(home, '.cache') };
  const extensionDir = vsix ? installVsix(vsix, { userData, exts, env }) : ROOT;
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
    userData,
    '--extensions-dir',
    exts,
  ];
  if (!trust) args.push('--disable-workspace-trust');
  const server = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  const serverLog = [];
  const onOut = (d) => {
    serverLog.push(d.toString());
    if (serverLog.length > 200) serverLog.shift();
    if (verbose) process.stdout.write(`[code-server] ${d}`);
  };
  server.stdout.on('data', onOut);
  server.stderr.on('data', onOut);
  let context;
  const stop = async () => {
    try {
      await Promise.race([context?.close(), sleep(5000)]);
    } catch {
      // already gone
    }
    if (server.pid) {
      killGroup(server.pid, 'SIGTERM');
      const end = Date.now() + 3000;
      while (Date.now() < end && killGroup(server.pid, 0)) await sleep(100);
      killGroup(server.pid, 'SIGKILL');
    }
  };
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      'code-server /healthz',
      async () => {
        if (server.exitCode !== null) throw new Error(`code-server exited (${server.exitCode}): ${serverLog.join('').slice(-2000)}`);
        const r = await fetch(`${base}/healthz`).catch(() => null);
        return r?.ok;
      },
      30_000,
    );
    context = await chromium.launchPersistentContext(join(dir, 'chromium'), { executablePath: CHROMIUM, headless: true, viewport: { width: 1440, height: 900 }, args: CHROMIUM_ARGS });
    const page = context.pages()[0] ?? (await context.newPage());
    if (verbose) page.on('console', (m) => log('page:', m.text()));
    const url = new URL(base + '/');
    url.searchParams.set('folder', workspace);
    if (!vsix) url.searchParams.set('payload', JSON.stringify([['extensionDevelopmentPath', `vscode-remote://127.0.0.1:${port}${ROOT}`]]));
    await page.goto(url.toString());
    await page.locator('.monaco-workbench').waitFor({ timeout: 30_000 });
    await page.locator('.statusbar').waitFor({ timeout: 30_000 });
    return { page, context, port, server, stop, serverLog, extensionDir, userData };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The last `lines` lines of GradScope's own log (its LogOutputChannel, which code-server writes
 * under the user-data folder's logs/): what the extension host did, for a failure's report.
 */
export function extensionLog(userData, lines = 40) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/GradScope\.log$/.test(e.name)) found.push(p);
    }
  };
  try {
    walk(join(userData, 'logs'));
  } catch {
    return '(no logs folder)';
  }
  if (found.length === 0) return '(no GradScope log)';
  return found.map((f) => `${f}:\n${readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n')}`).join('\n');
}

/** Saves a screenshot (notifications faded in first) as DIR/NN-name.png. */
export function shooter(dir) {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  return async (page, name) => {
    const file = join(dir, `${String(++n).padStart(2, '0')}-${name}.png`);
    try {
      if (await page.locator('.notification-toast').count()) {
        await page
          .locator('.notification-toast.notification-fade-in-done')
          .first()
          .waitFor({ timeout: 2000 })
          .catch(() => {});
      }
      await page.screenshot({ path: file });
    } catch (e) {
      log(`screenshot ${name} failed: ${e.message}`);
    }
    return file;
  };
}

const quickInput = (page) => page.locator('.quick-input-widget');

/** Opens the quick input with F1, types `text`, and presses Enter once the focused row matches `row`. */
async function quickPick(page, text, row, { tries = 25, rowTimeout = 1500 } = {}) {
  let lastRows = '';
  for (let i = 0; i < tries; i++) {
    await page.keyboard.press('F1');
    const input = quickInput(page).locator('input.input');
    await input.waitFor({ state: 'visible', timeout: 5000 });
    await input.fill(text);
    const focused = quickInput(page).locator('.monaco-list-row.focused');
    try {
      await waitFor(`a quick input row matching ${row}`, async () => row.test(await focused.first().innerText({ timeout: 500 })), rowTimeout, 100);
      await page.keyboard.press('Enter');
      return;
    } catch {
      lastRows = await quickInput(page)
        .locator('.monaco-list-row')
        .allInnerTexts()
        .catch(() => []);
      await page.keyboard.press('Escape');
      await sleep(400);
    }
  }
  throw new Error(`no quick input row matching ${row} for "${text}" (rows: ${JSON.stringify(lastRows)})`);
}

/** Runs a command from the palette by its title ("GradScope: Train & Inspect"). */
export function palette(page, title) {
  const esc = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return quickPick(page, `>${title}`, new RegExp(`^${esc}`, 'm'));
}

/** Quick Open (F1, then a file name instead of `>`). */
export function quickOpen(page, fileName) {
  const esc = fileName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return quickPick(page, fileName, new RegExp(esc), { rowTimeout: 3000 });
}

/** The GradScope panel's document: the webview's inner frame. */
export function webview(page) {
  return page.frameLocator('iframe.webview').first().frameLocator('#active-frame');
}

/**
 * Pixel statistics of the first canvas under `selector` (in a page or frame locator):
 * { w, h, painted (pixels differing from the most common colour), magenta (≈ #ff00ff) }.
 */
export function canvasStats(root, selector) {
  return root
    .locator(selector)
    .first()
    .evaluate((c) => {
      const ctx = c.getContext('2d');
      if (!ctx || !c.width || !c.height) return { w: c.width, h: c.height, painted: 0, magenta: 0 };
      const { data } = ctx.getImageData(0, 0, c.width, c.height);
      const counts = new Map();
      for (let i = 0; i < data.length; i += 4) {
        const k = (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3];
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      let bg = 0;
      for (const v of counts.values()) bg = Math.max(bg, v);
      let magenta = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] > 235 && data[i + 1] < 30 && data[i + 2] > 235 && data[i + 3] > 200) magenta++;
      }
      return { w: c.width, h: c.height, painted: data.length / 4 - bg, magenta };
    });
}

/** The visible text of every notification toast. */
export async function notifications(page) {
  return page
    .locator('.notification-toast')
    .allInnerTexts()
    .catch(() => []);
}

/** Text of the status bar items. */
export async function statusBar(page) {
  return (
    await page
      .locator('.statusbar-item')
      .allInnerTexts()
      .catch(() => [])
  ).join(' | ');
}

/** Text of the visible terminal (DOM renderer rows). */
export async function terminalText(page) {
  const rows = await page
    .locator('.terminal-wrapper.active .xterm-rows, .xterm .xterm-rows')
    .allInnerTexts()
    .catch(() => []);
  return rows.join('\n');
}

/**
 * The editor line (0-based view-line element) whose text contains `needle` and which carries a
 * `.squiggly-error` decoration: { text, top } or null. Matches overlay and line by their `top`.
 */
export async function squigglyLines(page) {
  return page.evaluate(() => {
    const editor = document.querySelector('.editor-group-container.active .monaco-editor') ?? document.querySelector('.monaco-editor');
    if (!editor) return [];
    const lines = [...editor.querySelectorAll('.view-lines .view-line')].map((l) => ({ top: parseFloat(l.style.top), text: l.textContent.replace(/\u00a0/g, ' ') }));
    const tops = new Set();
    for (const s of editor.querySelectorAll('.view-overlays .squiggly-error')) {
      const row = s.closest('.view-overlays > div');
      if (row) tops.add(parseFloat(row.style.top));
    }
    return lines.filter((l) => tops.has(l.top));
  });
}

/**
 * Screen box of the first occurrence of `needle` in a view line: `at` is a string the line contains,
 * or a number, the line's `top` (as squigglyLines gives it).
 */
export async function wordBox(page, at, needle) {
  return page.evaluate(
    ([ln, nd]) => {
      const editor = document.querySelector('.editor-group-container.active .monaco-editor') ?? document.querySelector('.monaco-editor');
      const line = [...editor.querySelectorAll('.view-lines .view-line')].find((l) =>
        typeof ln === 'number' ? parseFloat(l.style.top) === ln : l.textContent.replace(/\u00a0/g, ' ').includes(ln),
      );
      if (!line) return null;
      // Walk the text nodes: Monaco splits a line into token spans.
      const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
      const nodes = [];
      let text = '';
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        nodes.push({ n, start: text.length });
        text += n.textContent;
      }
      const at = text.replace(/\u00a0/g, ' ').indexOf(nd);
      if (at < 0) return null;
      const locate = (off) => {
        const hit = nodes.findLast((x) => x.start <= off);
        return [hit.n, off - hit.start];
      };
      const range = document.createRange();
      range.setStart(...locate(at));
      range.setEnd(...locate(at + nd.length - 1));
      const r = range.getBoundingClientRect();
      return { x: r.left, y: r.top, width: r.width, height: r.height };
    },
    [at, needle],
  );
}

export function ensureCodeServer() {
  if (existsSync(CODE_SERVER)) return null;
  return 'code-server is not installed in test/host: run `npm run test:host` once (it installs it) or `bash test/host/setup.sh` as root.';
}
