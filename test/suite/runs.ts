// Trusted workspace: Train & Inspect runs real scripts through the extension, end to end.
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { GradScopeApi } from '../../src/features/context';
import type { TrainResult } from '../../src/features/commands';
import type { RunExit, RunSession } from '../../src/process/runSession';
import { processGroupAlive } from '../../src/process/killTree';
import { activateExtension, screenshot, sleep, waitFor, workspaceRoot } from './helpers';

const LIVE_STATUS = /^\$\(pulse\) GradScope: step (\d+) · ‖g‖ \S+ · \S+/;

async function openAndRun(api: GradScopeApi, file: string): Promise<{ run: RunSession; output: () => string }> {
  const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
  await vscode.window.showTextDocument(doc);
  let text = '';
  const started = new Promise<RunSession>((resolve) => {
    const sub = api.onDidStartRun((run) => {
      sub.dispose();
      // Subscribed synchronously on start: nothing the script prints is missed.
      run.onOutput((c) => (text += c.text));
      resolve(run);
    });
  });
  const result = await vscode.commands.executeCommand<TrainResult>('gradscope.trainAndInspect');
  assert.ok(result && result.started, `Train & Inspect did not start: ${JSON.stringify(result)}`);
  const run = await started;
  assert.equal(api.currentRun(), run);
  assert.equal(run.id, result.runId);
  return { run, output: () => text };
}

async function stopAndCheck(api: GradScopeApi, run: RunSession): Promise<RunExit> {
  const pid = run.pid;
  assert.ok(pid, 'the run has a pid');
  const exit = await vscode.commands.executeCommand<RunExit>('gradscope.stopRun');
  assert.ok(exit, 'Stop Run returned the exit');
  assert.equal(exit.reason, 'stopped', exit.message);
  assert.equal(api.currentRun(), undefined);
  // The run's process group (its own, spawned detached) is gone.
  await waitFor(`process group ${pid} to be gone`, () => !processGroupAlive(pid), 5_000);
  return exit;
}

export function defineRunTests(): void {
  describe('GradScope in a real VS Code (trusted workspace)', function () {
    let api: GradScopeApi;
    /** The exploding example's run (the theme test), for the follow-the-editor test. */
    let explodingRunId = '';

    before(async function () {
      api = await activateExtension();
      // Keep runs short and bounded whatever the examples do.
      await vscode.workspace.getConfiguration('gradscope').update('timeoutSeconds', 90, vscode.ConfigurationTarget.Workspace);
    });

    afterEach(async function () {
      const live = api.currentRun();
      if (live) await live.stop();
    });

    it('activates and registers both commands', async function () {
      const commands = await vscode.commands.getCommands(true);
      assert.ok(commands.includes('gradscope.trainAndInspect'));
      assert.ok(commands.includes('gradscope.stopRun'));
      assert.equal(vscode.workspace.isTrusted, true);
      assert.equal(api.currentRun(), undefined);
    });

    it('Train & Inspect on the exploding MLP: steps reach the host, the terminal shows its output, the status bar a step; Stop Run stops it', async function () {
      const example = join(workspaceRoot(), 'examples', 'tfjs', 'exploding-mlp.js');
      const file = existsSync(example) ? example : join(workspaceRoot(), 'train-forever.js');
      if (file !== example) console.log(`(examples/tfjs/exploding-mlp.js is missing; using ${file})`);
      const { run, output } = await openAndRun(api, file);
      const name = `GradScope: ${file.split('/').pop()}`;

      await waitFor('steps to reach the host', () => run.store.stepCount > 0 || run.exited, 60_000);
      assert.ok(run.store.stepCount > 0, `no steps reached the host (run ended: ${run.exited})`);
      assert.ok(run.store.hello, 'HELLO reached the store');
      assert.ok(
        vscode.window.terminals.some((t) => t.name === name),
        `a terminal named "${name}" exists`,
      );
      assert.equal(api.inspect().terminalName, name);
      const printed = await waitFor('the script to print something', () => output().trim(), 30_000);
      const firstLine = printed.split('\n')[0].trim();
      await waitFor('the terminal to receive the script output', () => api.inspect().terminalText.includes(firstLine), 5_000);

      // The example is short (80 steps): it may finish before we look. Either the status bar shows
      // the live step, or it shows how the run ended.
      const seen = await waitFor(
        'the status bar to show a step (or the end of the run)',
        () => LIVE_STATUS.exec(api.inspect().statusText) ?? (run.exited && /GradScope: (completed|step limit|crashed)/.test(api.inspect().statusText) ? 'ended' : null),
        10_000,
      );
      if (seen !== 'ended' && !run.exited) {
        assert.ok(Number(seen[1]) > 0);
        await screenshot('run-live');
        if (!run.exited) {
          const exit = await stopAndCheck(api, run);
          assert.match(api.inspect().statusText, /GradScope: stopped/);
          assert.match(api.inspect().terminalText, /stopped by the user/);
          console.log(`exploding MLP: ${exit.message}`);
          return;
        }
      }
      const exit = await run.done;
      console.log(`exploding MLP ended by itself before Stop: ${exit.message}`);
      assert.ok(['completed', 'step-limit', 'crashed'].includes(exit.reason));
    });

    it('Stop Run stops a live run (SIGTERM to its group) and says so in the terminal and status bar', async function () {
      const { run } = await openAndRun(api, join(workspaceRoot(), 'train-forever.js'));
      await waitFor('three steps', () => run.store.stepCount >= 3 || run.exited, 60_000);
      assert.equal(run.exited, false, 'train-forever.js ended by itself');
      await waitFor('the status bar to show a step', () => LIVE_STATUS.test(api.inspect().statusText), 5_000);
      const ended = new Promise<RunExit>((r) => {
        const sub = api.onDidEndRun((e) => {
          sub.dispose();
          r(e.exit);
        });
      });
      const exit = await stopAndCheck(api, run);
      assert.equal((await ended).reason, 'stopped');
      assert.ok(exit.steps >= 3);
      assert.match(api.inspect().statusText, /^\$\(debug-stop\) GradScope: stopped · \d+ steps?/);
      assert.match(api.inspect().terminalText, /stopped by the user/);
      // Stop Run again is harmless.
      const again = await vscode.commands.executeCommand<RunExit | undefined>('gradscope.stopRun');
      assert.equal(again, undefined);
    });

    it('the inspection panel opens when a run starts, gets the snapshot after its ready handshake, then live appends', async function () {
      const { run } = await openAndRun(api, join(workspaceRoot(), 'train-forever.js'));
      await waitFor('the panel to show this run', () => api.inspect().panel.open && api.inspect().panel.runId === run.id, 20_000);
      await waitFor('the webview to post ready and receive the snapshot', () => api.inspect().panel.ready && api.inspect().panel.snapshots >= 1, 30_000);
      await waitFor('steps', () => run.store.stepCount >= 3 || run.exited, 60_000);
      await waitFor('live appends to reach the webview', () => api.inspect().panel.appends >= 1, 10_000);
      await screenshot('panel-live');
      await stopAndCheck(api, run);
    });

    it('the panel during the exploding example, in the dark and the light theme (screenshots)', async function () {
      const example = join(workspaceRoot(), 'examples', 'tfjs', 'exploding-mlp.js');
      const { run } = await openAndRun(api, example);
      explodingRunId = run.id;
      await waitFor('the panel to show this run', () => api.inspect().panel.runId === run.id && api.inspect().panel.snapshots >= 1, 30_000);
      await waitFor('the run to go non-finite', () => run.store.summary().firstNonFiniteStep !== null || run.exited, 60_000);
      await waitFor('the exploding finding', () => run.findings.some((f) => f.kind === 'exploding-gradient') || run.exited, 30_000);
      assert.ok(
        run.findings.some((f) => f.kind === 'exploding-gradient'),
        'the live analyzer flagged the explosion',
      );
      await vscode.commands.executeCommand('gradscope.showPanel');
      const config = vscode.workspace.getConfiguration('workbench');
      for (const [theme, name] of [
        ['Default Dark Modern', 'panel-exploding-dark'],
        ['Default Light Modern', 'panel-exploding-light'],
      ] as const) {
        await config.update('colorTheme', theme, vscode.ConfigurationTarget.Global);
        await sleep(1500);
        await screenshot(name);
      }
      await config.update('colorTheme', undefined, vscode.ConfigurationTarget.Global);
      if (!run.exited) await stopAndCheck(api, run);
    });

    it('a script that throws ends "crashed" with the user\'s frame', async function () {
      const file = join(workspaceRoot(), 'crash.js');
      const { run, output } = await openAndRun(api, file);
      const exit = await Promise.race([run.done, sleep(60_000).then(() => undefined)]);
      assert.ok(exit, 'the crashing run ended within 60 s');
      assert.equal(exit.reason, 'crashed', exit.message);
      assert.match(exit.error?.message ?? '', /boom from the training script/);
      assert.ok(exit.error?.frame, 'the crash names the user frame');
      assert.equal(exit.error.frame.file, file);
      assert.equal(exit.error.frame.line, 11);
      assert.match(output(), /crash: about to fail/);
      assert.match(api.inspect().statusText, /^\$\(error\) GradScope: crashed/);
      assert.match(api.inspect().terminalText, /boom from the training script/);
      assert.equal(api.currentRun(), undefined);
      assert.equal(processGroupAlive(run.pid), false);
    });

    it("with no run live, the panel follows the active editor to that script's latest run", async function () {
      assert.ok(explodingRunId, 'the exploding example ran in an earlier test');
      const crash = join(workspaceRoot(), 'crash.js');
      const { run } = await openAndRun(api, crash);
      await run.done;
      await waitFor('the panel to show the crash run', () => api.inspect().panel.runId === run.id, 10_000);
      const example = vscode.Uri.file(join(workspaceRoot(), 'examples', 'tfjs', 'exploding-mlp.js'));
      await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(example));
      await waitFor('the panel to follow to the exploding run', () => api.inspect().panel.runId === explodingRunId, 10_000);
      await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(vscode.Uri.file(crash)));
      await waitFor('the panel to follow back to the crash run', () => api.inspect().panel.runId === run.id, 10_000);
      // Off: the panel stays where it is.
      await vscode.workspace.getConfiguration('gradscope').update('panel.followEditor', false, vscode.ConfigurationTarget.Workspace);
      try {
        await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(example));
        await sleep(1500);
        assert.equal(api.inspect().panel.runId, run.id);
      } finally {
        await vscode.workspace.getConfiguration('gradscope').update('panel.followEditor', undefined, vscode.ConfigurationTarget.Workspace);
      }
    });
  });
}
