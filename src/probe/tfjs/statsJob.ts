// One stats job, as the worker runs it. Kept apart from the worker entry so the main thread can run
// the very same code inline when a worker cannot be started.
import { AnomalyTracker, detailStats, diffNorm, l2Norm, stepStats } from './stats';
import { STATS_PER_TENSOR, type DetailResult, type WorkerJob, type WorkerResult } from './workerProtocol';

export class StatsState {
  /** Parameter values after the previous step, per tensor id: the update norm needs no second read. */
  readonly prevW = new Map<number, Float32Array>();
  readonly anomalies = new AnomalyTracker();
}

function detailOf(id: number, g: Float32Array, shape: number[]): DetailResult {
  return { tensorId: id, ...detailStats(g, shape) };
}

export function runJob(state: StatsState, job: WorkerJob): WorkerResult {
  if (job.kind === 'detail') {
    const t0 = performance.now();
    const details = job.tensors.map((t) => detailOf(t.id, t.g, t.shape));
    return {
      kind: 'result',
      seq: job.seq,
      step: job.step,
      ids: job.tensors.map((t) => t.id),
      stats: null,
      details,
      firstNonFinite: null,
      anomaly: null,
      stepMs: 0,
      detailMs: performance.now() - t0,
    };
  }
  const t0 = performance.now();
  const n = job.tensors.length;
  const stats = new Float64Array(n * STATS_PER_TENSOR);
  const ids: number[] = [];
  const norms = new Float64Array(n);
  const nonFinite = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = job.tensors[i];
    ids.push(t.id);
    const s = stepStats(t.g);
    let paramNorm = NaN;
    let updateNorm = NaN;
    if (t.w) {
      paramNorm = l2Norm(t.w);
      const before = t.w0 ?? state.prevW.get(t.id);
      if (before) updateNorm = diffNorm(t.w, before);
      state.prevW.set(t.id, t.w);
    }
    const o = i * STATS_PER_TENSOR;
    stats[o] = s.norm;
    stats[o + 1] = s.maxAbs;
    stats[o + 2] = s.nanCount;
    stats[o + 3] = s.infCount;
    stats[o + 4] = paramNorm;
    stats[o + 5] = updateNorm;
    norms[i] = s.norm;
    nonFinite[i] = s.nanCount + s.infCount;
  }
  const { firstNonFinite, jump } = state.anomalies.observe(ids, norms, nonFinite);
  const t1 = performance.now();
  const anomaly = firstNonFinite !== null ? 'first non-finite gradient' : jump ? 'gradient norm jump' : null;
  const details = job.detail || anomaly ? job.tensors.map((t) => detailOf(t.id, t.g, t.shape)) : [];
  return {
    kind: 'result',
    seq: job.seq,
    step: job.step,
    ids,
    stats,
    details,
    firstNonFinite,
    anomaly: job.detail ? null : anomaly,
    stepMs: t1 - t0,
    detailMs: performance.now() - t1,
  };
}

/** Buffers of a result that can be transferred rather than copied. */
export function resultTransfer(r: WorkerResult): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  if (r.stats) out.push(r.stats.buffer as ArrayBuffer);
  for (const d of r.details) out.push(d.hist.buffer as ArrayBuffer, d.thumb.buffer as ArrayBuffer);
  return out;
}
