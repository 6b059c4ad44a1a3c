// The first-run message for a PyTorch script when no interpreter or no usable torch is found: what
// exactly to install (a command to copy), and the way to pick another interpreter. No `vscode`
// import: unit-tested without an extension host.
import { MIN_TORCH, type TorchCheck } from '../process/python';

export interface TorchSetupAdvice {
  /** One paragraph for the notification. */
  message: string;
  /** The shell command that installs what is missing (copied to the clipboard on request). */
  installCommand: string;
  /** The button that opens the interpreter picker: the Python extension's, else a file picker saved as gradscope.pythonPath. */
  pickLabel: string;
}

const MIN = MIN_TORCH.join('.');

/** A command line argument as a POSIX shell reads it. */
function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function torchSetupAdvice(check: Extract<TorchCheck, { ok: false }>, opts: { pythonExtension: boolean; platform?: NodeJS.Platform }): TorchSetupAdvice {
  const pickLabel = opts.pythonExtension ? 'Select Interpreter' : 'Choose Interpreter…';
  const pick = opts.pythonExtension ? 'or choose an interpreter that has it (Python: Select Interpreter)' : 'or choose an interpreter that has it (saved as gradscope.pythonPath)';
  const py = shellQuote(check.python);
  switch (check.problem) {
    case 'no-interpreter': {
      const python = opts.platform === 'win32' ? 'python' : 'python3';
      return {
        message:
          `GradScope runs PyTorch scripts with Python, and ${check.python} ${check.from === 'path' ? 'is not on PATH' : 'could not be run'}. ` +
          `Install Python 3 and PyTorch ${MIN} or later (\`${python} -m pip install torch\`), ${pick}.`,
        installCommand: `${python} -m pip install torch`,
        pickLabel,
      };
    }
    case 'no-torch':
      return {
        message: `PyTorch is not installed for ${check.python}. Install it with \`${py} -m pip install torch\` (GradScope needs torch ${MIN} or later), ${pick}.`,
        installCommand: `${py} -m pip install torch`,
        pickLabel,
      };
    case 'old-torch':
      return {
        message: `${check.python} has torch ${check.torchVersion ?? '(unknown)'}; GradScope needs ${MIN} or later. Upgrade it with \`${py} -m pip install --upgrade torch\`, ${pick}.`,
        installCommand: `${py} -m pip install --upgrade torch`,
        pickLabel,
      };
    case 'broken':
      return { message: check.message, installCommand: `${py} -m pip install --force-reinstall torch`, pickLabel };
  }
}
