// The extension's one context object: its scope (disposed on deactivation), the log, the runs.
import * as vscode from 'vscode';
import { DisposableStore } from '../core/util/disposableStore';
import type { RunExit, RunSession } from '../process/runSession';
import type { DiagnosticsFeature } from './diagnostics';
import type { PanelFeature } from './panel';
import { RunController, type RunEnded } from './runController';

/** What activate() returns: enough for tests (and other extensions) to observe runs. */
export interface GradScopeApi {
  currentRun(): RunSession | undefined;
  readonly onDidStartRun: vscode.Event<RunSession>;
  readonly onDidEndRun: vscode.Event<RunEnded>;
  /** What the views show now: the status bar text and what the latest run's terminal was sent. */
  inspect(): {
    statusText: string;
    running: boolean;
    terminalName: string | undefined;
    terminalText: string;
    panel: { open: boolean; runId: string | null; ready: boolean; snapshots: number; appends: number };
  };
}

export class GradScopeContext implements vscode.Disposable {
  readonly log: vscode.LogOutputChannel;
  readonly runs: RunController;
  /** The extension's scope: everything here lives until deactivation (disposed last added, first). */
  readonly subscriptions = new DisposableStore();
  /** The inspection panel feature (set by activate()). */
  panel: PanelFeature | undefined;
  /** Diagnostics, hover and quick fixes read this (set by activate()). */
  diagnostics: DiagnosticsFeature | undefined;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('GradScope', { log: true });
    // Run files go to the workspace's storage, or the global one when no folder is open.
    this.runs = new RunController(extension.storageUri ?? extension.globalStorageUri, this.log);
    this.subscriptions.add(this.runs);
    this.subscriptions.add(this.log);
  }

  api(): GradScopeApi {
    const runs = this.runs;
    return {
      currentRun: () => runs.current(),
      onDidStartRun: runs.onDidStartRun,
      onDidEndRun: runs.onDidEndRun,
      inspect: () => {
        const shown = this.panel?.current?.shown;
        const sent = this.panel?.current?.sent;
        return {
          ...runs.inspect(),
          panel: { open: this.panel?.current !== undefined, runId: shown?.runId ?? null, ready: sent?.ready ?? false, snapshots: sent?.snapshots ?? 0, appends: sent?.appends ?? 0 },
        };
      },
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
