// A script that already clips its gradients (the probe's `clip` EVENT: clip_grad_norm_, Lightning's
// gradient_clip_val, HF's max_grad_norm, a TF.js clip by hand, with the threshold in `value`; or
// clip_grad_value_, `clipBy: 'value'`, each element bounded) is not told to add clipping.
// The detectors keep measuring the norms BEFORE clipping (what the probe reports), so an explosion
// under clipping is still reported as it is; only the clipping remedy changes:
//  - the threshold acted (some pre-clip norm was above it): clipping is already doing what it can,
//    the remedy is dropped and the others (learning rate, initialisation) stand;
//  - the threshold never acted (every norm seen is below it): clipping as configured does nothing,
//    so the remedy becomes `lower-clip-threshold`, at the rank clipping had.
// A clip by value never acted where every tensor's norm stayed within it (no element can be above
// its tensor's norm); where some tensor's norm was above it, whether an element was is not known
// from the norms, and the remedy is dropped, as for a clip that acted.
// Pure TypeScript (no Node, no vscode).
import { formatNumber } from '../protocol/float';
import type { ClipBy, EventMsg } from '../protocol/messages';
import type { Finding, Remedy } from './finding';
import { ev, isFiniteNum } from './model';

export interface ClipInEffect {
  /** The threshold: the global norm the script clips to, or (by value) the bound on each element. */
  maxNorm: number;
  /** What it bounds (`norm` for events without `clipBy`: run files from before it). */
  by: ClipBy;
  /** Step at which the probe saw it (the step the next optimizer step will have), when known. */
  step: number | null;
}

/**
 * The clipping in effect: the latest `clip` event by global norm with a finite positive threshold,
 * else the latest by value, else null. A script that calls both (clip_grad_value_ then
 * clip_grad_norm_, in either order) is judged by its norm clip, the one the clip-global-norm remedy
 * and the panel's clip line are about, whichever of the two events came last.
 */
export function clipInEffect(events: readonly EventMsg[]): ClipInEffect | null {
  let byValue: ClipInEffect | null = null;
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.kind !== 'clip' || typeof e.value !== 'number' || !isFiniteNum(e.value) || !(e.value > 0)) continue;
    const by = e.clipBy ?? 'norm';
    if (by === 'norm') return { maxNorm: e.value, by, step: e.step ?? null };
    byValue ??= { maxNorm: e.value, by, step: e.step ?? null };
  }
  return byValue;
}

/** The largest norms seen so far, before clipping: global, and of any one tensor (NaN when none). */
export interface LargestNorms {
  global: number;
  tensor: number;
}

/**
 * A finding as seen by a script that clips at `clip.maxNorm`. Findings without the clipping remedy
 * are returned unchanged; others are copies with the remedy dropped or replaced, the threshold and
 * the largest norm it is judged by in the evidence, and a sentence saying the norms are those
 * before clipping.
 */
export function adjustForClipping(f: Finding, clip: ClipInEffect, largest: LargestNorms, framework: 'tfjs' | 'torch'): Finding {
  const at = f.remedies.findIndex((r) => r.id === 'clip-global-norm');
  if (at < 0) return f;
  const byValue = clip.by === 'value';
  const seen = byValue ? largest.tensor : largest.global;
  const never = isFiniteNum(seen) && seen <= clip.maxNorm;
  const acted = byValue ? (never ? 'no' : 'unknown') : isFiniteNum(seen) && seen > clip.maxNorm ? 'yes' : 'no';
  const remedies: Remedy[] = f.remedies.filter((r) => r.id !== 'clip-global-norm');
  if (acted === 'no') remedies.splice(at, 0, lowerClipRemedy(clip.maxNorm, seen, framework, clip.by));
  const x = formatNumber(clip.maxNorm);
  const what = framework === 'torch' ? 'clip_grad_value_' : 'a clip by value';
  const note = byValue
    ? never
      ? ` The script clips each gradient element to ±${x} (${what}), and no tensor's gradient norm reached it (at most ${formatNumber(seen)}): the clipping never acted.`
      : ` The script already clips each gradient element to ±${x} (${what}): the norms here are measured before clipping; a clip by value bounds each element of an update but does not remove the cause.`
    : acted === 'yes'
      ? f.evidence.settled === 1
        ? ` The script clips gradients to a global norm of ${x}: the norms here are measured before clipping, which bounded the updates through the spike.`
        : ` The script already clips gradients to a global norm of ${x}: the norms here are measured before clipping, which bounds each update but does not remove the cause.`
      : ` The script clips gradients to a global norm of ${x}, above every norm seen so far${isFiniteNum(seen) ? ` (at most ${formatNumber(seen)})` : ''}: the clipping never acted.`;
  const evidence = byValue
    ? { ...f.evidence, clipValue: ev(clip.maxNorm), largestTensorNormSeen: ev(seen), clipActed: acted }
    : { ...f.evidence, clipMaxNorm: ev(clip.maxNorm), largestNormSeen: ev(seen), clipActed: acted };
  return { ...f, message: f.message + note, evidence, remedies };
}

export function lowerClipRemedy(maxNorm: number, largestNorm: number, framework: 'tfjs' | 'torch', by: ClipBy = 'norm'): Remedy {
  const what =
    by === 'value'
      ? framework === 'torch'
        ? 'the clip value (clip_grad_value_ clip_value / gradient_clip_val)'
        : 'the clip value'
      : framework === 'torch'
        ? 'the clip threshold (clip_grad_norm_ max_norm / gradient_clip_val / max_grad_norm)'
        : 'the clip threshold';
  const seen = isFiniteNum(largestNorm) ? `; the largest ${by === 'value' ? "tensor's " : ''}norm seen is ${formatNumber(largestNorm)}` : '';
  return { id: 'lower-clip-threshold', title: `Lower ${what} from ${formatNumber(maxNorm)}${seen}` };
}
