// Host side of the inspection panel: one WebviewPanel showing one run (live or saved). It sends one
// snapshot after the webview's `ready`, then appends at most 20 times a second, and acts only on
// messages that pass `parseWebviewMessage` (anything else is logged and dropped).
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as vscode from 'vscode';
import type { Finding } from '../core/analysis/finding';
import { SHOWN, shownText } from '../core/text';
import { DisposableStore } from '../core/util/disposableStore';
import type { FindingsView } from '../core/analysis/analyzer';
import type { RunStore } from '../core/store/runStore';
import { analyzerFor, type RunHandle } from '../process/runHandle';
import { parseWebviewMessage, type HeatmapMetric, type HostToWebview, type PanelRunHeader, type PanelSnapshot, type RunStatus, type WebviewToHost } from '../core/view/messages';
import { RankView, crossRankView } from '../core/view/ranks';
import { buildReportHtml } from '../core/view/report';
import { buildAppend, buildReplace, buildSnapshot, buildTensorDetail, byOptimizerShape, compareCurve, reportData, runHeader } from '../core/view/snapshot';

export const PANEL_VIEW_TYPE = 'gradscope.inspection';
/** Deltas are batched: at most one message per this many ms (20 Hz). */
const FLUSH_MS = 50;
/** While a distributed run is live, how often the panel looks for ranks that joined (they announce themselves by no event). */
const RANK_WATCH_MS = 500;

export interface SavedRunRef {
  runFile: string;
  label: string;
}

/** What the panel needs from the rest of the extension; injected so the panel stays testable. */
export interface PanelHost {
  log: vscode.LogOutputChannel;
  extensionUri: vscode.Uri;
  savedRuns(): Promise<SavedRunRef[]>;
  loadRun(runFile: string): Promise<RunHandle>;
  rerun(run: RunHandle): Thenable<unknown>;
  applyRemedy(run: RunHandle, finding: Finding, remedyId: string): Thenable<unknown>;
  /** The panel shows this run now. */
  didShow(run: RunHandle): void;
}

export function panelHtml(webview: vscode.Webview, extensionUri: vscode.Uri): string {
  const nonce = randomBytes(16).toString('base64');
  const js = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', 'main.js'));
  const css = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', 'main.css'));
  const csp = [
    `default-src 'none'`,
    `img-src ${webview.cspSource} data:`,
    // Chart.js and the web components set styles from script (CSSOM), which CSP allows; inline
    // style attributes in markup are not used.
    `style-src ${webview.cspSource} 'unsafe-inline'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${css.toString()}">
<title>GradScope</title>
</head>
<body>
<div id="gradscope"></div>
<script nonce="${nonce}" src="${js.toString()}"></script>
</body>
</html>`;
}

export class InspectionPanel implements vscode.Disposable {
  private source: RunHandle | null = null;
  private ready = false;
  private metric: HeatmapMetric = 'norm';
  /** The optimizer whose steps every chart shows (null: all steps). */
  private optimizer: number | null = null;
  /** A distributed run's processes: the one picked, the overlay's cursors (core/view/ranks.ts). */
  private ranks: RankView | null = null;
  /** The store the webview's charts come from (what the last snapshot was built from). */
  private sentStore: RunStore | null = null;
  /** Stores of the run's processes whose changes schedule a flush. */
  private readonly watched = new Set<RunStore>();
  /** The findings of a rank other than the run's own store, each computed on its store. */
  private readonly rankAnalyzers = new Map<RunStore, ReturnType<typeof analyzerFor>>();
  /** byOptimizerShape of what the webview holds: appends extend those curves only. */
  private sentShape = '';
  private selected: { tensorId: number; step: number | null } | null = null;
  private pendingSelect: { layer: string; step: number | null } | null = null;
  private compare: PanelSnapshot['compare'] = null;
  private savedRuns: SavedRunRef[] = [];
  private sentStep = -1;
  /** Heatmap columns the webview holds: past twice the store's view, the next batch is a `replace` (the host owns resolution). */
  private heldColumns = 0;
  private snapshotPending = true;
  private sentTensors = 0;
  /** The findings' version (RunHandle.analyzer) the webview has. */
  private sentFindings = -1;
  private flushTimer: NodeJS.Timeout | undefined;
  private lastFlush = 0;
  /**
   * Steps/s over windows of at least a second, the first starting at the first step the panel sees
   * (not when the run started: a torch import takes seconds, and that window would read 0).
   */
  private rate: { step: number; t: number; perSec: number | null } | null = null;
  /** Listeners on the source shown now; replaced when another run is shown. */
  private readonly sourceScope = new DisposableStore();
  private readonly disposables = new DisposableStore();
  private disposed = false;
  private readonly onDisposed = new vscode.EventEmitter<void>();
  readonly onDidDispose = this.onDisposed.event;

  /** Creates a panel beside the editor, or adopts one VS Code restored (serializer). */
  constructor(
    private readonly host: PanelHost,
    readonly panel: vscode.WebviewPanel = vscode.window.createWebviewPanel(PANEL_VIEW_TYPE, 'GradScope', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, {}),
  ) {
    panel.webview.options = {
      enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(host.extensionUri, 'dist', 'webview'), vscode.Uri.joinPath(host.extensionUri, 'media')],
    };
    panel.iconPath = vscode.Uri.joinPath(host.extensionUri, 'media', 'icon.png');
    panel.webview.html = panelHtml(panel.webview, host.extensionUri);
    this.disposables.add(panel.webview.onDidReceiveMessage((raw: unknown) => this.onMessage(raw)));
    this.disposables.add(panel.onDidDispose(() => this.dispose()));
  }

  get shown(): RunHandle | null {
    return this.source;
  }

  /** What reached the webview so far (for tests and the log): `ready` seen, snapshots and appends posted. */
  readonly sent = { ready: false, snapshots: 0, appends: 0, replaces: 0 };

  /** Shows a run; a live run keeps updating until it ends. */
  show(source: RunHandle, reveal = true): void {
    this.sourceScope.clear();
    this.source = source;
    this.host.didShow(source);
    // Nothing may be appended until this run's snapshot went out: an append computed against the
    // previous run's cursors would be merged into the previous run's data in the webview.
    this.snapshotPending = true;
    this.sentStep = -1;
    this.sentTensors = 0;
    this.rate = null;
    this.selected = null;
    this.compare = null;
    this.optimizer = null;
    this.ranks = new RankView(source, crossRankView());
    this.sentStore = null;
    this.watched.clear();
    this.rankAnalyzers.clear();
    this.panel.title = `GradScope: ${shownText(basename(source.script), SHOWN.name, true).text}`;
    if (source.live && !source.live.exited) {
      this.watchRanks();
      // Ranks join over the socket while the run goes on (each with a store of its own): watch for them.
      const timer = setInterval(() => {
        if (this.watchRanks()) this.schedule();
      }, RANK_WATCH_MS);
      this.sourceScope.add({ dispose: () => clearInterval(timer) });
      // (the handle's exit is set by then)
      this.sourceScope.add(source.live.onDidEnd(() => this.sendFull()));
    }
    if (reveal) this.panel.reveal(vscode.ViewColumn.Beside, true);
    void this.refreshSavedRuns().then(() => this.sendFull());
  }

  /** Selects a layer in the webview (the hover's "open in panel" link); waits for `ready` if needed. */
  selectLayer(layer: string, step: number | null = null): void {
    this.pendingSelect = { layer, step };
    // After the run's snapshot (sendFull flushes it), so the webview selects in the right run.
    if (this.ready && !this.snapshotPending) this.flushSelect();
  }

  private flushSelect(): void {
    if (!this.pendingSelect || !this.source) return;
    const { layer, step } = this.pendingSelect;
    this.pendingSelect = null;
    this.post({ type: 'select', layer, step });
  }

  /** Re-sends findings (after the analyzer ran) with the next batch. */
  findingsChanged(): void {
    this.schedule();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    clearTimeout(this.flushTimer);
    this.sourceScope.dispose();
    this.disposables.dispose();
    this.panel.dispose();
    this.onDisposed.fire();
    this.onDisposed.dispose();
  }

  // -------------------------------------------------------------------------------------------

  private post(msg: HostToWebview): void {
    if (this.disposed || !this.ready) return;
    if (msg.type === 'snapshot') this.sent.snapshots++;
    else if (msg.type === 'append') this.sent.appends++;
    else if (msg.type === 'replace') this.sent.replaces++;
    void this.panel.webview.postMessage(msg).then(undefined, (e: unknown) => this.host.log.warn(`panel: post failed: ${String(e)}`));
  }

  /** The store the charts show: the rank picked, else rank 0 (or the lowest rank with steps: shownStore). */
  private shownStore(): RunStore {
    return this.ranks!.store();
  }

  /** Subscribes to the stores of processes not watched yet; true when there were some. */
  private watchRanks(): boolean {
    const s = this.source;
    if (!s) return false;
    let added = false;
    for (const store of [s.store, ...(this.ranks?.processes() ?? []).map((r) => r.store)]) {
      if (this.watched.has(store)) continue;
      this.watched.add(store);
      this.sourceScope.add(store.onDidChange(() => this.schedule()));
      added = true;
    }
    return added;
  }

  /** The findings of the process shown: the run's analyzer for its own store, else one on that rank's store. */
  private analyzer(): FindingsView {
    const s = this.source!;
    const store = this.sentStore ?? this.shownStore();
    if (store === s.store) return s.analyzer;
    let a = this.rankAnalyzers.get(store);
    if (!a) {
      a = analyzerFor(store);
      this.rankAnalyzers.set(store, a);
    }
    // A live rank's analysis follows its steps; an ended one is final.
    if (s.live && !s.live.exited) a.update();
    else if (!a.isFinished) a.finish();
    return a;
  }

  private header(): PanelRunHeader {
    const s = this.source!;
    const store = this.sentStore ?? this.shownStore();
    const now = Date.now();
    if (!this.rate) {
      if (store.stepCount > 0) this.rate = { step: store.stepCount, t: now, perSec: null };
    } else if (now - this.rate.t >= 1000) {
      this.rate = { step: store.stepCount, t: now, perSec: ((store.stepCount - this.rate.step) * 1000) / (now - this.rate.t) };
    }
    let status: RunStatus;
    let statusMessage: string;
    const live = s.live !== null && !s.live.exited;
    if (live) {
      status = store.hello ? 'running' : 'starting';
      statusMessage = store.hello ? `running on ${store.hello.backend}` : 'starting…';
    } else if (s.exit) {
      status = s.exit.reason;
      statusMessage = 'message' in s.exit ? s.exit.message : s.exit.reason;
    } else {
      status = 'saved';
      statusMessage = 'saved run (ended without an exit record: the host may have stopped mid-run)';
    }
    return runHeader(store, { runId: s.id, script: s.script, status, statusMessage, stepsPerSec: live ? (this.rate?.perSec ?? null) : null });
  }

  private findings(): Finding[] {
    try {
      return [...this.analyzer().findings];
    } catch (e) {
      this.host.log.error(`panel: findings failed: ${String(e)}`);
      return [];
    }
  }

  private sendFull(): void {
    if (!this.source || !this.ready) return;
    const store = this.shownStore();
    if (store !== this.sentStore) this.rate = null; // another process: its own rate
    this.sentStore = store;
    const findings = this.findings();
    const snapshot = buildSnapshot(store, {
      header: this.header(),
      findings,
      metric: this.metric,
      optimizer: this.optimizer,
      compare: this.compare,
      savedRuns: this.savedRuns,
    });
    const ranks = this.ranks!.message(store, 'whole');
    if (ranks) snapshot.ranks = ranks;
    this.sentStep = store.lastStep;
    this.sentTensors = store.tensors.length;
    this.sentFindings = this.analyzer().version;
    this.sentShape = byOptimizerShape(snapshot);
    this.heldColumns = snapshot.heatmap.steps.length;
    this.snapshotPending = false;
    this.post({ type: 'snapshot', snapshot });
    if (this.selected) this.post({ type: 'tensorDetail', detail: buildTensorDetail(store, this.selected.tensorId, this.selected.step) });
    this.flushSelect();
  }

  private schedule(): void {
    if (this.flushTimer || this.disposed) return;
    const wait = Math.max(0, FLUSH_MS - (Date.now() - this.lastFlush));
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.lastFlush = Date.now();
      this.flush();
    }, wait);
  }

  private flush(): void {
    const s = this.source;
    if (!s || !this.ready || this.snapshotPending) return;
    const store = this.sentStore ?? this.shownStore();
    // No rank picked and the default moved (the script's own process took no step, its first rank now has): show that one.
    if (!this.ranks!.picked && this.shownStore() !== store) {
      this.sendFull();
      return;
    }
    const version = this.analyzer().version;
    const changed = version !== this.sentFindings;
    this.sentFindings = version;
    const append = buildAppend(store, {
      since: this.sentStep,
      knownTensors: this.sentTensors,
      header: this.header(),
      metric: this.metric,
      findings: changed ? this.findings() : null,
      optimizer: this.optimizer,
    });
    // A second optimizer stepped (or a second one carried a loss): per-optimizer curves begin, and
    // the first one's reach back before the last append, so the webview gets them whole.
    if (byOptimizerShape(append) !== this.sentShape) {
      this.sendFull();
      return;
    }
    this.sentStep = store.lastStep;
    this.sentTensors = store.tensors.length;
    this.heldColumns += append.heatmap.steps.length;
    const { recentSteps, envelopeBuckets } = store.options;
    // The store folded what the webview got column by column: its view is the store's again.
    if (this.heldColumns > 2 * (recentSteps + envelopeBuckets) && append.tensors.length === 0) this.sendReplace(this.findings());
    else {
      const ranks = this.ranks!.message(store, 'append');
      this.post(ranks ? { type: 'append', ...append, ranks } : { type: 'append', ...append });
    }
  }

  private sendReplace(findings: Finding[]): void {
    const store = this.sentStore ?? this.shownStore();
    const replace = buildReplace(store, { header: this.header(), metric: this.metric, findings, optimizer: this.optimizer });
    this.sentStep = store.lastStep;
    this.sentShape = byOptimizerShape(replace);
    this.heldColumns = replace.heatmap.steps.length;
    const ranks = this.ranks!.message(store, 'whole');
    this.post(ranks ? { type: 'replace', ...replace, ranks } : { type: 'replace', ...replace });
  }

  private async refreshSavedRuns(): Promise<void> {
    try {
      this.savedRuns = await this.host.savedRuns();
    } catch (e) {
      this.host.log.warn(`panel: cannot list saved runs: ${String(e)}`);
      this.savedRuns = [];
    }
  }

  private onMessage(raw: unknown): void {
    const msg = parseWebviewMessage(raw);
    if (!msg) {
      this.host.log.warn(`panel: dropped a malformed message from the webview: ${safePreview(raw)}`);
      return;
    }
    void this.handle(msg).catch((e: unknown) => {
      this.host.log.error(`panel: ${msg.type} failed: ${e instanceof Error ? e.message : String(e)}`);
      void vscode.window.showErrorMessage(`GradScope: ${e instanceof Error ? e.message : String(e)}`);
    });
  }

  private async handle(msg: WebviewToHost): Promise<void> {
    const s = this.source;
    switch (msg.type) {
      case 'ready':
        this.ready = true;
        this.sent.ready = true;
        this.sendFull();
        return;
      case 'selectTensor': {
        const store = s && (this.sentStore ?? this.shownStore());
        if (!store || msg.tensorId >= store.tensors.length) return;
        this.selected = { tensorId: msg.tensorId, step: msg.step };
        this.post({ type: 'tensorDetail', detail: buildTensorDetail(store, msg.tensorId, msg.step) });
        return;
      }
      case 'setRank': {
        // Only a process of this run that joined (the webview names it; a missing rank has nothing to show).
        if (!this.ranks?.choose({ rank: msg.rank, pid: msg.pid })) {
          this.host.log.warn(`panel: setRank: rank ${msg.rank} (pid ${String(msg.pid)}) is not a process of this run`);
          return;
        }
        // Another process: its tensors, steps and findings; the selection was of the previous one.
        this.selected = null;
        this.sendFull();
        return;
      }
      case 'setOptimizer':
        this.optimizer = msg.optimizer;
        // Another set of steps: the webview's columns and curves are rebuilt from a new snapshot.
        this.sendFull();
        return;
      case 'setHeatmapMetric':
        this.metric = msg.metric;
        if (!s) return;
        this.sendReplace(this.findings());
        return;
      case 'goToLayer': {
        const f = s && this.findings().find((x) => x.id === msg.findingId);
        if (!f?.source) return;
        await revealSource(f.source.file, f.source.line, f.source.column);
        return;
      }
      case 'applyRemedy': {
        const f = s && this.findings().find((x) => x.id === msg.findingId);
        if (!s || !f || !f.remedies.some((r) => r.id === msg.remedyId)) {
          // The panel's list was older than the run's findings (re-analysed, another run shown): say
          // so rather than leave a click without an answer.
          const why = !s ? 'the panel shows no run' : !f ? `that finding is no longer among ${basename(s.script)}'s findings` : 'that finding no longer offers this fix';
          this.host.log.warn(`panel fix not applied: ${why} (${msg.findingId}, ${msg.remedyId})`);
          void vscode.window.showWarningMessage(`GradScope: nothing was edited: ${why}. The panel now shows the current findings.`);
          if (s) this.sendReplace(this.findings());
          return;
        }
        await this.host.applyRemedy(s, f, msg.remedyId);
        return;
      }
      case 'stop':
        if (s?.live && !s.live.exited) await s.live.stop();
        return;
      case 'rerun':
        if (s) await this.host.rerun(s);
        return;
      case 'openRun': {
        // Only runs the host listed: the webview never names an arbitrary file.
        if (!this.savedRuns.some((r) => r.runFile === msg.runFile)) return;
        this.show(await this.host.loadRun(msg.runFile), false);
        return;
      }
      case 'compareRun': {
        if (msg.runFile === null) this.compare = null;
        else {
          const ref = this.savedRuns.find((r) => r.runFile === msg.runFile);
          if (!ref) return;
          const other = await this.host.loadRun(ref.runFile);
          this.compare = { runId: other.id, label: ref.label, globalNorm: compareCurve(other.store) };
        }
        this.sendFull();
        return;
      }
      case 'exportReport':
        await this.exportReport();
        return;
    }
  }

  private async exportReport(): Promise<void> {
    const s = this.source;
    if (!s) return;
    const dist = vscode.Uri.joinPath(this.host.extensionUri, 'dist', 'webview').fsPath;
    const [js, css] = await Promise.all([readFile(join(dist, 'main.js'), 'utf8'), readFile(join(dist, 'main.css'), 'utf8').catch(() => '')]);
    const store = this.sentStore ?? this.shownStore();
    const { snapshot, details, views } = reportData(store, this.header(), this.findings(), this.ranks?.report(store) ?? null);
    const html = buildReportHtml(snapshot, { js, css }, details, views);
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(dirname(s.script));
    const target = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.joinPath(folder, `gradscope-report-${basename(s.script).replace(/\.[^.]+$/, '')}.html`),
      filters: { HTML: ['html'] },
      title: 'Export GradScope report',
    });
    if (!target) return;
    await writeFile(target.fsPath, html, 'utf8');
    this.host.log.info(`panel: report written to ${target.fsPath} (${html.length} bytes)`);
    void vscode.window.showInformationMessage(`GradScope: report written to ${basename(target.fsPath)}.`, 'Open in Browser').then((pick) => {
      if (pick) void vscode.env.openExternal(target);
    });
  }
}

export async function revealSource(file: string, line: number, column: number): Promise<void> {
  const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
  const pos = new vscode.Position(Math.max(0, line - 1), Math.max(0, column - 1));
  await vscode.window.showTextDocument(doc, { selection: new vscode.Range(pos, pos), viewColumn: vscode.ViewColumn.One, preserveFocus: false });
}

function safePreview(raw: unknown): string {
  try {
    const s = JSON.stringify(raw) ?? String(raw);
    return s.length > 200 ? `${s.slice(0, 200)}…` : s;
  } catch {
    return '(unserialisable)';
  }
}
