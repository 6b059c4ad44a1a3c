// Processes a run leaves behind on purpose. Stopping a run stops its process group (killTree.ts),
// which reaches everything the script starts — except a process that leaves the group itself:
// `setsid` (a daemon, Node's `spawn(…, {detached: true})`, Python's `start_new_session=True`) or
// `setpgid`. Those are out of reach of any group signal, and they left on purpose, so GradScope does
// not hunt them down; it lists them at the end of the run so nobody is surprised by them.
//
// They are found by a per-run environment marker: the run's child gets RUN_MARK_ENV=<run id>, every
// process it starts inherits it (unless the script clears its children's environment), and
// /proc/<pid>/environ keeps the environment a process was started with even after it changes its
// own. Linux only; elsewhere, or where /proc cannot be read, nothing is listed.
import { readdir, readFile } from 'node:fs/promises';
import { clip, neutralise } from '../core/text';
import { readProcessStat } from './killTree';

/**
 * The marker's name. Not GRADSCOPE_*: the probes remove their own GRADSCOPE_* settings from the
 * script's environment, and this one must reach the script and everything it starts.
 */
export const RUN_MARK_ENV = 'GS_RUN_MARK';

export interface Survivor {
  pid: number;
  /** Its command line (arguments joined by spaces, controls escaped, cut to 200 characters), or its name when that cannot be read. */
  command: string;
}

const COMMAND_MAX = 200;

/**
 * The live processes whose starting environment holds `RUN_MARK_ENV=mark`, apart from members of
 * process group `exceptGroup` (the run's own group: after a stop those are being killed, not
 * survivors) and zombies. Never throws; [] where /proc cannot be read.
 */
export async function findMarkedProcesses(mark: string, exceptGroup?: number): Promise<Survivor[]> {
  if (process.platform !== 'linux' || !mark) return [];
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  // The value ends at the NUL that separates environment entries: "…=<mark>" as a prefix of a longer value does not match.
  const needle = Buffer.from(`${RUN_MARK_ENV}=${mark}\0`);
  const pids = names.filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid).map(Number);
  const marked = await Promise.all(
    pids.map(async (pid) => {
      try {
        return (await readFile(`/proc/${pid}/environ`)).includes(needle) ? pid : null;
      } catch {
        return null; // gone meanwhile, or another user's process
      }
    }),
  );
  const out: Survivor[] = [];
  for (const pid of marked) {
    if (pid === null) continue;
    const stat = readProcessStat(pid);
    if (!stat || stat.state === 'Z' || (exceptGroup !== undefined && stat.pgrp === exceptGroup)) continue;
    out.push({ pid, command: await commandLine(pid, stat.comm) });
  }
  return out.sort((a, b) => a.pid - b.pid);
}

async function commandLine(pid: number, fallback: string): Promise<string> {
  let text = '';
  try {
    text = (await readFile(`/proc/${pid}/cmdline`)).toString('utf8').replace(/\0+$/, '').split('\0').join(' ');
  } catch {
    // gone meanwhile
  }
  // One line, and no control or bidirectional characters of a hostile command line reach a terminal.
  return clip(neutralise(text || fallback, true), COMMAND_MAX);
}
