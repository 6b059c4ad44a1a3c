// Test helper: runs the real runner (dist/probe/tfjs/runner.js) on a script in a real child process,
// the way the host does (fd 3 a socket pair), and decodes everything it sends with FrameDecoder.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FrameDecoder, type ProtocolError } from '../../../src/core/protocol/codec';
import type { Message, MessageOf } from '../../../src/core/protocol/messages';
import { repoRoot } from '../support/paths';

export const RUNNER = join(repoRoot, 'dist', 'probe', 'tfjs', 'runner.js');
export const SCRIPTS = join(repoRoot, 'test', 'fixtures', 'scripts');
export const EXAMPLES = join(repoRoot, 'examples', 'tfjs');

export interface ProbeRun {
  messages: Message[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  decodeError: ProtocolError | null;
  of<T extends Message['type']>(type: T): MessageOf<T>[];
}

export interface RunOptions {
  args?: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Leave out GRADSCOPE_CHANNEL_FD (the uninstrumented run). */
  noChannel?: boolean;
  timeoutMs?: number;
  onMessage?: (m: Message, child: ChildProcess) => void;
}

export function runProbe(script: string, opts: RunOptions = {}): Promise<ProbeRun> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
    if (!opts.noChannel) env.GRADSCOPE_CHANNEL_FD = '3';
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, ['--enable-source-maps', RUNNER, script, ...(opts.args ?? [])], {
      cwd: opts.cwd ?? SCRIPTS,
      env,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    const messages: Message[] = [];
    const dec = new FrameDecoder();
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const chan = child.stdio[3] as Readable;
    chan.on('data', (c: Buffer) => {
      dec.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), (f) => {
        messages.push(f.message);
        opts.onMessage?.(f.message, child);
      });
    });
    chan.on('error', () => {});
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not finish in ${opts.timeoutMs ?? 60000} ms; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 60000);
    let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let chanClosed = false;
    const done = (): void => {
      if (!exited || !chanClosed) return;
      clearTimeout(timer);
      const decodeError = dec.error ?? dec.end();
      resolve({
        messages,
        ...exited,
        stdout,
        stderr,
        decodeError,
        of: <T extends Message['type']>(type: T) => messages.filter((m) => m.type === type) as MessageOf<T>[],
      });
    };
    chan.on('close', () => {
      chanClosed = true;
      done();
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      // The channel closes with the process; give it a moment to deliver the last bytes.
      setTimeout(() => {
        chanClosed = true;
        done();
      }, 500).unref();
      done();
    });
  });
}

/** 1-based line of the fixture line carrying `// @site:<tag>`. */
export function siteLine(file: string, tag: string): number {
  const lines = readFileSync(file, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes(`@site:${tag}`));
  if (i < 0) throw new Error(`no @site:${tag} in ${file}`);
  return i + 1;
}
