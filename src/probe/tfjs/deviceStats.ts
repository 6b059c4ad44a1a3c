// Per-step statistics computed where the tensors live (the native `tensorflow` backend, maybe a GPU),
// with one device→host read per step. On cpu/wasm the host path is much cheaper (tf ops there
// allocate full-size temporaries), so this path is used there only when asked for
// (GRADSCOPE_STATS=device), which is how the tests exercise it without a GPU.
//
// A step costs few ops, because each op is a dispatch of its own (tens of µs on wasm; on a native
// backend a call into TensorFlow): per gradient only max|g| and Σg², four ops, all stacked into one
// read. The full treatment (finite mask, NaN and Inf counts, a norm scaled against overflow) took
// about 19 ops per tensor, and paramNorm/updateNorm 18 more on every step; those are now measured on
// the steps the schedule picks (weightsSchedule.ts), at 9 ops per tensor. Concatenating the tensors
// and reducing slices of the whole was tried first: a slice of a long vector costs more than the
// ops it saves (wasm: 0.25 ms each).
//
// The float32 sum of squares is exact enough where it is finite and max|g| is not tiny (see
// sumIsSafe). A tensor for which it is not is done again in a second pass (a second read): scaled by
// a power of two near its max when its values are all finite (an overflow, a vanishing gradient), or
// the full treatment when it holds a NaN or an Inf (Σg² is then NaN or Inf: NaN and Inf are counted
// only when a norm is non-finite). Both are rare; the common step has one read.
import type * as tfTypes from '@tensorflow/tfjs';
import { ROW, ROW_LENGTH } from '../../core/protocol/messages';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

export interface DeviceEntry {
  id: number;
  g: Tensor;
  v: Tensor | null;
  /** Whether this step measures the tensor's paramNorm/updateNorm (its snapshot was taken before the step). */
  weigh: boolean;
}

/** Largest float32 denormal: a square below it loses precision, or is flushed to zero (GPUs). */
const FLT_MIN = 1.1754943508222875e-38;

/**
 * Whether Σx² summed in float32 is within float32 precision of the true sum: finite, and every
 * square it may have lost (each < FLT_MIN, n of them at most) is below a 1e-7 share of max² ≤ Σx².
 */
export function sumIsSafe(max: number, ss: number, n: number): boolean {
  return Number.isFinite(ss) && Number.isFinite(max) && max * max * 1e-7 >= n * FLT_MIN;
}

/** What the first pass leaves to the second, per tensor. */
type Redo = 'scaled' | 'nonFinite';

export class DeviceStats {
  /** Snapshots of the parameters measured this step, taken before it (tf.clone shares the buffer: no copy until the update replaces it). */
  private readonly before = new Map<number, Tensor>();
  /** Reads (device→host) by the last compute(). */
  lastReads = 0;

  constructor(private readonly tf: Tf) {}

  /** Call before the step for each tensor whose weights it measures. */
  snapshot(id: number, v: Tensor): void {
    const old = this.before.get(id);
    this.before.set(id, this.tf.keep(this.tf.clone(v)));
    old?.dispose();
  }

  /** Drops the snapshots. */
  release(): void {
    for (const t of this.before.values()) t.dispose();
    this.before.clear();
  }

  /**
   * Returns 6 values per entry (norm, maxAbs, nanCount, infCount, paramNorm, updateNorm; the last
   * two NaN unless the entry was weighed) and the loss (NaN when `loss` is null).
   */
  compute(entries: DeviceEntry[], loss: Tensor | null): { stats: Float64Array; loss: number } {
    const tf = this.tf;
    const n = entries.length;
    const stats = new Float64Array(n * ROW_LENGTH);
    for (let i = 0; i < n; i++) {
      stats[i * ROW_LENGTH + ROW.paramNorm] = NaN;
      stats[i * ROW_LENGTH + ROW.updateNorm] = NaN;
    }
    const f32 = (t: Tensor): Tensor => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));
    // Empty tensors have every statistic 0 and take no part in the ops.
    const gRows = entries.map((_, i) => i).filter((i) => entries[i].g.size > 0);
    const wRows = entries
      .map((_, i) => i)
      .filter((i) => {
        const e = entries[i];
        const b = this.before.get(e.id);
        return e.weigh && e.v !== null && b !== undefined && b.size === e.v.size;
      });
    const live = wRows.filter((i) => entries[i].v!.size > 0);
    for (const i of wRows) {
      if (entries[i].v!.size === 0) stats[i * ROW_LENGTH + ROW.paramNorm] = stats[i * ROW_LENGTH + ROW.updateNorm] = 0;
    }
    const diff = (i: number): Tensor => tf.sub(f32(entries[i].v!), f32(this.before.get(entries[i].id)!));
    let reads = 0;
    try {
      // Pass 1: [max|x|, Σx²] of every gradient, parameter and update, and the loss, in one read.
      const pass1 = tf.tidy(() => {
        const maxes: Tensor[] = [];
        const sums: Tensor[] = [];
        const add = (x: Tensor): void => {
          maxes.push(tf.max(tf.abs(x)));
          sums.push(tf.sum(tf.square(x)));
        };
        for (const i of gRows) add(f32(entries[i].g));
        for (const i of live) add(f32(entries[i].v!));
        for (const i of live) add(diff(i));
        const parts: Tensor[] = maxes.length ? [tf.stack(maxes), tf.stack(sums)] : [];
        parts.push(loss ? tf.reshape(tf.cast(loss, 'float32'), [-1]).slice([0], [1]) : tf.tensor1d([NaN]));
        return tf.concat(parts);
      });
      const data = pass1.dataSync(); // the one device→host read of the step
      reads++;
      pass1.dispose();

      const k = gRows.length + 2 * live.length;
      const lossValue = data[2 * k];
      // Tensor j of pass 1 (gradients, then parameters, then updates): where its values go, and what to redo.
      const redo: { j: number; row: number; col: number; x: () => Tensor; how: Redo; max: number }[] = [];
      const take = (j: number, row: number, col: number, size: number, x: () => Tensor, grad: boolean): void => {
        const max = data[j];
        const ss = data[k + j];
        const o = row * ROW_LENGTH;
        if (sumIsSafe(max, ss, size) || (max === 0 && ss === 0)) {
          stats[o + col] = Math.sqrt(ss);
          if (grad) stats[o + ROW.maxAbs] = max;
        } else if (Number.isFinite(max) && (Number.isFinite(ss) || ss === Infinity)) {
          // All values finite: tiny ones (squares near float32's denormals), or an overflow.
          redo.push({ j, row, col, x, how: 'scaled', max });
        } else if (grad) {
          // A NaN or an Inf (Σg² is NaN or Inf): counted, and left out of norm and max.
          redo.push({ j, row, col, x, how: 'nonFinite', max });
        } else {
          // A parameter or update holding NaN/Inf: they propagate, as in stats.ts's l2Norm.
          stats[o + col] = Number.isNaN(ss) || Number.isNaN(max) ? NaN : Infinity;
        }
      };
      gRows.forEach((i, j) => take(j, i, ROW.norm, entries[i].g.size, () => f32(entries[i].g), true));
      live.forEach((i, j) => take(gRows.length + j, i, ROW.paramNorm, entries[i].v!.size, () => f32(entries[i].v!), false));
      live.forEach((i, j) => take(gRows.length + live.length + j, i, ROW.updateNorm, entries[i].v!.size, () => diff(i), false));

      // Pass 2 (rare).
      if (redo.length) {
        const pass2 = tf.tidy(() =>
          tf.concat(
            redo.map((r) => {
              const x = r.x();
              if (r.how === 'scaled') {
                // Scaled by the power of two nearest below max|x| (exact in float32): ‖x‖ = 2^e · ‖x / 2^e‖.
                const s = 2 ** -Math.floor(Math.log2(r.max));
                return tf.reshape(tf.sum(tf.square(tf.mul(x, tf.scalar(s)))), [1]);
              }
              const finite = tf.isFinite(x);
              const xf = tf.where(finite, x, tf.zerosLike(x));
              const m = tf.max(tf.abs(xf));
              const scale = tf.where(tf.greater(m, 0), m, tf.onesLike(m));
              const norm = tf.mul(scale, tf.sqrt(tf.sum(tf.square(tf.div(xf, scale)))));
              const nan = tf.sum(tf.cast(tf.isNaN(x), 'float32'));
              const inf = tf.sum(tf.cast(tf.isInf(x), 'float32'));
              return tf.stack([norm, m, nan, inf]);
            }),
          ),
        );
        const d2 = pass2.dataSync();
        reads++;
        pass2.dispose();
        let at = 0;
        for (const r of redo) {
          const o = r.row * ROW_LENGTH;
          if (r.how === 'scaled') {
            stats[o + r.col] = Math.sqrt(d2[at++]) * 2 ** Math.floor(Math.log2(r.max));
            if (r.col === ROW.norm) stats[o + ROW.maxAbs] = r.max;
          } else {
            // [norm, max, nan, inf] as stacked in pass 2.
            stats[o + ROW.norm] = d2[at];
            stats[o + ROW.maxAbs] = d2[at + 1];
            stats[o + ROW.nanCount] = d2[at + 2];
            stats[o + ROW.infCount] = d2[at + 3];
            at += 4;
          }
        }
      }
      this.lastReads = reads;
      return { stats, loss: lossValue };
    } finally {
      this.release();
    }
  }
}
