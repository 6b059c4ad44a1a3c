// Which Python interpreter runs a PyTorch script launched from VS Code.
//
// Order: the interpreter the Python extension (ms-python.python) selected for the script's
// workspace folder, through @vscode/python-extension's API; else the `gradscope.pythonPath`
// setting; else nothing here, and RunSession uses GRADSCOPE_PYTHON or the `python3` on PATH.
// Whichever is chosen, RunSession checks that torch imports with it before the run starts, and a
// failure names the interpreter and where it came from (src/process/python.ts).
//
// No `vscode` import at run time: the editor's pieces come in as arguments, so the order can be
// unit-tested without an extension host. @vscode/python-extension (which needs `vscode`) is loaded
// only when the Python extension is actually installed.
import type * as vscode from 'vscode';
import type { PythonExtension } from '@vscode/python-extension';

export const PYTHON_EXTENSION_ID = 'ms-python.python';

export type InterpreterSource = 'python-extension' | 'setting';

export interface InterpreterPick {
  /** Path of the interpreter; undefined: RunSession's own default (GRADSCOPE_PYTHON, then `python3` on PATH). */
  python: string | undefined;
  source: InterpreterSource | undefined;
  /** Why the Python extension's choice was not used, when it was installed (for the log). */
  note?: string;
}

/** The slice of @vscode/python-extension's API used here. */
export type PythonEnvironmentsApi = Pick<PythonExtension['environments'], 'getActiveEnvironmentPath' | 'resolveEnvironment'>;

export interface InterpreterDeps {
  /** vscode.extensions (only getExtension is used). */
  extensions: Pick<typeof vscode.extensions, 'getExtension'>;
  /** The Python extension's API; default: PythonExtension.api() from @vscode/python-extension. */
  loadApi?: () => Promise<{ environments: PythonEnvironmentsApi }>;
  /** Longest wait for the Python extension to activate and answer (default 15 s). */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 15_000;

async function defaultLoadApi(): Promise<{ environments: PythonEnvironmentsApi }> {
  const { PythonExtension } = await import('@vscode/python-extension');
  return PythonExtension.api();
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The interpreter the Python extension selected for `resource` (a script or folder), or why there
 * is none. Never throws. Returns `{ python: undefined }` without a note when the extension is absent.
 */
export async function fromPythonExtension(resource: vscode.Uri, deps: InterpreterDeps): Promise<{ python?: string; note?: string }> {
  if (!deps.extensions.getExtension(PYTHON_EXTENSION_ID)) return {};
  const timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  try {
    const api = await withTimeout((deps.loadApi ?? defaultLoadApi)(), timeoutMs, 'the Python extension');
    const active = api.environments.getActiveEnvironmentPath(resource);
    if (!active?.path) return { note: 'the Python extension has no interpreter selected' };
    const env = await withTimeout(Promise.resolve(api.environments.resolveEnvironment(active)), timeoutMs, 'the Python extension');
    const exe = env?.executable?.uri?.fsPath;
    if (exe) return { python: exe };
    return { note: `the Python extension's selected environment (${active.path}) has no Python executable` };
  } catch (e) {
    return { note: `could not ask the Python extension for its interpreter: ${(e as Error)?.message ?? String(e)}` };
  }
}

/** Python extension → `gradscope.pythonPath` → (RunSession's default). */
export async function pickInterpreter(resource: vscode.Uri, setting: string | undefined, deps: InterpreterDeps): Promise<InterpreterPick> {
  const ext = await fromPythonExtension(resource, deps);
  if (ext.python) return { python: ext.python, source: 'python-extension' };
  const set = setting?.trim();
  if (set) return { python: set, source: 'setting', note: ext.note };
  return { python: undefined, source: undefined, note: ext.note };
}
