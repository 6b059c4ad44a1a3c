// Messages between the probe's main thread and its stats worker (statsWorker.ts). Arrays travel as
// transferred buffers: the main thread hands over its copy and never touches it again.

export interface TensorJob {
  id: number;
  shape: number[];
  /** The gradient (a private copy). */
  g: Float32Array;
  /** The parameter after this step's update (a private copy), or null when unknown. */
  w: Float32Array | null;
  /** The parameter before the update, sent only the first time a tensor is seen. */
  w0: Float32Array | null;
}

export interface StepJob {
  kind: 'step';
  seq: number;
  step: number;
  tensors: TensorJob[];
  /** Compute the detail tier for every tensor of this step (a scheduled detail step). */
  detail: boolean;
}

/** On-device statistics were computed already; only the detail tier is wanted. */
export interface DetailJob {
  kind: 'detail';
  seq: number;
  step: number;
  tensors: { id: number; shape: number[]; g: Float32Array }[];
}

export type WorkerJob = StepJob | DetailJob;

export interface DetailResult {
  tensorId: number;
  mean: number;
  std: number;
  zeroFrac: number;
  histLo: number;
  histHi: number;
  hist: Uint32Array;
  thumbRows: number;
  thumbCols: number;
  thumb: Float32Array;
}

export interface WorkerResult {
  kind: 'result';
  seq: number;
  step: number;
  /** Tensor ids in the order of `stats` rows. */
  ids: number[];
  /** 6 values per tensor: norm, maxAbs, nanCount, infCount, paramNorm, updateNorm (step jobs only). */
  stats: Float64Array | null;
  details: DetailResult[];
  /** First tensor of the run with a non-finite gradient, if this step has it. */
  firstNonFinite: number | null;
  /** Why this step got a detail tier outside the schedule, if it did. */
  anomaly: string | null;
  /** Worker time on the per-step tier and on the detail tier, ms. */
  stepMs: number;
  detailMs: number;
}

export interface WorkerError {
  kind: 'error';
  seq: number;
  message: string;
}

export type WorkerReply = WorkerResult | WorkerError;

export const STATS_PER_TENSOR = 6;
