// Locate the first non-finite operation: a bounded re-run of the user's script, up to the step where
// the first run went non-finite, with the probe's locate mode on (GRADSCOPE_LOCATE_NAN=1: PyTorch
// anomaly mode plus a per-op check, src/probe/torch/gradscope_probe/locate.py; for TF.js a per-kernel
// check, src/probe/tfjs/locate.ts). What the probe reports is read by src/core/analysis/nanCause.ts.
// A re-run that stays finite says so: the script is not deterministic (seeds, data order, files).
import { dirname, resolve } from 'node:path';
import { findNanCause, findNanOp, type NanCause } from '../core/analysis/nanCause';
import { runToEnd, withRunDir } from './boundedRun';
import type { OutputChunk, RunExit } from './runSession';
import type { PythonSource } from './python';

export const LOCATE_NAN_ENV = 'GRADSCOPE_LOCATE_NAN';

export interface LocateNanOptions {
  script: string;
  args?: string[];
  cwd?: string;
  /** The step index (0-based) at which the first run's gradients went non-finite. */
  firstStep: number;
  /** Stop the re-run after this many seconds (default 120: checking every op is slow). */
  timeoutSec?: number;
  /** Where the re-run's file goes (default: a temporary folder, removed afterwards). */
  runDir?: string;
  nodePath?: string;
  pythonPath?: string;
  pythonSource?: PythonSource;
  signal?: AbortSignal;
  onOutput?: (chunk: OutputChunk) => void;
  /** Override where the probe bundles live (tests). */
  probeDir?: string;
  env?: Record<string, string>;
}

export type LocateStatus = 'located' | 'not-reproduced' | 'not-located';

export interface LocateNanResult {
  status: LocateStatus;
  cause: NanCause | null;
  /** The step of the re-run at which it went non-finite, when it did (probe's locate step or its non-finite finding). */
  reproducedAt: number | null;
  /** One line a person can read, always set. */
  message: string;
  exit: RunExit;
  /** Step budget the re-run had. */
  steps: number;
}

const STDERR_KEEP = 256 * 1024;

export async function locateNan(o: LocateNanOptions): Promise<LocateNanResult> {
  const script = resolve(o.cwd ?? process.cwd(), o.script);
  const steps = Math.max(1, Math.floor(o.firstStep) + 1);
  let stderr = '';
  return withRunDir(o.runDir, 'gradscope-locate-', async (runDir) => {
    const { session, exit } = await runToEnd(
      {
        script,
        args: o.args ?? [],
        cwd: o.cwd ?? dirname(script),
        maxSteps: steps,
        timeoutSec: o.timeoutSec ?? 120,
        runDir,
        nodePath: o.nodePath,
        pythonPath: o.pythonPath,
        pythonSource: o.pythonSource,
        probeDir: o.probeDir,
        env: { ...o.env, [LOCATE_NAN_ENV]: '1' },
      },
      {
        signal: o.signal,
        onOutput: (c) => {
          if (c.stream === 'stderr') stderr = (stderr + c.text).slice(-STDERR_KEEP);
          o.onOutput?.(c);
        },
        cancelled: 'locate-nan cancelled',
      },
    );
    const cause = findNanCause(session.store.events, stderr);
    const nf = session.findings.find((f) => f.kind === 'non-finite-gradient');
    const reproducedAt = cause?.step ?? nf?.step ?? null;
    if (cause) {
      const where = `${cause.file}:${cause.line}:${cause.column}`;
      return { status: 'located', cause, reproducedAt, exit, steps, message: `the first non-finite value came from ${cause.op} (${cause.phase}) at ${where}` };
    }
    const op = findNanOp(session.store.events);
    if (op) {
      return {
        status: 'not-located',
        cause: null,
        reproducedAt,
        exit,
        steps,
        message: `the first non-finite value came from ${op.op} (${op.phase}), but no line of the script was on its stack (it ran inside the framework's training loop, e.g. model.fit)`,
      };
    }
    if (nf || /returned nan values|Found (NaN|-?Infinity) in the result/.test(stderr)) {
      return {
        status: 'not-located',
        cause: null,
        reproducedAt,
        exit,
        steps,
        message: `the re-run went non-finite again${nf ? ` at step ${nf.step}` : ''}, but no single operation was reported (it may come from outside the framework's ops, or from the data)`,
      };
    }
    const ran = exit.steps;
    if (exit.reason === 'crashed') {
      return { status: 'not-reproduced', cause: null, reproducedAt: null, exit, steps, message: `the re-run did not reproduce the non-finite value: it crashed first (${exit.message})` };
    }
    return {
      status: 'not-reproduced',
      cause: null,
      reproducedAt: null,
      exit,
      steps,
      message: `the re-run did not reproduce the non-finite value: ${ran} step${ran === 1 ? '' : 's'} (budget ${steps}) stayed finite (${exit.reason}${
        exit.reason === 'time-limit' ? `, stopped after ${o.timeoutSec ?? 120} s` : ''
      }); the script may not be deterministic (random seeds, data order, files it reads or writes)`,
    };
  });
}
