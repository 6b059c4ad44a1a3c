// `gradscope`: the headless shell over the same core and process code as the extension.
import { mkdirSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { buildRunJson } from '../core/report/runJson';
import { observedNothing, runWarnings } from '../core/report/warnings';
import { RunSession, type RunExit } from '../process/runSession';
import { USAGE, UsageError, parseArgs, type RunArgs } from './args';
import { fix } from './fix';
import { runHeader } from '../panel/snapshot';
import { writeReport } from './report';
import { formatSummary } from './summary';

declare const PACKAGE_VERSION: string | undefined;

/** Reads a layer's activation from the line that built it (files cached; unreadable: unknown). */

/**
 * Exit codes: 0 the run was observed (completed, step or time limit, stopped), 1 the script crashed,
 * 2 usage, 3 protocol error, 4 the report could not be written, 6 the script ran but GradScope
 * observed no optimizer step (or the probe never connected): nothing was diagnosed. (5 is `fix`'s
 * "not cured"; the codes differ so a script can tell them apart.)
 */
function exitCodeFor(exit: RunExit, nothingObserved: boolean): number {
  switch (exit.reason) {
    case 'completed':
    case 'step-limit':
    case 'time-limit':
    case 'stopped':
      return nothingObserved ? 6 : 0;
    case 'crashed':
      return 1;
    case 'protocol-error':
      return 3;
  }
}

async function run(a: RunArgs): Promise<number> {
  const cwd = process.cwd();
  const runDir = resolve(cwd, a.outDir ?? '.gradscope/runs');
  mkdirSync(runDir, { recursive: true });
  const session = RunSession.start({
    script: resolve(cwd, a.script),
    args: a.scriptArgs,
    cwd,
    maxSteps: a.steps,
    timeoutSec: a.timeoutSec,
    detailEvery: a.detailEvery,
    runDir,
  });
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
  const findings = [...session.findings];
  let reportFailed = false;
  if (a.report) {
    const file = resolve(cwd, a.report);
    try {
      const header = runHeader(session.store, { runId: session.id, script: session.script, status: exit.reason, statusMessage: exit.message });
      const bytes = writeReport(file, session.store, header, findings);
      process.stderr.write(`gradscope: report written to ${relative(cwd, file) || file} (${(bytes / 1024).toFixed(0)} KiB)\n`);
    } catch (e) {
      process.stderr.write(`gradscope: could not write the report ${file}: ${(e as Error).message}\n`);
      reportFailed = true;
    }
  }

  if (a.json) {
    const doc = buildRunJson(session.store, session.script, exit, session.runFile, findings);
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  } else {
    process.stdout.write(
      formatSummary(session.store, exit, { script: relative(cwd, session.script) || session.script, runFile: relative(cwd, session.runFile) }, findings, { optimizer: a.optimizer }),
    );
  }
  const code = exitCodeFor(exit, observedNothing(runWarnings(session.store, { reason: exit.reason })));
  return code === 0 && reportFailed ? 4 : code;
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`gradscope: ${e.message}\n\n${USAGE}\n`);
      return 2;
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
