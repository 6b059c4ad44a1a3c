// The status bar item of the current (or last) run: live step, global gradient norm and backend,
// then how the run ended. Clicking it stops a live run, or shows the terminal of an ended one.
import * as vscode from 'vscode';
import { shownStore } from '../process/runHandle';
import type { RunExit, RunSession } from '../process/runSession';

/** At most this many status bar updates per second, however fast steps arrive. */
const MAX_UPDATES_PER_SEC = 10;
const MIN_INTERVAL_MS = 1000 / MAX_UPDATES_PER_SEC;

export const SHOW_TERMINAL_COMMAND = 'gradscope.showRunTerminal';

export function formatNorm(x: number | undefined | null): string {
  if (x === undefined || x === null) return '–';
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Inf' : '-Inf';
  return x.toExponential(1);
}

const ENDED: Record<RunExit['reason'], { icon: string; label: string; alarm: boolean }> = {
  completed: { icon: '$(check)', label: 'completed', alarm: false },
  'step-limit': { icon: '$(check)', label: 'step limit', alarm: false },
  stopped: { icon: '$(debug-stop)', label: 'stopped', alarm: false },
  'time-limit': { icon: '$(watch)', label: 'time limit', alarm: false },
  crashed: { icon: '$(error)', label: 'crashed', alarm: true },
  'protocol-error': { icon: '$(warning)', label: 'protocol error', alarm: true },
  'probe-lost': { icon: '$(debug-disconnect)', label: 'probe lost', alarm: true },
};

/** " · rank 0 of 2" for a run of several processes (the steps and norm are those of `store`, the one
 * shownStore picked); "" for one. */
function ranksText(run: RunSession, store: RunSession['store']): string {
  const ranks = run.ranks;
  if (ranks.length < 2) return '';
  const shown = ranks.find((r) => r.store === store);
  return shown ? ` · rank ${shown.rank} of ${ranks.length}` : ` · ${ranks.length} ranks`;
}

export class RunStatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private run: RunSession | undefined;
  private subscriptions: { dispose(): void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastRender = 0;

  constructor() {
    this.item = vscode.window.createStatusBarItem('gradscope.run', vscode.StatusBarAlignment.Left, 10);
    this.item.name = 'GradScope Run';
  }

  /** The text shown now (for `GradScopeApi.inspect()`). */
  get text(): string {
    return this.item.text;
  }

  /** Follows a live run until `showEnded`. */
  showLive(run: RunSession): void {
    this.detach();
    this.run = run;
    this.item.backgroundColor = undefined;
    this.item.command = { title: 'Stop Run', command: 'gradscope.stopRun' };
    // The steps shown are the run's shown process's: its own, or (a script that starts its ranks,
    // mp.spawn) the first rank's, so every rank's store is followed as it joins.
    const follow = (store: RunSession['store']): void => void this.subscriptions.push(store.onDidChange(() => this.schedule()));
    follow(run.store);
    for (const r of run.ranks) if (r.store !== run.store) follow(r.store);
    this.subscriptions.push(run.onDidJoinRank((r) => follow(r.store)));
    this.render();
    this.item.show();
  }

  showEnded(run: RunSession, exit: RunExit): void {
    if (this.run !== run) return;
    this.detach();
    const e = ENDED[exit.reason];
    // A run file cut short by a disk error is said here too: the run is not what a restart will show.
    const rec = exit.recording ? ` · $(warning) run file holds ${exit.recording.steps}` : '';
    // A script that only started its ranks took no step itself: the steps are its shown rank's.
    const store = shownStore(run);
    const steps = store === run.store ? exit.steps : store.stepCount;
    this.item.text = `${e.icon} GradScope: ${e.label} · ${steps} step${steps === 1 ? '' : 's'}${ranksText(run, store)}${rec}`;
    this.item.tooltip = new vscode.MarkdownString(`**GradScope** — ${escapeMd(basename(run.script))}\n\n${escapeMd(exit.message)}\n\nClick to show the run's terminal.`);
    this.item.backgroundColor = e.alarm ? new vscode.ThemeColor('statusBarItem.errorBackground') : rec ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.item.command = { title: 'Show Run Terminal', command: SHOW_TERMINAL_COMMAND };
    this.item.show();
  }

  dispose(): void {
    this.detach();
    this.item.dispose();
  }

  private detach(): void {
    for (const d of this.subscriptions) d.dispose();
    this.subscriptions = [];
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Throttle: render now if the last render is old enough, else once at the end of the interval. */
  private schedule(): void {
    if (this.timer) return;
    const wait = this.lastRender + MIN_INTERVAL_MS - Date.now();
    if (wait <= 0) this.render();
    else
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.render();
      }, wait);
  }

  private render(): void {
    const run = this.run;
    if (!run) return;
    this.lastRender = Date.now();
    const store = shownStore(run);
    const hello = store.hello;
    const steps = store.stepCount;
    if (steps === 0) {
      this.item.text = `$(loading~spin) GradScope: starting${hello ? ` · ${hello.backend}` : ''}`;
    } else {
      const summary = store.summary();
      const norm = formatNorm(summary.globalNorm.last);
      // The norm is over finite entries; say so once NaN/Inf have appeared, or 0.0e+0 would mislead.
      const bad = summary.firstNonFiniteStep !== null ? ` · $(warning) NaN/Inf since step ${summary.firstNonFiniteStep}` : '';
      this.item.text = `$(pulse) GradScope: step ${steps} · ‖g‖ ${norm}${bad}${ranksText(run, store)}${hello ? ` · ${hello.backend}` : ''}`;
    }
    const lines = [`**GradScope** — ${escapeMd(basename(run.script))}`];
    if (hello) lines.push(`Backend: ${escapeMd(hello.backend)} (${escapeMd(hello.device)}) — ${escapeMd(hello.backendReason)}`);
    if (steps > 0) lines.push(`‖g‖ is the global L2 norm of the finite gradient entries at the latest step.`);
    lines.push('Click to stop the run.');
    this.item.tooltip = new vscode.MarkdownString(lines.join('\n\n'));
  }
}

function basename(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

function escapeMd(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
}
