// The `gradscope` CLI run as a user runs it (bin/gradscope.js in a real node process), with its exit
// code and output collected: what the CLI, fix and torch suites share. The fault suite has its own
// (test/faults/support.ts: process marks, signals, timings).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './paths';

export const cliBin = join(repoRoot, 'bin', 'gradscope.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Working folder (default: the repository root). */
  cwd?: string;
  /** The whole environment of the CLI (default: this process's); merge with `process.env` yourself. */
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long: a hang fails its test instead of stalling the suite (default 120 s). */
  timeoutMs?: number;
}

/** `gradscope <args>` to its end, synchronously. */
export function gradscopeSync(args: readonly string[], o: CliOptions = {}): CliResult {
  const r = spawnSync(process.execPath, [cliBin, ...args], { cwd: o.cwd ?? repoRoot, env: o.env ?? process.env, encoding: 'utf8', timeout: o.timeoutMs ?? 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `gradscope <args>` to its end, without blocking the event loop; `onStart` gets the child (to signal it). */
export function gradscope(args: readonly string[], o: CliOptions & { onStart?: (child: ChildProcess) => void } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliBin, ...args], { cwd: o.cwd ?? repoRoot, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    o.onStart?.(child);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}
