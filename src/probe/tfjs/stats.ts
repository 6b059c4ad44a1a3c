// Pure statistics over one gradient (or parameter) array. Used by the stats worker (cpu/wasm
// backends) and by the unit tests as the reference; no tfjs, no Node APIs.
//
// Norms accumulate squares in float64. Gradients are float32, whose largest square (~1.2e77) and
// smallest non-zero square (~2e-90) are both far inside float64's range, so a float64 sum of
// squares can neither overflow nor underflow for any tensor that fits in memory: it gives the same
// result as "scale by max|g|" without a second pass. (The on-device path, which works in float32,
// does scale by max|g|: see deviceStats.ts.)

export const HIST_BINS = 32;
/** log10 |g| range of the histogram: one decade per bin, values outside go to the edge bins. */
export const HIST_LO = -20;
export const HIST_HI = 12;
export const THUMB_MAX = 32;

export interface StepStats {
  /** L2 norm of the finite entries. */
  norm: number;
  /** Largest finite |g| (0 when there is none). */
  maxAbs: number;
  nanCount: number;
  infCount: number;
}

export interface DetailStats {
  /** Mean and standard deviation (population) of the finite entries; NaN when there is none. */
  mean: number;
  std: number;
  /** Fraction of all entries that are exactly zero. */
  zeroFrac: number;
  histLo: number;
  histHi: number;
  /** Counts of finite non-zero |g| per decade of log10 |g|. */
  hist: Uint32Array;
  thumbRows: number;
  thumbCols: number;
  /** Mean finite |g| per cell, row-major; NaN for a cell with no finite entry. */
  thumb: Float32Array;
}

type Num = ArrayLike<number>;

/** The every-step tier: one pass. NaN and ±Inf are counted and kept out of norm and maxAbs. */
export function stepStats(g: Num): StepStats {
  let nan = 0;
  let inf = 0;
  let max = 0;
  let ss = 0;
  for (let i = 0, n = g.length; i < n; i++) {
    const x = g[i];
    if (x !== x) nan++;
    else if (x === Infinity || x === -Infinity) inf++;
    else {
      ss += x * x;
      const a = x < 0 ? -x : x;
      if (a > max) max = a;
    }
  }
  return { norm: Math.sqrt(ss), maxAbs: max, nanCount: nan, infCount: inf };
}

/** Plain L2 norm (non-finite entries propagate: a parameter holding NaN has a NaN norm). */
export function l2Norm(w: Num): number {
  let ss = 0;
  for (let i = 0, n = w.length; i < n; i++) ss += w[i] * w[i];
  return Math.sqrt(ss);
}

/** ‖a − b‖₂; NaN when the lengths differ. */
export function diffNorm(a: Num, b: Num): number {
  if (a.length !== b.length) return NaN;
  let ss = 0;
  for (let i = 0, n = a.length; i < n; i++) {
    const d = a[i] - b[i];
    ss += d * d;
  }
  return Math.sqrt(ss);
}

/**
 * The 2-D view used for thumbnails: a rank-2 tensor as is, higher ranks folded to
 * [prod(shape[:-1]), shape[-1]] (a conv kernel [kh, kw, in, out] becomes its im2col matrix
 * [kh·kw·in, out], so a column is one output channel). Rank < 2 has no view.
 */
export function view2d(shape: readonly number[]): [number, number] | null {
  if (shape.length < 2) return null;
  const cols = shape[shape.length - 1];
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i];
  if (rows === 0 || cols === 0) return null;
  return [rows, cols];
}

const POW10: Float64Array = (() => {
  const p = new Float64Array(HIST_HI - HIST_LO + 1);
  for (let k = HIST_LO; k <= HIST_HI; k++) p[k - HIST_LO] = Number(`1e${k}`);
  return p;
})();

/** Histogram bin of a finite, non-zero |x|: floor(log10 |x|) − HIST_LO, clamped to the edge bins. */
export function histBin(a: number): number {
  // Exact decade by comparison with correctly rounded powers of ten (Math.log10 can be off by one
  // ulp right at a power of ten); start from log10 to find the neighbourhood.
  let k = Math.floor(Math.log10(a));
  if (k < HIST_LO) return 0;
  if (k >= HIST_HI) return HIST_BINS - 1;
  if (a < POW10[k - HIST_LO]) k--;
  else if (k + 1 <= HIST_HI && a >= POW10[k + 1 - HIST_LO]) k++;
  const b = k - HIST_LO;
  return b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b;
}

/** The detail tier: one pass over the array (plus the per-cell division at the end). */
export function detailStats(g: Num, shape: readonly number[]): DetailStats {
  const n = g.length;
  const hist = new Uint32Array(HIST_BINS);
  const v = view2d(shape);
  const rows = v ? v[0] : 0;
  const cols = v ? v[1] : 0;
  const tr = v && rows * cols === n ? Math.min(THUMB_MAX, rows) : 0;
  const tc = tr ? Math.min(THUMB_MAX, cols) : 0;
  const cellSum = new Float64Array(tr * tc);
  const cellCnt = new Uint32Array(tr * tc);
  let colCell: Uint16Array | null = null;
  if (tr) {
    colCell = new Uint16Array(cols);
    for (let c = 0; c < cols; c++) colCell[c] = Math.floor((c * tc) / cols);
  }
  let sum = 0;
  let sumSq = 0;
  let finite = 0;
  let zeros = 0;
  let r = 0;
  let c = 0;
  let rowBase = 0;
  for (let i = 0; i < n; i++) {
    const x = g[i];
    if (x === x && x !== Infinity && x !== -Infinity) {
      finite++;
      sum += x;
      sumSq += x * x;
      const a = x < 0 ? -x : x;
      if (a === 0) zeros++;
      else hist[histBin(a)]++;
      if (colCell) {
        const cell = rowBase + colCell[c];
        cellSum[cell] += a;
        cellCnt[cell]++;
      }
    }
    if (colCell && ++c === cols) {
      c = 0;
      r++;
      rowBase = Math.floor((r * tr) / rows) * tc;
    }
  }
  const mean = finite ? sum / finite : NaN;
  const variance = finite ? Math.max(0, sumSq / finite - mean * mean) : NaN;
  const thumb = new Float32Array(tr * tc);
  for (let k = 0; k < thumb.length; k++) thumb[k] = cellCnt[k] ? cellSum[k] / cellCnt[k] : NaN;
  return {
    mean,
    std: Math.sqrt(variance),
    zeroFrac: n ? zeros / n : 0,
    histLo: HIST_LO,
    histHi: HIST_HI,
    hist,
    thumbRows: tr,
    thumbCols: tc,
    thumb,
  };
}

/**
 * Decides when a step is an anomaly worth a detail tier: the first non-finite value of the run, or a
 * sharp jump of a tensor's norm over its previous step. Shared by the worker and the on-device path.
 */
export class AnomalyTracker {
  private prevNorm = new Map<number, number>();
  private sawNonFinite = false;
  constructor(private readonly jumpFactor = 10) {}

  /** Returns the first tensor with a first-ever non-finite value, and whether any norm jumped. */
  observe(ids: ArrayLike<number>, norms: ArrayLike<number>, nonFinite: ArrayLike<number>): { firstNonFinite: number | null; jump: boolean } {
    let firstNonFinite: number | null = null;
    let jump = false;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!this.sawNonFinite && nonFinite[i] > 0) {
        this.sawNonFinite = true;
        firstNonFinite = id;
      }
      const prev = this.prevNorm.get(id);
      const norm = norms[i];
      if (prev !== undefined && prev > 0 && norm > this.jumpFactor * prev) jump = true;
      this.prevNorm.set(id, norm);
    }
    return { firstNonFinite, jump };
  }
}
