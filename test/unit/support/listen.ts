// Test helper: a real `gradscope listen` (bin/gradscope.js) in a child process, on a free port, with
// its output collected (test/unit/torch/remote.test.ts, test/unit/probe/remote.test.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths';

const bin = join(repoRoot, 'bin', 'gradscope.js');

export interface Listening {
  child: ChildProcess;
  port: number;
  runDir: string;
  stderr(): string;
  stdout(): string;
  /** Resolves once stderr matches. */
  waitFor(re: RegExp, ms?: number): Promise<void>;
  exited: Promise<number | null>;
}

/** Starts `gradscope listen --port 0 …` and resolves once it says where it listens. */
export async function startListen(args: string[]): Promise<Listening> {
  const runDir = join(mkdtempSync(join(tmpdir(), 'gs-listen-')), 'runs');
  const child = spawn(process.execPath, [bin, 'listen', '--port', '0', '--out', runDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRADSCOPE_TOKEN: '' } });
  let err = '';
  let out = '';
  const waiters: Array<() => void> = [];
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    waiters.forEach((w) => w());
  });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const waitFor = (re: RegExp, ms = 60_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(err)) resolve();
      };
      waiters.push(check);
      check();
      setTimeout(() => reject(new Error(`listen never said ${re}; stderr:\n${err}`)), ms).unref();
    });
  await waitFor(/listening for remote runs on 127\.0\.0\.1:\d+/);
  const port = Number(/on 127\.0\.0\.1:(\d+)/.exec(err)![1]);
  return { child, port, runDir, stderr: () => err, stdout: () => out, waitFor, exited };
}

/** The run files in a listener's folder. */
export const runFiles = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.gsrun')) : []);
