// Trusted workspace: a real run of the exploding MLP → diagnostics on the layer's line, the hover's
// numbers, quick fixes that edit the file (and refuse a changed document), diagnostics that follow
// edits and never go stale, and the panel's remedy path applying the same edit.
import * as assert from 'node:assert/strict';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { Finding } from '../../src/core/analysis/finding';
import type { TrainResult } from '../../src/features/commands';
import type { GradScopeApi } from '../../src/features/context';
import type { ApplyOutcome, RemedyArgs, VerifyOutcome } from '../../src/features/remedies';
import type { RunSession } from '../../src/process/runSession';
import { activateExtension, screenshot, sleep, waitFor, workspaceRoot } from './helpers';

function ours(uri: vscode.Uri, code?: string): vscode.Diagnostic[] {
  return vscode.languages.getDiagnostics(uri).filter((d) => d.source === 'GradScope' && (code === undefined || d.code === code));
}

/**
 * Brings the document back to `text` with the smallest edits: line by line when the line count is
 * the same (as an undo of per-line fixes would), so anchors on lines in between survive.
 */
async function restore(doc: vscode.TextDocument, text: string): Promise<void> {
  const cur = doc.getText();
  if (cur === text) return;
  const want = text.split('\n');
  const edit = new vscode.WorkspaceEdit();
  if (want.length === doc.lineCount) {
    want.forEach((l, i) => {
      if (doc.lineAt(i).text !== l) edit.replace(doc.uri, doc.lineAt(i).range, l);
    });
  } else {
    let a = 0;
    while (a < cur.length && a < text.length && cur[a] === text[a]) a++;
    let b = 0;
    while (b < cur.length - a && b < text.length - a && cur[cur.length - 1 - b] === text[text.length - 1 - b]) b++;
    edit.replace(doc.uri, new vscode.Range(doc.positionAt(a), doc.positionAt(cur.length - b)), text.slice(a, text.length - b));
  }
  assert.ok(await vscode.workspace.applyEdit(edit), 'restore edit applied');
  assert.equal(doc.getText(), text);
}

function hoverText(hovers: vscode.Hover[] | undefined): string {
  return (hovers ?? [])
    .flatMap((h) => h.contents)
    .map((c) => (typeof c === 'string' ? c : 'value' in c ? c.value : ''))
    .join('\n');
}

async function codeActions(uri: vscode.Uri, range: vscode.Range): Promise<vscode.CodeAction[]> {
  const all = (await vscode.commands.executeCommand<(vscode.CodeAction | vscode.Command)[]>('vscode.executeCodeActionProvider', uri, range, vscode.CodeActionKind.QuickFix.value)) ?? [];
  return all.filter((a): a is vscode.CodeAction => {
    const c = (a as vscode.CodeAction).command;
    return typeof c === 'object' && (c.command === 'gradscope.applyRemedy' || c.command === 'gradscope.verifyFix');
  });
}

export function defineDiagnosisTests(): void {
  describe('Diagnostics, hover and quick fixes (real run of examples/tfjs/exploding-mlp.js)', function () {
    let api: GradScopeApi;
    let file: string;
    let uri: vscode.Uri;
    let doc: vscode.TextDocument;
    let original: string;
    let run: RunSession;
    let exploding: Finding;
    let diag: vscode.Diagnostic;
    let heFixedText = '';

    before(async function () {
      api = await activateExtension();
      const config = vscode.workspace.getConfiguration('gradscope');
      await config.update('maxSteps', 20, vscode.ConfigurationTarget.Workspace);
      await config.update('timeoutSeconds', 90, vscode.ConfigurationTarget.Workspace);
      file = join(workspaceRoot(), 'examples', 'tfjs', 'exploding-mlp.js');
      uri = vscode.Uri.file(file);
      doc = await vscode.workspace.openTextDocument(uri);
      await vscode.window.showTextDocument(doc, vscode.ViewColumn.One);
      original = doc.getText();
    });

    after(async function () {
      await restore(doc, original);
      await doc.save();
      await vscode.workspace.getConfiguration('gradscope').update('maxSteps', undefined, vscode.ConfigurationTarget.Workspace);
      await vscode.commands.executeCommand('gradscope.clearDiagnostics');
    });

    it('a run puts an exploding-gradient diagnostic on the line that builds the layer', async function () {
      const t0 = Date.now();
      const started = new Promise<RunSession>((r) => {
        const sub = api.onDidStartRun((s) => {
          sub.dispose();
          r(s);
        });
      });
      const result = await vscode.commands.executeCommand<TrainResult>('gradscope.trainAndInspect', uri);
      assert.ok(result?.started, JSON.stringify(result));
      run = await started;
      const exit = await run.done;
      console.log(`run: ${exit.message} (${Date.now() - t0} ms)`);
      const found = run.findings.find((f) => f.kind === 'exploding-gradient');
      assert.ok(found, `no exploding finding: ${run.findings.map((f) => f.kind).join(', ')}`);
      exploding = found;
      assert.ok(exploding.source, 'the finding names a source line');
      diag = await waitFor('the exploding-gradient diagnostic', () => ours(uri, 'exploding-gradient')[0], 10_000);
      // The line of the layer in the file: one of the `model.add(tf.layers.dense(` lines.
      const line = diag.range.start.line;
      assert.equal(line, exploding.source.line - 1);
      assert.match(doc.lineAt(line).text, /tf\.layers\.dense\(/);
      assert.equal(diag.range.start.character, doc.lineAt(line).text.indexOf('tf.layers.dense('));
      assert.equal(diag.severity, vscode.DiagnosticSeverity.Error);
      assert.match(diag.message, /Exploding gradients in dense_Dense\d/);
      assert.match(diag.message, /growthFactor [\d.]+/);
      for (const d of ours(uri)) console.log(`  diagnostic line ${d.range.start.line + 1} [${typeof d.code === 'object' ? String(d.code.value) : d.code}] ${d.message.slice(0, 100)}…`);
    });

    it("hover on that line shows the layer's gradient statistics, a sparkline and the panel link", async function () {
      const pos = diag.range.start.translate(0, 3);
      const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, pos);
      const text = hoverText(hovers);
      assert.match(text, new RegExp(`GradScope · ${exploding.layer!.replace(/_/g, '\\\\_')}`));
      assert.match(text, /‖g‖ last \*\*(?:[\d.e+-]+|NaN|[+-]Inf)\*\* \(step \d+\)/);
      assert.match(text, /max \*\*[\d.e+-]+\*\* \(step \d+\)/);
      assert.match(text, /first non-finite step \*\*\d+\*\*/);
      assert.match(text, /update ratio ‖Δw‖\/‖w‖ \*\*[\d.e+-]+\*\* \(step \d+/);
      assert.match(text, /data:image\/svg\+xml;base64,/);
      assert.match(text, /[▁▂▃▄▅▆▇█]/);
      assert.match(text, /command:gradscope\.showPanel\?/);
      assert.match(text, /exploding-gradient/);
      // And the squiggle with its hover, as a person sees it.
      await vscode.commands.executeCommand('workbench.action.closePanel');
      const editor = await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.One, preserveFocus: false });
      await vscode.commands.executeCommand('workbench.action.focusActiveEditorGroup');
      editor.selection = new vscode.Selection(pos, pos);
      editor.revealRange(new vscode.Range(Math.max(0, pos.line - 12), 0, pos.line, 0), vscode.TextEditorRevealType.AtTop);
      await sleep(300);
      await vscode.commands.executeCommand('editor.action.showHover');
      await sleep(1500);
      await screenshot('diagnosis-hover');
      // Left of the squiggle (on `model.add(`) the hover holds only GradScope's layer statistics.
      await vscode.commands.executeCommand('editor.action.hideHover').then(undefined, () => undefined);
      editor.selection = new vscode.Selection(pos.line, 2, pos.line, 2);
      await vscode.commands.executeCommand('editor.action.showHover');
      await sleep(1500);
      await screenshot('diagnosis-hover-stats');
      await vscode.commands.executeCommand('editor.action.hideHover').then(undefined, () => undefined);
    });

    it('the hover link opens the panel at that layer', async function () {
      await vscode.commands.executeCommand('gradscope.showPanel', { layer: exploding.layer, runId: run.id });
      await waitFor('the panel to be open and ready', () => api.inspect().panel.open && api.inspect().panel.ready, 20_000);
      await vscode.window.showTextDocument(doc, vscode.ViewColumn.One);
    });

    it('quick fixes offer the remedies of the finding, and verifying one re-runs the script', async function () {
      const actions = await codeActions(uri, diag.range);
      const titles = actions.map((a) => a.title);
      console.log(`  quick fixes: ${titles.join(' | ')}`);
      assert.ok(
        titles.some((t) => /heNormal|He init/i.test(t)),
        `an init fix: ${titles.join(', ')}`,
      );
      assert.ok(
        titles.some((t) => /^Verify fix \(re-run \d+ steps\): /.test(t)),
        'a verify action',
      );
      assert.ok(
        titles.some((t) => /^Clip gradients by global norm/.test(t)),
        `a clipping fix: ${titles.join(', ')}`,
      );
      const editor = await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.One, preserveFocus: false });
      await vscode.commands.executeCommand('workbench.action.focusActiveEditorGroup');
      editor.selection = new vscode.Selection(diag.range.start, diag.range.start);
      await vscode.commands.executeCommand('editor.action.quickFix');
      await sleep(1000);
      await screenshot('diagnosis-quickfix');
      await vscode.commands.executeCommand('hideCodeActionWidget').then(undefined, () => undefined);

      const verify = actions.find((a) => a.command?.command === 'gradscope.verifyFix')!;
      const t0 = Date.now();
      const outcome = await vscode.commands.executeCommand<VerifyOutcome>('gradscope.verifyFix', { ...(verify.command!.arguments![0] as RemedyArgs), prompt: false });
      console.log(
        `  verify: ${outcome.message} (${Date.now() - t0} ms); before max ${outcome.before?.maxNorm}, first non-finite ${outcome.before?.firstNonFiniteStep}; after max ${outcome.after?.maxNorm}, first non-finite ${outcome.after?.firstNonFiniteStep}`,
      );
      assert.equal(outcome.verified, true, outcome.message);
      assert.ok(outcome.before && outcome.after);
      assert.ok(outcome.before.firstNonFiniteStep !== null, 'the original run goes non-finite');
      assert.equal(doc.getText(), original, 'verifying does not edit the document');
    });

    it("a quick fix computed before an edit is refused; recomputed, it edits the layer's line", async function () {
      const stale = (await codeActions(uri, diag.range)).find((a) => a.command?.command === 'gradscope.applyRemedy' && /heNormal/.test(a.title));
      assert.ok(stale, 'the He init action');
      // Someone types at the end of the file before the fix is applied.
      const edit = new vscode.WorkspaceEdit();
      edit.insert(uri, doc.positionAt(doc.getText().length), '// a note\n');
      await vscode.workspace.applyEdit(edit);
      const refused = await vscode.commands.executeCommand<ApplyOutcome>(stale.command!.command, ...(stale.command!.arguments as unknown[]));
      assert.equal(refused.applied, false);
      assert.equal(refused.applied === false && refused.reason, 'changed');
      assert.equal(doc.getText(), original + '// a note\n', "nothing but the user's edit");
      await restore(doc, original);

      const fresh = (await codeActions(uri, ours(uri, 'exploding-gradient')[0].range)).find((a) => a.command?.command === 'gradscope.applyRemedy' && /heNormal/.test(a.title))!;
      const applied = await vscode.commands.executeCommand<ApplyOutcome>(fresh.command!.command, ...(fresh.command!.arguments as unknown[]));
      assert.equal(applied.applied, true, JSON.stringify(applied));
      const line = diag.range.start.line;
      assert.match(doc.lineAt(line).text, /kernelInitializer: 'heNormal'/);
      // The engine also fixes the layers that share the bad initializer; nothing else changes.
      const before = original.split('\n');
      const after = doc.getText().split('\n');
      assert.equal(after.length, before.length);
      for (let i = 0; i < before.length; i++) {
        if (after[i] !== before[i]) assert.match(after[i], /tf\.layers\.dense\(.*kernelInitializer: 'heNormal'/, `line ${i + 1}: ${after[i]}`);
      }
      heFixedText = doc.getText();
      await restore(doc, original);
    });

    it('gradscope.applyRemedy from the panel path ({runId, findingId, remedyId}) applies the same edit', async function () {
      await waitFor('the diagnostic back after the restore', () => ours(uri, 'exploding-gradient')[0], 5_000);
      const outcome = await vscode.commands.executeCommand<ApplyOutcome>('gradscope.applyRemedy', { runId: run.id, findingId: exploding.id, remedyId: 'he-init' });
      assert.equal(outcome.applied, true, JSON.stringify(outcome));
      assert.equal(doc.getText(), heFixedText);
      await restore(doc, original);
      const unknown = await vscode.commands.executeCommand<ApplyOutcome>('gradscope.applyRemedy', { runId: 'no-such-run', findingId: exploding.id, remedyId: 'he-init' });
      assert.equal(unknown.applied, false);
    });

    it('edits above move the diagnostic; an edit that changes its line hides it; it never points at a stale line', async function () {
      const d0 = await waitFor('the diagnostic', () => ours(uri, 'exploding-gradient')[0], 5_000);
      const line0 = d0.range.start.line;
      const lineText = doc.lineAt(line0).text;
      // Two lines inserted at the top.
      const e1 = new vscode.WorkspaceEdit();
      e1.insert(uri, new vscode.Position(0, 0), '// one\n// two\n');
      await vscode.workspace.applyEdit(e1);
      const d1 = await waitFor('the diagnostic to move down two lines', () => ours(uri, 'exploding-gradient').find((d) => d.range.start.line === line0 + 2), 3_000);
      assert.equal(doc.lineAt(d1.range.start.line).text, lineText);
      for (const d of ours(uri)) assert.match(doc.lineAt(d.range.start.line).text, /tf\.(layers|train)\./, `diagnostic on line ${d.range.start.line + 1} holds its call`);
      // Hover follows it.
      const h = hoverText(await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, d1.range.start.translate(0, 3)));
      assert.match(h, /GradScope/);
      // A line removed above (the first inserted one) moves it back up by one.
      const e2 = new vscode.WorkspaceEdit();
      e2.delete(uri, new vscode.Range(0, 0, 1, 0));
      await vscode.workspace.applyEdit(e2);
      await waitFor('the diagnostic to move up one line', () => ours(uri, 'exploding-gradient').find((d) => d.range.start.line === line0 + 1), 3_000);
      // The layer's call replaced on its line: the diagnostic goes, and no other takes its place there.
      const at = line0 + 1;
      const e3 = new vscode.WorkspaceEdit();
      e3.replace(uri, doc.lineAt(at).range, 'model.add(tf.layers.dropout({ rate: 0.1 }));');
      await vscode.workspace.applyEdit(e3);
      await waitFor('the diagnostic to be gone from the edited line', () => !ours(uri).some((d) => d.range.start.line === at), 3_000);
      assert.equal(ours(uri, 'exploding-gradient').length, 0);
      const h2 = hoverText(await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, new vscode.Position(at, 14)));
      assert.doesNotMatch(h2, /GradScope/);
      const none = await codeActions(uri, new vscode.Range(at, 0, at, 10));
      assert.equal(none.length, 0, 'no quick fix on a stale line');
      // Every remaining diagnostic still sits on its call.
      for (const d of ours(uri)) assert.match(doc.lineAt(d.range.start.line).text, /tf\.(layers|train)\./);
    });

    it('Clear Diagnostics removes them', async function () {
      await vscode.commands.executeCommand('gradscope.clearDiagnostics');
      assert.equal(ours(uri).length, 0);
    });
  });
}
