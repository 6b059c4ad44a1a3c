// Command-line parsing for `gradscope`. GradScope's own flags may appear anywhere after the
// sub-command; every other argument goes to the training script in order. After `--`, everything
// goes to the script verbatim (for scripts that take a flag with the same name as ours).
import { FINDING_KINDS, isFindingKind, REMEDY_IDS } from '../core/analysis/finding';

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
  /** Show only this optimizer's tensors and steps in the table (its name, or its numeric id). */
  optimizer: string | null;
  /** After a run with a non-finite finding, re-run up to that step with checking on to find the operation. */
  locateNan: boolean;
  /** Node flags for a TF.js script (--node-arg, repeatable). */
  nodeArgs: string[];
  /** --nproc-per-node N: run the script under torch.distributed.run with N ranks (0: a single process). */
  nprocPerNode: number;
  /** A launcher's command line given as is (`torchrun …`, `python -m torch.distributed.run …`); `script` is the training script it names. */
  launcher: string[] | null;
  /** --rank R: the table (and the JSON's top level) shows rank R of a distributed run (null: rank 0, or the script's own process). */
  rank: number | null;
  /** --python PATH: the interpreter of a PyTorch script (null: GRADSCOPE_PYTHON, else python3 on PATH). */
  python: string | null;
}

export interface FixArgs {
  command: 'fix';
  /** The training script; may be empty with --from-run (the run file names it). */
  script: string;
  scriptArgs: string[];
  finding: string | null;
  remedy: string | null;
  verify: boolean;
  dryRun: boolean;
  force: boolean;
  /** Edit a file outside the run's scope (another folder, a file only the run file names) without asking. */
  allowOutside: boolean;
  /** Step budget of the diagnosis run and of each verification run. */
  steps: number;
  timeoutSec: number;
  fromRun: string | null;
  /** --python PATH, as run's. */
  python: string | null;
}

export interface ListenArgs {
  command: 'listen';
  port: number;
  host: string;
  /** --token; null: GRADSCOPE_TOKEN from the environment, else one is generated and printed. */
  token: string | null;
  json: boolean;
  outDir: string | null;
  /** End after the first run has ended (scripts, tests). */
  once: boolean;
}

export type CliArgs = RunArgs | FixArgs | ListenArgs | { command: 'help'; topic?: string } | { command: 'version' };

/** `head` and the comma-separated `items`, wrapped before `width` columns; later lines indented by `indent`. */
function wrappedList(head: string, items: readonly string[], indent: number, width = 100): string {
  const lines = [head];
  items.forEach((item, i) => {
    const word = i < items.length - 1 ? `${item},` : item;
    const last = lines.length - 1;
    if (lines[last].length + 1 + word.length > width) lines.push(' '.repeat(indent) + word);
    else lines[last] += (lines[last].endsWith(' ') ? '' : ' ') + word;
  });
  return lines.join('\n');
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `Usage:
  gradscope run <script> [script args…] [--steps N] [--timeout S] [--json] [--out DIR] [--report FILE] [--detail-every K]
                [--optimizer NAME] [--locate-nan] [--python PATH] [--node-arg FLAG]… [--nproc-per-node N] [--rank R]
  gradscope run [options] -- torchrun [torchrun args…] <script.py> [script args…]

  gradscope listen [--port P] [--host 127.0.0.1] [--token T] [--json] [--out DIR] [--once]

  gradscope fix <script> [script args…] [--finding KIND] [--remedy ID] [--verify] [--force]
                [--dry-run] [--steps N] [--timeout S] [--from-run FILE] [--allow-outside] [--python PATH]

run: runs a TensorFlow.js (.js, .mjs, .cjs, .ts) or PyTorch (.py) training script unchanged, watches
every optimizer step's gradients, and prints what it saw. PyTorch scripts run with the python3 of
--python PATH if given, else GRADSCOPE_PYTHON if set, else python3 on PATH (it must import torch).

listen: waits for remote runs: a probe on another machine started with GRADSCOPE_TOKEN=<token>
python -m gradscope_probe --connect HOST:PORT train.py (or the TF.js runner's --connect) streams to
it, usually through an SSH tunnel (README "Remote training"); each run is recorded like a local one
and its summary (or, with --json, its JSON document on one line) printed when it ends. Ctrl-C stops
listening; the remote scripts go on training.

fix: diagnoses the script (a run of --steps steps, default 100, or the run file given with
--from-run), takes the top finding (or the first of --finding KIND) and its best remedy that applies
(or --remedy ID), prints the edit as a unified diff and writes it to the file.

Options:
  --steps N          stop the run cleanly after N optimizer steps
  --timeout S        stop the run after S seconds
  --json             print one JSON document (schema gradscope.run/1.1) on stdout; the script's
                     own output goes to stderr
  --out DIR          folder for the run file (default: .gradscope/runs in the current folder)
  --report FILE      also write a self-contained HTML report (charts and findings; opens offline)
  --detail-every K   send histograms and thumbnails every K steps (default: chosen by the probe)
  --optimizer NAME   the table shows only this optimizer's tensors and steps (its variable name, e.g.
                     opt_d, or its id); the JSON document always lists every optimizer
  --locate-nan       when the run's gradients went non-finite, re-run the script up to that step with
                     the framework's checking on and name the operation and line that made the first
                     NaN/Inf (the finding then points at that line); says so when the re-run does
                     not reproduce it (docs/locate-nan.md)
  --python PATH      the Python interpreter of a PyTorch script (a path, or a command on PATH); for
                     fix, of its diagnosis and verification runs too
  --node-arg FLAG    a Node flag for a TF.js script (repeatable): --node-arg=--max-old-space-size=8192;
                     NODE_OPTIONS from your shell reaches the script too
  --nproc-per-node N run a PyTorch script as N ranks under torch.distributed.run (your torch), every
                     rank observed; a launcher after -- (torchrun …, python -m torch.distributed.run …)
                     runs as given, its ranks and the processes a script spawns observed too
  --rank R           with several ranks, the table shows rank R's tensors and findings (default: rank
                     0); the cross-rank findings (ranks out of step) and, for sharded tensors (FSDP2),
                     the model's global norm combined from every rank's shards are shown whatever R
  --                 pass everything after it to the script
  Exit codes: 0 observed (completed, step or time limit, stopped), 1 the script crashed, 2 usage
  (also: the script is missing or is a folder; --rank names a rank the run did not have: the table
  shows the lowest rank instead), 3 the probe's data stream was corrupt, 4 an output
  could not be written (the run folder: nothing ran; or the report), 6 the script ran but no
  optimizer step was observed (nothing was diagnosed; the summary says why it may be), 7 the probe
  was lost (its channel closed without END: steps after the last one seen were not observed),
  8 the run file could not be written to the end (a full disk: it holds only the first steps).
listen options:
  --port P           TCP port to listen on (default 7865; 0: a free one, printed)
  --host ADDR        address to bind (default 127.0.0.1: reach it through an SSH tunnel); another
                     address needs a token of 16 characters or more: the stream is not encrypted
  --token T          the token probes must give (default: GRADSCOPE_TOKEN if set, else a new one,
                     printed); a connection without it is refused and nothing of it is recorded
  --once             stop listening once the first run has ended (exit code: that run's, as run's)
fix options:
  --finding KIND     the finding to fix: exploding-gradient, vanishing-gradient,
                     non-finite-gradient, dead-units, update-ratio
${wrappedList('  --remedy ID        the remedy: ', REMEDY_IDS, 21)}
  --verify           re-run a fixed copy for the same number of steps and print before/after;
                     the file is written only if the fix cures the run (or with --force)
  --force            with --verify: write the fix even if it does not cure the run
  --dry-run          print the diff, change nothing
  --from-run FILE    diagnose from a recorded run file (.gsrun) instead of running the script; it
                     says what it read and what it could not (a damaged or cut file)
  --allow-outside    edit the file even if it is not the run's script (or a file next to it that
                     the run's source map names) inside the current folder; without it GradScope
                     asks on a terminal and refuses otherwise
  Exit codes: 0 fixed (or, with --dry-run, fixable; or nothing to fix), 1 the script could not be
  diagnosed, 2 usage, 3 not written: the file is outside the run's scope and nobody agreed
  (--allow-outside), 4 no remedy applies, 5 verified not cured, 6 --verify could not verify the fix
  (it edits another file than the script); with 3, 5 and 6 the file is left unchanged.

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

/**
 * Walks a sub-command's arguments: `--flag value` or `--flag=value`; everything after `--`, and every
 * argument that is not one of `options`, goes to the script in order. Each option sets its field of
 * `out` (a bad value throws a UsageError).
 */
function scanArgs<T>(rest: readonly string[], out: T, options: OptionTable<T>): { positional: string[]; help: boolean } {
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--') {
      positional.push(...rest.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') return { positional, help: true };
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const [flag, inline] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const set = Object.hasOwn(options, flag) ? options[flag] : undefined;
    if (set) set(out, () => inline ?? rest[++i]);
    else positional.push(a);
  }
  return { positional, help: false };
}

/** How one option sets its field of a command's arguments; `value()` takes its value (`--x=v`, or the next argument). */
type OptionSetter<T> = (out: T, value: () => string | undefined) => void;
/** A command's options by flag, declared once: the parser and nothing else reads them. */
type OptionTable<T> = Readonly<Record<string, OptionSetter<T>>>;

function required(v: string | undefined, message: string): string {
  if (!v) throw new UsageError(message);
  return v;
}

/** Options more than one command takes, each setting the same field the same way. */
const JSON_OPTION: OptionTable<{ json: boolean }> = {
  '--json': (o) => {
    o.json = true;
  },
};
const OUT_OPTION: OptionTable<{ outDir: string | null }> = {
  '--out': (o, v) => {
    o.outDir = required(v(), '--out needs a folder');
  },
};
const PYTHON_OPTION: OptionTable<{ python: string | null }> = {
  '--python': (o, v) => {
    o.python = required(v(), '--python needs the path of a Python interpreter (or a command on PATH)');
  },
};
/** The run options that carry --python to a session (RunSession, locateNan, verifyFix): none without it. */
export function pythonOf(a: { python: string | null }): { pythonPath?: string; pythonSource?: 'cli-option' } {
  return a.python ? { pythonPath: a.python, pythonSource: 'cli-option' } : {};
}
/** How long a run may go: `run` and `fix` (which runs the script to verify). */
const LENGTH_OPTIONS: OptionTable<{ steps: number; timeoutSec: number }> = {
  '--steps': (o, v) => {
    o.steps = positiveInt('--steps', v());
  },
  '--timeout': (o, v) => {
    o.timeoutSec = positiveNumber('--timeout', v());
  },
};

const RUN_OPTIONS: OptionTable<RunArgs> = {
  ...LENGTH_OPTIONS,
  ...PYTHON_OPTION,
  ...JSON_OPTION,
  ...OUT_OPTION,
  '--report': (o, v) => {
    o.report = required(v(), '--report needs a file name');
  },
  '--detail-every': (o, v) => {
    o.detailEvery = positiveInt('--detail-every', v(), true);
  },
  '--optimizer': (o, v) => {
    o.optimizer = required(v(), '--optimizer needs a name (the variable the script built it in) or an id');
  },
  '--locate-nan': (o) => {
    o.locateNan = true;
  },
  '--node-arg': (o, value) => {
    const v = value();
    if (!v || !v.startsWith('-')) throw new UsageError(`--node-arg needs a Node flag (e.g. --node-arg=--max-old-space-size=8192), got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
    o.nodeArgs.push(v);
  },
  '--nproc-per-node': (o, v) => {
    o.nprocPerNode = positiveInt('--nproc-per-node', v());
  },
  '--rank': (o, v) => {
    o.rank = positiveInt('--rank', v(), true);
  },
};

export function parseArgs(argv: readonly string[]): CliArgs {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') return { command: 'help', topic: rest[0] };
  if (command === '-v' || command === '--version') return { command: 'version' };
  if (command === 'fix') return parseFixArgs(rest);
  if (command === 'listen') return parseListenArgs(rest);
  if (command !== 'run') throw new UsageError(`unknown command "${command}"`);
  const out: RunArgs = {
    command: 'run',
    script: '',
    scriptArgs: [],
    steps: 0,
    timeoutSec: 0,
    json: false,
    outDir: null,
    detailEvery: 0,
    report: null,
    optimizer: null,
    locateNan: false,
    nodeArgs: [],
    nprocPerNode: 0,
    launcher: null,
    rank: null,
    python: null,
  };
  const { positional, help } = scanArgs(rest, out, RUN_OPTIONS);
  if (help) return { command: 'help', topic: 'run' };
  const [script, ...scriptArgs] = positional;
  if (!script) throw new UsageError('run needs a script: gradscope run <script> [args…]');
  if (isLauncher(positional)) {
    if (out.nprocPerNode) throw new UsageError('--nproc-per-node is for a script; a launcher takes its own: gradscope run -- torchrun --nproc-per-node N train.py');
    if (out.python) throw new UsageError('--python is for a script; a launcher runs with its own interpreter: gradscope run -- /path/to/python -m torch.distributed.run … train.py');
    // The training script is the first .py the launcher is given (its own options take values, none a .py file).
    const at = positional.findIndex((a, i) => i > 0 && /\.py$/i.test(a));
    if (at < 0) throw new UsageError(`the launcher's command line names no .py script: ${positional.join(' ')}`);
    out.launcher = positional;
    out.script = positional[at];
    out.scriptArgs = positional.slice(at + 1);
    return out;
  }
  if (out.python && !/\.py$/i.test(script)) throw new UsageError(`--python is for a PyTorch script (.py), not ${script}`);
  if (out.rank !== null && out.nprocPerNode && out.rank >= out.nprocPerNode)
    throw new UsageError(`--rank ${out.rank} is not a rank of --nproc-per-node ${out.nprocPerNode} (ranks 0 to ${out.nprocPerNode - 1})`);
  out.script = script;
  out.scriptArgs = scriptArgs;
  return out;
}

/** `torchrun …`, `python -m torch.distributed.run …` (or `.launch`): torch's launcher, run as given. */
export function isLauncher(command: readonly string[]): boolean {
  const name = (command[0] ?? '').split(/[\\/]/).pop() ?? '';
  if (name === 'torchrun') return true;
  return /^python[\d.]*$/.test(name) && command[1] === '-m' && (command[2] === 'torch.distributed.run' || command[2] === 'torch.distributed.launch');
}

const LISTEN_OPTIONS: OptionTable<ListenArgs> = {
  ...JSON_OPTION,
  ...OUT_OPTION,
  '--port': (o, value) => {
    const v = value();
    const n = positiveInt('--port', v, true);
    if (n > 65535) throw new UsageError(`--port must be at most 65535, got "${v}"`);
    o.port = n;
  },
  '--host': (o, v) => {
    o.host = required(v(), '--host needs an address');
  },
  '--token': (o, v) => {
    o.token = required(v(), '--token needs a value (or leave it out to have one generated)');
  },
  '--once': (o) => {
    o.once = true;
  },
};

function parseListenArgs(rest: readonly string[]): CliArgs {
  const out: ListenArgs = { command: 'listen', port: 7865, host: '127.0.0.1', token: null, json: false, outDir: null, once: false };
  const { positional, help } = scanArgs(rest, out, LISTEN_OPTIONS);
  if (help) return { command: 'help', topic: 'listen' };
  if (positional.length) throw new UsageError(`listen takes no script (the remote machine runs it): ${positional.join(' ')}`);
  return out;
}

const FIX_OPTIONS: OptionTable<FixArgs> = {
  ...LENGTH_OPTIONS,
  ...PYTHON_OPTION,
  '--finding': (o, value) => {
    const v = required(value(), '--finding needs a kind');
    if (!isFindingKind(v)) throw new UsageError(`--finding must be one of ${FINDING_KINDS.join(', ')}, got "${v}"`);
    o.finding = v;
  },
  '--remedy': (o, v) => {
    o.remedy = required(v(), '--remedy needs an id');
  },
  '--verify': (o) => {
    o.verify = true;
  },
  '--force': (o) => {
    o.force = true;
  },
  '--allow-outside': (o) => {
    o.allowOutside = true;
  },
  '--dry-run': (o) => {
    o.dryRun = true;
  },
  '--from-run': (o, v) => {
    o.fromRun = required(v(), '--from-run needs a run file');
  },
};

function parseFixArgs(rest: readonly string[]): CliArgs {
  const out: FixArgs = {
    command: 'fix',
    script: '',
    scriptArgs: [],
    finding: null,
    remedy: null,
    verify: false,
    dryRun: false,
    force: false,
    allowOutside: false,
    steps: 100,
    timeoutSec: 0,
    fromRun: null,
    python: null,
  };
  const { positional, help } = scanArgs(rest, out, FIX_OPTIONS);
  if (help) return { command: 'help', topic: 'fix' };
  const [script, ...scriptArgs] = positional;
  if (!script && !out.fromRun) throw new UsageError('fix needs a script: gradscope fix <script> [args…] (or --from-run FILE)');
  out.script = script ?? '';
  out.scriptArgs = scriptArgs;
  return out;
}
