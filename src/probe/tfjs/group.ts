// Stopping the run's process group from inside it, once the host is gone.
//
// The host starts the runner as the leader of a process group of its own (detached: pgid === pid),
// and everything the script starts joins that group. While the host lives, it stops the group (a
// stop, a time limit, or the script's end: SIGKILL to what is left). A host killed with SIGKILL runs
// no code at all, so the probe does it: SIGTERM to every other member, up to GROUP_GRACE_MS for
// them to go, then SIGKILL to what is left (a child that ignores SIGTERM included). As the torch
// probe does (gradscope_probe/__main__.py, _stop_group).
//
// The members are signalled one by one, not with kill(-pgid): a group signal would reach this
// process too, and SIGTERM would end it before the grace and the SIGKILL. A process that left the
// group (setsid daemons) is out of reach, as it would be for the host. Nothing is done when this
// process does not lead its group (run by hand or under another tool: not our group to stop).
import { readFileSync, readdirSync } from 'node:fs';

export const GROUP_GRACE_MS = 2000;

/**
 * State and process group of a process from /proc/<pid>/stat ("pid (comm) state ppid pgrp …"; comm
 * may hold spaces and parentheses, so the fields are split after the last ')'); null when it is gone.
 * (The probe may not import the host's src/process/killTree.ts, which reads the same.)
 */
function stateAndGroup(pid: number | 'self'): { state: string; pgrp: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(rest[2]);
    return rest[0] && Number.isInteger(pgrp) ? { state: rest[0], pgrp } : null;
  } catch {
    return null;
  }
}

/** Whether this process leads its process group (pgrp, field 5 of /proc/self/stat, is its pid). */
export function leadsOwnGroup(): boolean {
  if (hasProc()) return stateAndGroup('self')?.pgrp === process.pid;
  // No /proc (macOS): a group whose id is our pid exists only if we created it (POSIX does not
  // reuse a pid while a group of that id lives), so kill(-pid, 0) answers the same question.
  try {
    process.kill(-process.pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Live members of this process's group other than itself (Linux /proc; zombies left out). */
function others(): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const s = stateAndGroup(Number(name));
    if (s && s.pgrp === process.pid && s.state !== 'Z') out.push(Number(name));
  }
  return out;
}

function signal(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // gone meanwhile, or not ours
    }
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function hasProc(): boolean {
  try {
    return readdirSync('/proc/self/fd').length > 0;
  } catch {
    return false;
  }
}

/**
 * Stops the rest of this process's group, synchronously (the caller exits right after, from places
 * where the event loop may not turn again): SIGTERM, up to `graceMs`, SIGKILL. Returns the pids that
 * were signalled (for tests). Never throws.
 */
export function stopOwnGroup(graceMs = GROUP_GRACE_MS): number[] {
  try {
    if (!leadsOwnGroup()) return [];
    if (!hasProc()) {
      // Without /proc the members cannot be listed: signal the group, with this process's own
      // SIGTERM caught (a JS listener: delivery waits for an event loop turn that never comes),
      // wait the whole grace, then SIGKILL the group, this process last of all (it was exiting).
      process.on('SIGTERM', () => {});
      process.kill(-process.pid, 'SIGTERM');
      sleepSync(graceMs);
      process.kill(-process.pid, 'SIGKILL');
      return [];
    }
    const first = others();
    if (first.length === 0) return [];
    signal(first, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      if (others().length === 0) return first;
      sleepSync(50);
    }
    // A process may fork while being killed: a few rounds.
    for (let round = 0; round < 3; round++) {
      const left = others();
      if (left.length === 0) break;
      signal(left, 'SIGKILL');
      sleepSync(50);
    }
    return first;
  } catch {
    return [];
  }
}
