// Un-normalised inputs: features on a scale of hundreds or thousands (raw prices, pixel values 0–255,
// sensor counts). The probe reports the scale of the first parameterised layer's input (`input-scale`
// EVENTs: RMS in `value`, max |x| in `max`); when it is large, an explosion is put down to it first:
// `normalize-inputs` leads the remedies of the exploding (and growth-made non-finite) finding, with the
// input scale in the evidence. Post-processing, like clipping.ts: the detectors are unchanged.
//
// The threshold, from first principles (not fitted on any run): the first layer's gradient is
// dW = δ·xᵀ, linear in x, and its curvature in W is E[x xᵀ], quadratic in x. Initialisations (He,
// Glorot) and the usual learning rates assume inputs of unit scale (RMS ≈ 1; images in [0, 1] have
// RMS ≈ 0.5). At an input RMS of 10 the first layer's curvature is already 100× that: the largest
// stable learning rate for that layer is 100× smaller than the one that suits standardised inputs,
// which is the range where a tuned rate blows up. Below 10 (a few units) the factor is within what
// rate tuning and Adam's per-parameter scaling absorb, and standardising is not the first thing to try.
// Pure TypeScript (no Node, no vscode).
import { formatNumber } from '../protocol/float';
import type { EventMsg } from '../protocol/messages';
import type { Finding, Remedy } from './finding';
import { ev, isFiniteNum, remedy } from './model';

export const INPUT_SCALE = {
  /** Input RMS at or above which the first layer's curvature is ≥ 100× that of unit-scale inputs. */
  largeRms: 10,
} as const;

export interface InputScaleSeen {
  /** Largest RMS the probe reported for the first layer's input. */
  rms: number;
  /** Largest max |x| reported (NaN when the probe sent none). */
  maxAbs: number;
  /** Step of the reading with the largest RMS. */
  step: number | null;
  /** The first layer's first tensor, when the probe named it. */
  tensorId: number | null;
}

/** The largest input scale the probe reported, or null when it reported none. */
export function inputScaleOf(events: readonly EventMsg[]): InputScaleSeen | null {
  let out: InputScaleSeen | null = null;
  for (const e of events) {
    if (e.kind !== 'input-scale' || typeof e.value !== 'number' || !isFiniteNum(e.value)) continue;
    const maxAbs = typeof e.max === 'number' && isFiniteNum(e.max) ? e.max : NaN;
    if (!out) out = { rms: e.value, maxAbs, step: e.step ?? null, tensorId: e.tensorId ?? null };
    else if (e.value > out.rms) {
      out.rms = e.value;
      out.step = e.step ?? null;
    }
    if (maxAbs > out.maxAbs || Number.isNaN(out.maxAbs)) out.maxAbs = maxAbs;
    if (out.tensorId === null && e.tensorId !== undefined) out.tensorId = e.tensorId;
  }
  return out;
}

/** Whether the finding is one that a large input scale explains: an explosion, or a non-finite value made by growth (not by the loss). */
function explainsIt(f: Finding): boolean {
  if (f.kind === 'exploding-gradient') return true;
  return f.kind === 'non-finite-gradient' && f.remedies.length > 0 && f.remedies[0].id !== 'guard-loss';
}

/**
 * The finding with `normalize-inputs` ranked first and the input scale in its evidence, when the
 * input is large and the finding is an explosion; otherwise the finding unchanged.
 */
export function adjustForInputScale(f: Finding, seen: InputScaleSeen | null, framework: 'tfjs' | 'torch'): Finding {
  if (!seen || !(seen.rms >= INPUT_SCALE.largeRms) || !explainsIt(f)) return f;
  const remedies: Remedy[] = [normalizeInputsRemedy(framework), ...f.remedies.filter((r) => r.id !== 'normalize-inputs')];
  const max = isFiniteNum(seen.maxAbs) ? `, max |x| ${formatNumber(seen.maxAbs)}` : '';
  const note =
    ` The model's input is not normalised (first layer's input: RMS ${formatNumber(seen.rms)}${max}):` +
    ` the first layer's gradient grows with the input and its curvature with its square, so a learning rate that suits unit-scale inputs is far too large here.`;
  return {
    ...f,
    message: f.message + note,
    evidence: { ...f.evidence, inputRms: ev(seen.rms), inputMaxAbs: isFiniteNum(seen.maxAbs) ? ev(seen.maxAbs) : null, inputScaleStep: seen.step },
    remedies,
  };
}

export function normalizeInputsRemedy(framework: 'tfjs' | 'torch'): Remedy {
  return remedy('normalize-inputs', framework);
}
