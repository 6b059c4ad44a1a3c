// Messages between the probe's main thread and its stats worker (statsWorker.ts). Arrays travel as
// transferred buffers: the main thread hands over its copy and never touches it again until the
// worker hands the buffer back (`recycle`) for reuse.
//
// A step's tensors travel packed: one float32 buffer with every tensor's values one after the other
// (tensor i is the `sizes[i]` values after those of tensors 0…i−1), so a step costs one transfer
// however many tensors the model has.

export interface StepJob {
  kind: 'step';
  seq: number;
  step: number;
  /** Tensor ids, in the order of the packed values. */
  ids: number[];
  shapes: number[][];
  sizes: number[];
  /** The gradients, packed. */
  g: Float32Array;
  /**
   * Rows (indices into `ids`) whose weights this step measured, in the order of `w` and `w0`: for
   * these, paramNorm and updateNorm are computed; every other row reports them as NaN (unknown).
   */
  weighted: number[];
  /** Those parameters after the update, packed. */
  w: Float32Array | null;
  /** The same parameters before the update, packed. */
  w0: Float32Array | null;
  /** Compute the detail tier for every tensor of this step (a scheduled detail step). */
  detail: boolean;
  /** A norm jump gets the detail tier only this many steps after the previous one (stats.ts). */
  jumpGap: number;
}

/** On-device statistics were computed already; only the detail tier is wanted. */
export interface DetailJob {
  kind: 'detail';
  seq: number;
  step: number;
  ids: number[];
  shapes: number[][];
  sizes: number[];
  g: Float32Array;
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
  /** ROW_LENGTH values per tensor, laid out as ROW (core/protocol/messages.ts; step jobs only). */
  stats: Float64Array | null;
  details: DetailResult[];
  /** First tensor of the run with a non-finite gradient, if this step has it. */
  firstNonFinite: number | null;
  /** Why this step got a detail tier outside the schedule, if it did. */
  anomaly: string | null;
  /** Worker time on the per-step tier, on paramNorm/updateNorm (part of stepMs) and on the detail tier, ms. */
  stepMs: number;
  weightsMs: number;
  detailMs: number;
  /** The job's packed buffers, handed back for reuse. */
  recycle: ArrayBuffer[];
}

export interface WorkerError {
  kind: 'error';
  seq: number;
  message: string;
  recycle: ArrayBuffer[];
}

export type WorkerReply = WorkerResult | WorkerError;

/** Tensor i of a packed buffer (a view, no copy). `offsets` from offsetsOf(sizes). */
export function slot(data: Float32Array, offsets: readonly number[], i: number): Float32Array {
  return data.subarray(offsets[i], offsets[i + 1]);
}

/** Start of each tensor in a packed buffer, and the total at the end (sizes.length + 1 entries). */
export function offsetsOf(sizes: readonly number[]): number[] {
  const out = [0];
  for (const s of sizes) out.push(out[out.length - 1] + s);
  return out;
}

/** The buffers a job transfers (the worker hands the same ones back in `recycle`). */
export function jobBuffers(job: WorkerJob): ArrayBuffer[] {
  const out = [job.g.buffer as ArrayBuffer];
  if (job.kind === 'step') {
    if (job.w) out.push(job.w.buffer as ArrayBuffer);
    if (job.w0) out.push(job.w0.buffer as ArrayBuffer);
  }
  return out;
}
