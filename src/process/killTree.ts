// Process-group helpers. A Program's child is spawned with `detached: true`, so it leads a process
// group whose id equals its pid; everything it starts (unless it calls setsid/setpgid itself) joins
// that group, which lets one `kill(-pgid)` reach the whole tree without walking parent links.
import { readdirSync, readFileSync } from 'node:fs';

export interface GroupMember {
  pid: number;
  ppid: number;
  pgrp: number;
  /** One-letter state from /proc/<pid>/stat: R, S, D, Z (zombie), T, ... */
  state: string;
  comm: string;
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : undefined;
}

/**
 * Sends `signal` to every process in group `pgid`. Returns false when the group no longer exists
 * (ESRCH) or cannot be signalled (EPERM); never throws for those, since a group that is already
 * gone is the normal outcome of a race with the process exiting on its own.
 */
export function killProcessGroup(pgid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  // pgid 0 or 1 would mean "our own group" / "every process we may signal": never do that.
  if (pgid === undefined || !Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'ESRCH' || code === 'EPERM') return false;
    throw e;
  }
}

/**
 * Lists the processes whose process-group id is `pgid` by scanning /proc (Linux only; returns []
 * elsewhere). Zombies are included unless `includeZombies` is false.
 */
export function listProcessGroup(pgid: number, includeZombies = true): GroupMember[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: GroupMember[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const m = readProcessStat(Number(name));
    if (m && m.pgrp === pgid && (includeZombies || m.state !== 'Z')) out.push(m);
  }
  return out;
}

/** One process's pid, parent, group, state and name from /proc/<pid>/stat (Linux); undefined when it is gone or unreadable. */
export function readProcessStat(pid: number): GroupMember | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // exited between readdir and read
  }
  // Format: "pid (comm) state ppid pgrp ...". comm may contain spaces and parentheses, so split
  // after the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).split(' ');
  const [state, ppid, pgrp] = [rest[0], Number(rest[1]), Number(rest[2])];
  if (state === undefined || !Number.isFinite(ppid) || !Number.isFinite(pgrp)) return undefined;
  return { pid, ppid, pgrp, state, comm: text.slice(open + 1, close) };
}

/**
 * True while group `pgid` has a live (non-zombie) member. `kill(-pgid, 0)` alone is not enough:
 * it also succeeds for zombies, and in containers whose init does not reap orphans (PID 1 here is
 * one), a killed grandchild stays a zombie forever. So on Linux a positive answer from kill() is
 * confirmed against /proc.
 */
export function processGroupAlive(pgid: number | undefined): boolean {
  if (pgid === undefined || !Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    // EPERM: the group exists but belongs to someone else; treat it as alive.
    return errnoCode(e) === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  return listProcessGroup(pgid, false).length > 0;
}
