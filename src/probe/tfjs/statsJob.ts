// One stats job, as the worker runs it. Kept apart from the worker entry so the main thread can run
// the very same code inline when a worker cannot be started.
import { AnomalyTracker, detailStats, paramAndUpdateNorm, stepStats } from './stats';
import { ROW, ROW_LENGTH } from '../../core/protocol/messages';
import { jobBuffers, offsetsOf, slot, type DetailResult, type WorkerJob, type WorkerResult } from './workerProtocol';

export class StatsState {
  readonly anomalies = new AnomalyTracker();
}

function details(job: WorkerJob, offsets: number[]): DetailResult[] {
  return job.ids.map((id, i) => ({ tensorId: id, ...detailStats(slot(job.g, offsets, i), job.shapes[i]) }));
}

export interface StepRows {
  /** ROW_LENGTH values per tensor (laid out as ROW), in the order of the tensors given. */
  stats: Float64Array;
  norms: Float64Array;
  /** NaN + Inf count per tensor. */
  nonFinite: Float64Array;
  /** Time spent on paramNorm/updateNorm, ms. */
  weightsMs: number;
}

/**
 * The per-step tier of n tensors: `grad(i)` gives tensor i's gradient; for the rows listed in
 * `weighted`, `after(k)` and `before(k)` give the k-th one's parameter after and before the update
 * (paramNorm, updateNorm); every other row reports those two as NaN (unknown).
 */
export function stepRows(
  n: number,
  grad: (i: number) => ArrayLike<number>,
  weighted: readonly number[],
  after: (k: number) => ArrayLike<number>,
  before: (k: number) => ArrayLike<number>,
): StepRows {
  const stats = new Float64Array(n * ROW_LENGTH);
  const norms = new Float64Array(n);
  const nonFinite = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = stepStats(grad(i));
    const o = i * ROW_LENGTH;
    stats[o + ROW.norm] = s.norm;
    stats[o + ROW.maxAbs] = s.maxAbs;
    stats[o + ROW.nanCount] = s.nanCount;
    stats[o + ROW.infCount] = s.infCount;
    stats[o + ROW.paramNorm] = NaN;
    stats[o + ROW.updateNorm] = NaN;
    norms[i] = s.norm;
    nonFinite[i] = s.nanCount + s.infCount;
  }
  const tw = performance.now();
  for (let k = 0; k < weighted.length; k++) {
    const o = weighted[k] * ROW_LENGTH;
    [stats[o + ROW.paramNorm], stats[o + ROW.updateNorm]] = paramAndUpdateNorm(after(k), before(k));
  }
  return { stats, norms, nonFinite, weightsMs: weighted.length ? performance.now() - tw : 0 };
}

export function runJob(state: StatsState, job: WorkerJob): WorkerResult {
  const offsets = offsetsOf(job.sizes);
  if (offsets[offsets.length - 1] !== job.g.length) throw new Error(`packed gradients: ${job.g.length} values for sizes summing to ${offsets[offsets.length - 1]}`);
  const recycle = jobBuffers(job);
  if (job.kind === 'detail') {
    const t0 = performance.now();
    const d = details(job, offsets);
    return {
      kind: 'result',
      seq: job.seq,
      step: job.step,
      ids: job.ids,
      stats: null,
      details: d,
      firstNonFinite: null,
      anomaly: null,
      stepMs: 0,
      weightsMs: 0,
      detailMs: performance.now() - t0,
      recycle,
    };
  }
  const t0 = performance.now();
  let wOffsets: number[] = [];
  if (job.weighted.length) {
    wOffsets = offsetsOf(job.weighted.map((i) => job.sizes[i]));
    if (!job.w || !job.w0 || wOffsets[wOffsets.length - 1] !== job.w.length || job.w.length !== job.w0.length) throw new Error('packed weights do not match their sizes');
  }
  const { stats, norms, nonFinite, weightsMs } = stepRows(
    job.ids.length,
    (i) => slot(job.g, offsets, i),
    job.weighted,
    (k) => slot(job.w!, wOffsets, k),
    (k) => slot(job.w0!, wOffsets, k),
  );
  const seen = state.anomalies.observe(job.ids, norms, nonFinite);
  const { firstNonFinite, jump } = seen;
  const t1 = performance.now();
  const want = state.anomalies.wantsDetail(job.step, seen, job.detail, job.jumpGap);
  const anomaly = !want ? null : firstNonFinite !== null ? 'first non-finite gradient' : jump ? 'gradient norm jump' : null;
  const d = want ? details(job, offsets) : [];
  return {
    kind: 'result',
    seq: job.seq,
    step: job.step,
    ids: job.ids,
    stats,
    details: d,
    firstNonFinite,
    anomaly: job.detail ? null : anomaly,
    stepMs: t1 - t0,
    weightsMs,
    detailMs: performance.now() - t1,
    recycle,
  };
}

/** Buffers of a result that can be transferred rather than copied (the job's own buffers included). */
export function resultTransfer(r: WorkerResult): ArrayBuffer[] {
  const out: ArrayBuffer[] = [...r.recycle];
  if (r.stats) out.push(r.stats.buffer as ArrayBuffer);
  for (const d of r.details) out.push(d.hist.buffer as ArrayBuffer, d.thumb.buffer as ArrayBuffer);
  return out;
}
