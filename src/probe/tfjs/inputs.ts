// The scale of the model's input, for the TF.js probe: RMS and max |x| of what the first layer with
// trainable weights receives, sent as `input-scale` EVENTs (value: RMS, max: max |x|, tensorId: the
// layer's first weight once described). The analysis (src/core/analysis/inputScale.ts) offers
// `normalize-inputs` on an explosion when the input is far from unit scale. As the torch probe's
// inputs.py.
//
// How: every layer built (Capture's layer hook) gets its own `call` wrapped on the instance: both
// paths that run layers on data reach it (`execute` → `layer.apply` → `call` under fit/predict, and
// `Container.call` → `layer.call` under `model.apply(x)`). A call with a concrete float tensor on a
// layer that owns trainable weights and is not itself a model (a container has `layers`) is the
// first layer's; from then on every other wrapper is one comparison. The first layer's input is read
// on its first INPUT_DENSE calls, then one in every INPUT_EVERY, at most INPUT_MAX_EVENTS times
// (one read of the input batch each: sampled, off the usual step path). Symbolic tensors (the
// functional API's `apply` on a `tf.input`) never reach `call`.
import type { Tensor } from '@tensorflow/tfjs';
import type { EventMsg } from '../../core/protocol/messages';

export const INPUT_DENSE = 3;
export const INPUT_EVERY = 50;
export const INPUT_MAX_EVENTS = 20;

type AnyFn = (this: unknown, ...args: unknown[]) => unknown;

export interface InputScaleSink {
  send(msg: EventMsg): void;
  /** The optimizer steps taken so far (the step the input feeds). */
  steps(): number;
  /** The tensor id of a weight already described, by its name. */
  tensorIdOf(name: string): number | undefined;
  warn(where: string, e: unknown): void;
}

const isTensor = (v: unknown): v is Tensor => !!v && typeof v === 'object' && typeof (v as Tensor).dataSync === 'function' && Array.isArray((v as Tensor).shape);

export class InputScale {
  private first: object | null = null;
  private done = false;
  private forwards = 0;
  private reports = 0;

  constructor(private readonly sink: InputScaleSink) {}

  /** Wraps `layer.call` on the instance (called once per layer, as it is built). */
  watch(layer: object): void {
    const l = layer as { call?: AnyFn };
    const orig = l.call;
    if (typeof orig !== 'function') return;
    const self = this;
    l.call = function (this: unknown, ...args: unknown[]) {
      if (!self.done) {
        try {
          self.onCall(layer, args[0]);
        } catch (e) {
          self.done = true;
          self.sink.warn('reading the model input', e);
        }
      }
      return orig.apply(this, args);
    };
  }

  private onCall(layer: object, inputs: unknown): void {
    const x: unknown = Array.isArray(inputs) ? (inputs as unknown[])[0] : inputs;
    if (this.first === null) {
      if (!isTensor(x) || Array.isArray((layer as { layers?: unknown }).layers)) return;
      const w = (layer as { trainableWeights?: unknown[] }).trainableWeights;
      if (!Array.isArray(w) || w.length === 0) return;
      // Token ids into an embedding (int32, or float32 ids, which tfjs embeddings accept): no scale to judge.
      const cls = (layer as { getClassName?: () => string }).getClassName?.() ?? '';
      if (x.dtype !== 'float32' || /embedding/i.test(cls)) {
        this.done = true;
        return;
      }
      this.first = layer;
    }
    if (layer !== this.first || !isTensor(x)) return;
    const n = this.forwards++;
    if (!(n < INPUT_DENSE || n % INPUT_EVERY === 0)) return;
    const v = x.dataSync() as Float32Array;
    if (v.length === 0) return;
    let max = 0;
    let s2 = 0;
    for (let i = 0; i < v.length; i++) {
      const a = Math.abs(v[i]);
      if (a > max) max = a;
      s2 += a * a;
    }
    const rms = Math.sqrt(s2 / v.length);
    if (!Number.isFinite(rms) || !Number.isFinite(max)) return; // a non-finite input is the non-finite detector's business
    const step = this.sink.steps();
    const name = (layer as { name?: unknown }).name;
    const w0 = (layer as { trainableWeights?: { name?: string }[] }).trainableWeights?.[0]?.name;
    const id = typeof w0 === 'string' ? this.sink.tensorIdOf(w0) : undefined;
    this.sink.send({
      type: 'event',
      kind: 'input-scale',
      step,
      value: rms,
      max,
      ...(id !== undefined ? { tensorId: id } : {}),
      message: `input of the first layer (${typeof name === 'string' ? name : 'layer'}) at step ${step}: RMS ${rms.toPrecision(4)}, max |x| ${max.toPrecision(4)}, shape [${x.shape.join(', ')}]`,
    });
    if (++this.reports >= INPUT_MAX_EVENTS) this.done = true;
  }
}
