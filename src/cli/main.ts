// `gradscope`: the headless shell over the same core and process code as the extension.
import { relative, resolve } from 'node:path';
import { buildRunJson } from '../core/report/runJson';
import { observedNothing, runWarnings } from '../core/report/warnings';
import { RunFileError } from '../core/store/runFile';
import { checkWritableFile, ensureDir, HostFileError, scriptProblem } from '../process/files';
import { RunSession, frameworkOf, type RunExit } from '../process/runSession';
import { analyzerFor, shownStore } from '../process/runHandle';
import { crossRankOf, DESYNC_RELATIVE_TOLERANCE, distributedRanks } from '../core/analysis/crossRank';
import { crossRankJson, ranksJson } from '../core/report/ranksJson';
import { wholeRanks } from '../core/view/ranks';
import type { Analyzer } from '../core/analysis/analyzer';
import type { RunStore } from '../core/store/runStore';
import { withCause } from '../core/analysis/nanCause';
import type { Finding } from '../core/analysis/finding';
import { locateNan, type LocateNanResult } from '../process/locateNan';
import { USAGE, UsageError, parseArgs, pythonOf, type RunArgs } from './args';
import { fix } from './fix';
import { listen } from './listen';
import { runHeader } from '../core/view/snapshot';
import { writeReport } from './report';
import { formatSummary } from './summary';

declare const PACKAGE_VERSION: string | undefined;

/**
 * `gradscope run`'s exit codes (README "Exit code", USAGE). 5 is `fix`'s "not cured": the codes
 * differ so a script can tell them apart. 70 is an internal error (a bug: it prints a stack).
 */
export const RUN_EXIT = {
  /** The run was observed: completed, step or time limit, stopped. */
  observed: 0,
  crashed: 1,
  usage: 2,
  /** The probe's data stream was corrupt. */
  protocolError: 3,
  /** An output could not be written: the run folder (checked first: nothing ran) or the report. */
  outputFailed: 4,
  /** The script ran but no optimizer step was observed (or the probe never connected). */
  nothingObserved: 6,
  /** The probe's channel closed without END: steps after the last one seen were not observed. */
  probeLost: 7,
  /** The run file could not be written to the end (a full disk): it holds only the first steps. */
  recordingFailed: 8,
} as const;

/** A crash or a corrupt stream is the headline; then a run file cut short; then what was not observed. */
function exitCodeFor(exit: RunExit, nothingObserved: boolean): number {
  switch (exit.reason) {
    case 'crashed':
      return RUN_EXIT.crashed;
    case 'protocol-error':
      return RUN_EXIT.protocolError;
    case 'probe-lost':
      return exit.recording ? RUN_EXIT.recordingFailed : RUN_EXIT.probeLost;
    case 'completed':
    case 'step-limit':
    case 'time-limit':
    case 'stopped':
      return exit.recording ? RUN_EXIT.recordingFailed : nothingObserved ? RUN_EXIT.nothingObserved : RUN_EXIT.observed;
  }
}

const say = (line: string): void => void process.stderr.write(`gradscope: ${line}\n`);

/** What must hold before anything runs: a script file, a usable run folder and report path. Null, or the exit code after saying why. */
function preflight(a: RunArgs, script: string, runDir: string, report: string | null): number | null {
  const problem = scriptProblem(script);
  if (problem) {
    say(problem);
    return RUN_EXIT.usage;
  }
  if ((a.launcher || a.nprocPerNode) && frameworkOf(script) !== 'torch') {
    say(`${a.launcher ? 'a launcher' : '--nproc-per-node'} runs a PyTorch script (.py), not ${script}`);
    return RUN_EXIT.usage;
  }
  if (!frameworkOf(script)) {
    say(`don't know how to run ${script}: expected a TensorFlow.js script (.js, .mjs, .cjs, .ts) or a PyTorch script (.py)`);
    if (script.toLowerCase().endsWith('.ipynb'))
      say(
        'a notebook trains in its own kernel: pip install the probe there, run %load_ext gradscope_probe and %gradscope on in the notebook, then read the run with gradscope fix --from-run .gradscope/runs/<run>.gsrun (README: "Jupyter notebooks")',
      );
    return RUN_EXIT.usage;
  }
  try {
    ensureDir(runDir);
  } catch (e) {
    say(`cannot use the run folder${a.outDir ? ' (--out)' : ''}: ${(e as Error).message}; nothing was run`);
    return RUN_EXIT.outputFailed;
  }
  if (report) {
    try {
      checkWritableFile(report);
    } catch (e) {
      say(`cannot write the report (--report): ${(e as Error).message}; nothing was run`);
      return RUN_EXIT.outputFailed;
    }
  }
  return null;
}

async function run(a: RunArgs): Promise<number> {
  const cwd = process.cwd();
  const runDir = resolve(cwd, a.outDir ?? '.gradscope/runs');
  const script = resolve(cwd, a.script);
  const report = a.report ? resolve(cwd, a.report) : null;
  const refused = preflight(a, script, runDir, report);
  if (refused !== null) return refused;
  let session: RunSession;
  try {
    // NODE_OPTIONS is the user's own here (their shell's): a TF.js script gets it, as under plain node.
    const env = process.env.NODE_OPTIONS !== undefined ? { NODE_OPTIONS: process.env.NODE_OPTIONS } : undefined;
    const launcher = a.launcher ? { command: a.launcher } : a.nprocPerNode ? { nprocPerNode: a.nprocPerNode } : undefined;
    session = RunSession.start({
      script,
      args: a.scriptArgs,
      cwd,
      maxSteps: a.steps,
      timeoutSec: a.timeoutSec,
      detailEvery: a.detailEvery,
      runDir,
      nodeArgs: a.nodeArgs,
      env,
      launcher,
      ...pythonOf(a),
    });
  } catch (e) {
    if (!(e instanceof HostFileError || e instanceof RunFileError)) throw e;
    say(`${e.message}; nothing was run`);
    return RUN_EXIT.outputFailed;
  }
  // With --json, stdout carries only the document: the script's own output goes to stderr.
  session.onOutput(({ stream, text }) => (a.json || stream === 'stderr' ? process.stderr : process.stdout).write(text));
  let interrupted = 0;
  const onSigint = (): void => {
    interrupted++;
    if (interrupted === 1) {
      process.stderr.write('\ngradscope: stopping the run (Ctrl-C again to kill it now)…\n');
      void session.stop();
    } else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const exit = await session.done;
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigint);
  // The store that shows the run (./runHandle shownStore): the script's own, or, when it only started
  // ranks (mp.spawn), the first rank's; with --rank R, rank R's. Its findings come from that store.
  const ranks = session.ranks;
  const picked = a.rank === null ? null : (ranks.find((r) => r.rank === a.rank) ?? null);
  let badRank = false;
  if (a.rank !== null && !picked) {
    badRank = true;
    say(
      `--rank ${a.rank}: ${ranks.length ? `this run has rank${ranks.length === 1 ? '' : 's'} ${ranks.map((r) => r.rank).join(', ')}` : 'this run has no ranks (one process)'}; showing ${ranks.length ? `rank ${shownRankOf(session)}` : 'it'} instead (the run file keeps every rank: ${relative(cwd, session.runFile) || session.runFile})`,
    );
  }
  const store = picked ? picked.store : shownStore(session);
  const findingsOf = findingsCache(session);
  const findings = [...findingsOf(store)];
  const cross = crossRankOf(ranks);
  const located = a.locateNan ? await locateFirstNonFinite(a, session.script, findings) : null;
  let reportFailed = false;
  if (report) {
    const file = report;
    try {
      const header = runHeader(store, { runId: session.id, script: session.script, status: exit.reason, statusMessage: exit.message });
      const bytes = writeReport(file, store, header, findings, wholeRanks(session, store, cross));
      process.stderr.write(`gradscope: report written to ${relative(cwd, file) || file} (${(bytes / 1024).toFixed(0)} KiB)\n`);
    } catch (e) {
      say(`could not write the report: ${(e as Error).message}`);
      reportFailed = true;
    }
  }

  const shownRank = ranks.find((r) => r.store === store)?.rank ?? null;
  if (a.json) {
    // The run's findings: the shown store's, then the cross-rank ones (ranks out of step).
    const doc = buildRunJson(store, session.script, exit, session.runFile, [...findings, ...(cross?.findings ?? [])]);
    // (the located cause is on its finding already: buildRunJson carries `cause`)
    if (located) Object.assign(doc, { locateNan: locateJson(located) });
    if (ranks.length || session.expectedRanks) {
      const each = ranks.map((r) => ({ rank: r.rank, store: r.store, runFile: r.runFile, findings: findingsOf(r.store) }));
      Object.assign(doc, ranksJson(each, session.expectedRanks, shownRank, cross ? crossRankJson(cross, DESYNC_RELATIVE_TOLERANCE) : null));
    }
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  } else {
    // Workers that train on their own (no distributed job among them) are told apart by pid, not rank.
    const alone = ranks.length > 1 && distributedRanks(ranks).length === 0 ? { pids: ranks.map((r) => r.store.hello?.pid ?? null), shown: store.hello?.pid ?? null } : null;
    const rankView = ranks.length > 1 || shownRank !== null ? { shown: shownRank, ranks: ranks.map((r) => r.rank), cross, alone } : null;
    process.stdout.write(
      formatSummary(store, exit, { script: relative(cwd, session.script) || session.script, runFile: relative(cwd, session.runFile) }, findings, {
        optimizer: a.optimizer,
        ranks: rankView,
      }),
    );
  }
  const code = exitCodeFor(exit, observedNothing(runWarnings(store, { reason: exit.reason })));
  // A bad --rank is a usage error, unless the run itself says something graver (a crash, a lost probe).
  if (badRank && code === RUN_EXIT.observed) return RUN_EXIT.usage;
  return code === RUN_EXIT.observed && reportFailed ? RUN_EXIT.outputFailed : code;
}

/**
 * --locate-nan: with a non-finite finding, the bounded re-run (src/process/locateNan.ts) up to its
 * step; the finding is replaced by one that carries the cause. Says what happened on stderr, always.
 */
async function locateFirstNonFinite(a: RunArgs, script: string, findings: Finding[]): Promise<LocateNanResult | null> {
  const i = findings.findIndex((f) => f.kind === 'non-finite-gradient');
  if (i < 0) {
    say('--locate-nan: no non-finite gradient in this run: nothing to locate');
    return null;
  }
  const nf = findings[i];
  say(`locating the first non-finite operation: re-running up to step ${nf.step} with checking on…`);
  let r: LocateNanResult;
  try {
    // The re-run's own output is not shown (it repeats the first run's, plus the checks' traces).
    r = await locateNan({ script, args: a.scriptArgs, cwd: process.cwd(), firstStep: nf.step, timeoutSec: a.timeoutSec || undefined, ...pythonOf(a) });
  } catch (e) {
    say(`--locate-nan: the re-run failed: ${(e as Error).message}`);
    return null;
  }
  if (r.cause) {
    findings[i] = withCause(nf, r.cause);
    say(`first non-finite operation: ${r.cause.op} at ${relative(process.cwd(), r.cause.file) || r.cause.file}:${r.cause.line}:${r.cause.column} (${r.cause.phase})`);
  } else say(`--locate-nan: ${r.message}`);
  return r;
}

function finishedAnalyzer(store: RunStore): Analyzer {
  const a = analyzerFor(store);
  a.finish();
  return a;
}

/** The rank the run shows without --rank: the rank whose store shownStore picks (null: the script's own process). */
function shownRankOf(session: RunSession): number | null {
  const store = shownStore(session);
  return session.ranks.find((r) => r.store === store)?.rank ?? null;
}

/** Each store's findings, computed once: the session's own analyzer for its store, a finished one for a rank's. */
function findingsCache(session: RunSession): (store: RunStore) => readonly Finding[] {
  const done = new Map<RunStore, readonly Finding[]>([[session.store, session.findings]]);
  return (store) => {
    let f = done.get(store);
    if (!f) done.set(store, (f = finishedAnalyzer(store).findings));
    return f;
  };
}

function locateJson(r: LocateNanResult): Record<string, unknown> {
  return {
    status: r.status,
    message: r.message,
    cause: r.cause ? { op: r.cause.op, phase: r.cause.phase, file: r.cause.file, line: r.cause.line, column: r.cause.column } : null,
    steps: r.steps,
    reproducedAt: r.reproducedAt,
  };
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`gradscope: ${e.message}\n\n${USAGE}\n`);
      return RUN_EXIT.usage;
    }
    throw e;
  }
  switch (args.command) {
    case 'help':
      process.stdout.write(USAGE + '\n');
      return 0;
    case 'version':
      process.stdout.write(`${typeof PACKAGE_VERSION === 'string' ? PACKAGE_VERSION : 'dev'}\n`);
      return 0;
    case 'run':
      return run(args);
    case 'fix':
      return fix(args);
    case 'listen':
      return listen(args, { exitCodeFor, failed: RUN_EXIT.usage });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`gradscope: internal error: ${(e instanceof Error && e.stack) || String(e)}\n`);
    process.exitCode = 70;
  },
);
