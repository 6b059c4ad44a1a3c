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
// norms), and a clip to a global norm is recognised by what it does: two steps that applied the
// same global norm, smaller than and in the direction of (cosine 1) the different ones computed; the
// norm applied is then the threshold, sent as the `clip` EVENT the analysis knows from torch
// (analysis/clipping.ts: no "add clipping" remedy). (A clip by value that saturates every entry
// also applies one norm at every step, in another direction.)
import type * as tfTypes from '@tensorflow/tfjs';
import { formatNumber } from '../../core/protocol/float';
import type { Message } from '../../core/protocol/messages';
import type { NamedGrad } from './capture';

type Tensor = tfTypes.Tensor;

/** Changed steps (gradients as computed) whose two global norms are read, looking for a clip's threshold. */
export const CLIP_WATCH_STEPS = 20;
/** Relative agreement of two applied global norms that makes them one threshold (float32 sums). */
const SAME_NORM = 1e-4;
/** Relative difference of the computed global norms of those steps (else the gradients did not change). */
const OTHER_NORM = 1e-3;
/** How far below 1 the cosine of applied and computed may be for a rescale of them (float32 sums). */
const SAME_DIRECTION = 1e-5;

/**
 * The global L2 norms of two lists of tensors of the same shapes, and the cosine of the angle
 * between them (their dot product over both norms): [computed, applied, cosine], or null where they
 * cannot be read.
 */
export type GlobalNorms = (computed: Tensor[], applied: Tensor[]) => [number, number, number] | null;

export class ChangedGrads {
  /** The gradients computed since the last step, by variable name (the latest computation's). */
  private readonly computed = new Map<string, Tensor>();
  private computations = 0;
  private said = false;
  private watched = 0;
  private clipSaid = false;
  /** Steps where the applied global norm was below the computed one (a clip that acted). */
  private readonly acted: { computed: number; applied: number }[] = [];

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
    // (the norms need the same shapes: where they differ, none are read)
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

  private sayChanged(step: number, changed: NamedGrad[], norms: readonly number[] | null, why: 'computed' | 'accumulated' | 'disposed' | 'reshaped'): void {
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
      ...(norms ? { value: norms[0] } : {}),
      message:
        `applyGradients received other tensors than the gradients computed (tf.variableGrads, minimize) for ${changed.length} ` +
        `tensor(s) (${names}${changed.length > 3 ? ', …' : ''})${norms ? `: global norm ${formatNumber(norms[0])} computed, ${formatNumber(norms[1])} applied` : ''}` +
        `. The script changes them in between (a clip, an accumulation over micro-batches, a rescale, an optimizer subclass); ${reported}`,
    });
  }

  /** A clip to a global norm: two steps that applied the same global norm from different ones, rescaled. */
  private watchClip(step: number, [computed, applied, cosine]: [number, number, number]): void {
    if (!(applied > 0 && applied < computed * (1 - SAME_NORM) && cosine >= 1 - SAME_DIRECTION)) return;
    const same = this.acted.find((p) => Math.abs(p.applied - applied) <= SAME_NORM * applied && Math.abs(p.computed - computed) > OTHER_NORM * computed);
    if (!same) {
      if (this.acted.length < CLIP_WATCH_STEPS) this.acted.push({ computed, applied });
      return;
    }
    this.clipSaid = true;
    this.send({
      type: 'event',
      kind: 'clip',
      step,
      value: applied,
      clipBy: 'norm',
      message:
        `the script clips its gradients to a global norm of ${formatNumber(applied)} by hand (steps with computed global norms ` +
        `${formatNumber(same.computed)} and ${formatNumber(computed)} both applied ${formatNumber(applied)}); GradScope reports the gradients before clipping`,
    });
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
