// Wires the inspection panel into the extension: it opens when a run starts, `GradScope: Show Panel`
// and `GradScope: Open Run…` bring it back, and VS Code restores it after a reload (serializer).
// While no run is live, it follows the active editor: switching to a script shows that script's
// latest run (so the hover, the squiggles and the panel speak of the same run).
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import { prepareFixes } from '../process/fixEngine';
import { DisposableStore } from '../core/util/disposableStore';
import { describeRunRead, listRuns, readRunFileAsync } from '../core/store/runFile';
import { InspectionPanel, PANEL_VIEW_TYPE, type PanelHost, type SavedRunRef } from '../panel/inspectionPanel';
import { kernelRunFolder } from '../process/kernelRun';
import { readRankFiles } from '../process/rankRecorder';
import { savedRunHandle, type RunHandle } from '../process/runHandle';
import type { GradScopeContext, PanelInspection } from './context';
import { GradScopeError } from './errors';

/** Files Train & Inspect runs (TF.js and PyTorch scripts). */
const SCRIPT = /\.(?:[cm]?js|ts|py)$/i;

export class PanelFeature implements vscode.Disposable {
  private panel: InspectionPanel | undefined;
  private readonly disposables = new DisposableStore();
  private readonly host: PanelHost;

  constructor(private readonly ctx: GradScopeContext) {
    this.host = {
      log: ctx.log,
      extensionUri: ctx.extension.extensionUri,
      // (a promise, and one that rejects rather than throws when the run folder cannot be read)
      savedRuns: () => Promise.resolve().then(() => this.savedRuns()),
      loadRun: (runFile) => this.loadRun(runFile),
      rerun: (run) => vscode.commands.executeCommand('gradscope.trainAndInspect', vscode.Uri.file(run.script)),
      applyRemedy: (run, finding, remedyId) => vscode.commands.executeCommand('gradscope.applyRemedy', { runId: run.id, findingId: finding.id, remedyId }),
      didShow: (run) => (ctx.openRuns.shown = run),
    };
    this.disposables.add(ctx.runs.onDidStartRun((run) => this.showLive(run)));
    // A live run that is not a run of ours (a notebook kernel followed: features/notebookKernel.ts; a remote run: features/remoteListen.ts) is shown as it joins.
    this.disposables.add(ctx.openRuns.onDidOpen((run) => run.live && !run.live.exited && run !== ctx.runs.current() && this.panel?.shown !== run && this.showLive(run)));
    this.disposables.add(
      vscode.window.onDidChangeActiveTextEditor((e) => {
        if (e) void this.followEditor(e.document.uri).catch((err) => ctx.log.warn(`panel follow: ${String(err)}`));
      }),
    );
    this.disposables.add(vscode.commands.registerCommand('gradscope.showPanel', (arg?: unknown) => this.showAt(arg)));
    this.disposables.add(vscode.commands.registerCommand('gradscope.openRun', (arg?: unknown) => this.pickRun(arg)));
    this.disposables.add(
      vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
        deserializeWebviewPanel: async (webviewPanel, state: unknown) => this.restore(webviewPanel, state),
      }),
    );
  }

  /** What the panel shows now (the API's inspect()). */
  inspect(): PanelInspection {
    const p = this.panel;
    return { open: p !== undefined, runId: p?.shown?.id ?? null, ready: p?.sent.ready ?? false, snapshots: p?.sent.snapshots ?? 0, appends: p?.sent.appends ?? 0 };
  }

  dispose(): void {
    this.panel?.dispose();
    this.disposables.dispose();
  }

  private get runDir(): string {
    const root = this.ctx.extension.storageUri ?? this.ctx.extension.globalStorageUri;
    return join(root.fsPath, 'runs');
  }

  private ensure(webviewPanel?: vscode.WebviewPanel): InspectionPanel {
    if (this.panel && !webviewPanel) return this.panel;
    this.panel?.dispose();
    const p = new InspectionPanel(this.host, webviewPanel);
    p.onDidDispose(() => {
      if (this.panel !== p) return;
      this.panel = undefined;
      this.ctx.openRuns.shown = null;
    });
    this.panel = p;
    return p;
  }

  /** `gradscope.showPanel`, optionally `{ layer, runId }` (the hover's link): shows that run if it is live, selects the layer. */
  private showAt(arg: unknown): void {
    const a = typeof arg === 'object' && arg !== null ? (arg as { layer?: unknown; runId?: unknown }) : {};
    const live = this.ctx.runs.current();
    if (live && a.runId === live.id && this.panel?.shown?.id !== live.id) this.showLive(live);
    const p = this.ensure();
    p.panel.reveal(undefined, false);
    if (typeof a.layer === 'string' && a.layer) p.selectLayer(a.layer);
  }

  private showLive(run: RunHandle): void {
    this.ensure().show(run);
  }

  /** The active editor changed: show its script's latest run, unless a run is live or the panel is closed. */
  private async followEditor(uri: vscode.Uri): Promise<void> {
    const p = this.panel;
    if (!p || uri.scheme !== 'file' || !SCRIPT.test(uri.fsPath)) return;
    if (!vscode.workspace.getConfiguration('gradscope').get<boolean>('panel.followEditor', true)) return;
    const file = uri.fsPath;
    if (p.shown?.script === file || this.ctx.runs.current()) return;
    // The newest run of this file the views opened (its run file, no listing), else the newest saved run of this script.
    const known = this.ctx.openRuns.latest(file)?.runFile;
    const path = known && existsSync(known) ? known : listRuns(this.runDir).find((r) => r.meta.script === file)?.path;
    if (!path) return;
    const source = await this.loadRun(path, false);
    // The user may have moved on (or started a run) while the file was read.
    if (this.panel !== p || this.ctx.runs.current() || vscode.window.activeTextEditor?.document.uri.fsPath !== file) return;
    p.show(source, false);
  }

  /**
   * The saved runs: the extension's own, then the notebook runs a kernel wrote beside its notebook
   * (`.gradscope/runs/` of each workspace folder and of each open notebook's folder), newest first.
   */
  private savedRuns(): SavedRunRef[] {
    const dirs = new Set<string>();
    for (const f of vscode.workspace.workspaceFolders ?? []) if (f.uri.scheme === 'file') dirs.add(join(f.uri.fsPath, '.gradscope', 'runs'));
    for (const nb of vscode.workspace.notebookDocuments) if (nb.uri.scheme === 'file') dirs.add(kernelRunFolder(nb.uri.fsPath));
    dirs.delete(this.runDir);
    const notebookRuns = [...dirs].flatMap((d) => listRuns(d)).filter((r) => r.meta.script.toLowerCase().endsWith('.ipynb'));
    notebookRuns.sort((a, b) => (a.meta.runId < b.meta.runId ? 1 : -1));
    return [...listRuns(this.runDir), ...notebookRuns].map((r) => ({
      runFile: r.path,
      label: `${basename(r.meta.script)} · ${new Date(r.meta.startedAt).toLocaleString()} · ${r.exit ? r.exit.reason : 'no exit record'}`,
    }));
  }

  /**
   * Reads a saved run. A damaged or partial file is never shown without a word: the log always says
   * what was read and what was not, and a run the person opened (`explicit`) says it in a warning.
   */
  private async loadRun(runFile: string, explicit = true): Promise<RunHandle> {
    const live = this.ctx.runs.current();
    if (live && live.runFile === runFile) return live;
    const r = await readRunFileAsync(runFile);
    const said = describeRunRead(r);
    if (!said.usable) throw new GradScopeError('user', `cannot open ${basename(runFile)}: ${said.notRead.join('; ')}`);
    if (!said.complete) {
      const text = `${basename(runFile)} is incomplete: ${said.notRead.join('; ')}. Shown: what was read (${said.read}).`;
      this.ctx.log.warn(`open run ${runFile}: ${text}`);
      if (explicit) void vscode.window.showWarningMessage(`GradScope: ${text}`);
    }
    // A distributed run's other ranks, from their own files (<runId>.ranks/); the panel shows the run's own.
    const run = savedRunHandle(runFile, r, await readRankFiles(runFile));
    void prepareFixes(run.script).catch(() => undefined); // Python fixes need their parser loaded
    // A saved run's findings go into the editor too, on the lines they name (if still there); one the
    // panel read on its own does not displace a run of the script started while it was read.
    if (explicit) this.ctx.openRuns.open(run);
    else if (!this.ctx.openRuns.openUnlessSuperseded(run)) return this.ctx.openRuns.latest(run.script) ?? run;
    return run;
  }

  /** Open Run…: a run file given (a URI or a path: the explorer, tests), else one picked from the saved runs. */
  private async pickRun(arg?: unknown): Promise<void> {
    const given = arg instanceof vscode.Uri ? arg.fsPath : typeof arg === 'string' ? arg : null;
    if (given) {
      try {
        this.ensure().show(await this.loadRun(given));
      } catch (e) {
        void vscode.window.showErrorMessage(`GradScope: ${e instanceof Error ? e.message : String(e)}`);
      }
      return;
    }
    const runs = this.savedRuns();
    if (!runs.length) {
      void vscode.window.showInformationMessage('GradScope: no saved runs yet. Run GradScope: Train & Inspect first.');
      return;
    }
    const pick = await vscode.window.showQuickPick(
      runs.map((r) => ({ label: r.label, description: basename(r.runFile), runFile: r.runFile })),
      { title: 'GradScope: Open Run', placeHolder: 'A saved run to inspect' },
    );
    if (!pick) return;
    try {
      this.ensure().show(await this.loadRun(pick.runFile));
    } catch (e) {
      void vscode.window.showErrorMessage(`GradScope: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** VS Code restored a panel after a reload: show the run it showed (state from the webview), else the newest. */
  private async restore(webviewPanel: vscode.WebviewPanel, state: unknown): Promise<void> {
    const p = this.ensure(webviewPanel);
    const runId = typeof state === 'object' && state !== null && typeof (state as { runId?: unknown }).runId === 'string' ? (state as { runId: string }).runId : null;
    const runs = listRuns(this.runDir);
    const ref = runs.find((r) => r.meta.runId === runId) ?? runs[0];
    if (!ref) return;
    try {
      p.show(await this.loadRun(ref.path, false), false);
    } catch (e) {
      this.ctx.log.warn(`panel restore: ${String(e)}`);
    }
  }
}
