// The command boundary: handlers for the two contributed commands. Errors below this line are
// thrown (typed); here they are logged and, only here, shown to the user.
import { dirname } from 'node:path';
import * as vscode from 'vscode';
import type { RunExit } from '../process/runSession';
import type { GradScopeContext } from './context';
import { asGradScopeError, describeError, GradScopeError } from './errors';
import { preflightTorch } from './gettingStarted';
import { pickInterpreter } from './pythonInterpreter';

export type TrainResult = { started: true; runId: string } | { started: false; reason: 'untrusted' | 'no-script' | 'cancelled' | 'failed'; message: string };

const SCRIPT_LANGUAGES = new Set(['javascript', 'typescript', 'javascriptreact', 'typescriptreact', 'python']);

export function registerCommands(ctx: GradScopeContext): void {
  ctx.subscriptions.push(
    vscode.commands.registerCommand('gradscope.trainAndInspect', (uri?: unknown) =>
      boundary(
        ctx,
        'Train & Inspect',
        () => trainAndInspect(ctx, uri),
        (message): TrainResult => ({
          started: false,
          reason: 'failed',
          message,
        }),
      ),
    ),
    vscode.commands.registerCommand('gradscope.stopRun', () =>
      boundary(
        ctx,
        'Stop Run',
        () => stopRun(ctx),
        () => undefined,
      ),
    ),
  );
}

/** Runs a command body; an error is logged, shown once, and turned into the command's result. */
async function boundary<T>(ctx: GradScopeContext, title: string, body: () => Promise<T>, onError: (message: string) => T): Promise<T> {
  try {
    return await body();
  } catch (e) {
    const err = asGradScopeError(e);
    if (err.category === 'internal') ctx.log.error(`${title}: ${describeError(e)}`);
    else ctx.log.warn(`${title}: ${err.message}`);
    const text = `GradScope ${title}: ${err.message}`;
    if (err.category === 'user') void vscode.window.showWarningMessage(text);
    else {
      void vscode.window.showErrorMessage(text, 'Show Log').then((pick) => {
        if (pick) ctx.log.show();
      });
    }
    return onError(err.message);
  }
}

async function trainAndInspect(ctx: GradScopeContext, arg: unknown): Promise<TrainResult> {
  // Trust is checked here, not only through the manifest: a command can be invoked in any state
  // (keybinding, another extension, a URI handler), and running the script executes workspace code.
  if (!vscode.workspace.isTrusted) {
    const message = 'Nothing ran: this workspace is not trusted, and Train & Inspect executes the training script. ' + 'Trust the workspace to run it.';
    ctx.log.warn(`Train & Inspect refused: workspace not trusted`);
    void vscode.window.showWarningMessage(`GradScope: ${message}`, 'Manage Workspace Trust').then((pick) => {
      if (pick) void vscode.commands.executeCommand('workbench.trust.manage');
    });
    return { started: false, reason: 'untrusted', message };
  }

  const uri = await resolveScript(arg);

  const live = ctx.runs.current();
  if (live) {
    const stop = 'Stop and Run';
    const pick = await vscode.window.showWarningMessage(
      `A GradScope run is in progress (${live.script.split(/[\\/]/).pop()}, step ${live.store.stepCount}). Stop it and run ${uri.path.split('/').pop()}?`,
      { modal: true },
      stop,
    );
    if (pick !== stop) return { started: false, reason: 'cancelled', message: 'a run is already in progress' };
    await ctx.runs.stop();
  }

  const config = vscode.workspace.getConfiguration('gradscope', uri);
  const folder = vscode.workspace.getWorkspaceFolder(uri);
  const nodePath = config.get<string>('nodePath', '').trim();
  // PyTorch: the Python extension's interpreter for this folder, else gradscope.pythonPath.
  const python = /\.py$/i.test(uri.fsPath) ? await pickInterpreter(uri, config.get<string>('pythonPath', ''), { extensions: vscode.extensions }) : undefined;
  if (python?.note) ctx.log.info(`Python interpreter: ${python.note}`);
  if (python?.source) ctx.log.info(`Python interpreter: ${python.python} (${python.source === 'setting' ? 'gradscope.pythonPath' : 'Python extension'})`);
  if (python) {
    // First run: no interpreter or no torch is one clear notification (what to install, the picker), not a failed run.
    const problem = await preflightTorch(ctx, python);
    if (problem) return { started: false, reason: 'failed', message: problem };
  }
  const run = ctx.runs.start({
    script: uri.fsPath,
    cwd: folder?.uri.fsPath ?? dirname(uri.fsPath),
    // An empty setting means the `node` on PATH (the extension host may be Electron, not Node).
    nodePath: nodePath || 'node',
    // Undefined: RunSession uses GRADSCOPE_PYTHON or the `python3` on PATH. It checks torch imports first.
    pythonPath: python?.python,
    pythonSource: python?.source,
    maxSteps: nonNegative(config.get<number>('maxSteps', 0)),
    timeoutSec: nonNegative(config.get<number>('timeoutSeconds', 0)),
    detailEvery: nonNegative(config.get<number>('detailEvery', 0)),
  });
  return { started: true, runId: run.id };
}

async function stopRun(ctx: GradScopeContext): Promise<RunExit | undefined> {
  if (!ctx.runs.current()) {
    void vscode.window.showInformationMessage('GradScope: no run is in progress.');
    return undefined;
  }
  return ctx.runs.stop();
}

/** The script to run: a URI argument (explorer, editor title) or the active editor's file, saved. */
async function resolveScript(arg: unknown): Promise<vscode.Uri> {
  let uri: vscode.Uri | undefined = arg instanceof vscode.Uri ? arg : undefined;
  if (!uri) {
    // No text editor is active when the command comes from a walkthrough or another non-text
    // editor: then the one training script visible beside it is meant.
    const scripts = vscode.window.visibleTextEditors.filter((e) => e.document.uri.scheme === 'file' && SCRIPT_LANGUAGES.has(e.document.languageId));
    const editor = vscode.window.activeTextEditor ?? (scripts.length === 1 ? scripts[0] : undefined);
    if (!editor) throw new GradScopeError('user', 'open a training script first: TensorFlow.js (.js, .mjs, .cjs, .ts) or PyTorch (.py).');
    if (!SCRIPT_LANGUAGES.has(editor.document.languageId) && !/\.([cm]?[jt]s|py)$/i.test(editor.document.fileName)) {
      throw new GradScopeError('user', `${editor.document.fileName.split(/[\\/]/).pop()} is not a TensorFlow.js (JavaScript/TypeScript) or PyTorch (Python) script.`);
    }
    uri = editor.document.uri;
  }
  if (uri.scheme === 'untitled') throw new GradScopeError('user', 'save the script to a file first.');
  if (uri.scheme !== 'file') throw new GradScopeError('user', `cannot run ${uri.toString()}: only local files can be run.`);
  const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
  if (doc?.isDirty && !(await doc.save())) {
    throw new GradScopeError('user', `could not save ${uri.path.split('/').pop()}; nothing ran.`);
  }
  return uri;
}

function nonNegative(x: number | undefined): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? Math.floor(x) : 0;
}
