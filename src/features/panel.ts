// Wires the inspection panel into the extension: it opens when a run starts, `GradScope: Show Panel`
// and `GradScope: Open Run…` bring it back, and VS Code restores it after a reload (serializer).
// While no run is live, it follows the active editor: switching to a script shows that script's
// latest run (so the hover, the squiggles and the panel speak of the same run).
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import { Analyzer } from '../core/analysis/analyzer';
import type { Finding } from '../core/analysis/finding';
import type { RunStore } from '../core/store/runStore';
import { activationFromFiles } from '../process/activationFromFiles';
import { prepareFixes } from '../process/fixEngine';
import { describeRunRead, listRuns, readRunFileAsync, runFilePath } from '../core/store/runFile';
import { InspectionPanel, PANEL_VIEW_TYPE, type PanelHost, type PanelSource, type SavedRunRef } from '../panel/inspectionPanel';
import type { RunSession } from '../process/runSession';
import type { GradScopeContext } from './context';
import { GradScopeError } from './errors';

/** Files Train & Inspect runs (TF.js and PyTorch scripts). */
const SCRIPT = /\.(?:[cm]?js|ts|py)$/i;

export class PanelFeature implements vscode.Disposable {
  private panel: InspectionPanel | undefined;
  /** The analyzer of each run shown: a live run's own, or one run once over a saved run's store. */
  private readonly analyzers = new WeakMap<RunStore, Analyzer>();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly host: PanelHost;

  constructor(private readonly ctx: GradScopeContext) {
    this.host = {
      log: ctx.log,
      extensionUri: ctx.extension.extensionUri,
      findings: (source) => this.findingsFor(source),
      // (a promise, and one that rejects rather than throws when the run folder cannot be read)
      savedRuns: () => Promise.resolve().then(() => this.savedRuns()),
      loadRun: (runFile) => this.loadRun(runFile),
      rerun: (source) => vscode.commands.executeCommand('gradscope.trainAndInspect', vscode.Uri.file(source.script)),
      applyRemedy: (source, finding, remedyId) => vscode.commands.executeCommand('gradscope.applyRemedy', { runId: source.runId, findingId: finding.id, remedyId }),
    };
    this.disposables.push(
      ctx.runs.onDidStartRun((run) => this.showLive(run)),
      vscode.window.onDidChangeActiveTextEditor((e) => {
        if (e) void this.followEditor(e.document.uri).catch((err) => ctx.log.warn(`panel follow: ${String(err)}`));
      }),
      vscode.commands.registerCommand('gradscope.showPanel', (arg?: unknown) => this.showAt(arg)),
      vscode.commands.registerCommand('gradscope.openRun', () => this.pickRun()),
      vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
        deserializeWebviewPanel: async (webviewPanel, state: unknown) => this.restore(webviewPanel, state),
      }),
    );
  }

  /** The panel shown now, for tests and other features. */
  get current(): InspectionPanel | undefined {
    return this.panel;
  }

  dispose(): void {
    this.panel?.dispose();
    for (const d of this.disposables.splice(0)) d.dispose();
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
      if (this.panel === p) this.panel = undefined;
    });
    this.panel = p;
    return p;
  }

  /** `gradscope.showPanel`, optionally `{ layer, runId }` (the hover's link): shows that run if it is live, selects the layer. */
  private showAt(arg: unknown): void {
    const a = typeof arg === 'object' && arg !== null ? (arg as { layer?: unknown; runId?: unknown }) : {};
    const live = this.ctx.runs.current();
    if (live && a.runId === live.id && this.panel?.shown?.runId !== live.id) this.showLive(live);
    const p = this.ensure();
    p.panel.reveal(undefined, false);
    if (typeof a.layer === 'string' && a.layer) p.selectLayer(a.layer);
  }

  private showLive(run: RunSession): void {
    this.analyzers.set(run.store, run.analyzer);
    const source: PanelSource = { runId: run.id, script: run.script, runFile: run.runFile, store: run.store, live: run, exit: null };
    this.ensure().show(source);
  }

  /** The active editor changed: show its script's latest run, unless a run is live or the panel is closed. */
  private async followEditor(uri: vscode.Uri): Promise<void> {
    const p = this.panel;
    if (!p || uri.scheme !== 'file' || !SCRIPT.test(uri.fsPath)) return;
    if (!vscode.workspace.getConfiguration('gradscope').get<boolean>('panel.followEditor', true)) return;
    const file = uri.fsPath;
    if (p.shown?.script === file || this.ctx.runs.current()) return;
    // The run whose findings the editor shows for this file (its file named by its id, no listing),
    // else the newest saved run of this script.
    const diagnosed = this.ctx.diagnostics?.runs().find((r) => r.run.script === file);
    const known = diagnosed ? runFilePath(this.runDir, diagnosed.run.runId) : null;
    const path = known && existsSync(known) ? known : listRuns(this.runDir).find((r) => r.meta.script === file)?.path;
    if (!path) return;
    const source = await this.loadRun(path, false);
    // The user may have moved on (or started a run) while the file was read.
    if (this.panel !== p || this.ctx.runs.current() || vscode.window.activeTextEditor?.document.uri.fsPath !== file) return;
    p.show(source, false);
  }

  private findingsFor(source: PanelSource): Finding[] {
    let a = this.analyzers.get(source.store);
    if (!a) {
      a = new Analyzer(source.store, { activationOf: activationFromFiles() });
      a.finish();
      this.analyzers.set(source.store, a);
    }
    return [...a.findings];
  }

  private savedRuns(): SavedRunRef[] {
    return listRuns(this.runDir).map((r) => ({
      runFile: r.path,
      label: `${basename(r.meta.script)} · ${new Date(r.meta.startedAt).toLocaleString()} · ${r.exit ? r.exit.reason : 'no exit record'}`,
    }));
  }

  /**
   * Reads a saved run. A damaged or partial file is never shown without a word: the log always says
   * what was read and what was not, and a run the person opened (`explicit`) says it in a warning.
   */
  private async loadRun(runFile: string, explicit = true): Promise<PanelSource> {
    const live = this.ctx.runs.current();
    if (live && live.runFile === runFile) {
      this.analyzers.set(live.store, live.analyzer);
      return { runId: live.id, script: live.script, runFile, store: live.store, live, exit: null };
    }
    const r = await readRunFileAsync(runFile);
    const said = describeRunRead(r);
    if (!said.usable) throw new GradScopeError('user', `cannot open ${basename(runFile)}: ${said.notRead.join('; ')}`);
    if (!said.complete) {
      const text = `${basename(runFile)} is incomplete: ${said.notRead.join('; ')}. Shown: what was read (${said.read}).`;
      this.ctx.log.warn(`open run ${runFile}: ${text}`);
      if (explicit) void vscode.window.showWarningMessage(`GradScope: ${text}`);
    }
    const source: PanelSource = { runId: r.meta.runId, script: r.meta.script, runFile, store: r.store, live: null, exit: r.exit };
    void prepareFixes(r.meta.script).catch(() => undefined); // Python fixes need their parser loaded
    // A saved run's findings go into the editor too, on the lines they name (if still there).
    this.ctx.diagnostics?.showSaved({ runId: r.meta.runId, script: r.meta.script, cwd: r.meta.cwd, args: r.meta.args, store: r.store, findings: this.findingsFor(source) });
    return source;
  }

  private async pickRun(): Promise<void> {
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
