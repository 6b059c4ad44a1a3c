// The hooks that see training without any change to the script. All are installed on the tfjs
// instance the runner chose (and that the script's `require`/`import` is routed to):
//
// - applyGradients of every optimizer class. The base Optimizer has none; each built-in class
//   defines its own, so each is wrapped; user subclasses are wrapped when first seen by `minimize`
//   (which model.fit/fitDataset use) or by tf.serialization.registerClass. Nested calls (a subclass
//   that calls super.applyGradients, an optimizer that delegates to another) count as one step,
//   taken at the innermost call: the gradients actually applied.
// - Layer construction: a setter trap on Layer.prototype for `_addedWeightNames`, the first field
//   the Layer constructor assigns, so every layer (factory, `new`, user subclass, deserialized)
//   reports itself with its construction stack. Layer.prototype.addWeight is wrapped so the
//   variables it creates are attributed to their layer.
// - The engine's makeVariable (every tf.variable and layer weight) for the creation stack of raw
//   variables, and the engine's gradients (under minimize, variableGrads, valueAndGrads, grads) for
//   the loss: its `value` is the loss of the step about to be applied.
import type * as tfTypes from '@tensorflow/tfjs';
import { captureSite, type Site } from './sourceSite';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

export interface NamedGrad {
  name: string;
  tensor: Tensor;
}

export interface CaptureSink {
  onLayer(layer: object, site: Site): void;
  onVariable(name: string, site: Site | null, layer: object | null): void;
  onGradientsValue(value: Tensor): void;
  /** The gradients a computation made, by variable name (variableGrads, minimize): see Probe.onGradients. */
  onGradients(computed: ReadonlyMap<string, Tensor>): void;
  /** Called before the optimizer's own applyGradients; returns a context for afterApply. */
  /** `outer` is the context of an enclosing applyGradients call (a subclass calling super), if any. */
  beforeApply(optimizer: object, grads: NamedGrad[], outer: unknown): unknown;
  afterApply(ctx: unknown): void;
  warn(where: string, e: unknown): void;
}

const WRAPPED = Symbol.for('gradscope.wrapped');

interface EngineLike {
  makeVariable: (...a: unknown[]) => { name: string };
  gradients: (...a: unknown[]) => { value: Tensor | null; grads: Record<string, Tensor> };
  registeredVariables: Record<string, tfTypes.Variable>;
}

interface ApplyFrame {
  ctx: unknown;
  nested: boolean;
}

type AnyFn = ((...a: unknown[]) => unknown) & { [WRAPPED]?: boolean };

export function normalizeGrads(grads: unknown): NamedGrad[] {
  const out: NamedGrad[] = [];
  if (Array.isArray(grads)) {
    for (const g of grads as { name?: unknown; tensor?: unknown }[]) {
      if (g && typeof g.name === 'string' && g.tensor) out.push({ name: g.name, tensor: g.tensor as Tensor });
    }
  } else if (grads && typeof grads === 'object') {
    for (const [name, t] of Object.entries(grads as Record<string, unknown>)) if (t) out.push({ name, tensor: t as Tensor });
  }
  return out;
}

export class Capture {
  /**
   * The wrapped applyGradients calls in progress. A subclass calling super.applyGradients (or an
   * optimizer delegating to another) nests them; the innermost one is the step, counted once.
   */
  private readonly frames: ApplyFrame[] = [];
  /** The layer whose addWeight is running, if any. */
  private currentLayer: object | null = null;
  private readonly patchedProtos = new WeakSet<object>();

  constructor(
    private readonly tf: Tf,
    private readonly sink: CaptureSink,
  ) {}

  get engine(): EngineLike {
    return this.tf.engine() as unknown as EngineLike;
  }

  install(): void {
    const tf = this.tf;
    const sink = this.sink;
    // Optimizers: every built-in class, then user subclasses as they show up.
    const classes = ['SGDOptimizer', 'MomentumOptimizer', 'AdagradOptimizer', 'AdadeltaOptimizer', 'AdamOptimizer', 'AdamaxOptimizer', 'RMSPropOptimizer'];
    for (const c of classes) {
      const cls = (tf as unknown as Record<string, { prototype?: object } | undefined>)[c];
      if (cls?.prototype) this.patchChain(cls.prototype);
    }
    const Optimizer = (tf as unknown as { Optimizer?: { prototype: Record<string, unknown> } }).Optimizer;
    if (Optimizer) {
      const self = this;
      const minimize = Optimizer.prototype.minimize as AnyFn | undefined;
      if (typeof minimize === 'function' && !minimize[WRAPPED]) {
        const wrapped: AnyFn = function (this: object, ...args: unknown[]) {
          try {
            self.patchChain(Object.getPrototypeOf(this) as object | null);
          } catch (e) {
            sink.warn('optimizer hook', e);
          }
          return minimize.apply(this, args);
        };
        wrapped[WRAPPED] = true;
        Optimizer.prototype.minimize = wrapped;
      }
    }
    try {
      const ser = tf.serialization as unknown as { registerClass?: AnyFn };
      const reg = ser.registerClass;
      if (typeof reg === 'function' && !reg[WRAPPED]) {
        const self = this;
        const wrapped: AnyFn = function (this: unknown, ...args: unknown[]) {
          const cls = args[0] as { prototype?: object } | undefined;
          if (cls?.prototype && Optimizer && cls.prototype instanceof (Optimizer as unknown as new () => object)) self.patchChain(cls.prototype);
          return reg.apply(this, args);
        };
        wrapped[WRAPPED] = true;
        ser.registerClass = wrapped;
      }
    } catch {
      // A frozen namespace: subclasses are still caught through minimize.
    }

    this.installLayerHooks();
    this.installEngineHooks();
  }

  /** Wraps every own applyGradients along a prototype chain (up to Object.prototype). */
  patchChain(proto: object | null): void {
    for (let p = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
      if (this.patchedProtos.has(p)) continue;
      this.patchedProtos.add(p);
      const own = Object.getOwnPropertyDescriptor(p, 'applyGradients');
      if (own && typeof own.value === 'function' && !(own.value as AnyFn)[WRAPPED]) this.wrapApply(p as Record<string, unknown>, own.value as AnyFn);
    }
  }

  private wrapApply(proto: Record<string, unknown>, orig: AnyFn): void {
    const self = this;
    const sink = this.sink;
    const wrapped: AnyFn = function (this: object, ...args: unknown[]) {
      const parent = self.frames[self.frames.length - 1];
      if (parent) parent.nested = true;
      const frame: ApplyFrame = { ctx: null, nested: false };
      self.frames.push(frame);
      let ok = false;
      try {
        try {
          frame.ctx = sink.beforeApply(this, normalizeGrads(args[0]), parent?.ctx ?? null);
        } catch (e) {
          sink.warn('gradient capture', e);
        }
        const r = orig.apply(this, args);
        ok = true;
        return r;
      } finally {
        self.frames.pop();
        // Only the innermost call is the step: it received the gradients actually applied (after
        // whatever a subclass did to them before calling super), and the weights are updated when
        // it returns. A failed update is not a step; the user's error propagates unchanged.
        if (ok && !frame.nested && frame.ctx !== null) {
          try {
            sink.afterApply(frame.ctx);
          } catch (e) {
            sink.warn('gradient statistics', e);
          }
        }
      }
    };
    wrapped[WRAPPED] = true;
    Object.defineProperty(wrapped, 'name', { value: orig.name });
    proto.applyGradients = wrapped;
  }

  get insideApply(): boolean {
    return this.frames.length > 0;
  }

  private installLayerHooks(): void {
    const Layer = (this.tf.layers as unknown as { Layer?: { prototype: Record<string, unknown> } }).Layer;
    if (!Layer) {
      this.sink.warn('layer hook', new Error('tf.layers.Layer not found: layers get no source line'));
      return;
    }
    const proto = Layer.prototype;
    const sink = this.sink;
    const FIELD = '_addedWeightNames';
    if (!Object.getOwnPropertyDescriptor(proto, FIELD)) {
      Object.defineProperty(proto, FIELD, {
        configurable: true,
        enumerable: false,
        get: () => undefined,
        set(this: object, v: unknown) {
          // Become an ordinary own field first, so the trap runs once per layer and tfjs never notices.
          Object.defineProperty(this, FIELD, { value: v, writable: true, enumerable: true, configurable: true });
          try {
            sink.onLayer(this, captureSite());
          } catch (e) {
            sink.warn('layer hook', e);
          }
        },
      });
    }
    const addWeight = proto.addWeight as AnyFn | undefined;
    if (typeof addWeight === 'function' && !addWeight[WRAPPED]) {
      const self = this;
      const wrapped: AnyFn = function (this: object, ...args: unknown[]) {
        const prev = self.currentLayer;
        self.currentLayer = this;
        try {
          return addWeight.apply(this, args);
        } finally {
          self.currentLayer = prev;
        }
      };
      wrapped[WRAPPED] = true;
      proto.addWeight = wrapped;
    }
  }

  private installEngineHooks(): void {
    const eng = this.engine;
    const sink = this.sink;
    const self = this;
    const makeVariable = eng.makeVariable as AnyFn;
    if (!makeVariable[WRAPPED]) {
      const wrapped: AnyFn = function (this: unknown, ...args: unknown[]) {
        const v = makeVariable.apply(this, args) as { name: string };
        // Optimizer slots (created inside applyGradients) are not the user's tensors.
        if (!self.insideApply) {
          try {
            sink.onVariable(v.name, self.currentLayer ? null : captureSite(), self.currentLayer);
          } catch (e) {
            sink.warn('variable hook', e);
          }
        }
        return v;
      };
      wrapped[WRAPPED] = true;
      (eng as unknown as Record<string, unknown>).makeVariable = wrapped;
    }
    const gradients = eng.gradients as AnyFn;
    if (!gradients[WRAPPED]) {
      const wrapped: AnyFn = function (this: unknown, ...args: unknown[]) {
        const r = gradients.apply(this, args) as { value: Tensor | null; grads?: (Tensor | null)[] };
        try {
          if (r?.value && r.value.size === 1) sink.onGradientsValue(r.value);
        } catch (e) {
          sink.warn('loss capture', e);
        }
        try {
          // gradients(f, xs, …): the gradient of each of xs, in order. Variables (variableGrads,
          // minimize) have names, as applyGradients receives them; tf.grads of plain tensors has none.
          const xs = args[1];
          if (Array.isArray(xs) && Array.isArray(r?.grads)) {
            const computed = new Map<string, Tensor>();
            xs.forEach((x: unknown, i) => {
              const name = (x as { name?: unknown } | null)?.name;
              const g = r.grads![i];
              if (typeof name === 'string' && g) computed.set(name, g);
            });
            if (computed.size) sink.onGradients(computed);
          }
        } catch (e) {
          sink.warn('gradient capture', e);
        }
        return r;
      };
      wrapped[WRAPPED] = true;
      (eng as unknown as Record<string, unknown>).gradients = wrapped;
    }
  }
}
