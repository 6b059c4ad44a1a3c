// The descriptor number on which a run's child gets the probe's channel (GRADSCOPE_CHANNEL_FD).
//
// Not 3. A script's own files get the lowest free numbers, so a script that closed 3 and opened a
// file would get the channel's number, and a probe writing to "fd 3" would write into that file. The
// torch probe moves the channel itself (a close-on-exec duplicate at ≥ 500, the original closed), but
// Node has no dup(): the TF.js probe cannot move it, so the host hands it over out of the way in the
// first place (the numbers below it are left closed; both probes take whatever number the variable
// names).
//
// 15, because it is the highest number Node itself makes close-on-exec: at start-up Node marks every
// descriptor from 0 to 15 close-on-exec (libuv's uv_disable_stdio_inheritance; beyond 15 only up to
// the first closed one). On 15 the channel is not inherited by the programs the script starts (a
// daemon holding it would keep the host waiting for the channel to close); on 100 it would be. The
// Node child's own descriptors (its event loop, signal pipes: about 14 of them) take the numbers
// around it, so a script's files get numbers above them, and reach 15 only if the script closes the
// channel itself (the probe then checks before each write that the descriptor is still the channel:
// src/probe/tfjs/channel.ts). A number the child cannot have (at or above its open-files limit, which
// it inherits from this process) would fail the spawn, so with a limit that low the channel stays on 3.
import { readFileSync } from 'node:fs';

/** Where the channel goes when the open-files limit allows it. */
export const HIGH_CHANNEL_FD = 15;
/** The classic number, where the limit does not allow a high one (and on Windows). */
export const LOW_CHANNEL_FD = 3;

/** This process's soft limit on open files (Linux /proc/self/limits); null when unknown. */
export function openFilesLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m) return null;
  return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]) || null;
}

/** The channel's descriptor number in a child started now. */
export function childChannelFd(limit = openFilesLimit()): number {
  if (process.platform === 'win32') return LOW_CHANNEL_FD;
  // Node raises its own soft limit to the hard one at start-up (the child inherits it), so an unknown
  // limit (macOS) is high enough; a known one needs room above the number for the script's files.
  if (limit !== null && limit < 4 * HIGH_CHANNEL_FD) return LOW_CHANNEL_FD;
  return HIGH_CHANNEL_FD;
}
