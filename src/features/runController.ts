// One run at a time: starts a RunSession, wires its per-run scope (terminal, status bar, listeners,
// context key), and tears that scope down when the run ends. The extension's scope owns this object.
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { runWarnings } from '../core/report/warnings';
import { DisposableStore } from '../core/util/disposableStore';
import { RunFileError } from '../core/store/runFile';
import { ensureDir, HostFileError } from '../process/files';
import { RunSession, type RunExit, type RunOptions } from '../process/runSession';
import { shownStore } from '../process/runHandle';
import { GradScopeError } from './errors';
import { RunStatusBar, SHOW_TERMINAL_COMMAND } from './runStatusBar';
import { RunTerminal } from './runTerminal';

export const RUNNING_CONTEXT_KEY = 'gradscope.running';

export interface RunEnded {
  run: RunSession;
  exit: RunExit;
}

export class RunController implements vscode.Disposable {
  /** The live run and its scope: the disposables that live exactly as long as it. */
  private live: { run: RunSession; scope: DisposableStore } | undefined;
  /** The terminal of the latest run; kept after the run ends so its output stays readable. */
  private terminal: RunTerminal | undefined;
  private readonly statusBar = new RunStatusBar();
  private readonly started = new vscode.EventEmitter<RunSession>();
  private readonly ended = new vscode.EventEmitter<RunEnded>();
  readonly onDidStartRun = this.started.event;
  readonly onDidEndRun = this.ended.event;
  private readonly disposables = new DisposableStore();

  constructor(
    private readonly runRoot: vscode.Uri,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.add(this.statusBar);
    this.disposables.add(this.started);
    this.disposables.add(this.ended);
    this.disposables.add(vscode.commands.registerCommand(SHOW_TERMINAL_COMMAND, () => this.terminal?.show(false)));
    void vscode.commands.executeCommand('setContext', RUNNING_CONTEXT_KEY, false);
  }

  current(): RunSession | undefined {
    return this.live?.run;
  }

  inspect(): { statusText: string; running: boolean; terminalName: string | undefined; terminalText: string } {
    return {
      statusText: this.statusBar.text,
      running: this.live !== undefined,
      terminalName: this.terminal?.terminal.name,
      terminalText: this.terminal?.transcript() ?? '',
    };
  }

  /** Starts a run; the caller has checked trust and that no other run is live. */
  start(opts: Omit<RunOptions, 'runDir'>): RunSession {
    if (this.live) throw new GradScopeError('internal', 'a run is already live');
    const runDir = vscode.Uri.joinPath(this.runRoot, 'runs').fsPath;
    try {
      ensureDir(runDir);
    } catch (e) {
      throw new GradScopeError('environment', `cannot use the run folder: ${(e as Error).message}`, { cause: e });
    }

    // The previous run's terminal goes when the next run starts, so terminals do not pile up.
    this.terminal?.dispose();
    // One failing disposable must not keep the others alive (nor break the run's end): logged.
    const scope = new DisposableStore((e) => this.log.warn(`run scope: ${String(e)}`));
    let run: RunSession | undefined;
    const terminal = new RunTerminal(`GradScope: ${basename(opts.script)}`, {
      onInterrupt: () => void this.stopRun(run),
      onClosed: () => {
        if (this.terminal === terminal) this.terminal = undefined;
        void this.stopRun(run);
      },
    });
    this.terminal = terminal;
    terminal.note(`GradScope: running ${opts.script}${opts.args?.length ? ' ' + opts.args.join(' ') : ''}`);
    terminal.show(true);

    try {
      run = RunSession.start({ ...opts, runDir });
    } catch (e) {
      // RunSession reports a bad script through its exit; it throws only when the run file cannot
      // be made (a full or read-only disk), or on a bug.
      terminal.end(`GradScope: the run could not start: ${(e as Error).message}`, true);
      const disk = e instanceof HostFileError || (e instanceof RunFileError && e.code === 'io');
      throw new GradScopeError(disk ? 'environment' : 'internal', `the run could not start: ${(e as Error).message}`, { cause: e });
    }
    const session = run;
    this.live = { run: session, scope };
    this.log.info(`run ${session.id}: started ${session.script} (pid ${session.pid ?? '?'}), run file ${session.runFile}`);

    scope.add(session.onOutput((chunk) => terminal.write(chunk.text)));
    // The probe tells the user which backend ran, in the terminal; the log keeps it too.
    let helloShown = false;
    scope.add(
      session.store.onDidChange(() => {
        const hello = session.store.hello;
        if (hello && !helloShown) {
          helloShown = true;
          this.log.info(`run ${session.id}: backend ${hello.backend} (${hello.device}): ${hello.backendReason}`);
        }
      }),
    );
    this.statusBar.showLive(session);
    void vscode.commands.executeCommand('setContext', RUNNING_CONTEXT_KEY, true);

    void session.done.then(
      (exit) => this.onEnded(session, exit),
      (e: unknown) => this.log.error(`run ${session.id}: ${String(e)}`),
    );
    this.started.fire(session);
    return session;
  }

  /** Stops the live run (SIGTERM to its group, then SIGKILL); resolves with its exit. */
  async stop(): Promise<RunExit | undefined> {
    return this.stopRun(this.live?.run);
  }

  dispose(): void {
    // deactivate() awaits stop(); this is the last resort when the scope is torn down without it.
    void this.live?.run.stop();
    this.live?.scope.dispose();
    this.live = undefined;
    this.terminal?.dispose();
    this.terminal = undefined;
    this.disposables.dispose();
  }

  private async stopRun(run: RunSession | undefined): Promise<RunExit | undefined> {
    if (!run || run.exited) return run ? run.done : undefined;
    this.log.info(`run ${run.id}: stopping (pid ${run.pid ?? '?'})`);
    return run.stop();
  }

  private onEnded(run: RunSession, exit: RunExit): void {
    const failed = exit.reason === 'crashed' || exit.reason === 'protocol-error' || exit.reason === 'probe-lost' || !!exit.recording;
    let line = `GradScope: run ${exit.message}`;
    if (exit.reason === 'crashed' && exit.steps === 0 && /ENOENT/.test(exit.error?.message ?? '')) {
      line += ' (is Node.js installed? set gradscope.nodePath to its path)';
    }
    // Of the process the run shows: a script that only started its ranks (mp.spawn) took no step
    // itself, and "no optimizer step was seen" would be untrue of its ranks.
    const warnings = runWarnings(shownStore(run), { reason: exit.reason });
    if (this.terminal && this.live?.run === run) this.terminal.end(line, failed, warnings);
    const ended = `run ${run.id}: ${exit.reason}: ${exit.message}`;
    if (failed) this.log.warn(ended);
    else this.log.info(ended);
    for (const w of warnings) {
      if (w.level === 'warning') this.log.warn(`run ${run.id}: warning: ${w.message}`);
      else this.log.info(`run ${run.id}: note: ${w.message}`);
    }
    if (exit.error?.stack) this.log.debug(exit.error.stack);
    this.statusBar.showEnded(run, exit);
    if (this.live?.run === run) {
      this.live.scope.dispose();
      this.live = undefined;
      void vscode.commands.executeCommand('setContext', RUNNING_CONTEXT_KEY, false);
    }
    this.ended.fire({ run, exit });
  }
}
