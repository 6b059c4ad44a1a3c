// GradScope's entry point: build the context, register the features, return the API. Short on purpose.
import * as vscode from 'vscode';
import { registerCommands } from './features/commands';
import { GradScopeContext, type GradScopeApi } from './features/context';
import { describeError } from './features/errors';
import { registerGettingStarted } from './features/gettingStarted';
import { registerCodeActions } from './features/codeActions';
import { DiagnosticsFeature } from './features/diagnostics';
import { registerHover } from './features/hover';
import { NotebookKernelFeature } from './features/notebookKernel';
import { PanelFeature } from './features/panel';
import { registerRemedies } from './features/remedies';
import { RemoteListenFeature } from './features/remoteListen';
import { prepareFixes } from './process/fixEngine';

let ctx: GradScopeContext | undefined;

export function activate(context: vscode.ExtensionContext): GradScopeApi {
  try {
    ctx = new GradScopeContext(context);
    context.subscriptions.push(ctx);
    registerCommands(ctx);
    ctx.subscriptions.add(registerGettingStarted(ctx));
    const panel = ctx.subscriptions.add(new PanelFeature(ctx));
    const diagnostics = ctx.subscriptions.add(new DiagnosticsFeature(ctx));
    ctx.subscriptions.add(registerHover(ctx, diagnostics));
    ctx.subscriptions.add(registerCodeActions(ctx, diagnostics));
    ctx.subscriptions.add(registerRemedies(ctx, diagnostics));
    ctx.subscriptions.add(new NotebookKernelFeature(ctx));
    const remote = ctx.subscriptions.add(new RemoteListenFeature(ctx));
    // Python quick fixes parse with Tree-sitter (wasm, loaded asynchronously): load it when a
    // PyTorch run starts, so the fixes are ready when its diagnostics appear.
    ctx.subscriptions.add(ctx.runs.onDidStartRun((run) => void prepareFixes(run.script).catch((e: unknown) => ctx?.log.warn(`Python parser: ${String(e)}`))));
    // A notebook run's fixes edit Python cells: the same parser, loaded when such a run is opened.
    ctx.subscriptions.add(
      ctx.openRuns.onDidOpen((run) => run.script.toLowerCase().endsWith('.ipynb') && void prepareFixes().catch((e: unknown) => ctx?.log.warn(`Python parser: ${String(e)}`))),
    );
    ctx.log.info(`GradScope ${(context.extension.packageJSON as { version: string }).version} activated (${vscode.env.appName} ${vscode.version})`);
    return ctx.api(
      () => panel.inspect(),
      () => remote.state(),
    );
  } catch (e) {
    void vscode.window.showErrorMessage(`GradScope failed to start: ${e instanceof Error ? e.message : String(e)}`);
    ctx?.log.error(describeError(e));
    throw e;
  }
}

export async function deactivate(): Promise<void> {
  // The host gives deactivate about 5 s; the run's process group must not outlive it.
  await ctx?.stopRuns();
  ctx = undefined;
}
