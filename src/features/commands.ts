// The command boundary: handlers for the two contributed commands. Errors below this line are
// thrown (typed); here they are logged and, only here, shown to the user.
import { basename, dirname } from 'node:path';
import * as vscode from 'vscode';
import { fixedFindings } from '../core/analysis/analyzer';
import { withCause } from '../core/analysis/nanCause';
import { locateNan, type LocateNanResult } from '../process/locateNan';
import { withFindings } from '../process/runHandle';
import type { RunExit } from '../process/runSession';
import type { GradScopeContext } from './context';
import type { DiagnosticsFeature } from './diagnostics';
import { asGradScopeError, describeError, GradScopeError } from './errors';
import { preflightTorch } from './gettingStarted';
import { pickInterpreter } from './pythonInterpreter';

export type TrainResult = { started: true; runId: string } | { started: false; reason: 'untrusted' | 'no-script' | 'cancelled' | 'failed'; message: string };

const SCRIPT_LANGUAGES = new Set(['javascript', 'typescript', 'javascriptreact', 'typescriptreact', 'python']);

export function registerCommands(ctx: GradScopeContext): void {
  ctx.subscriptions.add(
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
  );
  ctx.subscriptions.add(
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

export const LOCATE_NAN_COMMAND = 'gradscope.locateNan';
export const LOCATE_NAN_TITLE = 'GradScope: Locate the first non-finite operation';

/** The code action's arguments: which diagnosed run and which of its findings. */
export interface LocateNanArgs {
  runId: string;
  findingId: string;
}

export type LocateNanOutcome = { located: true; message: string; result: LocateNanResult } | { located: false; message: string; result?: LocateNanResult };

/**
 * "Locate the first non-finite operation": the bounded re-run (src/process/locateNan.ts) for a
 * diagnosed run's non-finite finding, then the run's diagnosis shown again with the cause on the
 * finding (its diagnostic moves to the operation's line, and its fixes guard that operation).
 */
export function registerLocateNanCommand(ctx: GradScopeContext, diagnostics: DiagnosticsFeature): vscode.Disposable {
  return vscode.commands.registerCommand(LOCATE_NAN_COMMAND, (arg: unknown) =>
    boundary(
      ctx,
      'Locate the first non-finite operation',
      () => locateNanCommand(ctx, diagnostics, arg),
      (message): LocateNanOutcome => ({ located: false, message }),
    ),
  );
}

async function locateNanCommand(ctx: GradScopeContext, diagnostics: DiagnosticsFeature, arg: unknown): Promise<LocateNanOutcome> {
  const a = arg as Partial<LocateNanArgs> | undefined;
  if (!a || typeof a.runId !== 'string' || typeof a.findingId !== 'string') throw new GradScopeError('user', 'run it from the code action of a non-finite gradient diagnostic.');
  // The re-run executes the user's script: the same rule as Train & Inspect.
  if (!vscode.workspace.isTrusted) throw new GradScopeError('user', 'nothing ran: locating the operation re-runs the training script, and this workspace is not trusted.');
  const diag = diagnostics.runById(a.runId);
  const finding = diag?.run.analyzer.findings.find((f) => f.id === a.findingId && f.kind === 'non-finite-gradient');
  if (!diag || !finding) throw new GradScopeError('user', 'that diagnosis is gone (a newer run replaced it); run the script again.');
  const view = diag.run;
  if (view.live && !view.live.exited) throw new GradScopeError('user', 'the run is still in progress; locate the operation once it has ended.');
  if (ctx.runs.current()) throw new GradScopeError('user', 'a run is in progress; stop it before locating the operation.');
  const config = vscode.workspace.getConfiguration('gradscope', vscode.Uri.file(view.script));
  const python = /\.py$/i.test(view.script) ? await pickInterpreter(vscode.Uri.file(view.script), config.get<string>('pythonPath', ''), { extensions: vscode.extensions }) : undefined;
  const nodePath = config.get<string>('nodePath', '').trim() || 'node';
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `GradScope: re-running ${basename(view.script)} up to step ${finding.step} with checking on…`, cancellable: true },
    async (_progress, token) => {
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      try {
        return await locateNan({
          script: view.script,
          args: [...view.args],
          cwd: view.cwd,
          firstStep: finding.step,
          timeoutSec: 120,
          signal: abort.signal,
          nodePath,
          pythonPath: python?.python,
          pythonSource: python?.source,
        });
      } catch (e) {
        if (abort.signal.aborted) return null;
        throw new GradScopeError('environment', `the re-run failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      } finally {
        sub.dispose();
      }
    },
  );
  if (!result) return { located: false, message: 'cancelled' };
  ctx.log.info(`locate-nan ${finding.id}: ${result.status}: ${result.message}`);
  if (!result.cause) {
    // Said visibly: a re-run that stayed finite is an answer (the script is not deterministic), not a silence.
    void vscode.window.showWarningMessage(`GradScope: ${result.message}`);
    return { located: false, message: result.message, result };
  }
  const cause = result.cause;
  const findings = view.analyzer.findings.map((f) => (f.id === finding.id ? withCause(f, cause) : f));
  // A new view of the same run replaces the old one (one diagnosed run per script) and publishes at once.
  diagnostics.show(withFindings(view, `${view.id}+located`, fixedFindings(findings)));
  const message = `the first non-finite value came from ${cause.op} at ${basename(cause.file)}:${cause.line}`;
  void vscode.window.showInformationMessage(`GradScope: ${message}`, 'Show').then(async (pick) => {
    if (!pick) return;
    const editor = await vscode.window.showTextDocument(vscode.Uri.file(cause.file));
    const pos = new vscode.Position(cause.line - 1, Math.max(0, cause.column - 1));
    editor.selection = new vscode.Selection(pos, pos);
    editor.revealRange(new vscode.Range(pos, pos), vscode.TextEditorRevealType.InCenter);
  });
  return { located: true, message, result };
}

function nonNegative(x: number | undefined): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? Math.floor(x) : 0;
}
