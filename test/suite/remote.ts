// GradScope: Listen for a Remote Run in the extension host: the command starts a listener (port 0:
// a free one) with a generated token; a real `python -m gradscope_probe --connect` from a copy of the
// example outside the workspace (a "remote machine" with another path) streams its run; the run is
// shown live in the panel, its layers mapped to the workspace's copy of the file, where its
// diagnostic lands; a wrong token is refused; Stop Listening ends it.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import type { GradScopeApi } from '../../src/features/context';
import type { RemoteRun } from '../../src/process/remoteRun';
import { activateExtension, waitFor, workspaceRoot } from './helpers';

const TORCH_PYTHON = process.env.GRADSCOPE_TEST_PYTHON || '/usr/bin/python3';

function connect(port: number, token: string, script: string, probeParent: string): Promise<{ code: number | null; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: probeParent, GRADSCOPE_TOKEN: token, PYTHONDONTWRITEBYTECODE: '1' };
  delete env.GRADSCOPE_CHANNEL_FD;
  return new Promise((resolve) => {
    const c = spawn(TORCH_PYTHON, ['-m', 'gradscope_probe', '--connect', `127.0.0.1:${port}`, script], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.once('exit', (code) => resolve({ code, stderr }));
  });
}

export function defineRemoteTests(): void {
  describe('GradScope: Listen for a Remote Run', function () {
    let api: GradScopeApi;
    let remoteRoot: string;
    let probeParent: string;

    before(async function () {
      if (!existsSync(TORCH_PYTHON)) {
        console.log(`(skipping the remote tests: ${TORCH_PYTHON} does not exist)`);
        this.skip();
      }
      api = await activateExtension();
      const ext = vscode.extensions.getExtension('gradscope.gradscope')!;
      probeParent = join(ext.extensionPath, 'dist', 'probe', 'torch');
      // The "remote machine": the workspace's examples under another root, same relative path.
      remoteRoot = mkdtempSync(join(tmpdir(), 'gradscope-remote-'));
      const there = join(remoteRoot, basename(workspaceRoot()), 'examples', 'torch');
      mkdirSync(there, { recursive: true });
      cpSync(join(workspaceRoot(), 'examples', 'torch', 'exploding_init.py'), join(there, 'exploding_init.py'));
    });

    after(async function () {
      if (!api) return;
      await vscode.commands.executeCommand('gradscope.stopListening');
      rmSync(remoteRoot, { recursive: true, force: true });
    });

    it('shows a remote run live, its diagnostic on the workspace copy of the file; refuses a wrong token', async function () {
      const state = await vscode.commands.executeCommand<{ port: number; token: string } | null>('gradscope.listenRemote', 0);
      assert.ok(state && state.port > 0 && state.token.length >= 16, `listening: ${JSON.stringify(state)}`);

      const refused = await connect(state.port, 'not-the-token', join(remoteRoot, basename(workspaceRoot()), 'examples', 'torch', 'exploding_init.py'), probeParent);
      assert.equal(refused.code, 0, refused.stderr);
      assert.match(refused.stderr, /refused the connection: wrong token/);
      assert.equal(api.remoteListen!().runs.length, 0);

      const remoteScript = join(remoteRoot, basename(workspaceRoot()), 'examples', 'torch', 'exploding_init.py');
      const done = connect(state.port, state.token, remoteScript, probeParent);
      const run = (await waitFor('the remote run to start', () => api.remoteListen!().runs[0], 60_000)) as RemoteRun;
      const local = join(workspaceRoot(), 'examples', 'torch', 'exploding_init.py');
      await waitFor('steps', () => run.store.stepCount > 0, 60_000);
      const panel = await waitFor('the panel to show the remote run', () => {
        const p = api.inspect().panel;
        return p.open && p.ready && p.runId === run.id && p.snapshots > 0 ? p : null;
      });
      assert.equal(panel.runId, run.id);
      const d = await done;
      assert.equal(d.code, 0, d.stderr);
      const exit = await run.done;
      console.log(`  remote run: ${exit.message} (${run.store.stepCount} steps)`);
      assert.ok(['completed', 'step-limit'].includes(exit.reason), exit.message);
      // Source paths mapped to the workspace's file (same relative path), and the diagnostic there.
      assert.equal(run.script, local);
      assert.ok(
        run.store.tensors.some((t) => t.source?.file === local),
        `a layer placed in the workspace: ${run.store.tensors.map((t) => t.source?.file).join(', ')}`,
      );
      const uri = vscode.Uri.file(local);
      const diag = await waitFor('the diagnostic in the workspace file', () => vscode.languages.getDiagnostics(uri).find((x) => x.source === 'GradScope'), 20_000);
      console.log(`  remote diagnostic line ${diag.range.start.line + 1}: ${diag.message.slice(0, 80)}…`);

      await vscode.commands.executeCommand('gradscope.stopListening');
      assert.equal(api.remoteListen!().port, null);
    });
  });
}
