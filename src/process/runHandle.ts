// One run, as every view sees it: live (a RunSession is its own handle) or read back from its run
// file (savedRunHandle). The diagnostics, the hover, the quick fixes, the panel and the CLI all take
// a RunHandle; what a run has (its store, its analyzer, later its ranks and optimizers) hangs here.
import { Analyzer, type FindingsView } from '../core/analysis/analyzer';
import type { ErrorInfo } from '../core/protocol/messages';
import type { ReadRunResult, RunExitReason, RunExitRecord } from '../core/store/runFile';
import type { RunStore } from '../core/store/runStore';
import { defaultStore } from '../core/view/ranks';
import type { Disposable } from '../core/util/emitter';
import { activationFromFiles } from './activationFromFiles';

/** How a run ended (RUN_EXIT_REASONS in the run file module): `probe-lost` when the probe's channel closed without END. */
export type ExitReason = RunExitReason;

export interface RunExit {
  reason: ExitReason;
  code: number | null;
  signal: string | null;
  error: ErrorInfo | null;
  /** One line a person can read: "crashed at train.js:20: TypeError: …". */
  message: string;
  steps: number;
  /** The last step index the probe reported (-1: none); with `probe-lost`, where observation stopped. */
  lastStep?: number;
  /** Set when the run file stopped being written before the end (a disk error): what it keeps. */
  recording?: { reason: string; steps: number } | null;
}

/** What a view may do with a run that is (or was) live in this process. */
export interface LiveRun {
  /** True once the run has ended (the handle's `exit` is then set). */
  readonly exited: boolean;
  /** Fires once, when the run has ended. */
  readonly onDidEnd: (listener: (exit: RunExit) => void) => Disposable;
  /** Stops the run (SIGTERM to its process group, SIGKILL after a grace period). Idempotent. */
  stop(): Promise<RunExit>;
}

/**
 * One process of a distributed run (a torchrun rank, an mp.spawn child) as recorded: its store (its
 * HELLO says its rank, local rank, world size, host and pid) and its run file. Under a launcher, rank
 * 0 is the run's own store and run file; the others have files of their own (./rankRecorder.ts).
 */
export interface RunRank {
  readonly rank: number;
  readonly store: RunStore;
  readonly runFile: string;
}

export interface RunHandle {
  readonly id: string;
  /** Absolute path of the training script. */
  readonly script: string;
  readonly cwd: string;
  readonly args: readonly string[];
  readonly runFile: string;
  readonly store: RunStore;
  /** The run's findings and their version (compare the version, not the findings). */
  readonly analyzer: FindingsView;
  /** The session that runs it, for a run started in this process; null for a run read from its file. */
  readonly live: LiveRun | null;
  /** How it ended: a live run's exit once it has ended, a saved run's exit record (null: none, or not yet). */
  readonly exit: RunExit | RunExitRecord | null;
  /** The processes that joined the run over the socket, by rank (absent or empty: a single process). */
  readonly ranks?: readonly RunRank[];
  /** Ranks the job said it has, for a live run (RunSession: --nproc-per-node or a HELLO's world size); absent: read from the ranks' HELLOs. */
  readonly expectedRanks?: number;
}

/**
 * The store that shows the run: its own, unless it observed no step while a rank did (the script
 * only started its ranks: mp.spawn), then the lowest rank's that has steps.
 */
export function shownStore(run: Pick<RunHandle, 'store' | 'ranks'>): RunStore {
  return defaultStore(run);
}

/** The analyzer of a run's store, told each layer's activation by its source line: the one way a run's analyzer is made. */
export function analyzerFor(store: RunStore): Analyzer {
  return new Analyzer(store, { activationOf: activationFromFiles() });
}

/** A saved run read back (readRunFileAsync) as a handle: its findings computed once, over what was read. */
export function savedRunHandle(runFile: string, read: ReadRunResult, ranks?: readonly RunRank[]): RunHandle {
  const analyzer = analyzerFor(read.store);
  analyzer.finish();
  const { meta } = read;
  const handle: RunHandle = { id: meta.runId, script: meta.script, cwd: meta.cwd, args: meta.args, runFile, store: read.store, analyzer, live: null, exit: read.exit };
  return ranks?.length ? { ...handle, ranks } : handle;
}

/** Another view of a run's data with other findings (a located cause added): read from its store, never live. */
export function withFindings(run: RunHandle, id: string, analyzer: FindingsView): RunHandle {
  const handle: RunHandle = { id, script: run.script, cwd: run.cwd, args: run.args, runFile: run.runFile, store: run.store, analyzer, live: null, exit: run.exit };
  return run.ranks?.length ? { ...handle, ranks: run.ranks } : handle;
}
