// Finding the Python interpreter for PyTorch scripts, and checking that torch imports with it
// before a run starts (a missing torch should be one clear line, not a traceback from the probe).
//
// Order: an explicit path (from VS Code: the interpreter the Python extension selected, else the
// `gradscope.pythonPath` setting — src/features/pythonInterpreter.ts picks; from the CLI: its
// --python option; passed as RunOptions.pythonPath with its source), else GRADSCOPE_PYTHON in the
// environment, else `python3` on PATH.
import { execFile } from 'node:child_process';

export const MIN_TORCH = [1, 13] as const;
const DEFAULT_TIMEOUT_MS = 60_000;

/** Where an explicit interpreter path came from: VS Code's Python extension, the gradscope.pythonPath setting, the CLI's --python. */
export type PythonSource = 'python-extension' | 'setting' | 'cli-option';

export interface PythonChoice {
  /** What will be executed: a path or a command name looked up on PATH. */
  python: string;
  /** Where the choice came from, for messages. */
  from: PythonSource | 'env' | 'path';
}

/** Why torch is not usable, for the first-run message (what to install, or which interpreter to pick). */
export type TorchProblem = 'no-interpreter' | 'no-torch' | 'old-torch' | 'broken';

export type TorchCheck =
  | { ok: true; python: string; torchVersion: string; pythonVersion: string }
  | { ok: false; python: string; message: string; problem: TorchProblem; from: PythonChoice['from']; torchVersion?: string };

export function choosePython(pythonPath?: string, env: NodeJS.ProcessEnv = process.env, source: PythonSource = 'setting'): PythonChoice {
  const set = pythonPath?.trim();
  if (set) return { python: set, from: source };
  const fromEnv = env.GRADSCOPE_PYTHON?.trim();
  if (fromEnv) return { python: fromEnv, from: 'env' };
  return { python: 'python3', from: 'path' };
}

/** How a user picks another interpreter, for the end of an error message. */
export const HOW_TO_CHOOSE =
  "Install PyTorch (≥ 1.13) for that interpreter, or choose another one: in VS Code, with the Python extension's " +
  'interpreter picker ("Python: Select Interpreter") or the gradscope.pythonPath setting (used when the Python ' +
  'extension is not installed); for the gradscope CLI, with --python /path/to/python (or GRADSCOPE_PYTHON=/path/to/python).';

function describe(c: PythonChoice): string {
  switch (c.from) {
    case 'python-extension':
      return `${c.python} (the interpreter selected in the Python extension)`;
    case 'setting':
      return `${c.python} (the gradscope.pythonPath setting)`;
    case 'cli-option':
      return `${c.python} (the --python option)`;
    case 'env':
      return `${c.python} (GRADSCOPE_PYTHON)`;
    case 'path':
      return `${c.python} (the first on PATH)`;
  }
}

const CHECK_SCRIPT = 'import sys, torch; print(torch.__version__); print("%d.%d.%d" % sys.version_info[:3])';

// Successful checks only: a failure is re-checked next time (the user may have installed torch since).
const okCache = new Map<string, TorchCheck>();

/**
 * Runs `<python> -c "import torch, sys; …"` with a timeout. Never throws: a failure comes back as
 * `{ ok: false, message }` naming the interpreter tried and how to pick another.
 */
export function checkTorch(choice: PythonChoice, opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<TorchCheck> {
  const key = `${choice.python}\0${opts.env?.PATH ?? process.env.PATH ?? ''}`;
  const hit = okCache.get(key);
  if (hit) return Promise.resolve(hit);
  const who = describe(choice);
  const fail = (why: string, problem: TorchProblem = 'broken', torchVersion?: string): TorchCheck => ({
    ok: false,
    python: choice.python,
    message: `PyTorch is not usable with ${who}: ${why}. ${HOW_TO_CHOOSE}`,
    problem,
    from: choice.from,
    ...(torchVersion === undefined ? {} : { torchVersion }),
  });
  return new Promise((resolve) => {
    execFile(
      choice.python,
      ['-c', CHECK_SCRIPT],
      { timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, env: opts.env ?? process.env, cwd: opts.cwd, encoding: 'utf8', windowsHide: true },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: number | string | null };
          if (e.code === 'ENOENT') return resolve(fail(choice.from === 'path' ? `${choice.python} was not found on PATH` : 'no such file', 'no-interpreter'));
          if (e.code === 'EACCES') return resolve(fail('it is not executable', 'no-interpreter'));
          if (e.killed || e.signal) return resolve(fail(`\`import torch\` did not finish within ${Math.round((opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)} s`));
          const lines = String(stderr ?? '')
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean);
          const last = lines[lines.length - 1] ?? `exit code ${String(e.code)}`;
          return resolve(/No module named ['"]?torch/.test(last) ? fail('torch is not installed for it', 'no-torch') : fail(`\`import torch\` failed (${last})`));
        }
        const [torchVersion = '', pythonVersion = ''] = String(stdout)
          .trim()
          .split('\n')
          .map((s) => s.trim());
        const m = /^(\d+)\.(\d+)/.exec(torchVersion);
        if (!m) return resolve(fail(`unexpected output of the torch check: ${JSON.stringify(String(stdout).slice(0, 200))}`));
        const [major, minor] = [Number(m[1]), Number(m[2])];
        if (major < MIN_TORCH[0] || (major === MIN_TORCH[0] && minor < MIN_TORCH[1])) {
          return resolve(fail(`it has torch ${torchVersion}, GradScope needs ${MIN_TORCH.join('.')} or later`, 'old-torch', torchVersion));
        }
        const ok: TorchCheck = { ok: true, python: choice.python, torchVersion, pythonVersion };
        okCache.set(key, ok);
        resolve(ok);
      },
    );
  });
}
