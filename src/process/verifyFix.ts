// "Verify before apply": re-runs the user's script with a fix applied to a temporary copy, for a
// bounded number of steps, and compares it with the run without the fix. The copy is written NEXT
// to the original (`.name.gradscope-verify-<pid>.ext`, same extension) so that relative imports,
// package.json "type" and the user's node_modules resolve exactly as for the original; it is always
// deleted (finally, and an exit hook in case the process dies on the way).
import { unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { FindingKind } from '../core/analysis/finding';
import { measureRun, verdict, type RunMeasure } from '../core/fixes/measure';
import { runToEnd, withRunDir } from './boundedRun';
import type { OutputChunk } from './runSession';
import type { PythonSource } from './python';

export interface VerifyOptions {
  script: string;
  args?: string[];
  cwd?: string;
  /** The whole text of the script with the fix applied. */
  fixedText: string;
  /** Step budget of each run (the same for before and after). */
  steps: number;
  /** The run without the fix, already measured with the same budget; run again when absent. */
  baseline?: RunMeasure;
  /** The kind of the finding the fix is for ("cured" = it is gone and nothing went non-finite). */
  kind?: FindingKind | null;
  /** Stop each run after this many seconds (default: none beyond the step budget). */
  timeoutSec?: number;
  /** Where run files go (default: a temporary folder, removed afterwards). */
  runDir?: string;
  nodePath?: string;
  /** Python interpreter for PyTorch scripts, and where it came from (as RunOptions). */
  pythonPath?: string;
  pythonSource?: PythonSource;
  /** Aborting stops the run in progress; the copy is still removed. */
  signal?: AbortSignal;
  onOutput?: (which: 'before' | 'after', chunk: OutputChunk) => void;
  /** Override where the probe bundles live (tests). */
  probeDir?: string;
}

export interface VerifyResult {
  before: RunMeasure;
  after: RunMeasure;
  cured: boolean;
  summary: string;
}

let counter = 0;

/** The temporary copy's path: beside the original, hidden, same extension. */
export function verifyCopyPath(script: string): string {
  const ext = extname(script);
  return join(dirname(script), `.${basename(script, ext)}.gradscope-verify-${process.pid}-${counter++}${ext}`);
}

async function runOnce(script: string, o: VerifyOptions, runDir: string, which: 'before' | 'after', mapFile?: (f: string) => string): Promise<RunMeasure> {
  const { session, exit } = await runToEnd(
    {
      script,
      args: o.args ?? [],
      cwd: o.cwd ?? dirname(script),
      maxSteps: o.steps,
      timeoutSec: o.timeoutSec ?? 0,
      runDir,
      nodePath: o.nodePath,
      pythonPath: o.pythonPath,
      pythonSource: o.pythonSource,
      probeDir: o.probeDir,
    },
    { signal: o.signal, onOutput: o.onOutput && ((c) => o.onOutput!(which, c)), cancelled: 'verification cancelled' },
  );
  return measureRun(session.store, session.findings, exit, mapFile);
}

export async function verifyFix(o: VerifyOptions): Promise<VerifyResult> {
  const script = resolve(o.cwd ?? process.cwd(), o.script);
  return withRunDir(o.runDir, 'gradscope-verify-', (runDir) => verifyIn(script, o, runDir));
}

async function verifyIn(script: string, o: VerifyOptions, runDir: string): Promise<VerifyResult> {
  const copy = verifyCopyPath(script);
  const removeCopy = (): void => {
    try {
      unlinkSync(copy);
    } catch {
      // already gone
    }
  };
  process.once('exit', removeCopy);
  try {
    const before = o.baseline ?? (await runOnce(script, o, runDir, 'before'));
    writeFileSync(copy, o.fixedText);
    // Findings in the copy point at the copy: map them to the original (their lines are those of
    // the fixed text, i.e. of the file once the fix is applied).
    const after = await runOnce(copy, o, runDir, 'after', (f) => (resolve(f) === copy ? script : f));
    const v = verdict(o.kind ?? null, before, after);
    return { before, after, cured: v.cured, summary: v.summary };
  } finally {
    removeCopy();
    process.off('exit', removeCopy);
  }
}
