// "GradScope: Listen for a Remote Run" and "Stop Listening": a listener (src/process/remoteListener.ts)
// on 127.0.0.1, a token generated for it, and the two command lines a user needs (the SSH tunnel
// from here, the run on the remote machine), offered to copy. Each run that connects is announced
// like a run Train & Inspect started (the panel shows it live, the diagnostics follow it), with its
// source paths mapped to the workspace's files where the same relative path exists
// (./remotePaths.ts); a file that is not here is said once in the log and a warning.
import { join } from 'node:path';
import * as vscode from 'vscode';
import { DisposableStore } from '../core/util/disposableStore';
import { RemoteListener, connectHints, generateToken } from '../process/remoteListener';
import type { RemoteRun } from '../process/remoteRun';
import type { GradScopeContext } from './context';
import { workspacePathMapper } from './remotePaths';

export const LISTEN_COMMAND = 'gradscope.listenRemote';
export const STOP_LISTENING_COMMAND = 'gradscope.stopListening';
const LISTENING_CONTEXT = 'gradscope.listening';

/** What the API's tests read: the listener's port and token (null while not listening) and the runs received. */
export interface RemoteListenState {
  port: number | null;
  token: string | null;
  runs: readonly RemoteRun[];
}

export class RemoteListenFeature implements vscode.Disposable {
  private listener: RemoteListener | null = null;
  private readonly scope = new DisposableStore();
  private readonly item = vscode.window.createStatusBarItem('gradscope.remote', vscode.StatusBarAlignment.Left, 99);

  constructor(private readonly ctx: GradScopeContext) {
    this.item.name = 'GradScope remote runs';
    this.item.command = STOP_LISTENING_COMMAND;
    this.scope.add(vscode.commands.registerCommand(LISTEN_COMMAND, (port?: unknown) => this.listen(typeof port === 'number' ? port : undefined)));
    this.scope.add(vscode.commands.registerCommand(STOP_LISTENING_COMMAND, () => this.stop(true)));
  }

  state(): RemoteListenState {
    return { port: this.listener?.port ?? null, token: this.listener?.token ?? null, runs: this.listener?.runs ?? [] };
  }

  /** Starts listening (`port` from a test or the command's argument; else the setting, else an input box). Returns the state, or null when nothing was started. */
  async listen(port?: number): Promise<RemoteListenState | null> {
    if (this.listener) {
      void this.offerHints(this.listener.port, this.listener.token, 'GradScope is already listening');
      return this.state();
    }
    let p = port ?? vscode.workspace.getConfiguration('gradscope').get<number>('remote.port', 7865);
    if (port === undefined && !p) {
      const typed = await vscode.window.showInputBox({
        title: 'GradScope: Listen for a Remote Run',
        prompt: 'TCP port on 127.0.0.1 (the SSH tunnel forwards the remote machine to it)',
        value: '7865',
        validateInput: (v) => (/^\d+$/.test(v) && Number(v) > 0 && Number(v) < 65536 ? null : 'a port number, 1–65535'),
      });
      if (!typed) return null;
      p = Number(typed);
    }
    const root = this.ctx.extension.storageUri ?? this.ctx.extension.globalStorageUri;
    const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    const token = generateToken();
    try {
      this.listener = await RemoteListener.open({ port: p, token, runDir: join(root.fsPath, 'runs'), mapPath: workspacePathMapper(folders) });
    } catch (e) {
      void vscode.window.showErrorMessage(`GradScope: cannot listen for remote runs: ${(e as Error).message}`);
      this.ctx.log.error(`listen: ${(e as Error).message}`);
      return null;
    }
    const l = this.listener;
    this.ctx.log.info(`listening for remote runs on 127.0.0.1:${l.port}`);
    l.onDidRefuse(({ why, peer }) => {
      this.ctx.log.warn(`refused a remote connection from ${peer}: ${why} (nothing recorded)`);
      void vscode.window.showWarningMessage(`GradScope refused a remote connection from ${peer}: ${why}.`);
    });
    l.onDidConnect(({ peer }) => this.ctx.log.info(`a probe connected from ${peer}; its run starts with its first step`));
    l.onDidStartRun((run) => this.onRun(run));
    void vscode.commands.executeCommand('setContext', LISTENING_CONTEXT, true);
    this.showStatus();
    void this.offerHints(l.port, token, `GradScope is listening on 127.0.0.1:${l.port}`);
    return this.state();
  }

  private onRun(run: RemoteRun): void {
    const h = run.hello;
    this.ctx.log.info(`remote run ${run.id} from ${run.peer}${run.host ? ` (${run.host})` : ''}: ${run.script} (${h.framework}, ${h.device}, pid ${h.pid})`);
    this.ctx.startedRemoteRun(run);
    this.showStatus();
    const said = new Set<string>();
    const sayUnmapped = (): void => {
      const missing = [...run.unmappedFiles].filter((f) => !said.has(f));
      if (!missing.length) return;
      missing.forEach((f) => said.add(f));
      const text = `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in this workspace: the remote run's findings there cannot be placed on a line`;
      this.ctx.log.warn(text);
      void vscode.window.showWarningMessage(`GradScope: ${text}.`);
    };
    const sub = run.store.onDidChange(() => {
      sayUnmapped();
      this.showStatus();
    });
    void run.done.then((exit) => {
      sub.dispose();
      sayUnmapped();
      this.ctx.log.info(`remote run ${run.id}: ${exit.message}`);
      void vscode.window.showInformationMessage(`GradScope: remote run ${exit.message}.`);
      this.showStatus();
    });
  }

  private showStatus(): void {
    const l = this.listener;
    if (!l) return this.item.hide();
    const live = l.liveRuns;
    this.item.text = live.length ? `$(remote) GradScope: ${live.map((r) => `step ${Math.max(0, r.store.lastStep)}`).join(', ')}` : `$(remote) GradScope: listening on ${l.port}`;
    this.item.tooltip = `Listening for remote runs on 127.0.0.1:${l.port}; ${l.runs.length} received. Click to stop listening (the remote scripts go on training).`;
    this.item.show();
  }

  private async offerHints(port: number, token: string, head: string): Promise<void> {
    const hints = connectHints(port, token);
    this.ctx.log.info(`tunnel (run here): ${hints.tunnel}`);
    this.ctx.log.info(`on the remote machine: ${hints.python.replace(token, '<token>')}`);
    const pick = await vscode.window.showInformationMessage(
      `${head}. Open the tunnel from this machine (${hints.tunnel}), then run the script on the remote machine with the token.`,
      'Copy Run Command',
      'Copy SSH Tunnel',
      'Copy TF.js Command',
    );
    const text = pick === 'Copy Run Command' ? hints.python : pick === 'Copy SSH Tunnel' ? hints.tunnel : pick === 'Copy TF.js Command' ? hints.tfjs : null;
    if (text) await vscode.env.clipboard.writeText(text);
  }

  /** Stops listening; live remote runs end as stopped (their scripts go on training). */
  async stop(say = false): Promise<void> {
    const l = this.listener;
    this.listener = null;
    void vscode.commands.executeCommand('setContext', LISTENING_CONTEXT, false);
    this.item.hide();
    if (!l) {
      if (say) void vscode.window.showInformationMessage('GradScope is not listening for remote runs.');
      return;
    }
    await l.close();
    this.ctx.log.info('stopped listening for remote runs');
  }

  dispose(): void {
    void this.stop();
    this.item.dispose();
    this.scope.dispose();
  }
}
