#!/usr/bin/env node
// `npm run test:e2e:vscode`: GradScope's user flows driven in a real VS Code (code-server 4.100.3 +
// Debian chromium via playwright-core), as a person would: keyboard, mouse, command palette.
// GradScope is installed from its .vsix (`npm run package`, made here into the scratch folder) with
// `code-server --install-extension` into a fresh extensions folder, as a user gets it: every run
// must come from the installed copy, never from the repository.
// Screenshots of every step go to screenshots/e2e/. Prints `N passed, N failed` last.
//
//   GRADSCOPE_E2E_ONLY=regex   run only the scenarios whose name matches
//   GRADSCOPE_E2E_VERBOSE=1    code-server's log and the page console too
//   GRADSCOPE_VSIX=file.vsix   install this package instead of making one
//   GRADSCOPE_E2E_DEV=1        load the repository as a development extension instead (faster to iterate)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  ROOT,
  canvasStats,
  ensureCodeServer,
  extensionLog,
  killGroup,
  log,
  notifications,
  palette,
  processes,
  quickOpen,
  shooter,
  sleep,
  squigglyLines,
  startWorkbench,
  statusBar,
  terminalText,
  waitFor,
  webview,
  wordBox,
} from './harness.mjs';

const SUITE_TIMEOUT_S = Number(process.env.GRADSCOPE_E2E_TIMEOUT_S || 280);
const ONLY = process.env.GRADSCOPE_E2E_ONLY ? new RegExp(process.env.GRADSCOPE_E2E_ONLY, 'i') : null;
const SHOTS = join(ROOT, 'screenshots', 'e2e');
/** The interpreter with torch (Debian's python3-torch), given to the workspace as gradscope.pythonPath. */
const TORCH_PYTHON = process.env.GRADSCOPE_TEST_PYTHON || '/usr/bin/python3';

const missing = ensureCodeServer();
if (missing) {
  console.error(`test:e2e:vscode: ${missing}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
if (!existsSync(join(ROOT, 'dist', 'extension.js'))) {
  console.error('test:e2e:vscode: dist/extension.js is missing: run `npm run build` first (`npm test` does).');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

rmSync(SHOTS, { recursive: true, force: true });
const shot = shooter(SHOTS);
const scratch = mkdtempSync(join(tmpdir(), 'gradscope-e2e-'));
const workbenches = [];

/** The package under test: GRADSCOPE_VSIX, else one made now by `npm run package`; none in dev mode. */
function packageUnderTest() {
  if (process.env.GRADSCOPE_E2E_DEV === '1') return undefined;
  if (process.env.GRADSCOPE_VSIX) return resolve(process.env.GRADSCOPE_VSIX);
  const out = join(scratch, 'gradscope.vsix');
  const started = Date.now();
  try {
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'package.mjs'), out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    console.log(`FAIL npm run package: ${String(e.stdout ?? '').slice(-1500)}${String(e.stderr ?? '').slice(-1500)}`);
    rmSync(scratch, { recursive: true, force: true });
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  log(`packaged ${out} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return out;
}
const VSIX = packageUnderTest();

/** Processes of runs started in `ws` (the probe runner or the scripts themselves). */
const runProcesses = (ws) =>
  processes(new RegExp(`(probe/tfjs/runner\\.js|probe/torch).*${ws.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}|${ws.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*(train.forever|exploding)`));

let cleaning = false;
async function cleanup() {
  if (cleaning) return;
  cleaning = true;
  for (const wb of workbenches) await wb.stop().catch(() => {});
  // Anything of ours still alive (a run the suite started and could not stop) is killed by group.
  for (const p of processes(new RegExp(scratch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))) {
    if (p.pid !== process.pid) killGroup(p.pid, 'SIGKILL') || process.kill(p.pid, 'SIGKILL');
  }
  rmSync(scratch, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    void cleanup().then(() => {
      console.log('0 passed, 1 failed');
      process.exit(130);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The two examples the three user flows run on: TF.js (scenarios 1-3) and PyTorch (scenario 4).

const TORCH_BAD_INIT = 'nn.init.normal_(m.weight, mean=0.0, std=0.4)';
const TORCH_HE_INIT = 'nn.init.kaiming_normal_(m.weight, nonlinearity="relu")';

const EXAMPLES = {
  tfjs: {
    shots: '',
    file: 'exploding-mlp.js',
    forever: 'train-forever.js',
    output: /batch \d+: loss/,
    layerCall: 'tf.layers.dense(',
    hover: /Exploding gradients in dense_Dense\d/,
    fixedMark: /heNormal/,
    /** The four layers that shared badInit now use heNormal; nothing else changed. */
    checkFixed(text, original) {
      assert.equal(text.match(/kernelInitializer: 'heNormal'/g)?.length, 4, 'four layers use heNormal');
      assert.doesNotMatch(text, /kernelInitializer: badInit/);
      assert.equal(text.replace(/kernelInitializer: 'heNormal'/g, 'kernelInitializer: badInit'), original);
    },
  },
  torch: {
    shots: 'torch-',
    file: 'exploding_init.py',
    forever: 'train_forever.py',
    output: /step \d+: loss/,
    layerCall: 'nn.Linear(',
    hover: /Exploding gradients in model\.fc1/,
    fixedMark: /kaiming_normal_/,
    /** The init call in the loop over the four layers is replaced (every layer gets He); nothing else changed. */
    checkFixed(text, original) {
      assert.ok(original.includes(TORCH_BAD_INIT), 'the example has the bad init in its loop');
      assert.equal(text, original.replace(TORCH_BAD_INIT, TORCH_HE_INIT));
    },
  },
};

/** A workspace outside the repository (the scripts find tfjs as a user's would: GradScope's own; torch from TORCH_PYTHON). */
function makeWorkspace(name) {
  const ws = join(scratch, name);
  mkdirSync(join(ws, '.vscode'), { recursive: true });
  cpSync(join(ROOT, 'examples', 'tfjs', 'exploding-mlp.js'), join(ws, 'exploding-mlp.js'));
  cpSync(join(ROOT, 'examples', 'torch', 'exploding_init.py'), join(ws, 'exploding_init.py'));
  cpSync(join(ROOT, 'test', 'fixtures', 'workspace', 'train-forever.js'), join(ws, 'train-forever.js'));
  cpSync(join(ROOT, 'test', 'fixtures', 'workspace', 'train_forever.py'), join(ws, 'train_forever.py'));
  writeFileSync(join(ws, '.vscode', 'settings.json'), JSON.stringify({ 'gradscope.maxSteps': 0, 'gradscope.pythonPath': TORCH_PYTHON }, null, 2));
  return ws;
}

/**
 * Scenario 9's script: two DDP ranks (gloo, CPU) started with torch.multiprocessing.spawn, as a user
 * writes them; from step 10 rank 1 multiplies its gradients by 100 after the all-reduce and divides its
 * learning rate by 100 (the same update: the model stays sane), so the ranks disagree on the gradients:
 * a rank-desync finding, and rank 1's norms rise above its first steps'.
 */
const DDP_SPAWN = `import socket
import time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP


def work(rank, world, port):
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1 + rank)
    for step in range(20):
        opt.zero_grad()
        model(torch.randn(32, 8, generator=g)).pow(2).mean().backward()
        if rank == 1 and step >= 10:
            for p in model.parameters():
                p.grad.mul_(100.0)
            opt.param_groups[0]["lr"] = 0.05 / 100
        opt.step()
        print("rank %d step %d" % (rank, step), flush=True)
    dist.destroy_process_group()
    time.sleep(0.2)  # torch 2.13 + gloo can abort at exit without it (test/fixtures/distributed/ddp.py)


if __name__ == "__main__":
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp.spawn(work, args=(2, port), nprocs=2)
`;

/** Per example: the file as copied, the quick fix's text, the line the warning is on. */
const state = {
  ws: '',
  page: null,
  context: null,
  extensionDir: '',
  userData: '',
  tfjs: { original: '', fixed: '', line: '', top: 0 },
  torch: { original: '', fixed: '', line: '', top: 0 },
};

/** Opens a file with Quick Open and waits for its editor tab. */
async function openFile(page, name) {
  await quickOpen(page, name);
  // By the resource name: the panel's tab ("GradScope: <script>") carries the file's name too.
  await page.locator(`.tabs-container .tab.active[data-resource-name="${name}"]`).waitFor({ timeout: 10_000 });
  await page.locator('.editor-group-container.active .monaco-editor .view-line').first().waitFor({ timeout: 10_000 });
}

const ENDED = /GradScope: (completed|step limit|crashed|stopped|time limit)/i;

/**
 * Palette → Train & Inspect on the active editor; waits for the new run to show in the status bar
 * (starting, or a live step), so that an earlier run's "completed" is not taken for this one's.
 */
async function trainAndInspect(page) {
  await palette(page, 'GradScope: Train & Inspect');
  await waitFor('the status bar to show the new run', async () => /GradScope: (starting|step \d+)/.test(await statusBar(page)), 20_000, 50);
}

/** Waits for the run to end (status bar says completed or similar). */
async function waitRunEnded(page, ms = 60_000) {
  return waitFor(
    'the run to end',
    async () => {
      const s = await statusBar(page);
      return ENDED.test(s) ? s : null;
    },
    ms,
    300,
  );
}

/** The findings list of the panel. */
const findingsText = (page) => webview(page).locator('#gs-findings').innerText({ timeout: 5000 });

/** The visible lines of the active editor (the DOM of the text model's view). */
const editorText = (page) => page.locator('.editor-group-container.active .monaco-editor .view-lines').first().innerText({ timeout: 1000 });
/**
 * The text of the editor showing the file `name` in whichever group shows it, focused or not: a click
 * in the panel leaves focus to the webview's group until the host's showTextDocument takes it back.
 */
const fileEditorText = (page, name) => page.locator(`.editor-group-container:has(.tab.active[data-resource-name="${name}"]) .monaco-editor .view-lines`).first().innerText({ timeout: 1000 });
/** Which tabs each editor group shows (the active one marked), for a failure's log. */
const editorGroups = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('.editor-group-container')].map(
      (g) =>
        `${g.classList.contains('active') ? '[active] ' : ''}${[...g.querySelectorAll('.tab')]
          .map((t) => `${t.classList.contains('active') ? '*' : ''}${t.getAttribute('data-resource-name') ?? t.getAttribute('aria-label')}`)
          .join(', ')}`,
    ),
  );

/**
 * The findings list once it has kept the same text for `quietMs`. The end of a run brings a last
 * analysis that can re-render the list after the status bar says "completed"; a click aimed at a
 * button of the list before that could land on the list being rebuilt.
 */
async function settledFindings(page, quietMs = 800) {
  let last = null;
  let since = 0;
  return waitFor(
    'the findings list to settle',
    async () => {
      const t = await findingsText(page);
      if (t !== last) {
        last = t;
        since = Date.now();
        return null;
      }
      return Date.now() - since >= quietMs ? t : null;
    },
    15_000,
    100,
  );
}

async function focusEditor(page, name) {
  await page.locator(`.tabs-container .tab[data-resource-name="${name}"]`).first().click();
  await sleep(300);
}

// ---------------------------------------------------------------------------------------------
// The three user flows, for one example.

/** Train & inspect: palette run, terminal output, panel heatmap + norm curve pixels, status bar; Stop Run leaves no process. */
async function trainFlow(ex) {
  const page = state.page;
  await openFile(page, ex.file);
  await shot(page, `${ex.shots}train-opened-exploding`);
  await trainAndInspect(page);
  await shot(page, `${ex.shots}train-started`);
  const ended = await waitRunEnded(page);
  log(`status bar: ${ended}`);
  // The terminal shows the script's own output.
  const term = await waitFor(
    'the script output in the terminal',
    async () => {
      const t = await terminalText(page);
      return ex.output.test(t) ? t : null;
    },
    15_000,
  );
  log(
    `terminal: ${term
      .split('\n')
      .filter((l) => ex.output.test(l))
      .slice(0, 3)
      .join(' / ')}`,
  );
  // The panel: heatmap and norm curve are painted; the explosion leaves NaN (magenta) cells.
  const wv = webview(page);
  await wv.locator('#gs-heatmap canvas').first().waitFor({ timeout: 15_000 });
  const heat = await waitFor(
    'a painted heatmap with NaN cells',
    async () => {
      const s = await canvasStats(wv, '#gs-heatmap canvas');
      return s.painted > 500 && s.magenta > 20 ? s : null;
    },
    15_000,
  );
  const norms = await waitFor(
    'a drawn norm curve',
    async () => {
      const s = await canvasStats(wv, '#gs-norms canvas');
      return s.painted > 200 ? s : null;
    },
    15_000,
  );
  log(`heatmap ${heat.w}×${heat.h}: ${heat.painted} painted, ${heat.magenta} NaN-magenta; norms ${norms.w}×${norms.h}: ${norms.painted} painted`);
  assert.match(await findingsText(page), /Exploding gradients/i);
  await shot(page, `${ex.shots}train-panel-norms`);
  await wv.locator('#gs-heatmap').scrollIntoViewIfNeeded();
  await sleep(300);
  await shot(page, `${ex.shots}train-panel-heatmap`);

  // Stop: a run that goes on until stopped.
  const before = runProcesses(state.ws);
  assert.equal(before.length, 0, `no run process before: ${JSON.stringify(before)}`);
  await openFile(page, ex.forever);
  await trainAndInspect(page);
  await waitFor('the status bar to show a live step', async () => /GradScope.*step \d+/i.test(await statusBar(page)) && !ENDED.test(await statusBar(page)), 30_000);
  const live = await waitFor('the run process', () => (runProcesses(state.ws).length ? runProcesses(state.ws) : null), 10_000);
  log(`live run: ${live.map((p) => `${p.pid} ${p.cmd.slice(0, 120)}`).join('; ')} · status: ${await statusBar(page)}`);
  // The probe comes from the installed extension, not from the repository.
  if (VSIX) {
    const probeOf = (p) =>
      `${p.cmd} ${
        readFileSync(`/proc/${p.pid}/environ`, 'utf8')
          .split('\0')
          .find((v) => v.startsWith('PYTHONPATH=')) ?? ''
      }`;
    const from = live.map((p) => {
      try {
        return probeOf(p);
      } catch {
        return p.cmd;
      }
    });
    assert.ok(
      from.some((c) => c.includes(`${state.extensionDir}/dist/probe/`)),
      `the run uses the installed probe (${state.extensionDir}): ${from.join(' | ')}`,
    );
    assert.ok(!from.some((c) => c.includes(`${ROOT}/dist/`)), `nothing runs from the repository: ${from.join(' | ')}`);
  }
  await waitFor('the train-forever output in the terminal', async () => /train-forever: epoch \d+/.test(await terminalText(page)), 15_000);
  await shot(page, `${ex.shots}stop-live-run`);
  await palette(page, 'GradScope: Stop Run');
  const stopped = await waitFor(
    'the status bar to say stopped',
    async () => {
      const s = await statusBar(page);
      return /GradScope: stopped/i.test(s) ? s : null;
    },
    15_000,
  );
  log(`after Stop Run: ${stopped}`);
  await waitFor('no run process left', () => runProcesses(state.ws).length === 0, 5000);
  await waitFor('"stopped by the user" in the terminal', async () => /stopped by the user/.test(await terminalText(page)), 5000);
  await shot(page, `${ex.shots}stop-stopped`);
}

/** Hover gradient warning: squiggle on the layer line, the hover shows "Exploding gradients" with numbers. */
async function hoverFlow(ex, st) {
  const page = state.page;
  await openFile(page, ex.file);
  // No run is live: the panel follows the editor to this script's latest run.
  await waitFor(`the panel to show ${ex.file}'s run`, async () => (await page.locator('.tabs-container .tab', { hasText: `GradScope: ${ex.file}` }).count()) > 0, 10_000);
  const lines = await waitFor(
    'a squiggly layer line',
    async () => {
      const l = (await squigglyLines(page)).filter((x) => x.text.includes(ex.layerCall));
      return l.length ? l : null;
    },
    15_000,
  );
  log(`squiggly layer lines: ${lines.map((l) => l.text.trim().slice(0, 60)).join(' | ')}`);
  let hover = '';
  for (const l of lines) {
    const box = await wordBox(page, l.top, ex.layerCall);
    assert.ok(box, 'the word box');
    await page.mouse.move(5, 5);
    await sleep(200);
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 4 });
    hover = await waitFor(
      'the hover with the warning',
      async () => {
        const t = (
          await page
            .locator('.monaco-hover:visible')
            .allInnerTexts()
            .catch(() => [])
        ).join('\n');
        hover = t;
        return /Exploding gradients/.test(t) ? t : null;
      },
      5000,
    ).catch(() => hover);
    if (/Exploding gradients/.test(hover)) {
      st.line = l.text;
      st.top = l.top;
      break;
    }
  }
  log(`hover: ${hover.replace(/\s+/g, ' ').slice(0, 300)}`);
  assert.match(hover, ex.hover);
  assert.match(hover, /growthFactor [\d.]+|\d+(\.\d+)?e[+-]?\d+/);
  await sleep(500); // the hover fades in
  await shot(page, `${ex.shots}hover-exploding`);
  await page.mouse.move(5, 5);
  await page.keyboard.press('Escape');
}

/** Apply quick-fix remedy: Ctrl+. → He initialisation, the file changes as expected, re-run: no exploding finding. */
async function quickFixFlow(ex, st) {
  const page = state.page;
  const file = join(state.ws, ex.file);
  assert.ok(st.line, 'the hover flow found the exploding line');
  const box = await wordBox(page, st.top, ex.layerCall);
  await page.mouse.click(box.x + 4, box.y + box.height / 2);
  await sleep(300);
  await page.keyboard.press('Control+.');
  const menu = page.locator('.action-widget');
  await menu.waitFor({ state: 'visible', timeout: 10_000 });
  await sleep(300);
  const rows = await menu.locator('.monaco-list-row').allInnerTexts();
  log(`quick fixes: ${rows.map((r) => r.replace(/\s+/g, ' ').trim()).join(' | ')}`);
  await shot(page, `${ex.shots}quickfix-menu`);
  let picked = '';
  for (let i = 0; i < rows.length + 2; i++) {
    const focused = (
      await menu
        .locator('.monaco-list-row.focused')
        .first()
        .innerText()
        .catch(() => '')
    ).trim();
    if (/He initialisation/.test(focused)) {
      picked = focused;
      break;
    }
    await page.keyboard.press('ArrowDown');
    await sleep(120);
  }
  assert.ok(picked, `the He initialisation fix in ${JSON.stringify(rows)}`);
  log(`picked: ${picked}`);
  await page.keyboard.press('Enter');
  await waitFor('the edit in the editor', async () => ex.fixedMark.test(await editorText(page)), 10_000);
  await shot(page, `${ex.shots}quickfix-applied-unsaved`);
  await page.keyboard.press('Control+s');
  const text = await waitFor(
    'the fixed file on disk',
    () => {
      const t = readFileSync(file, 'utf8');
      return t !== st.original ? t : null;
    },
    10_000,
  );
  const before = st.original.split('\n');
  log(
    `changed lines: ${text
      .split('\n')
      .filter((l, i) => l !== before[i])
      .map((l) => l.trim())
      .join(' | ')}`,
  );
  ex.checkFixed(text, st.original);
  st.fixed = text;
  await shot(page, `${ex.shots}quickfix-applied`);
  // Re-run: the explosion is gone.
  await trainAndInspect(page);
  const ended = await waitRunEnded(page);
  log(`re-run: ${ended}`);
  const findings = await waitFor(
    'the findings of the re-run',
    async () => {
      const t = await findingsText(page);
      return /Exploding/.test(t) || !/No problems found/.test(t) ? null : t;
    },
    20_000,
  );
  log(`findings after the fix: ${findings.replace(/\s+/g, ' ').slice(0, 200)}`);
  await shot(page, `${ex.shots}quickfix-rerun-panel`);
  await focusEditor(page, ex.file);
  const squiggles = await squigglyLines(page);
  log(`squiggly lines after the fix: ${JSON.stringify(squiggles.map((l) => l.text.trim().slice(0, 50)))}`);
  assert.equal(squiggles.filter((l) => l.text.includes(ex.layerCall)).length, 0, 'no squiggle on a layer line');
  await shot(page, `${ex.shots}quickfix-rerun-editor`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios (run in order; later ones use the state the earlier ones leave: the open editor, the panel).

const scenarios = [
  {
    name: '1. Train & inspect (TF.js): palette run, terminal output, panel heatmap + norm curve pixels, status bar; Stop Run leaves no process',
    run: () => trainFlow(EXAMPLES.tfjs),
  },
  {
    name: '2. Hover gradient warning (TF.js): squiggle on the layer line, hover shows "Exploding gradients" with numbers',
    async run() {
      await openFile(state.page, EXAMPLES.tfjs.file);
      await state.page.keyboard.press('Control+j'); // hide the bottom panel: more editor lines visible
      await sleep(300);
      await hoverFlow(EXAMPLES.tfjs, state.tfjs);
    },
  },
  {
    name: '3. Apply quick-fix remedy (TF.js): Ctrl+. → He initialisation, the file changes, re-run: no exploding finding',
    run: () => quickFixFlow(EXAMPLES.tfjs, state.tfjs),
  },
  {
    name: '4a. Train & inspect (PyTorch, exploding_init.py): palette run, terminal, panel pixels, status bar; Stop Run leaves no process',
    run: () => trainFlow(EXAMPLES.torch),
  },
  {
    name: '4b. Hover gradient warning (PyTorch): squiggle on self.fc1 = nn.Linear(…), hover shows "Exploding gradients in model.fc1" with numbers',
    async run() {
      await openFile(state.page, EXAMPLES.torch.file);
      await state.page.keyboard.press('Control+j');
      await sleep(300);
      await hoverFlow(EXAMPLES.torch, state.torch);
    },
  },
  {
    name: '4c. Apply quick-fix remedy (PyTorch): Ctrl+. → He initialisation replaces the init in the loop, re-run: no exploding finding',
    run: () => quickFixFlow(EXAMPLES.torch, state.torch),
  },
  {
    name: '6. Panel actions: the remedy button applies the same edit; Export report writes HTML that renders offline',
    async run() {
      const page = state.page;
      const file = join(state.ws, 'exploding-mlp.js');
      assert.ok(state.tfjs.fixed, "scenario 3 recorded the quick fix's text");
      writeFileSync(file, state.tfjs.original);
      await focusEditor(page, 'exploding-mlp.js');
      await waitFor('the editor to reload the original', async () => !/heNormal/.test(await editorText(page)), 10_000);
      await trainAndInspect(page);
      await waitRunEnded(page);
      const wv = webview(page);
      await waitFor('the panel to say Completed', async () => /Completed/.test(await wv.locator('body').innerText({ timeout: 1000 })), 15_000);
      await settledFindings(page);
      const btn = wv.locator('#gs-findings button', { hasText: /He initialisation/ }).first();
      await btn.waitFor({ timeout: 15_000 });
      await btn.scrollIntoViewIfNeeded();
      await shot(page, 'panel-remedy-button');
      log(`panel remedy: ${await btn.innerText()}`);
      await btn.click();
      try {
        await waitFor('the edit in the editor', async () => /heNormal/.test(await fileEditorText(page, 'exploding-mlp.js')), 10_000);
      } catch (e) {
        // What the host did with the click ("applied: …", "fix not applied (…)", or nothing at all),
        // and what the editor groups showed.
        log(`editor groups: ${JSON.stringify(await editorGroups(page).catch((x) => String(x)))}`);
        log(`GradScope log:\n${extensionLog(state.userData)}`);
        throw e;
      }
      await palette(page, 'File: Save All');
      const text = await waitFor(
        'the panel-fixed file on disk',
        () => {
          const t = readFileSync(file, 'utf8');
          return t !== state.tfjs.original ? t : null;
        },
        10_000,
      );
      assert.equal(text, state.tfjs.fixed, 'the panel applied the same edit as the quick fix');
      await shot(page, 'panel-remedy-applied');

      // Export report → the simple save dialog (a path box) → an HTML file that renders offline.
      const report = join(state.ws, 'e2e-report.html');
      // Applying the fix shows the file, possibly in the panel's editor group: bring the panel back by its tab.
      await page.locator('.tabs-container .tab', { hasText: 'GradScope: exploding-mlp.js' }).first().click();
      await wv.locator('#gs-export').waitFor({ state: 'visible', timeout: 15_000 });
      await wv.locator('#gs-export').click();
      const input = page.locator('.quick-input-widget input.input');
      await input.waitFor({ state: 'visible', timeout: 10_000 });
      await shot(page, 'export-dialog');
      await input.fill(report);
      await sleep(300);
      await page.keyboard.press('Enter');
      await waitFor('the report on disk', () => existsSync(report) && readFileSync(report, 'utf8').includes('</html>'), 15_000);
      await waitFor('the "report written" notification', async () => (await notifications(page)).some((t) => /report written/.test(t)), 10_000);
      await shot(page, 'export-written');
      const offline = await state.context.newPage();
      const requests = [];
      await offline.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith('file:') || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
        requests.push(url);
        return route.abort();
      });
      await offline.goto(`file://${report}`);
      const heat = await waitFor(
        "the report's heatmap drawn",
        async () => {
          const s = await canvasStats(offline.locator('body'), '#gs-heatmap canvas');
          return s.painted > 500 ? s : null;
        },
        15_000,
      );
      log(`report: ${readFileSync(report).length} bytes; heatmap ${heat.w}×${heat.h} ${heat.painted} painted, ${heat.magenta} magenta; blocked requests: ${requests.length}`);
      assert.deepEqual(requests, [], 'the report asks for nothing off the disk');
      await offline.screenshot({ path: join(SHOTS, 'report-offline.png') });
      await offline.close();
    },
  },
  {
    name: '7. Get started walkthrough: Welcome → GradScope walkthrough, "Open the exploding MLP" copies the installed example into the folder and opens it; the step is checked',
    async run() {
      const page = state.page;
      // A clear window for the screenshots: no editors, no terminal, no toasts.
      await palette(page, 'View: Close All Editors');
      if (await page.locator('.part.panel').isVisible()) await page.keyboard.press('Control+J');
      await palette(page, 'Notifications: Clear All Notifications');
      await palette(page, 'Welcome: Open Walkthrough...');
      const input = page.locator('.quick-input-widget input.input');
      await input.waitFor({ state: 'visible', timeout: 5000 });
      await input.fill('GradScope');
      await waitFor(
        'the GradScope walkthrough in the list',
        async () => /Get started with GradScope/.test(await page.locator('.quick-input-widget .monaco-list-row.focused').first().innerText({ timeout: 500 })),
        10_000,
      );
      await page.keyboard.press('Enter');
      const walkthrough = page.locator('.gettingStartedContainer');
      await waitFor('the walkthrough page', async () => /Get started with GradScope/.test(await walkthrough.innerText({ timeout: 1000 })), 15_000);
      const text = await walkthrough.innerText();
      for (const step of ['Open an example', 'Train & Inspect', 'Look at the heatmap', 'Apply a fix']) assert.ok(text.includes(step), `step "${step}" is listed`);
      await sleep(800);
      await shot(page, 'walkthrough');
      await walkthrough.locator('a, .monaco-button', { hasText: 'Open the exploding MLP' }).first().click();
      const copy = join(state.ws, 'gradscope-examples', 'tfjs', 'exploding-mlp.js');
      await waitFor('the example copied into the folder', () => existsSync(copy), 10_000);
      // The copy is the installed extension's example.
      assert.equal(readFileSync(copy, 'utf8'), readFileSync(join(state.extensionDir, 'examples', 'tfjs', 'exploding-mlp.js'), 'utf8'));
      await waitFor(
        'the copy open in an editor',
        async () => (await page.locator('.breadcrumbs-control').allInnerTexts()).some((t) => /gradscope-examples[\s\S]*exploding-mlp\.js/.test(t)),
        10_000,
      );
      await shot(page, 'walkthrough-example-opened');
      await page.locator('.tabs-container .tab', { hasText: 'Walkthrough' }).first().click();
      // The step's checkbox: a codicon marked .complete, keyed by the step id.
      await waitFor('the first step checked', async () => (await walkthrough.locator('.codicon.complete[data-done-step-id*="openExample"]').count()) >= 1, 10_000);
      await shot(page, 'walkthrough-step-done');
    },
  },
  {
    name: '8. First run without an interpreter: Train & Inspect on a .py says what to install, nothing runs; Choose Interpreter… saves gradscope.pythonPath and checks torch',
    async run() {
      const page = state.page;
      // gradscope.pythonPath is machine-scoped: in code-server it is read from the remote machine's settings.
      const settings = join(scratch, 'trusted', 'user-data', 'Machine', 'settings.json');
      const saved = existsSync(settings) ? readFileSync(settings, 'utf8') : '{}';
      const missingPython = join(scratch, 'no-such-python3');
      mkdirSync(join(settings, '..'), { recursive: true });
      writeFileSync(settings, JSON.stringify({ ...JSON.parse(saved), 'gradscope.pythonPath': missingPython }, null, 2));
      try {
        await sleep(3000);
        await openFile(page, 'exploding_init.py');
        await palette(page, 'GradScope: Train & Inspect');
        const note = await waitFor('the first-run notification', async () => (await notifications(page)).find((t) => /Install Python 3 and PyTorch/.test(t)), 20_000);
        log(`notification: ${note.replace(/\s+/g, ' ')}`);
        assert.match(note, /python3 -m pip install torch/);
        assert.ok(note.includes(missingPython), 'it names the interpreter it tried');
        assert.deepEqual(runProcesses(state.ws), [], 'no run process');
        await shot(page, 'first-run-no-python');
        await page.locator('.notification-toast .monaco-button', { hasText: 'Choose Interpreter' }).first().click();
        // The simple open dialog: a path box.
        const input = page.locator('.quick-input-widget input.input');
        await input.waitFor({ state: 'visible', timeout: 10_000 });
        // The dialog prefills the folder and completes as one types: replace the whole value, then
        // check it holds exactly the path (fill() alone was seen to end up as "<folder>//usr/bin/…").
        // Typing races the dialog's own completion now and then (seen once in stop 24): up to 3 tries,
        // each logged; what is tested is the extension's handling of the interpreter chosen.
        for (let attempt = 1; ; attempt++) {
          await input.click();
          await page.keyboard.press('Control+A');
          await page.keyboard.press('Backspace');
          await page.keyboard.type(TORCH_PYTHON, { delay: 10 });
          await page.keyboard.press('Delete'); // drops an inline completion the dialog may have selected
          try {
            await waitFor('the path typed in the dialog', async () => ((await input.inputValue()) === TORCH_PYTHON ? true : undefined), 5_000);
            break;
          } catch (e) {
            log(`typing the interpreter, try ${attempt}: the dialog holds ${JSON.stringify(await input.inputValue())}`);
            if (attempt >= 3) throw e;
          }
        }
        await sleep(300);
        await shot(page, 'first-run-choose-interpreter');
        await page.keyboard.press('Enter');
        const ok = await waitFor('the interpreter accepted', async () => (await notifications(page)).find((t) => /now run with/.test(t)), 20_000);
        log(`notification: ${ok.replace(/\s+/g, ' ')}`);
        assert.ok(ok.includes(TORCH_PYTHON) && /torch \d+\.\d+/.test(ok), ok);
        // Saved as a machine setting: the remote machine's settings (code-server), or the user's.
        const savedIn = [settings, join(scratch, 'trusted', 'user-data', 'User', 'settings.json')].filter(
          (f) => existsSync(f) && JSON.parse(readFileSync(f, 'utf8'))['gradscope.pythonPath'] === TORCH_PYTHON,
        );
        log(`gradscope.pythonPath saved in ${savedIn.join(', ')}`);
        assert.ok(savedIn.length, 'gradscope.pythonPath saved');
        await shot(page, 'first-run-interpreter-chosen');
      } finally {
        writeFileSync(settings, saved);
      }
    },
  },
  {
    name: '9. A distributed run in the panel: Train & Inspect on a script that starts 2 DDP ranks (mp.spawn) lists both; picking rank 1 switches the charts to its numbers',
    async run() {
      const page = state.page;
      writeFileSync(join(state.ws, 'ddp_spawn.py'), DDP_SPAWN);
      await openFile(page, 'ddp_spawn.py');
      await trainAndInspect(page);
      const ended = await waitRunEnded(page, 120_000);
      log(`status bar: ${ended}`);
      // The script's own process took no step; its ranks did: the status bar and the terminal say theirs.
      assert.match(ended, /GradScope: completed · 20 steps · rank 0 of 2/);
      // The run's last line reaches the terminal's rows a moment after the status bar changes (xterm
      // renders on its own frame): wait for it rather than read the rows once.
      const term = await waitFor(
        'the run summary in the terminal',
        async () => {
          const t = await terminalText(page);
          return /ranks seen/.test(t) ? t : null;
        },
        10_000,
      ).catch(async () => terminalText(page));
      assert.match(term, /2 ranks seen \(rank 0: 20 steps, rank 1: 20 steps\)/);
      assert.doesNotMatch(term, /no optimizer step was seen/);
      const wv = webview(page);
      const button = wv.locator('#gs-rank');
      const label = async () => (await button.textContent({ timeout: 1000 }).catch(() => ''))?.trim();
      await waitFor('the rank picker on rank 0', async () => ((await label()) === 'Rank 0 ▾' ? true : undefined), 20_000);
      // The norm chart's last point (the canvas says what it draws, data-series).
      const lastNorm = async () => JSON.parse((await wv.locator('#gs-norms canvas').first().getAttribute('data-series', { timeout: 1000 })) ?? '[]')[0]?.last ?? null;
      const before = await waitFor('the norm chart of rank 0', async () => ((await lastNorm()) > 0 ? lastNorm() : undefined), 10_000);
      await shot(page, 'ranks-panel-rank0');
      await button.click();
      const options = wv.locator('#gs-rank-list [role="option"]');
      await waitFor('both ranks listed', async () => ((await options.count()) === 2 ? true : undefined), 10_000);
      const texts = await options.allTextContents();
      log(`rank picker: ${texts.join(' / ')}`);
      assert.match(texts[0], /^Rank 0.*20 steps$/);
      assert.match(texts[1], /^Rank 1.*20 steps$/);
      await shot(page, 'ranks-panel-picker');
      await options.nth(1).click();
      await waitFor('the rank picker on rank 1', async () => ((await label()) === 'Rank 1 ▾' ? true : undefined), 15_000);
      // Rank 1's gradients are 100x rank 0's from step 10: so is the last point of its norm chart.
      const after = await waitFor(
        'the norm chart of rank 1',
        async () => {
          const y = await lastNorm();
          return y > 50 * before ? y : undefined;
        },
        15_000,
      );
      log(`norm chart, last point: rank 0 ${before}, rank 1 ${after}`);
      assert.match(await wv.locator('#gs-rank-findings').innerText(), /rank 1/);
      await shot(page, 'ranks-panel-rank1');
    },
  },
];

const UNTRUSTED = '5. Untrusted workspace: Train & Inspect from the palette says "Nothing ran…" and starts no process';
async function untrustedScenario() {
  const ws = makeWorkspace('workspace-untrusted');
  const wb = await startWorkbench({ scratch, name: 'untrusted', workspace: ws, trust: true, vsix: VSIX });
  workbenches.push(wb);
  const page = wb.page;
  state.page = page;
  // Restricted Mode: the status bar / banner says so.
  await waitFor('Restricted Mode', async () => /Restricted Mode/i.test(await page.locator('.statusbar, .workspace-trust-banner, .monaco-workbench').first().innerText()), 20_000);
  await openFile(page, 'train-forever.js');
  await shot(page, 'untrusted-opened');
  await palette(page, 'GradScope: Train & Inspect');
  const note = await waitFor('the "Nothing ran" warning', async () => (await notifications(page)).find((t) => /Nothing ran/.test(t)), 15_000);
  log(`notification: ${note.replace(/\s+/g, ' ')}`);
  assert.match(note, /not trusted/);
  await sleep(1500);
  assert.deepEqual(runProcesses(ws), [], 'no run process');
  assert.doesNotMatch(await statusBar(page), /GradScope: (step|starting)/i);
  await shot(page, 'untrusted-refused');
}

// ---------------------------------------------------------------------------------------------

const t0 = Date.now();
let passed = 0;
let failed = 0;
const hard = setTimeout(() => {
  console.error(`test:e2e:vscode: hard timeout after ${SUITE_TIMEOUT_S}s`);
  void cleanup().then(() => {
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(124);
  });
}, SUITE_TIMEOUT_S * 1000);

try {
  state.ws = makeWorkspace('workspace');
  const wb = await startWorkbench({ scratch, name: 'trusted', workspace: state.ws, vsix: VSIX });
  workbenches.push(wb);
  state.extensionDir = wb.extensionDir;
  state.userData = wb.userData;
  log(VSIX ? `GradScope installed from ${VSIX} into ${wb.extensionDir}` : `GradScope loaded as a development extension from ${ROOT}`);
  state.page = wb.page;
  state.context = wb.context;
  for (const k of ['tfjs', 'torch']) state[k].original = readFileSync(join(state.ws, EXAMPLES[k].file), 'utf8');
  log(`workbench ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  for (const s of scenarios) {
    if (ONLY && !ONLY.test(s.name)) continue;
    const started = Date.now();
    try {
      await s.run();
      passed++;
      console.log(`ok   ${s.name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      console.log(
        `FAIL ${s.name} (${((Date.now() - started) / 1000).toFixed(1)}s)\n     ${String(e?.stack ?? e)
          .split('\n')
          .slice(0, 6)
          .join('\n     ')}`,
      );
      await shot(state.page, 'FAILED').catch(() => {});
      if (state.page) log(`notifications: ${JSON.stringify(await notifications(state.page))}`);
      if (state.userData) log(`GradScope log (last lines):\n${extensionLog(state.userData, 15)}`);
    }
  }
  // 5. A separate code-server with Workspace Trust on and a fresh user-data-dir: the folder opens restricted.
  if (!ONLY || ONLY.test(UNTRUSTED)) {
    await wb.stop();
    const started = Date.now();
    try {
      await untrustedScenario();
      passed++;
      console.log(`ok   ${UNTRUSTED} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      console.log(
        `FAIL ${UNTRUSTED} (${((Date.now() - started) / 1000).toFixed(1)}s)\n     ${String(e?.stack ?? e)
          .split('\n')
          .slice(0, 6)
          .join('\n     ')}`,
      );
      await shot(state.page, 'FAILED').catch(() => {});
    }
  }
} catch (e) {
  failed++;
  console.log(`FAIL starting the workbench: ${e?.stack ?? e}`);
} finally {
  clearTimeout(hard);
  await cleanup();
}
console.log(`test:e2e:vscode: ${((Date.now() - t0) / 1000).toFixed(1)}s; screenshots in ${SHOTS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
