// Notebooks in the editor (issue 18), trusted workspace: the fixture notebook opens as a Jupyter
// notebook (VS Code's built-in ipynb serializer; no Jupyter extension in this host), Inspect This
// Notebook's Kernel finds no Jupyter extension and gives the lines to paste; a real ipykernel started
// by the test (test/fixtures/notebook/kernel_driver.py with .venv-torch2) runs them, as a person
// would, then the notebook's cells: the run streams live into the extension, its finding lands on
// the right line of the right cell (a vscode-notebook-cell: document), the hover works there; after
// `%gradscope off`, the run file the kernel wrote is opened with Open Run… and lands there too, and
// its quick fix edits that cell and only it. Not covered: the Jupyter extension's own executeCode.
import * as assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { GradScopeApi } from '../../src/features/context';
import type { InspectResult } from '../../src/features/notebookKernel';
import { cellSourceOf } from '../../src/core/fixes/notebookCell';
import { readRunFile } from '../../src/core/store/runFile';
import { detachCode, kernelRunFolder } from '../../src/process/kernelRun';
import { analyzerFor } from '../../src/process/runHandle';
import { KernelDriver } from '../unit/support/kernel';
import { activateExtension, EXTENSION_ID, screenshot, waitFor, workspaceRoot } from './helpers';

function ours(uri: vscode.Uri): vscode.Diagnostic[] {
  return vscode.languages.getDiagnostics(uri).filter((d) => d.source === 'GradScope');
}

export function defineNotebookTests(): void {
  describe('notebooks: a kernel followed live, findings on cell lines (test/fixtures/notebook/train.ipynb)', function () {
    let api: GradScopeApi;
    let kernel: KernelDriver | undefined;
    let nb: vscode.NotebookDocument;
    let dir: string;
    let python: string;
    let driver: string;

    before(async function () {
      const root = vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath;
      python = process.env.GRADSCOPE_NB_PYTHON || join(root, '.venv-torch2', 'bin', 'python');
      driver = join(root, 'test', 'fixtures', 'notebook', 'kernel_driver.py');
      if (!existsSync(python)) {
        console.log(`(skipping the notebook tests: no ${python} with ipykernel)`);
        this.skip();
      }
      api = await activateExtension();
      dir = join(workspaceRoot(), 'notebook-suite');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      copyFileSync(join(root, 'test', 'fixtures', 'notebook', 'train.ipynb'), join(dir, 'train.ipynb'));
      nb = await vscode.workspace.openNotebookDocument(vscode.Uri.file(join(dir, 'train.ipynb')));
      await vscode.window.showNotebookDocument(nb);
    });

    after(async function () {
      await kernel?.close();
      await vscode.commands.executeCommand('gradscope.clearDiagnostics');
    });

    it('the .ipynb opens as a Jupyter notebook whose cells are vscode-notebook-cell documents', function () {
      assert.equal(nb.notebookType, 'jupyter-notebook');
      assert.equal(nb.cellAt(0).kind, vscode.NotebookCellKind.Markup);
      assert.equal(nb.cellAt(3).document.uri.scheme, 'vscode-notebook-cell');
      assert.match(nb.cellAt(3).document.getText(), /torch\.nn\.Linear\(16, 16\)/);
    });

    it('Inspect without the Jupyter extension gives lines to paste; a kernel that runs them streams live, the finding on its cell line, the hover there', async function () {
      const r = await vscode.commands.executeCommand<InspectResult>('gradscope.inspectNotebookKernel', nb.uri);
      assert.equal(r?.outcome, 'paste', JSON.stringify(r));
      assert.match(r.message, /Jupyter extension/);
      assert.match(r.lines ?? '', /%load_ext gradscope_probe\n%gradscope on .* --connect 'unix:/);
      kernel = new KernelDriver(python, driver, dir);
      await kernel.ready();
      await kernel.run(nb.cellAt(1).document.getText());
      const on = await kernel.run(r.lines!);
      assert.match(on.stdout, /streaming to GradScope/, on.stdout + on.stderr);
      await kernel.run(nb.cellAt(3).document.getText());
      // Live: the kernel is still attached; the diagnostic and the panel come from the stream.
      const cell3 = nb.cellAt(3).document;
      const diag = await waitFor('a GradScope diagnostic on cell 3', () => ours(cell3.uri)[0], 20_000);
      const panel = await waitFor('the panel to show the kernel run', () => {
        const p = api.inspect().panel;
        return p.open && p.ready && p.snapshots > 0 ? p : null;
      });
      assert.ok(panel.runId);
      for (const i of [1, 2, 4, 5]) assert.equal(ours(nb.cellAt(i).document.uri).length, 0, `nothing on cell ${i}`);
      const line = diag.range.start.line;
      assert.match(cell3.lineAt(line).text, /torch\.nn\.Linear\(/, `diagnostic on cell 3 line ${line + 1}: ${cell3.lineAt(line).text}`);
      console.log(`  live diagnostic: cell 3 line ${line + 1}: ${diag.message.slice(0, 90)}…`);
      const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', cell3.uri, new vscode.Position(line, diag.range.start.character + 2));
      const text = hovers.flatMap((h) => h.contents.map((c) => (typeof c === 'string' ? c : 'value' in c ? c.value : ''))).join('\n');
      assert.match(text, /gradscope\.showPanel/, `a GradScope hover: ${text.slice(0, 300)}`);
      await vscode.window.showNotebookDocument(nb, { selections: [new vscode.NotebookRange(3, 4)] });
      await screenshot('notebook-cell-diagnostic');

      const off = await kernel.run(detachCode());
      assert.match(off.stdout, /GradScope is off: 6 step\(s\)/);
    });

    it('the run file the kernel wrote, opened with Open Run…, lands on the same cell line; its quick fix edits that cell only', async function () {
      const files = readdirSync(kernelRunFolder(nb.uri.fsPath)).filter((n) => n.endsWith('.gsrun'));
      assert.equal(files.length, 1, files.join(', '));
      await vscode.commands.executeCommand('gradscope.clearDiagnostics');
      const cell3 = nb.cellAt(3).document;
      assert.equal(ours(cell3.uri).length, 0);
      await vscode.commands.executeCommand('gradscope.openRun', join(kernelRunFolder(nb.uri.fsPath), files[0]));
      const diag = await waitFor('the saved run on cell 3', () => ours(cell3.uri)[0], 20_000);
      assert.match(cell3.lineAt(diag.range.start.line).text, /torch\.nn\.Linear\(/);
      const others = [0, 1, 2, 4, 5].map((i) => nb.cellAt(i).document.getText());
      const before = cell3.getText();
      const all = (await vscode.commands.executeCommand<vscode.CodeAction[]>('vscode.executeCodeActionProvider', cell3.uri, diag.range, vscode.CodeActionKind.QuickFix.value)) ?? [];
      for (const a of all) console.log(`  action: ${a.title}${a.disabled ? ` (disabled: ${a.disabled.reason})` : ''}`);
      const fix = all.find((a) => a.command?.command === 'gradscope.applyRemedy' && !a.disabled);
      assert.ok(fix, `a quick fix on the cell: ${all.map((a) => a.title).join('; ')}`);
      assert.ok(!all.some((a) => /^Verify fix/.test(a.title)), 'no Verify fix in a notebook (its cells run in its kernel)');
      // A line the title names is the cell's own line.
      const named = /on line (\d+)/.exec(fix.title);
      if (named) assert.match(cell3.lineAt(Number(named[1]) - 1).text, /torch\.optim\.|torch\.nn\./, fix.title);
      const outcome = await vscode.commands.executeCommand<{ applied: boolean; message?: string }>(fix.command!.command, ...((fix.command!.arguments ?? []) as unknown[]));
      assert.equal(outcome?.applied, true, JSON.stringify(outcome));
      assert.notEqual(cell3.getText(), before, 'the cell was edited');
      assert.deepEqual(
        [0, 1, 2, 4, 5].map((i) => nb.cellAt(i).document.getText()),
        others,
        'no other cell changed',
      );
      console.log(`  fixed cell 3: ${fix.title}`);
      await screenshot('notebook-cell-fixed');
    });

    it('a saved run of a notebook that is not open places nothing (no cell to carry it, never the .ipynb text) and breaks nothing', async function () {
      const root = vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath;
      const closedDir = join(workspaceRoot(), 'notebook-closed');
      rmSync(closedDir, { recursive: true, force: true });
      mkdirSync(closedDir, { recursive: true });
      const closed = join(closedDir, 'train.ipynb');
      copyFileSync(join(root, 'test', 'fixtures', 'notebook', 'train.ipynb'), closed);
      // The same fixture, run in a kernel of its own with the plain magic (no GradScope listening).
      const src = (i: number): string => cellSourceOf(readFileSync(closed, 'utf8'), i)!;
      const k = new KernelDriver(python, driver, closedDir);
      try {
        await k.ready();
        await k.run(src(1));
        await k.run(`import sys; sys.path.insert(0, ${JSON.stringify(join(root, 'dist', 'probe', 'torch'))})\n%load_ext gradscope_probe\n%gradscope on`);
        await k.run(src(3));
        await k.run('%gradscope off');
      } finally {
        await k.close();
      }
      assert.ok(!vscode.workspace.notebookDocuments.some((n) => n.uri.fsPath === closed), 'that notebook is not open');
      const files = readdirSync(kernelRunFolder(closed)).filter((n) => n.endsWith('.gsrun'));
      assert.equal(files.length, 1);
      // The run has findings on the notebook's cells: what would be placed, were the notebook open.
      const saved = readRunFile(join(kernelRunFolder(closed), files[0]));
      const analyzer = analyzerFor(saved.store);
      analyzer.finish();
      assert.ok(
        analyzer.findings.some((f) => f.source?.file === closed && f.source.cell === 3),
        analyzer.findings.map((f) => JSON.stringify(f.source)).join('; '),
      );
      await vscode.commands.executeCommand('gradscope.openRun', join(kernelRunFolder(closed), files[0]));
      await waitFor('the panel to show the saved run', () => api.inspect().panel.ready);
      await new Promise((r) => setTimeout(r, 1000));
      const placed = vscode.languages.getDiagnostics().filter(([u, ds]) => u.fsPath === closed && ds.some((d) => d.source === 'GradScope'));
      assert.deepEqual(
        placed.map(([u]) => u.toString()),
        [],
        'nothing placed for a notebook that is not open',
      );
      // The open notebook's diagnostics are still there (another script's run).
      assert.ok(ours(nb.cellAt(3).document.uri).length > 0);
    });
  });
}
