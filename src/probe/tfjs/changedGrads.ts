// Gradients a script changes between computing and applying them: a clip written by hand, a
// rescale, an optimizer subclass that clips before calling super, an accumulation over micro-batches.
// TF.js tensors are immutable, so applyGradients then receives other tensors than the engine
// computed (engine.gradients, under variableGrads and minimize).
//
// What the step reports, as the torch probe does with clip_grad_norm_: the gradients as COMPUTED,
// before the change, wherever they can still be read (one computation fed the step, and the script
// has not disposed them before applyGradients): a clip must not hide how large they were. Otherwise
// (an accumulation: several computations, whose sum is the true gradient; computed tensors disposed
// already) the gradients as applied. Either way it is said once (an info EVENT with both global
// norms), and a clip is recognised by what it does, sent as the `clip` EVENT the analysis knows from
// torch (analysis/clipping.ts: no "add clipping" remedy):
//  - to a global norm: two steps that applied the same global norm, smaller than and in the direction
//    of (cosine 1) the different ones computed; the norm applied is the threshold (clipBy 'norm');
//  - by value (tf.clipByValue): two steps whose largest |g| applied is the same, below the largest
//    computed, in another direction (cosine below 1: a rescale keeps it); that |g| is the bound
//    (clipBy 'value'). (A clip by value that saturates every entry also applies one global norm at
//    every step, in another direction: not taken for a norm clip.)
import type * as tfTypes from '@tensorflow/tfjs';
import { formatNumber } from '../../core/protocol/float';
import type { ClipBy, Message } from '../../core/protocol/messages';
import type { NamedGrad } from './capture';

type Tensor = tfTypes.Tensor;

/** Changed steps (gradients as computed) compared (Compared: one read each), looking for a clip's threshold. */
export const CLIP_WATCH_STEPS = 20;
/** Relative agreement of two steps' applied global norms (or largest |g|) that makes them one threshold. */
const SAME_NORM = 1e-4;
/** Relative difference of those steps' computed ones (else the gradients did not change). */
const OTHER_NORM = 1e-3;
/** How far below 1 the cosine of applied and computed may be for a rescale of them (float32 sums). */
const SAME_DIRECTION = 1e-5;

/** What the global norms callback reads of the computed and the applied gradients of one step. */
export interface Compared {
  /** Global L2 norms. */
  computed: number;
  applied: number;
  /** Cosine of the angle between them, as two vectors (NaN where their sizes differ, 0 where a norm is 0). */
  cosine: number;
  /** Largest |g| of each. */
  computedMax: number;
  appliedMax: number;
}

/** Compares two lists of tensors (computed, applied), or null where they cannot be read. */
export type GlobalNorms = (computed: Tensor[], applied: Tensor[]) => Compared | null;

export class ChangedGrads {
  /** The gradients computed since the last step, by variable name (the latest computation's). */
  private readonly computed = new Map<string, Tensor>();
  private computations = 0;
  private said = false;
  private watched = 0;
  private clipSaid = false;
  /** Steps where the applied global norm was below the computed one, rescaled (a norm clip that acted). */
  private readonly rescaled: Compared[] = [];
  /** Steps where the applied largest |g| was below the computed one, in another direction (a value clip). */
  private readonly bounded: Compared[] = [];

  constructor(
    private readonly norms: GlobalNorms,
    private readonly send: (m: Message) => void,
  ) {}

  /** A gradient computation (engine.gradients) with named variables. */
  onComputed(grads: ReadonlyMap<string, Tensor>): void {
    this.computations++;
    for (const [name, t] of grads) this.computed.set(name, t);
  }

  /**
   * At applyGradients (every nesting level: an outer call of nested ones receives the gradients
   * computed, the innermost what a subclass made of them): the gradients this step is to report,
   * in the order of `grads`.
   */
  toMeasure(step: number, grads: NamedGrad[]): NamedGrad[] {
    if (this.computed.size === 0) return grads;
    const changed = grads.filter(({ name, tensor }) => {
      const c = this.computed.get(name);
      return c !== undefined && c !== tensor;
    });
    if (!changed.length) return grads;
    const before = changed.map(({ name }) => this.computed.get(name)!);
    const disposed = before.some((c) => c.isDisposed);
    const readable = !disposed && changed.every(({ tensor }, i) => sameShape(before[i].shape, tensor.shape) && before[i].dtype === tensor.dtype);
    // (other shapes: reported as applied; their norms are still read for the note, without a cosine)
    const asComputed = this.computations === 1 && readable;
    if (!this.said || (asComputed && !this.clipSaid && this.watched < CLIP_WATCH_STEPS)) {
      const norms = this.norms(
        before,
        changed.map((g) => g.tensor),
      );
      if (!this.said) {
        this.said = true;
        this.sayChanged(step, changed, norms, asComputed ? 'computed' : this.computations > 1 ? 'accumulated' : disposed ? 'disposed' : 'reshaped');
      }
      if (asComputed && norms) {
        this.watched++;
        this.watchClip(step, norms);
      }
    }
    if (!asComputed) return grads;
    const byName = new Map(changed.map(({ name }, i) => [name, before[i]]));
    return grads.map((g) => (byName.has(g.name) ? { name: g.name, tensor: byName.get(g.name)! } : g));
  }

  /** After the step (the innermost applyGradients returned). */
  onApplied(): void {
    this.computed.clear();
    this.computations = 0;
  }

  private sayChanged(step: number, changed: NamedGrad[], norms: Compared | null, why: 'computed' | 'accumulated' | 'disposed' | 'reshaped'): void {
    const names = changed
      .slice(0, 3)
      .map((g) => g.name)
      .join(', ');
    const reported = {
      computed: 'GradScope reports the gradients as computed, before that change, at every step where it can read them',
      accumulated: `${this.computations} gradient computations fed this step (an accumulation): GradScope reports their result as applied`,
      disposed:
        'the script disposed the computed ones before applyGradients, so GradScope reports the gradients as applied: a clip hides how large they were ' +
        '(dispose them after applyGradients to see them)',
      reshaped: 'their shapes or dtypes differ, so GradScope reports the gradients as applied',
    }[why];
    this.send({
      type: 'event',
      kind: 'info',
      step,
      ...(norms ? { value: norms.computed } : {}),
      message:
        `applyGradients received other tensors than the gradients computed (tf.variableGrads, minimize) for ${changed.length} ` +
        `tensor(s) (${names}${changed.length > 3 ? ', …' : ''})${norms ? `: global norm ${formatNumber(norms.computed)} computed, ${formatNumber(norms.applied)} applied` : ''}` +
        `. The script changes them in between (a clip, an accumulation over micro-batches, a rescale, an optimizer subclass); ${reported}`,
    });
  }

  /** A clip, once two steps show its threshold (see the top of the file). */
  private watchClip(step: number, c: Compared): void {
    const near = (a: number, b: number, tol: number): boolean => Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b));
    if (c.applied > 0 && c.applied < c.computed * (1 - SAME_NORM) && c.cosine >= 1 - SAME_DIRECTION) {
      const same = this.rescaled.find((p) => near(p.applied, c.applied, SAME_NORM) && !near(p.computed, c.computed, OTHER_NORM));
      if (same) {
        this.sayClip(step, 'norm', c.applied, `steps with computed global norms ${formatNumber(same.computed)} and ${formatNumber(c.computed)} both applied ${formatNumber(c.applied)}`);
      } else if (this.rescaled.length < CLIP_WATCH_STEPS) this.rescaled.push(c);
    } else if (c.appliedMax > 0 && c.appliedMax < c.computedMax * (1 - SAME_NORM) && c.cosine < 1 - SAME_DIRECTION) {
      const same = this.bounded.find((p) => near(p.appliedMax, c.appliedMax, SAME_NORM) && !near(p.computedMax, c.computedMax, OTHER_NORM));
      if (same) {
        this.sayClip(
          step,
          'value',
          c.appliedMax,
          `steps with largest |g| ${formatNumber(same.computedMax)} and ${formatNumber(c.computedMax)} computed both applied ${formatNumber(c.appliedMax)}`,
        );
      } else if (this.bounded.length < CLIP_WATCH_STEPS) this.bounded.push(c);
    }
  }

  private sayClip(step: number, by: ClipBy, measured: number, why: string): void {
    this.clipSaid = true;
    // (measured in float32: 37.500002 for the 37.5 the script wrote; 6 digits are what it can tell)
    const value = Number(measured.toPrecision(6));
    const what = by === 'norm' ? `to a global norm of ${formatNumber(value)}` : `by value, each element to ±${formatNumber(value)}`;
    this.send({
      type: 'event',
      kind: 'clip',
      step,
      value,
      clipBy: by,
      message: `the script clips its gradients ${what} by hand (${why}); GradScope reports the gradients before clipping`,
    });
  }
}

/** Whether two tensor shapes are the same. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
