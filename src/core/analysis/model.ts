// What the detectors see: the run's tensors grouped into layers (input side first), and one row
// of statistics per optimizer step. Pure TypeScript: no Node, no vscode.
import { encodeFloat } from '../protocol/float';
import type { SourceLocation, TensorInfo } from '../protocol/messages';
import type { FindingLocation, Remedy, RemedyId } from './finding';

/** Guess of a layer's activation family, for the choice between He and Glorot initialisation. */
export type ActivationFamily = 'relu' | 'tanh' | 'sigmoid' | 'linear' | 'unknown';

export interface LayerInfo {
  /** Position, input side first (order of the layer's first tensor id). */
  index: number;
  /** The tfjs layer name, or for raw tf.variables the variable name up to its last '/'. */
  name: string;
  layerType: string;
  /** Tensor ids of the layer. */
  tensors: number[];
  /** Tensor ids with ≥ 2 dimensions (kernels): what fan-in/gain and update ratios are read on. */
  kernels: number[];
  source: SourceLocation | null;
  activation: ActivationFamily;
  /**
   * The layer looks rows up by index (nn.Embedding, EmbeddingBag, tf.layers.embedding): only the
   * rows of the batch's tokens get a gradient, so mostly-zero gradients are its normal shape, and
   * fan-in/gain (He, Glorot) mean nothing for it. See isLookupLayerType.
   */
  lookup: boolean;
}

/** One optimizer step as the detectors see it. Arrays are indexed by tensor id. */
export interface StepRow {
  step: number;
  /** The OPTIMIZER id whose step this is (0 when the probe announced none). */
  optimizer: number;
  /** NaN when unknown. */
  loss: number;
  /** sqrt(Σ finite norms²) over present tensors; NaN when no norm was sent or every tensor was absent. */
  globalNorm: number;
  /** Tensors with a NaN/Inf gradient entry (or a non-finite norm) at this step. */
  nonFinite: number[];
  nanCount: number;
  infCount: number;
  norm: Float64Array;
  paramNorm: Float64Array;
  /** NaN when unknown. */
  updateNorm: Float64Array;
  /**
   * Layer norms: sqrt(Σ norm²) over the layer's present tensors (finite entries), by layer index;
   * NaN when none of its tensors had a gradient at this step.
   */
  layerNorm: Float64Array;
  /**
   * 1 where the tensor had no gradient at this step (absent: missing data, not a value). Its
   * norm/paramNorm/updateNorm are NaN and it is never in `nonFinite`; detectors skip it.
   */
  absent: Uint8Array;
}

export interface AnalysisContext {
  tensors: readonly TensorInfo[];
  layers: readonly LayerInfo[];
  /** Layer index of each tensor id. */
  layerOf: readonly number[];
  /** Where the optimizer was built, when known (global findings point there). */
  optimizerSource: SourceLocation | null;
  /** Decides the weight layout: tfjs kernels are [in…, out], torch weights [out, in, …]. */
  framework: 'tfjs' | 'torch';
}

export interface ZeroObservation {
  step: number;
  tensorId: number;
  zeroFrac: number;
}

export const isFiniteNum = (v: number): boolean => v - v === 0;

/** The layer key of a tensor: its layer, or for a raw variable the name up to its last '/'. */
export function layerKey(t: TensorInfo): string {
  if (t.layer) return t.layer;
  const i = t.name.lastIndexOf('/');
  return i > 0 ? t.name.slice(0, i) : t.name;
}

const RELU = /relu|elu|selu|swish|gelu|leaky|prelu/i;
const TANH = /tanh|rnn|lstm|gru/i;
const SIGMOID = /sigmoid|softmax/i;

/**
 * Layer types whose weight is a lookup table indexed by token ids: Embedding, EmbeddingBag and their
 * subclasses by name (VocabParallelEmbedding, TokenEmbedding, tfjs 'Embedding'). Their gradient is
 * row-sparse every step (the rows of tokens absent from the batch are exactly zero).
 */
export function isLookupLayerType(layerType: string): boolean {
  return /embedding/i.test(layerType);
}

/** Recurrent layer types (tfjs SimpleRNN/LSTM/GRU and their cells, torch nn.RNN/LSTM/GRU and cells). */
export function isRecurrentLayerType(layerType: string): boolean {
  return /rnn|lstm|gru|recurrent/i.test(layerType);
}

/** A layer as one entry of a finding's `locations` (null when the probe recorded no source for it). */
export function locationOf(l: LayerInfo, ctx: AnalysisContext): FindingLocation | null {
  if (!l.source) return null;
  const s = l.source;
  return { file: s.file, line: s.line, column: s.column, ...(s.cell !== undefined ? { cell: s.cell } : {}), layer: l.name, tensors: l.tensors.map((i) => ctx.tensors[i].name) };
}

/**
 * `locations` for a finding that concerns these layers (input side first): absent unless there are
 * at least `min` of them with a source, so a one-layer finding keeps its plain `source`.
 */
export function locationsOf(ls: readonly LayerInfo[], ctx: AnalysisContext, min = 2): FindingLocation[] | undefined {
  const out = [...ls]
    .sort((a, b) => a.index - b.index)
    .map((l) => locationOf(l, ctx))
    .filter((x): x is FindingLocation => x !== null);
  return out.length >= min ? out : undefined;
}

/**
 * One number per layer for evidence (`byLayer`): "name value; name value". The hover on an affected
 * layer's line reads its own entry back with layerEvidence.
 */
export function byLayer(entries: readonly (readonly [LayerInfo, string])[]): string {
  return entries.map(([l, v]) => `${l.name} ${v}`).join('; ');
}

/** Activation family from the layer type or name (the tensor info carries no activation). */
export function guessActivation(layerType: string, name: string): ActivationFamily {
  const s = `${layerType} ${name}`;
  if (RELU.test(s)) return 'relu';
  if (TANH.test(s)) return 'tanh';
  if (SIGMOID.test(s)) return 'sigmoid';
  return 'unknown';
}

export function buildLayers(tensors: readonly TensorInfo[], activationOf?: (t: TensorInfo) => ActivationFamily | null): { layers: LayerInfo[]; layerOf: number[] } {
  const byKey = new Map<string, LayerInfo>();
  const layers: LayerInfo[] = [];
  const layerOf: number[] = [];
  for (const t of tensors) {
    if (!t) continue;
    const key = layerKey(t);
    let l = byKey.get(key);
    if (!l) {
      const hinted = activationOf?.(t) ?? null;
      l = {
        index: layers.length,
        name: key,
        layerType: t.layerType,
        tensors: [],
        kernels: [],
        source: t.source,
        activation: hinted ?? guessActivation(t.layerType, key),
        lookup: isLookupLayerType(t.layerType),
      };
      byKey.set(key, l);
      layers.push(l);
    }
    l.tensors.push(t.id);
    if (t.shape.length >= 2) l.kernels.push(t.id);
    if (!l.source && t.source) l.source = t.source;
    layerOf[t.id] = l.index;
  }
  return { layers, layerOf };
}

/**
 * Fan-in of a kernel. TF.js: all dimensions but the last (Dense [in, out], Conv2D [kh, kw, cin, cout]).
 * PyTorch: all dimensions but the first (Linear [out, in], Conv2d [cout, cin, kh, kw]).
 */
export function fanIn(shape: readonly number[], framework: 'tfjs' | 'torch' = 'tfjs'): number {
  let f = 1;
  if (framework === 'torch') for (let i = 1; i < shape.length; i++) f *= shape[i];
  else for (let i = 0; i < shape.length - 1; i++) f *= shape[i];
  return f;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Initialisation gain of a kernel: rms(W)·sqrt(fan-in). He initialisation gives √2 ≈ 1.41,
 * Glorot ≤ 1.41, LeCun 1. A layer with gain g multiplies the scale of the signal by about g/√2
 * (ReLU) or g (linear/tanh) on each pass.
 */
export function gainOf(paramNorm: number, shape: readonly number[], framework: 'tfjs' | 'torch' = 'tfjs'): number {
  const n = numel(shape);
  if (!(n > 0) || !isFiniteNum(paramNorm)) return NaN;
  return (paramNorm / Math.sqrt(n)) * Math.sqrt(fanIn(shape, framework));
}

// ---------------------------------------------------------------------------------------------
// Remedies: ids are the contract with the quick fixes (docs/findings.md).

export const REMEDY_TITLES: Record<RemedyId, string> = {
  'clip-global-norm': 'Clip gradients by global norm',
  'he-init': 'Use He initialisation (heNormal) for this layer',
  'glorot-init': 'Use Glorot initialisation (glorotUniform) for this layer',
  'lower-lr': 'Lower the learning rate',
  'raise-lr': 'Raise the learning rate',
  'guard-loss': 'Guard log/sqrt/division in the loss with a small epsilon',
  'zero-bias-init': "Initialise this layer's bias to zeros",
  'lower-clip-threshold': 'Lower the clip threshold (the script clips, but above every norm seen)',
  'normalize-inputs': 'Normalise the inputs (standardise each feature where the input tensor is built)',
};

/** The titles a PyTorch user reads (torch's names for the same remedies). */
const TORCH_TITLES: Partial<Record<RemedyId, string>> = {
  'clip-global-norm': 'Clip gradients by global norm (clip_grad_norm_)',
  'he-init': 'Use He initialisation (kaiming_normal_) for this layer',
  'glorot-init': 'Use Glorot initialisation (xavier_uniform_) for this layer',
  'normalize-inputs': 'Normalise the inputs (x = (x - x.mean(0)) / (x.std(0) + 1e-8) where x is built)',
};

export function remedy(id: RemedyId, framework: 'tfjs' | 'torch' = 'tfjs'): Remedy {
  return { id, title: (framework === 'torch' ? TORCH_TITLES[id] : undefined) ?? REMEDY_TITLES[id] };
}

/** Initialisation remedies for a layer, best first: He for the ReLU family, Glorot for tanh/sigmoid/linear. */
export function initRemedies(layer: LayerInfo | null): RemedyId[] {
  if (!layer) return ['he-init', 'glorot-init'];
  // A lookup table has no fan-in: He/Glorot do not apply (nn.Embedding draws N(0, 1) on purpose).
  if (layer.lookup) return [];
  switch (layer.activation) {
    case 'relu':
      return ['he-init'];
    case 'tanh':
    case 'sigmoid':
    case 'linear':
      return ['glorot-init'];
    case 'unknown':
      return ['he-init', 'glorot-init'];
  }
}

export function remedies(ids: readonly RemedyId[], framework: 'tfjs' | 'torch' = 'tfjs'): Remedy[] {
  const seen = new Set<RemedyId>();
  const out: Remedy[] = [];
  for (const id of ids) {
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(remedy(id, framework));
  }
  return out;
}

/** Numbers for evidence: rounded to 4 significant digits, non-finite by the float codec's names ('NaN', 'Inf', '-Inf'). */
export function ev(v: number | null | undefined): number | string | null {
  if (v === null || v === undefined) return null;
  if (!Number.isFinite(v)) return encodeFloat(v);
  if (v === 0) return 0;
  return Number(v.toPrecision(4));
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A fixed-capacity ring of numbers (the detectors' bounded memory). */
export class Ring {
  private readonly buf: Float64Array;
  private n = 0;
  private head = 0;
  constructor(readonly capacity: number) {
    this.buf = new Float64Array(capacity);
  }
  push(v: number): void {
    this.buf[this.head] = v;
    this.head = (this.head + 1) % this.capacity;
    if (this.n < this.capacity) this.n++;
  }
  get length(): number {
    return this.n;
  }
  /** i-th value, oldest first. */
  at(i: number): number {
    return this.buf[(this.head - this.n + i + this.capacity * 2) % this.capacity];
  }
  values(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.n; i++) out.push(this.at(i));
    return out;
  }
}
