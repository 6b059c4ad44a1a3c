// What the distributed tests (distributed.test.ts, crossRank.test.ts) share: the gradscope CLI run on
// a real torch with its output collected, its JSON document read, a store's norms step by step.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import type { RunStore } from '../../../src/core/store/runStore';
import { fixture, repoRoot } from '../support/paths';
import { PYTHON } from './torchEnv';

const bin = join(repoRoot, 'bin', 'gradscope.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `gradscope <args>` from the distributed fixtures' folder, with the test's interpreter; killed after 150 s. */
export function gradscope(args: string[], env: Record<string, string> = {}, onStart?: (child: ReturnType<typeof spawn>) => void): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: dirname(fixture('distributed', 'ddp.py')),
      env: { ...process.env, GRADSCOPE_PYTHON: PYTHON, PATH: `${dirname(PYTHON)}:${process.env.PATH ?? ''}`, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), 150_000);
    onStart?.(child);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The run's JSON document on stdout, or an error that shows what came instead. */
export function cliJson<T>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`no JSON on stdout (code ${r.code}):\n${r.stdout}\n--- stderr ---\n${r.stderr.slice(-4000)}`);
  }
}

/** Every tensor's norm series of a store, step by step. */
export function norms(store: RunStore): number[][] {
  return store.tensors.filter((t) => t).map((t) => [...store.series(t.id, 'norm').values]);
}
