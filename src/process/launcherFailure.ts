// What torchrun says when a rank fails: the "Root Cause (first observed failure)" block of its
// ChildFailedError, read from the launcher's stderr. The run's crash message is built from it; the
// last line of that stderr is a rule of '=' (what the run said before: "crashed: ======…").
//
//   Root Cause (first observed failure):
//   [0]:
//     time      : 2026-12-04_13:48:49
//     host      : localhost
//     rank      : 1 (local_rank: 1)
//     exitcode  : -6 (pid: 16845)  (SIGABRT)
//     error_file: <N/A>
//     traceback : Signal 6 (SIGABRT) received by PID 16845
import { constants } from 'node:os';

export interface LauncherRootCause {
  /** The global rank that failed first. */
  rank: number;
  localRank: number | null;
  host: string | null;
  pid: number | null;
  /** The process's exit code; null when a signal ended it. */
  exitCode: number | null;
  /** The signal that ended it ('SIGABRT'), from a negative exit code; null otherwise. */
  signal: string | null;
}

/** Signal names by number, the first name of each (SIGABRT, not its alias SIGIOT). */
const signalNames = new Map<number, string>();
for (const [name, n] of Object.entries(constants.signals)) if (!signalNames.has(n)) signalNames.set(n, name);

/** The root cause of the last ChildFailedError report in `stderr`, or null when there is none. */
export function torchrunRootCause(stderr: string): LauncherRootCause | null {
  const at = stderr.lastIndexOf('Root Cause (first observed failure):');
  if (at < 0) return null;
  const fields = new Map<string, string>();
  // The block's "key : value" lines, up to the closing rule or the next entry.
  for (const line of stderr.slice(at).split('\n').slice(1)) {
    if (/^\s*=+\s*$/.test(line) || /^\s*-+\s*$/.test(line)) break;
    const m = /^\s+(\w+)\s*:\s?(.*)$/.exec(line);
    if (m && !fields.has(m[1])) fields.set(m[1], m[2].trim());
  }
  const rank = /^(\d+)(?:\s*\(local_rank:\s*(\d+)\))?/.exec(fields.get('rank') ?? '');
  const exit = /^(-?\d+)(?:\s*\(pid:\s*(\d+)\))?/.exec(fields.get('exitcode') ?? '');
  if (!rank || !exit) return null;
  const code = Number(exit[1]);
  return {
    rank: Number(rank[1]),
    localRank: rank[2] !== undefined ? Number(rank[2]) : null,
    host: fields.get('host') || null,
    pid: exit[2] !== undefined ? Number(exit[2]) : null,
    exitCode: code < 0 ? null : code,
    signal: code < 0 ? (signalNames.get(-code) ?? `signal ${-code}`) : null,
  };
}

/** "rank 1 (pid 16845) was killed by SIGABRT", "rank 3 (pid 7, host node2) exited with code 1". */
export function describeRootCause(c: LauncherRootCause): string {
  const where = [c.pid !== null ? `pid ${c.pid}` : '', c.host && c.host !== 'localhost' ? `host ${c.host}` : ''].filter(Boolean).join(', ');
  const how = c.signal ? `was killed by ${c.signal}` : `exited with code ${c.exitCode}`;
  return `rank ${c.rank}${where ? ` (${where})` : ''} ${how}`;
}

// libstdc++'s words when std::terminate runs with no exception in flight. A rank that printed them and
// died of SIGABRT after its END is the known teardown abort of torch's gloo backend: a worker thread
// (pt_gloo_runloop) releases a finished collective's work, whose Python state needs the GIL, after
// the interpreter began to finalize; the GIL acquire then ends the thread and std::terminate aborts
// the process (measured on torch 2.13 by gdb on a core dump; pytorch/pytorch#179291 describes it).
const TERMINATE_WITHOUT_EXCEPTION = /terminate called without an active exception/;

/**
 * The reason to add to "rank N … was killed by SIGABRT after its END" when `stderr` shows that abort,
 * else ''. Only for a rank that sent its END (its training finished and is recorded).
 */
export function teardownAbortHint(c: LauncherRootCause, stderr: string): string {
  if (c.signal !== 'SIGABRT' || !TERMINATE_WITHOUT_EXCEPTION.test(stderr)) return '';
  return (
    ": std::terminate while Python shut down, the way torch's gloo backend can abort when a collective's " +
    'worker thread releases its work during interpreter finalization (pytorch/pytorch#179291), not a training error'
  );
}
