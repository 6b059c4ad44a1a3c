// `gradscope fix`: diagnose (a bounded run, or a recorded run file), pick a finding and a remedy,
// print the edit as a unified diff, optionally verify it on a fixed copy, and write it.
// stdout: the diff and the verdict; stderr: progress and the script's own output.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { Analyzer } from '../core/analysis/analyzer';
import type { Finding } from '../core/analysis/finding';
import { unifiedDiff } from '../core/fixes/diff';
import { availableRemedies, computeFix, prepareFixes } from '../core/fixes/index';
import { globalNormsOf, measureRun, type RunMeasure } from '../core/fixes/measure';
import type { FixResult } from '../core/fixes/types';
import { readRunFile } from '../core/store/runFile';
import type { RunStore } from '../core/store/runStore';
import { neutralise } from '../core/text';
import { activationFromFiles } from '../process/activationFromFiles';
import { RunSession } from '../process/runSession';
import { verifyFix } from '../process/verifyFix';
import type { FixArgs } from './args';
import { fmt } from './summary';

export const FIX_EXIT = { ok: 0, notDiagnosed: 1, usage: 2, noRemedy: 4, notCured: 5 } as const;

interface Diagnosis {
  script: string;
  args: string[];
  store: RunStore;
  findings: readonly Finding[];
  /** The diagnosis run measured, when it was a run with the same step budget as a verification. */
  baseline: RunMeasure | null;
}

const err = (s: string): void => void process.stderr.write(s);

async function diagnose(a: FixArgs, cwd: string, signal: AbortSignal): Promise<Diagnosis | string> {
  if (a.fromRun) {
    const { store, meta, error } = readRunFile(resolve(cwd, a.fromRun));
    if (error && store.stepCount === 0) return `could not read ${a.fromRun}: ${error.message}`;
    const findings = new Analyzer(store, { activationOf: activationFromFiles() }).finish();
    const script = a.script ? resolve(cwd, a.script) : (meta?.script ?? '');
    if (!script) return `${a.fromRun} does not name its script: give it, gradscope fix <script> --from-run FILE`;
    return { script, args: a.scriptArgs.length ? a.scriptArgs : (meta?.args ?? []), store, findings, baseline: null };
  }
  const script = resolve(cwd, a.script);
  const runDir = resolve(cwd, '.gradscope/runs');
  mkdirSync(runDir, { recursive: true });
  err(`gradscope: diagnosing ${relative(cwd, script) || script} (${a.steps} steps)…\n`);
  const session = RunSession.start({ script, args: a.scriptArgs, cwd, maxSteps: a.steps, timeoutSec: a.timeoutSec, runDir });
  session.onOutput(({ text }) => err(text));
  const stop = (): void => void session.stop();
  signal.addEventListener('abort', stop, { once: true });
  const exit = await session.done;
  signal.removeEventListener('abort', stop);
  if (session.store.stepCount === 0) return `the script took no optimizer step: ${exit.message}`;
  return { script, args: a.scriptArgs, store: session.store, findings: [...session.findings], baseline: measureRun(session.store, session.findings, exit) };
}

function describeMeasure(m: RunMeasure): string[] {
  return [
    fmt(m.maxNorm),
    m.firstNonFiniteStep === null ? 'none' : `step ${m.firstNonFiniteStep}`,
    m.loss.first === null ? '–' : `${fmt(m.loss.first)} → ${fmt(m.loss.last)} (${m.loss.trend})`,
    m.kinds.join(', ') || 'none',
    `${m.steps} (${m.exit.reason})`,
  ];
}

function verifyTable(before: RunMeasure, after: RunMeasure): string {
  const rows = [
    ['', 'before', 'after'],
    ...['max global norm', 'first non-finite', 'loss first → last', 'findings', 'steps'].map((label, i) => [label, describeMeasure(before)[i], describeMeasure(after)[i]]),
  ];
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c].length)));
  return (
    rows
      .map(
        (r) =>
          '  ' +
          r
            .map((c, i) => c.padEnd(w[i]))
            .join('  ')
            .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export async function fix(a: FixArgs): Promise<number> {
  const cwd = process.cwd();
  const ac = new AbortController();
  let interrupted = 0;
  const onSigint = (): void => {
    if (++interrupted === 1) {
      err('\ngradscope: stopping (Ctrl-C again to quit now)…\n');
      ac.abort();
    } else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    return await fixInner(a, cwd, ac.signal);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

async function fixInner(a: FixArgs, cwd: string, signal: AbortSignal): Promise<number> {
  const d = await diagnose(a, cwd, signal);
  if (typeof d === 'string') {
    err(`gradscope: ${d}\n`);
    return FIX_EXIT.notDiagnosed;
  }
  if (signal.aborted) return 130;
  const findings = a.finding ? d.findings.filter((f) => f.kind === a.finding) : d.findings;
  if (findings.length === 0) {
    process.stdout.write(a.finding ? `No ${a.finding} finding in this run: nothing to fix.\n` : 'No findings: nothing to fix.\n');
    return a.finding ? FIX_EXIT.noRemedy : FIX_EXIT.ok;
  }
  const finding = findings[0];
  const file = finding.source?.file ?? d.script;
  if (!existsSync(file)) {
    err(`gradscope: ${file} (where the finding points) does not exist here\n`);
    return FIX_EXIT.notDiagnosed;
  }
  const text = readFileSync(file, 'utf8');
  await prepareFixes(file); // loads the Python parser (wasm) for .py files
  const ctx = { file, globalNorms: globalNormsOf(d.store) };
  const rel = relative(cwd, file) || file;
  process.stdout.write(neutralise(`Finding: ${finding.kind} (${finding.severity})${finding.source ? ` at ${rel}:${finding.source.line}` : ''}: ${finding.message}`) + '\n');

  let result: FixResult;
  if (a.remedy) {
    result = computeFix(text, finding, a.remedy, ctx);
  } else {
    const options = availableRemedies(text, finding, ctx);
    const usable = options.find((o) => o.result.ok);
    for (const o of options) {
      if (o === usable) break;
      if (!o.result.ok) process.stdout.write(`  skipped ${o.remedy.id}: ${o.result.reason}\n`);
    }
    result = usable?.result ?? options[0]?.result ?? { ok: false, remedy: 'none', reason: 'the finding has no remedies' };
  }
  if (!result.ok) {
    process.stdout.write(`${result.alreadyApplied ? 'Already applied' : 'Cannot apply'} ${result.remedy}: ${result.reason}\n`);
    return result.alreadyApplied ? FIX_EXIT.ok : FIX_EXIT.noRemedy;
  }
  process.stdout.write(`Remedy: ${result.remedy}: ${result.title}\n\n`);
  process.stdout.write(unifiedDiff(text, result.after, `a/${rel}`, `b/${rel}`));

  if (a.verify) {
    if (resolve(file) !== resolve(d.script)) {
      err(`gradscope: --verify re-runs the script with a fixed copy of itself; this fix edits another file (${rel}), so it is not verified\n`);
    } else {
      err(`gradscope: verifying on a fixed copy (${a.steps} steps${d.baseline ? '' : ', and the original for comparison'})…\n`);
      const v = await verifyFix({
        script: d.script,
        args: d.args,
        cwd,
        fixedText: result.after,
        steps: a.steps,
        timeoutSec: a.timeoutSec,
        baseline: d.baseline ?? undefined,
        kind: finding.kind,
        signal,
        onOutput: (_w, c) => err(c.text),
      });
      if (signal.aborted) return 130;
      process.stdout.write(`\nVerify (${a.steps} steps):\n${verifyTable(v.before, v.after)}${v.summary}\n`);
      if (!v.cured && !a.force) {
        process.stdout.write(`${a.dryRun ? '' : 'Not written: '}the fix does not cure the run${a.dryRun ? '' : ' (--force writes it anyway)'}.\n`);
        return FIX_EXIT.notCured;
      }
    }
  }
  if (a.dryRun) {
    process.stdout.write('\n(dry run: nothing written)\n');
    return FIX_EXIT.ok;
  }
  // The file must still be the text the fix was computed on (an editor may have saved meanwhile).
  if (readFileSync(file, 'utf8') !== text) {
    err(`gradscope: ${rel} changed while the fix was computed; not written\n`);
    return FIX_EXIT.noRemedy;
  }
  writeFileSync(file, result.after);
  process.stdout.write(`\nWrote ${rel}\n`);
  return FIX_EXIT.ok;
}
