// A script that already clips its gradients (the probe's `clip` EVENT: clip_grad_norm_, Lightning's
// gradient_clip_val, HF's max_grad_norm, with the threshold in `value`) is not told to add clipping.
// The detectors keep measuring the norms BEFORE clipping (what the probe reports), so an explosion
// under clipping is still reported as it is; only the clipping remedy changes:
//  - the threshold acted (some pre-clip norm was above it): clipping is already doing what it can,
//    the remedy is dropped and the others (learning rate, initialisation) stand;
//  - the threshold never acted (every norm seen is below it): clipping as configured does nothing,
//    so the remedy becomes `lower-clip-threshold`, at the rank clipping had.
// Pure TypeScript (no Node, no vscode).
import { formatNumber } from '../protocol/float';
import type { EventMsg } from '../protocol/messages';
import type { Finding, Remedy } from './finding';
import { ev, isFiniteNum } from './model';

export interface ClipInEffect {
  /** The global-norm threshold the script clips to (the latest one the probe reported). */
  maxNorm: number;
  /** Step at which the probe saw it (the step the next optimizer step will have), when known. */
  step: number | null;
}

/** The clipping in effect: the latest `clip` event with a finite positive threshold, or null. */
export function clipInEffect(events: readonly EventMsg[]): ClipInEffect | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.kind === 'clip' && typeof e.value === 'number' && isFiniteNum(e.value) && e.value > 0) return { maxNorm: e.value, step: e.step ?? null };
  }
  return null;
}

/**
 * A finding as seen by a script that clips at `clip.maxNorm`; `largestNorm` is the largest finite
 * pre-clip global norm seen so far (NaN when none). Findings without the clipping remedy are
 * returned unchanged; others are copies with the remedy dropped or replaced, `clipMaxNorm` and
 * `largestNormSeen` in the evidence, and a sentence saying the norms are those before clipping.
 */
export function adjustForClipping(f: Finding, clip: ClipInEffect, largestNorm: number, framework: 'tfjs' | 'torch'): Finding {
  const at = f.remedies.findIndex((r) => r.id === 'clip-global-norm');
  if (at < 0) return f;
  const acted = isFiniteNum(largestNorm) && largestNorm > clip.maxNorm;
  const remedies: Remedy[] = f.remedies.filter((r) => r.id !== 'clip-global-norm');
  if (!acted) remedies.splice(at, 0, lowerClipRemedy(clip.maxNorm, largestNorm, framework));
  const x = formatNumber(clip.maxNorm);
  const note = acted
    ? ` The script already clips gradients to a global norm of ${x}: the norms here are measured before clipping, which bounds each update but does not remove the cause.`
    : ` The script clips gradients to a global norm of ${x}, above every norm seen so far${isFiniteNum(largestNorm) ? ` (at most ${formatNumber(largestNorm)})` : ''}: the clipping never acted.`;
  return {
    ...f,
    message: f.message + note,
    evidence: { ...f.evidence, clipMaxNorm: ev(clip.maxNorm), largestNormSeen: ev(largestNorm), clipActed: acted ? 'yes' : 'no' },
    remedies,
  };
}

export function lowerClipRemedy(maxNorm: number, largestNorm: number, framework: 'tfjs' | 'torch'): Remedy {
  const what = framework === 'torch' ? 'the clip threshold (clip_grad_norm_ max_norm / gradient_clip_val / max_grad_norm)' : 'the clip threshold';
  const seen = isFiniteNum(largestNorm) ? `; the largest norm seen is ${formatNumber(largestNorm)}` : '';
  return { id: 'lower-clip-threshold', title: `Lower ${what} from ${formatNumber(maxNorm)}${seen}` };
}
