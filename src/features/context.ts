// The extension's one context object: its scope (disposed on deactivation), the log, the runs. The
// features get it and the run handles in it, not each other.
import * as vscode from 'vscode';
import { DisposableStore } from '../core/util/disposableStore';
import type { RunHandle } from '../process/runHandle';
import type { RunExit, RunSession } from '../process/runSession';
import { OpenRuns } from './openRuns';
import { RunController, type RunEnded } from './runController';

/** What the inspection panel shows now, for the API (the panel feature answers it). */
export interface PanelInspection {
  open: boolean;
  runId: string | null;
  ready: boolean;
  snapshots: number;
  appends: number;
}

/** What activate() returns: enough for tests (and other extensions) to observe runs. */
export interface GradScopeApi {
  currentRun(): RunSession | undefined;
  readonly onDidStartRun: vscode.Event<RunSession>;
  readonly onDidEndRun: vscode.Event<RunEnded>;
  /** What the views show now: the status bar text and what the latest run's terminal was sent. */
  /** The remote listener's state (GradScope: Listen for a Remote Run): port and token while listening, the runs received. */
  remoteListen?(): { port: number | null; token: string | null; runs: readonly RunHandle[] };
  inspect(): {
    statusText: string;
    running: boolean;
    terminalName: string | undefined;
    terminalText: string;
    panel: PanelInspection;
  };
}

export class GradScopeContext implements vscode.Disposable {
  readonly log: vscode.LogOutputChannel;
  readonly runs: RunController;
  /** The runs the views show: each run is opened here as it starts, and each saved run a view reads back. */
  readonly openRuns = new OpenRuns();
  /** The extension's scope: everything here lives until deactivation (disposed last added, first). */
  readonly subscriptions = new DisposableStore();
  private readonly remoteStarted = new vscode.EventEmitter<RunHandle>();
  /** A remote run began streaming to the listener (./remoteListen.ts): live, like a run Train & Inspect started. */
  readonly onDidStartRemoteRun = this.remoteStarted.event;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('GradScope', { log: true });
    // Run files go to the workspace's storage, or the global one when no folder is open.
    this.runs = new RunController(extension.storageUri ?? extension.globalStorageUri, this.log);
    this.subscriptions.add(this.runs);
    this.subscriptions.add(this.log);
    this.subscriptions.add(this.openRuns);
    this.subscriptions.add(this.runs.onDidStartRun((run) => this.openRuns.open(run)));
    this.subscriptions.add(this.remoteStarted);
  }

  /** Announces a remote run: opened for the views (diagnostics) and shown live in the panel. */
  startedRemoteRun(run: RunHandle): void {
    this.openRuns.open(run);
    this.remoteStarted.fire(run);
  }

  /** `panel`: what the panel shows now (the panel feature's inspect()). */
  api(panel: () => PanelInspection, remoteListen?: GradScopeApi['remoteListen']): GradScopeApi {
    const runs = this.runs;
    return {
      ...(remoteListen ? { remoteListen } : {}),
      currentRun: () => runs.current(),
      onDidStartRun: runs.onDidStartRun,
      onDidEndRun: runs.onDidEndRun,
      inspect: () => ({ ...runs.inspect(), panel: panel() }),
    };
  }

  /** Stops a live run; bounded so deactivation stays within the host's ~5 s. */
  async stopRuns(): Promise<RunExit | undefined> {
    const stopped = this.runs.stop();
    const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), 4000).unref());
    return Promise.race([stopped, timeout]);
  }

  dispose(): void {
    this.subscriptions.dispose();
  }
}
