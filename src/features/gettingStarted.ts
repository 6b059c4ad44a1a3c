// "Get started": the walkthrough's commands (open a bundled example in the user's folder) and the
// first-run check for PyTorch scripts (say what to install, offer the interpreter picker).
import { join } from 'node:path';
import * as vscode from 'vscode';
import { checkTorch, choosePython } from '../process/python';
import type { GradScopeContext } from './context';
import { copyExample, EXAMPLES_FOLDER, FIRST_EXAMPLE, listExamples } from './examples';
import { torchSetupAdvice } from './firstRun';
import { PYTHON_EXTENSION_ID, type InterpreterPick } from './pythonInterpreter';

export const OPEN_EXAMPLE_COMMAND = 'gradscope.openExample';
export const WALKTHROUGH_ID = 'gradscope.gettingStarted';

export function registerGettingStarted(ctx: GradScopeContext): vscode.Disposable {
  return vscode.commands.registerCommand(OPEN_EXAMPLE_COMMAND, async (id?: unknown) => {
    try {
      return await openExample(ctx, typeof id === 'string' ? id : undefined);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      ctx.log.warn(`Open Example: ${message}`);
      void vscode.window.showErrorMessage(`GradScope Open Example: ${message}`);
      return undefined;
    }
  });
}

/**
 * Copies a bundled example (by id, or picked from a list) into `<folder>/gradscope-examples/`, or
 * the extension's global storage when no folder is open, and opens it. Returns the copy's path.
 */
async function openExample(ctx: GradScopeContext, id: string | undefined): Promise<string | undefined> {
  const root = vscode.Uri.joinPath(ctx.extension.extensionUri, 'examples').fsPath;
  if (!id) {
    const items = listExamples(root).map((e) => ({
      label: e.file,
      description: e.framework === 'tfjs' ? 'TensorFlow.js' : 'PyTorch',
      detail: e.summary,
      id: e.id,
      picked: e.id === FIRST_EXAMPLE,
    }));
    const pick = await vscode.window.showQuickPick(items, { title: 'GradScope: Open an Example', placeHolder: 'A training script to copy into your folder and open' });
    if (!pick) return undefined;
    id = pick.id;
  }
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const dest = folder ? join(folder, EXAMPLES_FOLDER) : vscode.Uri.joinPath(ctx.extension.globalStorageUri, EXAMPLES_FOLDER).fsPath;
  const { path, created } = copyExample(root, id, dest);
  ctx.log.info(`example ${id}: ${created ? 'copied to' : 'already at'} ${path}`);
  await vscode.window.showTextDocument(vscode.Uri.file(path), { preview: false });
  return path;
}

/**
 * Before a PyTorch run: is there an interpreter with torch? If not, says exactly what to install
 * and offers the interpreter picker (the Python extension's, else the gradscope.pythonPath
 * setting). Returns the message when nothing can run, undefined when torch is usable.
 */
export async function preflightTorch(ctx: GradScopeContext, pick: InterpreterPick | undefined): Promise<string | undefined> {
  const check = await checkTorch(choosePython(pick?.python, process.env, pick?.source ?? 'setting'));
  if (check.ok) return undefined;
  const pythonExtension = vscode.extensions.getExtension(PYTHON_EXTENSION_ID) !== undefined;
  const advice = torchSetupAdvice(check, { pythonExtension, platform: process.platform });
  ctx.log.warn(`PyTorch check: ${check.message}`);
  const copy = 'Copy Install Command';
  void vscode.window
    .showWarningMessage(`GradScope: ${advice.message}`, advice.pickLabel, copy)
    .then(async (choice) => {
      if (choice === copy) {
        await vscode.env.clipboard.writeText(advice.installCommand);
      } else if (choice === advice.pickLabel) {
        if (pythonExtension) await vscode.commands.executeCommand('python.setInterpreter');
        else await chooseInterpreter(ctx);
      }
    })
    .then(undefined, (e: unknown) => ctx.log.warn(`choosing an interpreter: ${String(e)}`));
  return advice.message;
}

/**
 * Without the Python extension: a file picker for the interpreter, saved as gradscope.pythonPath
 * (machine-scoped: the user's settings, or the remote machine's in a remote window), then checked.
 */
async function chooseInterpreter(ctx: GradScopeContext): Promise<void> {
  const picked = await vscode.window.showOpenDialog({
    title: 'GradScope: the Python interpreter that has PyTorch',
    canSelectFiles: true,
    canSelectFolders: false,
    canSelectMany: false,
    openLabel: 'Use This Interpreter',
  });
  const python = picked?.[0]?.fsPath;
  if (!python) return;
  await vscode.workspace.getConfiguration('gradscope').update('pythonPath', python, vscode.ConfigurationTarget.Global);
  const check = await checkTorch(choosePython(python, process.env, 'setting'));
  ctx.log.info(`gradscope.pythonPath set to ${python}: ${check.ok ? `torch ${check.torchVersion}` : check.message}`);
  if (check.ok) void vscode.window.showInformationMessage(`GradScope: PyTorch scripts now run with ${python} (torch ${check.torchVersion}). Run Train & Inspect again.`);
  else void vscode.window.showWarningMessage(`GradScope: ${torchSetupAdvice(check, { pythonExtension: false, platform: process.platform }).message}`);
}
