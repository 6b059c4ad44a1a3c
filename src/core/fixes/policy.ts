// The fix policies, language-neutral: the numbers a remedy writes and how they come from the run
// (the clip threshold, the learning-rate factors, the epsilons). Both fix languages (tfjs/, python/)
// import them, so a TF.js script and a PyTorch script get the same threshold from the same norms.
import type { Finding } from '../analysis/finding';
import { formatNumber } from './text';

// ---- clip-global-norm / lower-clip-threshold: the threshold ----

/** Used when the run gave no norms (Keras/PyTorch users' usual clipnorm). */
export const DEFAULT_MAX_NORM = 1;
/** How many early finite norms the threshold looks at. */
export const EARLY_STEPS = 5;
/** Early norms more than this many times the smallest of them are outliers (a blow-up already under way). */
export const OUTLIER_RATIO = 10;
export const NORM_MULTIPLE = 2;

/**
 * The clip threshold from the run: 2 × the median of the early, healthy global norms.
 * - "Early": the finite norms before the finding's onset (its step, or the step its growth started /
 *   was flagged at, whichever is first), when there are at least 3 of them; otherwise the run's first
 *   5 finite norms. At most 5.
 * - "Healthy": norms more than 10× the smallest of them are dropped (a blow-up already under way).
 * - The lower median; rounded to 3 significant digits. No norms: 1, with a note in the title.
 * Examples: explode-lr-mlp (18.8, 351, 1.3e8, … flagged at step 1) → 2 × 18.8 = 37.6; a first bad
 * batch (3750, 3.3e5, 5e4, 1070, 2.34) → 2 × 2.34 = 4.68; a healthy-looking start (1.0, 1.2, 0.9,
 * 1.1, 1.0) → 2.
 */
export function maxNormFromRun(norms: readonly number[] | undefined, finding: Finding | null): { value: number; derived: boolean; median: number | null; from: number[] } {
  const finite = (xs: readonly number[]): number[] => xs.filter((x) => Number.isFinite(x) && x > 0);
  const all = norms ?? [];
  const ev = finding?.evidence ?? {};
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : Infinity);
  const onset = finding ? Math.min(finding.step, num(ev.explodingFlaggedAt), num(ev.startStep) + 1) : Infinity;
  const before = Number.isFinite(onset) ? finite(all.slice(0, onset)) : [];
  let early = (before.length >= 3 ? before : finite(all)).slice(0, EARLY_STEPS);
  if (early.length === 0) return { value: DEFAULT_MAX_NORM, derived: false, median: null, from: [] };
  const min = Math.min(...early);
  early = early.filter((x) => x <= OUTLIER_RATIO * min);
  const s = [...early].sort((a, b) => a - b);
  const m = s[(s.length - 1) >> 1];
  return { value: Number((NORM_MULTIPLE * m).toPrecision(3)), derived: true, median: m, from: early };
}

/** lower-clip-threshold's new threshold: the clip rule's, and how it was derived. */
export interface LowerClipTarget {
  value: number;
  how: string;
}

/**
 * lower-clip-threshold's new threshold: the clip rule's (maxNormFromRun), but only from the run's
 * norms: a script that already clips is not moved to the no-norms default. Null without norms.
 */
export function lowerClipTarget(norms: readonly number[] | undefined, finding: Finding): LowerClipTarget | null {
  const max = maxNormFromRun(norms, finding);
  if (!max.derived) return null;
  return { value: max.value, how: `2 × the median early global norm ${formatNumber(Number(max.median!.toPrecision(3)))} of the run, measured before clipping` };
}

/**
 * Whether the threshold the script has (`current`, described as `currentText` in the reasons) can be
 * lowered to the target: only to a value strictly below it.
 */
export function lowerClipCheck(
  target: LowerClipTarget | null,
  current: number,
  currentText: string,
): { ok: true; value: number; how: string } | { ok: false; reason: string; alreadyApplied?: boolean } {
  if (!target) return { ok: false, reason: `the run gave no gradient norms, so GradScope cannot derive a threshold below ${currentText}` };
  if (target.value >= current) {
    return { ok: false, alreadyApplied: true, reason: `${currentText} is already at or below ${formatNumber(target.value)} (${target.how}): the run gives no lower threshold` };
  }
  return { ok: true, value: target.value, how: target.how };
}

/** The same threshold as the probe reported (rounded to 4 significant digits in the evidence). */
function sameThreshold(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-3 * Math.max(Math.abs(a), Math.abs(b));
}

/**
 * Which of a file's clip sites (both engines) the lower-clip-threshold fix is about, given the
 * threshold the run reported (`seen`, from the finding's evidence): the sites written with that
 * value; none, and one is already at or below the target: the fix is applied (the edit came after
 * the run); else the sites whose threshold GradScope cannot read (a readable one written with
 * another value did not clip the run). Without a reported threshold: all of them.
 */
export function clipSitesOfRun<S>(
  all: readonly S[],
  seen: unknown,
  target: LowerClipTarget | null,
  valueOf: (s: S) => number | null,
  unreadable: (s: S) => boolean,
  currentText: (s: S) => string,
): { ok: true; sites: readonly S[] } | { ok: false; reason: string; alreadyApplied?: boolean } {
  if (typeof seen !== 'number') return { ok: true, sites: all };
  const matching = all.filter((s) => {
    const v = valueOf(s);
    return v !== null && sameThreshold(v, seen);
  });
  if (matching.length) return { ok: true, sites: matching };
  const lowered = target
    ? all.find((s) => {
        const v = valueOf(s);
        return v !== null && v > 0 && v <= target.value;
      })
    : undefined;
  if (lowered !== undefined) {
    const r = lowerClipCheck(target, valueOf(lowered)!, currentText(lowered));
    if (!r.ok) return r;
  }
  const unread = all.filter(unreadable);
  return { ok: true, sites: lowered === undefined && unread.length ? unread : all };
}

// ---- lower-lr / raise-lr: the factor ----

/** The healthy update/weight ratio raise-lr aims at (mid-range of DeepDiagnosis's [1e-5, 1e-1]). */
export const RAISE_TARGET_RATIO = 1e-3;

/**
 * raise-lr's factor: the power of ten that brings the run's median update ratio (evidence
 * `medianRatio` of a low update-ratio finding) up to about 1e-3, between ×10 and ×1000; ×10 when
 * the run gave no ratio. lr-tiny (SGD 1e-6, ratio 7.5e-6): ×1000 → 1e-3, which trains normally
 * (×10 only leaves the detector's range; the loss still does not move).
 */
export function raiseFactor(finding: Finding): number {
  const r = finding.evidence.medianRatio;
  if (typeof r !== 'number' || !(r > 0) || !Number.isFinite(r)) return 10;
  const p = Math.ceil(Math.log10(RAISE_TARGET_RATIO / r) - 1e-9);
  return 10 ** Math.min(3, Math.max(1, p));
}

/** The update/weight ratio lower-lr aims at or below (the top of the healthy range; DeepDiagnosis's 1e-1 is where it flags). */
export const LOWER_TARGET_RATIO = 1e-2;

/**
 * lower-lr's factor: the power of ten that brings the run's measured update ratio (evidence
 * `firstUpdateRatio` of an exploding finding blamed on the learning rate, or `medianRatio` of a high
 * update-ratio finding) down to 1e-2 or below, between ÷10 and ÷1000; ÷10 when the run gave no ratio
 * or a small one. examples/torch/exploding_lr.py (SGD lr 0.9, first update 87% of the weights): ÷100
 * → 0.009, which trains; ÷10 (0.09, first update 17%) still explodes by step 3.
 */
export function lowerFactor(finding: Finding): number {
  const r = finding.kind === 'update-ratio' ? finding.evidence.medianRatio : finding.evidence.firstUpdateRatio;
  if (typeof r !== 'number' || !(r > 0) || !Number.isFinite(r)) return 10;
  const p = Math.ceil(Math.log10(r / LOWER_TARGET_RATIO) - 1e-9);
  return 10 ** Math.min(3, Math.max(1, p));
}

// ---- guard-loss / normalize-inputs: the epsilons ----

/** log: 1e-7 (Keras's epsilon); sqrt: 1e-12 (its derivative at 1e-12 is 5e5: large but finite). */
export const GUARD_EPSILON: Record<'log' | 'sqrt', string> = { log: '1e-7', sqrt: '1e-12' };
/** Added to a denominator only when locate-nan showed that division made the first non-finite value. */
export const DIV_EPSILON = '1e-7';
/** Added to the standard deviation when the inputs are standardised (normalize-inputs). */
export const NORMALIZE_EPSILON = '1e-8';
