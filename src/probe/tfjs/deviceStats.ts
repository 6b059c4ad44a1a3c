// Per-step statistics computed where the tensors live (the native `tensorflow` backend, maybe a GPU):
// a handful of tf ops per tensor, all results stacked into one small tensor, and one device→host
// read per step. On cpu/wasm the worker path is much cheaper (tf ops there allocate full-size
// temporaries), so this path is used there only when asked for (GRADSCOPE_STATS=device), which is
// how the tests exercise it without a GPU.
//
// Float32 on the device can overflow when squaring large gradients, so norms are scaled by max|g|:
// ‖g‖ = m · ‖g / m‖ with m = max|g| over the finite entries.
import type * as tfTypes from '@tensorflow/tfjs';
import { STATS_PER_TENSOR } from './workerProtocol';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

export interface DeviceEntry {
  id: number;
  g: Tensor;
  v: Tensor | null;
}

export class DeviceStats {
  /** Snapshot of each parameter after the previous step (tf.clone shares the buffer: no copy). */
  private prev = new Map<number, Tensor>();

  constructor(private readonly tf: Tf) {}

  /** Call before the first update of a tensor, so its first step has an update norm. */
  snapshot(id: number, v: Tensor): void {
    const old = this.prev.get(id);
    this.prev.set(id, this.tf.keep(this.tf.clone(v)));
    old?.dispose();
  }

  /**
   * Returns 6 values per entry (norm, maxAbs, nanCount, infCount, paramNorm, updateNorm) and the
   * loss (NaN when `loss` is null), from a single read.
   */
  compute(entries: DeviceEntry[], loss: Tensor | null): { stats: Float64Array; loss: number } {
    const tf = this.tf;
    const scaledNorm = (x: Tensor, m: Tensor): Tensor => tf.mul(m, tf.sqrt(tf.sum(tf.square(tf.div(x, tf.maximum(m, tf.scalar(1e-30)))))));
    const packed = tf.tidy(() => {
      const parts: Tensor[] = [];
      for (const e of entries) {
        const g = e.g.dtype === 'float32' ? e.g : tf.cast(e.g, 'float32');
        const finite = tf.isFinite(g);
        const gf = tf.where(finite, g, tf.zerosLike(g));
        const m = tf.max(tf.abs(gf));
        const nan = tf.sum(tf.cast(tf.isNaN(g), 'float32'));
        const inf = tf.sum(tf.cast(tf.isInf(g), 'float32'));
        let pn: Tensor = tf.scalar(NaN);
        let un: Tensor = tf.scalar(NaN);
        if (e.v) {
          const v = e.v.dtype === 'float32' ? e.v : tf.cast(e.v, 'float32');
          pn = scaledNorm(v, tf.max(tf.abs(v)));
          const before = this.prev.get(e.id);
          if (before && before.size === v.size) {
            const d = tf.sub(v, before);
            un = scaledNorm(d, tf.max(tf.abs(d)));
          }
        }
        parts.push(tf.stack([scaledNorm(gf, m), m, nan, inf, pn, un]));
      }
      parts.push(loss ? tf.reshape(tf.cast(loss, 'float32'), [1]).slice([0], [1]) : tf.tensor1d([NaN]));
      return tf.concat(parts);
    });
    const data = packed.dataSync(); // the one device→host read of the step
    packed.dispose();
    for (const e of entries) if (e.v) this.snapshot(e.id, e.v);
    const stats = new Float64Array(entries.length * STATS_PER_TENSOR);
    for (let i = 0; i < stats.length; i++) stats[i] = data[i];
    return { stats, loss: data[stats.length] };
  }
}
