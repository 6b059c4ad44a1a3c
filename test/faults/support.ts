// The fault suite's tools: the real `gradscope` CLI in a real process, real files in a fresh folder,
// real mounts where the machine allows them, and a census of the processes a case left behind.
//
// Every process a case starts carries GRADSCOPE_FAULT_MARK=<id> in its environment (the CLI passes
// its environment on to the script and the probe, and they to their children), so "nothing left
// running" is checked by scanning /proc/<pid>/environ for that marker once the CLI has exited.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after } from 'node:test';

function findRoot(): string {
  let d = __dirname;
  while (!existsSync(join(d, 'package.json')) || !existsSync(join(d, 'src'))) {
    const up = dirname(d);
    if (up === d) throw new Error(`no repository root above ${__dirname}`);
    d = up;
  }
  return d;
}

export const repoRoot = findRoot();
/**
 * The CLI under test. GRADSCOPE_FAULT_BIN points the suite at another build (e.g. a checkout of the
 * commit before a fix, to see each case fail there).
 */
export const bin = process.env.GRADSCOPE_FAULT_BIN || join(repoRoot, 'bin', 'gradscope.js');
export const examples = join(repoRoot, 'examples', 'tfjs');

// Whatever a case asserted, nothing it started outlives the file's tests, and its folders go.
const marks: string[] = [];
const dirs: string[] = [];
after(async () => {
  for (const m of marks) await leftRunning(m, 0);
  if (process.env.GRADSCOPE_FAULT_KEEP) return;
  for (const d of dirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // a mount left in it: leave the folder
    }
  }
});

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The marker of this invocation's processes. */
  mark: string;
  ms: number;
}

export interface CliOptions {
  cwd: string;
  env?: Record<string, string>;
  /** Kill it (SIGKILL) and fail after this long: a hang is a failure, not a stuck suite. */
  timeoutMs?: number;
  /** Extra arguments to node before the CLI (e.g. --require). */
  nodeArgs?: string[];
  /** Called once the process is started (to send it signals), with the marker of its processes. */
  onStart?: (child: ChildProcess, mark: string) => void;
}

/** Runs `gradscope …` to its end (or kills it at the timeout and reports that as signal SIGKILL). */
export function gradscope(args: string[], o: CliOptions): Promise<CliResult> {
  const mark = randomBytes(8).toString('hex');
  marks.push(mark);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), bin, ...args], {
      cwd: o.cwd,
      env: { ...process.env, ...o.env, GRADSCOPE_FAULT_MARK: mark },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    o.onStart?.(child, mark);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, mark, ms: Date.now() - t0 });
    });
  });
}

/** Pids whose environment holds this marker (Linux /proc; [] elsewhere). */
export function markedProcesses(mark: string): number[] {
  if (process.platform !== 'linux') return [];
  const needle = Buffer.from(`GRADSCOPE_FAULT_MARK=${mark}\0`);
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`).includes(needle)) out.push(Number(name));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}

/**
 * Processes of this invocation still alive after it ended, polled for up to `graceMs` (a group
 * being SIGKILLed takes a moment to disappear). Zombies count as gone. Survivors are killed, so one
 * failing case does not leave work for the next.
 */
export async function leftRunning(mark: string, graceMs = 3000): Promise<number[]> {
  const deadline = Date.now() + graceMs;
  let alive: number[] = [];
  for (;;) {
    alive = markedProcesses(mark).filter((pid) => !isZombie(pid));
    if (alive.length === 0 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return alive;
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** A fresh folder for one case. */
export function caseDir(name: string): string {
  const d = mkdtempSync(join(tmpdir(), `gs-fault-${name}-`));
  dirs.push(d);
  return d;
}

/** Copies an example script into `dir` (the examples stay untouched). */
export function copyExample(file: string, dir: string, as = file): string {
  mkdirSync(dir, { recursive: true });
  const to = join(dir, as);
  copyFileSync(join(examples, file), to);
  return to;
}

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** The run files (*.gsrun) in a folder, oldest name first. */
export function runFilesIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.gsrun'))
    .sort()
    .map((f) => join(dir, f));
}

/** Stack-trace lines ("    at f (file:1:2)") in a text: a clean error has none. */
export function hasStack(text: string): boolean {
  return /^\s+at .+[:(]\d+/m.test(text);
}

/** A tmpfs of `sizeKiB`, mounted at a fresh folder; null when this machine does not let us mount (not root). */
export function mountTmpfs(sizeKiB: number, opts: { readOnly?: boolean } = {}): { dir: string; unmount: () => void; remountReadOnly: () => void } | null {
  if (process.platform !== 'linux') return null;
  const dir = mkdtempSync(join(tmpdir(), 'gs-fault-mnt-')); // removed by unmount(), not with the case folders
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0777${opts.readOnly ? ',ro' : ''}`, 'gradscope-fault', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return {
    dir,
    /** Makes the mounted file system read-only from now on (a disk that turns read-only mid-run). */
    remountReadOnly: () => execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'ignore' }),
    unmount: () => {
      try {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      } catch {
        // not mounted any more
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** mkfifo; false where it is not available. */
export function makeFifo(path: string): boolean {
  try {
    execFileSync('mkfifo', [path], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Calls `fn` once, as soon as what the child printed (stdout and stderr together) matches every
 * pattern; `fn` gets that text.
 */
export function whenPrinted(child: ChildProcess, patterns: RegExp[], fn: (text: string) => void): void {
  let text = '';
  let done = false;
  const on = (d: Buffer): void => {
    text += d.toString();
    if (done || !patterns.every((p) => p.test(text))) return;
    done = true;
    fn(text);
  };
  child.stdout?.on('data', on);
  child.stderr?.on('data', on);
}

/** True while `pid` is a live process (a zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !isZombie(pid);
}

/**
 * A TF.js script that trains a tiny model forever, a step every 5 ms, printing "training" at
 * step 5; `before` and `atStep5` are lines of code run first and at step 5.
 */
export function foreverScript(before: string[] = [], atStep5: string[] = []): string {
  return [
    "const tf = require('@tensorflow/tfjs');",
    ...before,
    "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
    "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
    'const opt = tf.train.sgd(0.01);',
    'let i = 0;',
    '(function step() {',
    '  opt.minimize(() => x.matMul(w).square().mean());',
    "  if (++i === 5) { console.log('training'); " + atStep5.join(' ') + ' }',
    '  setTimeout(step, 5);',
    '})();',
    '',
  ].join('\n');
}

/** "pid 12 (S) python3 -c …" for each pid, for a failure message. */
export function describeProcesses(pids: readonly number[]): string {
  return pids
    .map((pid) => {
      let cmd = '?';
      let state = '?';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        state = stat.slice(stat.lastIndexOf(')') + 2)[0];
      } catch {
        // gone meanwhile
      }
      return `pid ${pid} (${state}) ${cmd}`;
    })
    .join('; ');
}
