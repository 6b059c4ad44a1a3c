// Untrusted workspace: Train & Inspect must refuse, say why, and start nothing.
import * as assert from 'node:assert/strict';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { TrainResult } from '../../src/features/commands';
import type { GradScopeApi } from '../../src/features/context';
import { activateExtension, screenshot, sleep, workspaceRoot } from './helpers';

export function defineTrustTests(): void {
  describe('GradScope in an untrusted workspace', function () {
    let api: GradScopeApi;

    before(async function () {
      api = await activateExtension();
    });

    it('the workspace is not trusted and the extension still activates (limited support)', function () {
      assert.equal(vscode.workspace.isTrusted, false);
      assert.ok(api);
    });

    it('Train & Inspect refuses with a message and starts nothing', async function () {
      let started = 0;
      const sub = api.onDidStartRun(() => started++);
      try {
        const uri = vscode.Uri.file(join(workspaceRoot(), 'train-forever.js'));
        await vscode.window.showTextDocument(uri);
        const terminalsBefore = vscode.window.terminals.length;
        // Invoked directly with a URI, as a keybinding or another extension could: the handler checks trust.
        const result = await vscode.commands.executeCommand<TrainResult>('gradscope.trainAndInspect', uri);
        assert.ok(result && !result.started, 'nothing started');
        assert.equal(result.reason, 'untrusted');
        assert.match(result.message, /not trusted/);
        await sleep(500);
        assert.equal(started, 0);
        assert.equal(api.currentRun(), undefined);
        assert.equal(api.inspect().running, false);
        assert.equal(vscode.window.terminals.length, terminalsBefore, 'no terminal opened');
        await screenshot('untrusted-refusal');
      } finally {
        sub.dispose();
      }
    });
  });
}
