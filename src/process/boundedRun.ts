// A run started for an answer rather than for the user to watch (verify a fix, locate a NaN): in a
// run folder of its own unless one is given, stopped when the caller aborts, awaited to its end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunSession, type OutputChunk, type RunExit, type RunOptions } from './runSession';

/** `fn` with `runDir`, or with a temporary folder (`prefix`…) removed afterwards when none is given. */
export async function withRunDir<T>(runDir: string | undefined, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = runDir ?? mkdtempSync(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    if (!runDir) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Starts the run and waits for its end. Aborting `signal` stops it; an abort before the start or
 * during the run rejects with `new Error(cancelled)` (the run is stopped and awaited first).
 */
export async function runToEnd(opts: RunOptions, o: { signal?: AbortSignal; onOutput?: (chunk: OutputChunk) => void; cancelled: string }): Promise<{ session: RunSession; exit: RunExit }> {
  if (o.signal?.aborted) throw new Error(o.cancelled);
  const session = RunSession.start(opts);
  const stop = (): void => void session.stop();
  o.signal?.addEventListener('abort', stop, { once: true });
  if (o.onOutput) session.onOutput(o.onOutput);
  let exit: RunExit;
  try {
    exit = await session.done;
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
  if (o.signal?.aborted) throw new Error(o.cancelled);
  return { session, exit };
}
