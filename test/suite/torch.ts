// Trusted workspace: a PyTorch run through the palette path (Train & Inspect on a .py file), with
// the interpreter from the gradscope.pythonPath setting (no Python extension in this host):
// steps reach the host, the diagnostic lands on the layer the example marks (`# gs:layer KIND`),
// the panel gets its snapshot, a quick fix is offered; and an interpreter without torch ends the
// run "crashed" with a message naming it.
import * as assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { TrainResult } from '../../src/features/commands';
import type { GradScopeApi } from '../../src/features/context';
import type { RunSession } from '../../src/process/runSession';
import { activateExtension, waitFor, workspaceRoot } from './helpers';

// Debian's python3-torch; the `python3` first on PATH may lack torch. GRADSCOPE_TEST_PYTHON overrides.
const TORCH_PYTHON = process.env.GRADSCOPE_TEST_PYTHON || '/usr/bin/python3';

function ours(uri: vscode.Uri, code?: string): vscode.Diagnostic[] {
  return vscode.languages.getDiagnostics(uri).filter((d) => d.source === 'GradScope' && (code === undefined || d.code === code));
}

async function startRun(api: GradScopeApi, uri: vscode.Uri): Promise<RunSession> {
  const started = new Promise<RunSession>((r) => {
    const sub = api.onDidStartRun((s) => {
      sub.dispose();
      r(s);
    });
  });
  const result = await vscode.commands.executeCommand<TrainResult>('gradscope.trainAndInspect', uri);
  assert.ok(result?.started, `Train & Inspect did not start: ${JSON.stringify(result)}`);
  const run = await started;
  assert.equal(run.id, result.runId);
  return run;
}

export function defineTorchTests(): void {
  describe('PyTorch through the palette (examples/torch/exploding_init.py)', function () {
    let api: GradScopeApi;
    let scratch: string;
    // pythonPath is machine-scoped: VS Code reads it from user settings only, so the test sets it there.
    const setPython = (p: string | undefined) => vscode.workspace.getConfiguration('gradscope').update('pythonPath', p, vscode.ConfigurationTarget.Global);

    before(async function () {
      if (!existsSync(TORCH_PYTHON)) {
        console.log(`(skipping the PyTorch tests: ${TORCH_PYTHON} does not exist)`);
        this.skip();
      }
      api = await activateExtension();
      scratch = mkdtempSync(join(tmpdir(), 'gradscope-torch-suite-'));
      const config = vscode.workspace.getConfiguration('gradscope');
      await config.update('maxSteps', 30, vscode.ConfigurationTarget.Workspace);
      await config.update('timeoutSeconds', 90, vscode.ConfigurationTarget.Workspace);
    });

    afterEach(async function () {
      const live = api?.currentRun();
      if (live) await live.stop();
    });

    after(async function () {
      if (!api) return;
      await setPython(undefined);
      await vscode.workspace.getConfiguration('gradscope').update('maxSteps', undefined, vscode.ConfigurationTarget.Workspace);
      await vscode.commands.executeCommand('gradscope.clearDiagnostics');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('runs with gradscope.pythonPath: steps on the cpu backend, the diagnostic on the marked layer, the panel, a quick fix', async function () {
      await setPython(TORCH_PYTHON);
      const file = join(workspaceRoot(), 'examples', 'torch', 'exploding_init.py');
      assert.ok(existsSync(file), `${file} is in the workspace`);
      const uri = vscode.Uri.file(file);
      const doc = await vscode.workspace.openTextDocument(uri);
      await vscode.window.showTextDocument(doc, vscode.ViewColumn.One);
      const marked = doc
        .getText()
        .split('\n')
        .findIndex((l) => /#\s*gs:layer\s+exploding-gradient\b/.test(l));
      assert.ok(marked >= 0, 'the example marks the layer (# gs:layer exploding-gradient)');

      const t0 = Date.now();
      const run = await startRun(api, uri);
      await waitFor('steps to reach the host', () => run.store.stepCount > 0 || run.exited, 60_000);
      assert.ok(run.store.stepCount > 0, `no steps reached the host (ended: ${run.exited})`);
      const hello = run.store.hello;
      assert.ok(hello, 'HELLO reached the store');
      assert.equal(hello.framework, 'torch');
      assert.equal(hello.backend, 'cpu');
      const exit = await run.done;
      console.log(`  torch run: ${exit.message} (${Date.now() - t0} ms, ${run.store.stepCount} steps)`);
      assert.ok(['step-limit', 'completed'].includes(exit.reason), exit.message);

      const found = run.findings.find((f) => f.kind === 'exploding-gradient');
      assert.ok(found, `no exploding-gradient finding: ${run.findings.map((f) => f.kind).join(', ')}`);
      const diag = await waitFor('the exploding-gradient diagnostic', () => ours(uri, 'exploding-gradient')[0], 10_000);
      assert.equal(diag.range.start.line, marked, `diagnostic on line ${diag.range.start.line + 1}, the example marks ${marked + 1}`);
      assert.match(doc.lineAt(marked).text, /nn\.Linear\(/);
      assert.equal(diag.severity, vscode.DiagnosticSeverity.Error);
      console.log(`  diagnostic line ${diag.range.start.line + 1}: ${diag.message.slice(0, 100)}…`);

      // The panel opened with the run (it follows a new run) and received its snapshot.
      const panel = await waitFor(
        "the panel to have the run's snapshot",
        () => {
          const p = api.inspect().panel;
          return p.open && p.ready && p.runId === run.id && p.snapshots > 0 ? p : null;
        },
        20_000,
      );
      assert.equal(panel.runId, run.id);

      const all =
        (await vscode.commands.executeCommand<(vscode.CodeAction | vscode.Command)[]>('vscode.executeCodeActionProvider', uri, diag.range, vscode.CodeActionKind.QuickFix.value)) ?? [];
      for (const a of all) console.log(`  action: ${a.title}${(a as vscode.CodeAction).disabled ? ` (disabled: ${(a as vscode.CodeAction).disabled!.reason})` : ''}`);
      const fixes = all.filter((a): a is vscode.CodeAction => typeof (a as vscode.CodeAction).command === 'object' && (a as vscode.CodeAction).command!.command === 'gradscope.applyRemedy');
      const titles = fixes.map((a) => a.title);
      assert.ok(
        titles.some((t) => /kaiming|xavier|clip_grad_norm_|Clip gradients/i.test(t)),
        `an init or clipping fix: ${titles.join(', ')}`,
      );
      assert.equal(doc.isDirty, false);
    });

    it('a NaN from log(0): the "Locate the first non-finite operation" code action re-runs it and moves the diagnostic to the log on its line', async function () {
      await setPython(TORCH_PYTHON);
      await vscode.workspace.getConfiguration('gradscope').update('maxSteps', 100, vscode.ConfigurationTarget.Workspace);
      const file = join(workspaceRoot(), 'examples', 'torch', 'nan_loss_log0.py');
      const uri = vscode.Uri.file(file);
      const doc = await vscode.workspace.openTextDocument(uri);
      await vscode.window.showTextDocument(doc, vscode.ViewColumn.One);
      const logLine = doc
        .getText()
        .split('\n')
        .findIndex((l) => /torch\.log\(p\)/.test(l));
      assert.ok(logLine >= 0, 'the example has its log line');
      const run = await startRun(api, uri);
      await run.done;
      const diag = await waitFor('the non-finite diagnostic', () => ours(uri, 'non-finite-gradient')[0], 10_000);
      const all =
        (await vscode.commands.executeCommand<(vscode.CodeAction | vscode.Command)[]>('vscode.executeCodeActionProvider', uri, diag.range, vscode.CodeActionKind.QuickFix.value)) ?? [];
      const locate = all.find((a): a is vscode.CodeAction => typeof (a as vscode.CodeAction).command === 'object' && (a as vscode.CodeAction).command!.command === 'gradscope.locateNan');
      assert.ok(locate, `a locate action among: ${all.map((a) => a.title).join(', ')}`);
      assert.equal(locate.disabled, undefined);
      const t0 = Date.now();
      const out = await vscode.commands.executeCommand<{ located: boolean; message: string }>(locate.command!.command, ...((locate.command!.arguments ?? []) as unknown[]));
      console.log(`  locate: ${out?.message} (${Date.now() - t0} ms)`);
      assert.equal(out?.located, true, out?.message);
      const moved = await waitFor('the diagnostic on the log line', () => ours(uri, 'non-finite-gradient').find((d) => d.range.start.line === logLine), 10_000);
      assert.match(moved.message, /\blog\b/);
      const fixes =
        (await vscode.commands.executeCommand<(vscode.CodeAction | vscode.Command)[]>('vscode.executeCodeActionProvider', uri, moved.range, vscode.CodeActionKind.QuickFix.value)) ?? [];
      console.log(`  actions on the log line: ${fixes.map((a) => a.title).join(' | ')}`);
      assert.ok(
        fixes.some((a) => /eps|clamp/i.test(a.title)),
        `a guard for the log among: ${fixes.map((a) => a.title).join(', ')}`,
      );
      await vscode.workspace.getConfiguration('gradscope').update('maxSteps', 30, vscode.ConfigurationTarget.Workspace);
    });

    it('an interpreter without torch: nothing starts, and the message names it, what to install and how to pick another', async function () {
      const fake = join(scratch, 'python-without-torch');
      writeFileSync(fake, '#!/bin/sh\necho "ModuleNotFoundError: No module named \'torch\'" >&2\nexit 1\n');
      chmodSync(fake, 0o755);
      await setPython(fake);
      const uri = vscode.Uri.file(join(workspaceRoot(), 'examples', 'torch', 'exploding_init.py'));
      let startedRun = false;
      const sub = api.onDidStartRun(() => (startedRun = true));
      try {
        // The first-run check refuses before a process is spawned (it used to start and crash).
        const result = await vscode.commands.executeCommand<TrainResult>('gradscope.trainAndInspect', uri);
        assert.ok(result && !result.started, `Train & Inspect started: ${JSON.stringify(result)}`);
        assert.equal(result.reason, 'failed');
        assert.ok(result.message.includes(fake), `the message names ${fake}: ${result.message}`);
        assert.match(result.message, /PyTorch is not installed/);
        assert.match(result.message, /-m pip install torch/);
        assert.match(result.message, /gradscope\.pythonPath/);
        assert.equal(startedRun, false, 'no run was started');
        console.log(`  ${result.message}`);
      } finally {
        sub.dispose();
      }
    });
  });
}
