// `gradscope fix`: diagnose (a bounded run, or a recorded run file), pick a finding and a remedy,
// print the edit as a unified diff, optionally verify it on a fixed copy, and write it.
// stdout: the diff and the verdict; stderr: progress and the script's own output.
import { relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Finding } from '../core/analysis/finding';
import { unifiedDiff } from '../core/fixes/diff';
import { globalNormsOf, measureRun, type RunMeasure } from '../core/fixes/measure';
import { fixScope, type FixScope } from '../core/fixes/scope';
import type { FixResult } from '../core/fixes/types';
import { locationText } from '../core/protocol/messages';
import { describeRunRead, readRunFileAsync, RunFileError } from '../core/store/runFile';
import type { RunStore } from '../core/store/runStore';
import { ensureDir, HostFileError, readRegularText, realPath, scriptProblem, writeRegularFile } from '../process/files';
import { savedRunHandle } from '../process/runHandle';
import { availableRemedies, computeFix, prepareFixes } from '../process/fixEngine';
import { RunSession } from '../process/runSession';
import { verifyFix } from '../process/verifyFix';
import { pythonOf, type FixArgs } from './args';
import { fmt } from './summary';

/** `gradscope fix`'s exit codes (USAGE, docs/fixes.md). */
export const FIX_EXIT = {
  /** Written (or, with --dry-run, fixable; or nothing to fix; or already applied). */
  ok: 0,
  /** The script could not be diagnosed: no step, an unreadable run file, the finding's file unreadable. */
  notDiagnosed: 1,
  usage: 2,
  /** Not written: the edit would change a file outside the run (or the current folder) and nobody agreed (--allow-outside). */
  needsConsent: 3,
  noRemedy: 4,
  /** --verify: the fix did not cure the run; the file is unchanged. */
  notCured: 5,
  /** --verify: the fix could not be verified (it edits another file than the script); the file is unchanged. */
  notVerified: 6,
  interrupted: 130,
} as const;

interface Diagnosis {
  script: string;
  args: string[];
  store: RunStore;
  findings: readonly Finding[];
  /** The diagnosis run measured, when it was a run with the same step budget as a verification. */
  baseline: RunMeasure | null;
  /** The person named the script (the <script> argument), rather than only the run file. */
  scriptNamedByUser: boolean;
}

const err = (s: string): void => void process.stderr.write(s);

async function diagnose(a: FixArgs, cwd: string, signal: AbortSignal): Promise<Diagnosis | string | typeof FIX_EXIT.interrupted> {
  if (a.fromRun) {
    const path = resolve(cwd, a.fromRun);
    const r = await readRunFileAsync(path, undefined, { signal });
    if (r.cancelled || signal.aborted) return FIX_EXIT.interrupted;
    const said = describeRunRead(r);
    if (!said.usable) return `could not read ${a.fromRun}: ${said.notRead.join('; ')}`;
    // Never diagnose a damaged or partial file without a word: what was read, and what was not.
    err(`gradscope: read ${a.fromRun}: ${said.read}\n`);
    for (const line of said.notRead) err(`gradscope:   not read: ${line}\n`);
    if (r.store.stepCount === 0) return `${a.fromRun} holds no optimizer step: nothing to diagnose`;
    const findings = savedRunHandle(path, r).analyzer.findings;
    const script = a.script ? resolve(cwd, a.script) : r.meta.script;
    if (!script) return `${a.fromRun} does not name its script: give it, gradscope fix <script> --from-run FILE`;
    return { script, args: a.scriptArgs.length ? a.scriptArgs : r.meta.args, store: r.store, findings, baseline: null, scriptNamedByUser: !!a.script };
  }
  const script = resolve(cwd, a.script);
  const runDir = resolve(cwd, '.gradscope/runs');
  err(`gradscope: diagnosing ${relative(cwd, script) || script} (${a.steps} steps)…\n`);
  let session: RunSession;
  try {
    ensureDir(runDir);
    session = RunSession.start({ script, args: a.scriptArgs, cwd, maxSteps: a.steps, timeoutSec: a.timeoutSec, runDir, ...pythonOf(a) });
  } catch (e) {
    if (e instanceof HostFileError || e instanceof RunFileError) return `cannot record the diagnosis run: ${e.message}`;
    throw e;
  }
  session.onOutput(({ text }) => err(text));
  const stop = (): void => void session.stop();
  signal.addEventListener('abort', stop, { once: true });
  const exit = await session.done;
  signal.removeEventListener('abort', stop);
  if (signal.aborted) return FIX_EXIT.interrupted;
  if (session.store.stepCount === 0) return `the script took no optimizer step: ${exit.message}`;
  return { script, args: a.scriptArgs, store: session.store, findings: [...session.findings], baseline: measureRun(session.store, session.findings, exit), scriptNamedByUser: true };
}

/** The scope rule (src/core/fixes/scope.ts) on real paths: symbolic links resolved on every side. */
function scopeOf(file: string, d: Diagnosis, cwd: string): FixScope {
  const sourceFiles = [...new Set(d.store.tensors.flatMap((t) => (t.source ? [t.source.file] : [])))].map(realPath);
  return fixScope({ file: realPath(file), script: realPath(d.script), scriptNamedByUser: d.scriptNamedByUser, sourceFiles, roots: [realPath(cwd)] });
}

/** Asks on the terminal; Ctrl-C or end of input is a no. */
function askYesNo(question: string): Promise<'yes' | 'no' | 'interrupted'> {
  return new Promise((done) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    let answered = false;
    const finish = (a: 'yes' | 'no' | 'interrupted'): void => {
      if (answered) return;
      answered = true;
      rl.close();
      done(a);
    };
    rl.on('SIGINT', () => {
      err('\n');
      finish('interrupted');
    });
    rl.on('close', () => finish('no'));
    rl.question(question, (answer) => finish(/^\s*y(es)?\s*$/i.test(answer) ? 'yes' : 'no'));
  });
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

/** A fix that applies (computeFix's ok result). */
type AppliedFix = Extract<FixResult, { ok: true }>;

/**
 * How many runs `fix --verify` may make in all: the original's when the diagnosis did not measure it
 * (--from-run), and one fixed copy per remedy tried. Each is a full bounded run of the script.
 */
export const MAX_VERIFY_RUNS = 3;

/**
 * --verify: the applicable remedies in rank order, each on a fixed copy, until one cures the run or
 * the budget of MAX_VERIFY_RUNS runs is spent. The first that cures is the one returned (and the only
 * one that may be written); null when none did (the file stays unchanged unless --force).
 */
async function verifyInTurn(
  a: FixArgs,
  d: Diagnosis,
  cwd: string,
  signal: AbortSignal,
  text: string,
  rel: string,
  finding: Finding,
  candidates: readonly AppliedFix[],
): Promise<AppliedFix | null | typeof FIX_EXIT.interrupted> {
  let baseline = d.baseline ?? undefined;
  let runsLeft = MAX_VERIFY_RUNS;
  const failed: string[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    const cost = baseline ? 1 : 2;
    if (runsLeft < cost) {
      const rest = candidates.slice(i).map((x) => x.remedy);
      process.stdout.write(`\nNot tried (at most ${MAX_VERIFY_RUNS} verification runs): ${rest.join(', ')}.\n`);
      break;
    }
    if (i > 0) {
      process.stdout.write(`\n${failed[failed.length - 1]} did not cure the run: trying the next remedy.\nRemedy: ${c.remedy}: ${c.title}\n\n`);
      process.stdout.write(unifiedDiff(text, c.after, `a/${rel}`, `b/${rel}`));
    }
    err(`gradscope: verifying ${c.remedy} on a fixed copy (${a.steps} steps${baseline ? '' : ', and the original for comparison'})…\n`);
    let v: Awaited<ReturnType<typeof verifyFix>>;
    try {
      v = await verifyFix({
        script: d.script,
        args: d.args,
        cwd,
        fixedText: c.after,
        steps: a.steps,
        timeoutSec: a.timeoutSec,
        baseline,
        kind: finding.kind,
        signal,
        onOutput: (_w, chunk) => err(chunk.text),
        ...pythonOf(a),
      });
    } catch (e) {
      // verifyFix throws "verification cancelled" when Ctrl-C stopped it: the file is unchanged.
      if (signal.aborted) return FIX_EXIT.interrupted;
      throw e;
    }
    if (signal.aborted) return FIX_EXIT.interrupted;
    runsLeft -= cost;
    baseline = v.before;
    process.stdout.write(`\nVerify (${a.steps} steps): ${c.remedy}\n${verifyTable(v.before, v.after)}${v.summary}\n`);
    if (v.cured) {
      if (failed.length > 0) process.stdout.write(`\nCured by ${c.remedy} (remedy ${i + 1} of those tried; ${failed.join(', ')} did not cure the run).\n`);
      return c;
    }
    failed.push(c.remedy);
  }
  const what = failed.length === 1 ? 'the fix does not cure the run' : `none of the remedies tried (${failed.join(', ')}) cures the run`;
  if (a.force && candidates.length > 0) process.stdout.write(`${what[0].toUpperCase()}${what.slice(1)}; --force: ${candidates[0].remedy} is written anyway.\n`);
  else process.stdout.write(`${a.dryRun ? '' : 'Not written: '}${what}${a.dryRun ? '' : ` (--force writes ${failed.length === 1 ? 'it' : 'the first'} anyway)`}.\n`);
  return null;
}

export async function fix(a: FixArgs): Promise<number> {
  const cwd = process.cwd();
  const ac = new AbortController();
  let interrupted = 0;
  const onSigint = (): void => {
    if (++interrupted === 1) {
      err('\ngradscope: stopping (Ctrl-C again to quit now)…\n');
      ac.abort();
    } else process.exit(FIX_EXIT.interrupted);
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
  if (a.script) {
    // A missing script (or a folder named like one) is the command line's fault: usage, before anything runs.
    const problem = scriptProblem(resolve(cwd, a.script));
    if (problem) {
      err(`gradscope: ${problem}\n`);
      return FIX_EXIT.usage;
    }
  }
  const d = await diagnose(a, cwd, signal);
  if (d === FIX_EXIT.interrupted) return FIX_EXIT.interrupted;
  if (typeof d === 'string') {
    err(`gradscope: ${d}\n`);
    return FIX_EXIT.notDiagnosed;
  }
  const findings = a.finding ? d.findings.filter((f) => f.kind === a.finding) : d.findings;
  if (findings.length === 0) {
    process.stdout.write(a.finding ? `No ${a.finding} finding in this run: nothing to fix.\n` : 'No findings: nothing to fix.\n');
    return a.finding ? FIX_EXIT.noRemedy : FIX_EXIT.ok;
  }
  // The top finding that proposes a change (one that settled, or a desync across ranks, proposes none).
  const finding = findings.find((f) => f.remedies.length > 0) ?? findings[0];
  const file = finding.source?.file ?? d.script;
  if (finding.source?.cell !== undefined || file.toLowerCase().endsWith('.ipynb')) {
    // A notebook run (%gradscope on): the finding is on a cell's line, and the fix engines edit
    // source files, not a notebook's cells (JSON). Say where to look instead of guessing an edit.
    const at = finding.source ? ` at ${locationText(relative(cwd, file) || file, finding.source)}` : '';
    process.stdout.write(`Finding: ${finding.kind} (${finding.severity})${at}: ${finding.message}\n`);
    process.stdout.write(
      `Cannot fix inside a notebook (.ipynb) yet: edit the cell by hand${finding.remedies.length ? ` (remedies: ${finding.remedies.map((r) => r.id).join(', ')})` : ''}\n`,
    );
    return FIX_EXIT.noRemedy;
  }
  let text: string;
  try {
    text = readRegularText(file); // never a FIFO or a device, whatever the run file names
  } catch (e) {
    err(`gradscope: ${file} (where the finding points) cannot be read here: ${(e as Error).message}\n`);
    return FIX_EXIT.notDiagnosed;
  }
  await prepareFixes(file); // loads the Python parser (wasm) for .py files
  const ctx = { file, globalNorms: globalNormsOf(d.store) };
  const rel = relative(cwd, file) || file;
  process.stdout.write(`Finding: ${finding.kind} (${finding.severity})${finding.source ? ` at ${locationText(rel, finding.source)}` : ''}: ${finding.message}\n`);

  let result: FixResult;
  /** The remedies that apply, in rank order: what --verify tries in turn when the first does not cure. */
  let applicable: AppliedFix[] = [];
  if (a.remedy) {
    result = computeFix(text, finding, a.remedy, ctx);
    if (result.ok) applicable = [result];
  } else {
    const options = availableRemedies(text, finding, ctx);
    applicable = options.flatMap((o) => (o.result.ok ? [o.result] : []));
    const usable = options.find((o) => o.result.ok);
    for (const o of options) {
      if (o === usable) break;
      if (!o.result.ok) process.stdout.write(`  skipped ${o.remedy.id}: ${o.result.reason}\n`);
    }
    result = usable?.result ?? options[0]?.result ?? { ok: false, remedy: 'none', reason: 'the finding has no remedies' };
  }
  if (!result.ok && finding.remedies.length === 0) {
    process.stdout.write('Nothing to fix: no finding proposes a change to the code.\n');
    return finding.severity === 'info' ? FIX_EXIT.ok : FIX_EXIT.noRemedy;
  }
  if (!result.ok) {
    process.stdout.write(`${result.alreadyApplied ? 'Already applied' : 'Cannot apply'} ${result.remedy}: ${result.reason}\n`);
    return result.alreadyApplied ? FIX_EXIT.ok : FIX_EXIT.noRemedy;
  }
  process.stdout.write(`Remedy: ${result.remedy}: ${result.title}\n\n`);
  process.stdout.write(unifiedDiff(text, result.after, `a/${rel}`, `b/${rel}`));

  // Which file may be edited: decided before anything runs (verification runs the script) or is written.
  const scope = scopeOf(file, d, cwd);
  if (!scope.allowed) {
    if (a.dryRun) {
      process.stdout.write(`\nNote: writing this fix would need your consent: ${scope.message} (--allow-outside).\n`);
    } else if (a.allowOutside) {
      err(`gradscope: editing outside the run's scope (--allow-outside): ${scope.message}\n`);
    } else if (process.stdin.isTTY && process.stderr.isTTY) {
      err(`\ngradscope: ${scope.message}.\n`);
      const answer = await askYesNo(`Edit ${file} anyway? [y/N] `);
      if (answer === 'interrupted') return FIX_EXIT.interrupted;
      if (answer === 'no') {
        process.stdout.write(`\nNot written: ${rel} is unchanged.\n`);
        return FIX_EXIT.needsConsent;
      }
    } else {
      err(
        `gradscope: not written: ${scope.message}. GradScope edits only the run's script (or a file its source map names next to it) inside the current folder without asking; give --allow-outside to edit it anyway.\n`,
      );
      return FIX_EXIT.needsConsent;
    }
  }

  if (a.verify) {
    if (realPath(file) !== realPath(d.script)) {
      // The copy that verification runs is the script's; a fix to another file cannot be tried that way.
      err(`gradscope: --verify re-runs the script with a fixed copy of itself; this fix edits another file (${rel}), so it cannot be verified\n`);
      process.stdout.write(`\nNot written: the fix could not be verified (${rel} is unchanged). Run without --verify to write it unverified.\n`);
      return FIX_EXIT.notVerified;
    }
    const chosen = await verifyInTurn(a, d, cwd, signal, text, rel, finding, applicable);
    if (chosen === FIX_EXIT.interrupted) return FIX_EXIT.interrupted;
    if (chosen === null) {
      if (!a.force) return FIX_EXIT.notCured;
    } else result = chosen;
  }
  if (a.dryRun) {
    process.stdout.write('\n(dry run: nothing written)\n');
    return FIX_EXIT.ok;
  }
  // The file must still be the text the fix was computed on (an editor may have saved meanwhile).
  try {
    if (readRegularText(file) !== text) {
      err(`gradscope: ${rel} changed while the fix was computed; not written\n`);
      return FIX_EXIT.noRemedy;
    }
    writeRegularFile(realPath(file), result.after);
  } catch (e) {
    err(`gradscope: not written: ${(e as Error).message}\n`);
    return FIX_EXIT.notDiagnosed;
  }
  process.stdout.write(`\nWrote ${rel}\n`);
  return FIX_EXIT.ok;
}
