// Command-line parsing for `gradscope`. GradScope's own flags may appear anywhere after the
// sub-command; every other argument goes to the training script in order. After `--`, everything
// goes to the script verbatim (for scripts that take a flag with the same name as ours).

export interface RunArgs {
  command: 'run';
  script: string;
  scriptArgs: string[];
  steps: number;
  timeoutSec: number;
  json: boolean;
  outDir: string | null;
  detailEvery: number;
  /** Write the self-contained HTML report here. */
  report: string | null;
}

export type CliArgs = RunArgs | { command: 'help'; topic?: string } | { command: 'version' };

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `Usage:
  gradscope run <script> [script args…] [--steps N] [--timeout S] [--json] [--out DIR] [--report FILE] [--detail-every K]

Runs a TensorFlow.js training script unchanged, watches every optimizer step's gradients, and
prints what it saw.

Options:
  --steps N          stop the run cleanly after N optimizer steps
  --timeout S        stop the run after S seconds
  --json             print one JSON document (schema gradscope.run/1) on stdout; the script's
                     own output goes to stderr
  --out DIR          folder for the run file (default: .gradscope/runs in the current folder)
  --report FILE      also write a self-contained HTML report (charts and findings; opens offline)
  --detail-every K   send histograms and thumbnails every K steps (default: chosen by the probe)
  --                 pass everything after it to the script
  -h, --help         this help
  -v, --version      the version`;

function positiveInt(flag: string, v: string | undefined, allowZero = false): number {
  if (v === undefined) throw new UsageError(`${flag} needs a value`);
  const n = Number(v);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new UsageError(`${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${v}"`);
  return n;
}

function positiveNumber(flag: string, v: string | undefined): number {
  if (v === undefined) throw new UsageError(`${flag} needs a value`);
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number of seconds, got "${v}"`);
  return n;
}

export function parseArgs(argv: readonly string[]): CliArgs {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') return { command: 'help', topic: rest[0] };
  if (command === '-v' || command === '--version') return { command: 'version' };
  if (command !== 'run') throw new UsageError(`unknown command "${command}"`);
  const out: RunArgs = { command: 'run', script: '', scriptArgs: [], steps: 0, timeoutSec: 0, json: false, outDir: null, detailEvery: 0, report: null };
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? rest[++i];
    switch (flag) {
      case '--':
        positional.push(...rest.slice(i + 1));
        i = rest.length;
        break;
      case '--steps':
        out.steps = positiveInt('--steps', value());
        break;
      case '--timeout':
        out.timeoutSec = positiveNumber('--timeout', value());
        break;
      case '--json':
        out.json = true;
        break;
      case '--out':
        out.outDir = value() ?? null;
        if (!out.outDir) throw new UsageError('--out needs a folder');
        break;
      case '--report':
        out.report = value() ?? null;
        if (!out.report) throw new UsageError('--report needs a file name');
        break;
      case '--detail-every':
        out.detailEvery = positiveInt('--detail-every', value(), true);
        break;
      case '-h':
      case '--help':
        return { command: 'help', topic: 'run' };
      default:
        positional.push(a);
    }
  }
  const [script, ...scriptArgs] = positional;
  if (!script) throw new UsageError('run needs a script: gradscope run <script> [args…]');
  out.script = script;
  out.scriptArgs = scriptArgs;
  return out;
}
