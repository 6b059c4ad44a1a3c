// The one definition of GradScope's wire messages (protocol v1). docs/protocol.md is the
// byte-level specification; the Python probe implements the same layout.
//
// Metadata messages (HELLO, TENSORS, EVENT, END, OPTIMIZER) carry a UTF-8 JSON object: they are rare and
// their fields evolve. Hot-path messages (STEP, DETAIL) are fixed binary layouts whose size is
// checked exactly against the shape they declare.

export const MAGIC = 0x50435347; // bytes "GSCP" read as a little-endian u32
export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 16;
/**
 * The STEP loss of a step without one, as the two little-endian u32 words of its float64 (low, high):
 * a quiet NaN with payload 1954 (as R marks NA), never produced by arithmetic on a loss, so that a NaN
 * loss (any other NaN) and no loss stay apart on the wire.
 */
export const NO_LOSS_WORDS = [0x000007a2, 0x7ff80000] as const;
/** No frame may declare a payload larger than this; a larger length is a protocol error. */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

export const MsgType = {
  Hello: 1,
  Tensors: 2,
  Step: 3,
  Detail: 4,
  Event: 5,
  End: 6,
  Optimizer: 7,
} as const;
export type MsgTypeCode = (typeof MsgType)[keyof typeof MsgType];

/** Each type code's name as errors print it (HELLO, STEP, …): MsgType's keys, upper-cased. */
export const MSG_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(MsgType).map(([name, code]) => [code, name.toUpperCase()]));

/**
 * Per-step statistics, one float64 column per statistic over all tensors of the step.
 * The numeric id is what travels on the wire; a STEP frame lists the ids it carries.
 */
export const STAT_IDS = {
  /** L2 norm of the finite entries, computed overflow-safe (scaled by max |g|). */
  norm: 1,
  /** Largest finite |g|. */
  maxAbs: 2,
  nanCount: 3,
  infCount: 4,
  /** L2 norm of the parameter after the update. */
  paramNorm: 5,
  /** L2 norm of (parameter after − parameter before) this step; NaN when unknown. */
  updateNorm: 6,
  /**
   * 1 when the tensor had a gradient at this step, 0 when it had none: the cell is *absent*, a state
   * of its own (its other statistics are NaN and carry no meaning). A STEP without this column means
   * every tensor 0 … nTensors−1 was present.
   */
  hasGrad: 7,
} as const;
export type StatName = keyof typeof STAT_IDS;
/** Statistic names in id order (the keys of STAT_IDS). */
export const STAT_NAMES: readonly StatName[] = Object.keys(STAT_IDS) as StatName[];
export const STAT_BY_ID: ReadonlyMap<number, StatName> = new Map(STAT_NAMES.map((n) => [STAT_IDS[n], n] as const));

/**
 * The per-tensor row both probes compute before they fill a STEP's columns: one row of
 * TENSOR_ROW_STATS.length floats per tensor, in this order (the TF.js stats worker's result, the
 * torch probe's gradient rows, which hold the first four: the gradient's own statistics). Read
 * and written by name through ROW, never by bare offset. The Python probe declares the same
 * (gradscope_probe/wire.py TENSOR_ROW_STATS and ROW_*), checked against this list by
 * test/unit/protocol/statLayout.test.ts.
 */
export const TENSOR_ROW_STATS = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'] as const satisfies readonly StatName[];
export type TensorRowStat = (typeof TENSOR_ROW_STATS)[number];
/** Offset of each statistic in a per-tensor row. */
export const ROW: Readonly<Record<TensorRowStat, number>> = Object.fromEntries(TENSOR_ROW_STATS.map((n, i) => [n, i])) as Record<TensorRowStat, number>;
/** Floats per tensor in a row. */
export const ROW_LENGTH = TENSOR_ROW_STATS.length;

export type Framework = 'tfjs' | 'torch';

export interface SourceLocation {
  /** Absolute path. */
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /**
   * When `file` is a Jupyter notebook (.ipynb): the 0-based index of the cell among the notebook's
   * cells; `line` and `column` are then within that cell. Absent for plain source files.
   */
  cell?: number;
}

/**
 * A location as a person reads it: `file:line`, or in a notebook `file cell N line L`, N counted from
 * 1 as VS Code's "Cell N of M" counts (the protocol's and the JSON's `cell` is the 0-based index).
 * `file` is given as the caller shows it (relative to the current folder, a base name).
 */
export function locationText(file: string, loc: { line: number; cell?: number }): string {
  return loc.cell === undefined ? `${file}:${loc.line}` : `${file} cell ${loc.cell + 1} line ${loc.line}`;
}

export interface HelloMsg {
  type: 'hello';
  probeVersion: string;
  framework: Framework;
  /** e.g. "tensorflow" (tfjs-node/-gpu), "wasm", "cpu", "cuda". */
  backend: string;
  /** Human-readable device, e.g. "CPU (wasm, SIMD)" or "NVIDIA H100". */
  device: string;
  /** Why this backend was chosen, in words a user can act on. */
  backendReason: string;
  pid: number;
  /** The process's global rank (torch.distributed, else RANK; 0 for a single process). */
  rank: number;
  script: string;
  /** Steps between DETAIL tiers as the probe chose it. */
  detailEvery: number;
  /** Rank on its machine (LOCAL_RANK), when the process is one of several. */
  localRank?: number;
  /** Ranks in the job (torch.distributed's world size, else WORLD_SIZE), when the process is one of several. */
  worldSize?: number;
  /** The machine's host name, when the process is one of several. */
  host?: string;
  /**
   * true: this probe writes a STEP without a loss as NO_LOSS (loss null), so a NaN loss is a NaN
   * loss from the first step on. Absent (probes before it, their run files): NaN meant either.
   */
  marksNoLoss?: boolean;
}

export interface TensorInfo {
  /** Dense, stable id, 0-based; the index of the tensor in every STEP column. */
  id: number;
  name: string;
  layer: string;
  layerType: string;
  shape: number[];
  /** Where the user's own code built the tensor's layer (for a library-built model: the line that built the model). */
  source: SourceLocation | null;
  /** Other names of the same tensor (tied or shared weights, e.g. ["lm_head.weight"]), when it has any. */
  aliases?: string[];
  /** Where a library constructed the layer inside the user's line (e.g. transformers' modeling_bert.py). */
  builtIn?: LibrarySite;
  /**
   * Present when this process holds only a shard of the tensor (an FSDP2 / DTensor parameter): its
   * statistics are the shard's. `shape` stays the whole tensor's shape.
   */
  shard?: ShardInfo;
}

/**
 * The block of a tensor one process holds: its offset in the whole tensor and its own shape, one entry
 * per dimension. Two processes with the same offset and shape hold replicas of one shard (HSDP).
 */
export interface ShardInfo {
  offset: number[];
  localShape: number[];
}

export interface LibrarySite extends SourceLocation {
  /** Top-level package of the library, e.g. "transformers". */
  package: string;
}

export interface TensorsMsg {
  type: 'tensors';
  /** Newly known tensors; ids continue from those sent before. */
  tensors: TensorInfo[];
}

export interface StepMsg {
  type: 'step';
  step: number;
  /** The `id` of the OPTIMIZER whose step this is (0 when the probe announced none). */
  optimizer: number;
  /**
   * Loss of this step (NaN: the loss was NaN); null when the probe saw none, written on the wire as
   * the NO_LOSS value. From a probe without HELLO's `marksNoLoss` (older probes, older run files)
   * a NaN may also mean "not seen": the store tells the two apart as it always did.
   */
  loss: number | null;
  /** Milliseconds since the probe started. */
  wallMs: number;
  /** Statistic names in the order of `columns`. */
  stats: StatName[];
  /** One column per statistic, each of length `nTensors`. */
  columns: Float64Array[];
  nTensors: number;
}

export interface DetailMsg {
  type: 'detail';
  step: number;
  tensorId: number;
  mean: number;
  std: number;
  zeroFrac: number;
  /** log10 |g| range covered by the bins; values outside are clamped into the edge bins. */
  histLo: number;
  histHi: number;
  /** Counts of finite non-zero |g| per bin. */
  hist: Uint32Array;
  thumbRows: number;
  thumbCols: number;
  /** Mean |g| per cell, row-major; empty when the tensor has no 2-D view. */
  thumb: Float32Array;
}

export const EVENT_KINDS = ['non-finite', 'warning', 'dropped', 'backend', 'info', 'clip', 'skipped-step', 'input-scale'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
/** What a `clip` EVENT's threshold bounds: the global norm (clip_grad_norm_) or each element (clip_grad_value_). */
export const CLIP_BY = ['norm', 'value'] as const;
export type ClipBy = (typeof CLIP_BY)[number];

export interface EventMsg {
  type: 'event';
  kind: EventKind;
  message: string;
  step?: number;
  tensorId?: number;
  /** For `dropped`: frames dropped since the previous such event; for `skipped-step`: steps skipped so far. */
  count?: number;
  /**
   * For `clip`: the max norm the script clips gradients to (the reported norms are before clipping);
   * for `skipped-step`: the loss scale after GradScaler's back-off; for `input-scale`: the RMS of the
   * first parameterised layer's input (`tensorId`: that layer's first tensor; `max` its max |x|).
   */
  value?: number;
  /** For `input-scale`: the largest |x| of the input batch. */
  max?: number;
  /** For `clip`: what `value` bounds; absent (run files before it): `norm`. */
  clipBy?: ClipBy;
}

export const OPTIMIZER_MODES = ['optimizer', 'backward'] as const;
/** `backward`: the script has no torch.optim optimizer; each backward pass is a step. */
export type OptimizerMode = (typeof OPTIMIZER_MODES)[number];

/** Sent before the first STEP of each optimizer and again when its tensors change (same id replaces). */
export interface OptimizerMsg {
  type: 'optimizer';
  /** Dense from 0 in the order the optimizers first stepped; STEP.optimizer refers to it. */
  id: number;
  /** The script's variable (`opt_d`, `self.optimizer`) or `<className>#<id>`. */
  name: string;
  className: string;
  mode: OptimizerMode;
  /** Tensors of its parameter groups known so far. */
  tensorIds: number[];
}

export type ProbeEndReason = 'completed' | 'crashed' | 'step-limit';

export interface ErrorInfo {
  message: string;
  stack?: string;
  /** The first frame of the user's own code in the stack, when one exists. */
  frame?: SourceLocation;
}

export interface EndMsg {
  type: 'end';
  reason: ProbeEndReason;
  steps: number;
  error?: ErrorInfo;
}

export type Message = HelloMsg | TensorsMsg | StepMsg | DetailMsg | EventMsg | EndMsg | OptimizerMsg;
export type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>;

/** Compile-time exhaustiveness helper for switches over message types. */
export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(x)}`);
}
