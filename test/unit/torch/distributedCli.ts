// What the distributed tests (distributed.test.ts, crossRank.test.ts) share: the gradscope CLI run on
// a real torch with its output collected, its JSON document read, a store's norms step by step.
import type { ChildProcess } from 'node:child_process';
import { dirname } from 'node:path';
import type { RunStore } from '../../../src/core/store/runStore';
import { gradscope as runCli, type CliResult } from '../support/cli';
import { fixture } from '../support/paths';
import { PYTHON } from './torchEnv';

export type { CliResult };

/** `gradscope <args>` from the distributed fixtures' folder, with the test's interpreter; killed after 150 s. */
export function gradscope(args: string[], env: Record<string, string> = {}, onStart?: (child: ChildProcess) => void): Promise<CliResult> {
  return runCli(args, {
    cwd: dirname(fixture('distributed', 'ddp.py')),
    env: { ...process.env, GRADSCOPE_PYTHON: PYTHON, PATH: `${dirname(PYTHON)}:${process.env.PATH ?? ''}`, ...env },
    timeoutMs: 150_000,
    onStart,
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
