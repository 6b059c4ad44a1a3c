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

/**
 * The every-step tier: one pass. NaN and ±Inf are counted and kept out of norm and maxAbs.
 *
 * The pass that runs on every step has no branch on the sign or on finiteness (those cost about
 * 10× the arithmetic on random data): a float64 sum of float32 squares cannot overflow, so a
 * non-finite sum means the array holds a NaN or an Inf, and only then is it walked again to count
 * them (as the "count NaN/Inf only when a norm is non-finite").
 */
export function stepStats(g: Num): StepStats {
  // Four running sums and maxima: independent chains the CPU overlaps (30 % faster than one).
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let m0 = 0;
  let m1 = 0;
  let m2 = 0;
  let m3 = 0;
  const n = g.length;
  const n4 = n - (n % 4);
  let i = 0;
  for (; i < n4; i += 4) {
    const x0 = g[i];
    const x1 = g[i + 1];
    const x2 = g[i + 2];
    const x3 = g[i + 3];
    s0 += x0 * x0;
    s1 += x1 * x1;
    s2 += x2 * x2;
    s3 += x3 * x3;
    const a0 = Math.abs(x0);
    const a1 = Math.abs(x1);
    const a2 = Math.abs(x2);
    const a3 = Math.abs(x3);
    if (a0 > m0) m0 = a0;
    if (a1 > m1) m1 = a1;
    if (a2 > m2) m2 = a2;
    if (a3 > m3) m3 = a3;
  }
  for (; i < n; i++) {
    const x = g[i];
    s0 += x * x;
    const a = Math.abs(x);
    if (a > m0) m0 = a;
  }
  const ss = s0 + s1 + (s2 + s3);
  if (ss === ss && ss !== Infinity) return { norm: Math.sqrt(ss), maxAbs: Math.max(m0, m1, m2, m3), nanCount: 0, infCount: 0 };
  return stepStatsNonFinite(g);
}

function stepStatsNonFinite(g: Num): StepStats {
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

/**
 * [‖w‖₂, ‖w − w0‖₂] in one pass (a parameter after its update and before it: paramNorm, updateNorm);
 * the second is NaN when the lengths differ. Non-finite values propagate, as in l2Norm.
 */
export function paramAndUpdateNorm(w: Num, w0: Num): [number, number] {
  if (w.length !== w0.length) return [l2Norm(w), NaN];
  let s0 = 0;
  let s1 = 0;
  let d0 = 0;
  let d1 = 0;
  const n = w.length;
  const n2 = n - (n % 2);
  let i = 0;
  for (; i < n2; i += 2) {
    const x0 = w[i];
    const x1 = w[i + 1];
    const e0 = x0 - w0[i];
    const e1 = x1 - w0[i + 1];
    s0 += x0 * x0;
    s1 += x1 * x1;
    d0 += e0 * e0;
    d1 += e1 * e1;
  }
  if (i < n) {
    const x = w[i];
    const e = x - w0[i];
    s0 += x * x;
    d0 += e * e;
  }
  return [Math.sqrt(s0 + s1), Math.sqrt(d0 + d1)];
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

/**
 * Histogram bin of a finite non-zero float32 |x| by its binary exponent (its bits' bits 23–30):
 * a binade [2^e, 2^(e+1)) spans at most two decades, so the bin is BIN_LO[e], or the next one from
 * THRESHOLD[e] (a power of ten, as histBin compares) up. Gives histBin's answer without a log.
 */
const BIN_LO = new Uint8Array(256);
const THRESHOLD = new Float64Array(256).fill(Infinity);
{
  const clampBin = (k: number): number => Math.min(HIST_BINS - 1, Math.max(0, k - HIST_LO));
  for (let e = 1; e < 255; e++) {
    const lo = 2 ** (e - 127);
    let k = Math.floor(Math.log10(lo));
    while (Number(`1e${k}`) > lo) k--;
    while (Number(`1e${k + 1}`) <= lo) k++;
    BIN_LO[e] = clampBin(k);
    // (where both decades fall in one bin, at the clamped edges, there is nothing to split)
    if (clampBin(k + 1) !== BIN_LO[e]) THRESHOLD[e] = Number(`1e${k + 1}`);
  }
  // Exponent 0: zero (taken out apart) and denormals, all below 1e-38: the lowest bin.
}

/**
 * The detail tier: one pass over the array (plus the per-cell division at the end). The values are
 * taken as float32 (the gradients are; another array is converted first).
 *
 * Walked row by row of the 2-D view and, within a row, by the columns of one thumbnail cell at a
 * time, so a cell's sum is one add per run of columns. Every value goes to a histogram bin by its
 * exponent bits, zeros included (they land in bin 0 with the denormals and are taken out at the
 * end): no branch on the data but the rare non-finite one.
 */
export function detailStats(input: Num, shape: readonly number[]): DetailStats {
  const g = input instanceof Float32Array ? input : Float32Array.from(input);
  const bits = new Int32Array(g.buffer, g.byteOffset, g.length);
  const n = g.length;
  const hist = new Uint32Array(HIST_BINS);
  const v = view2d(shape);
  const tr = v && v[0] * v[1] === n ? Math.min(THUMB_MAX, v[0]) : 0;
  const tc = tr ? Math.min(THUMB_MAX, v![1]) : 0;
  // Walked as rows × cols (one row of n, one block, when there is no thumbnail).
  const rows = tr ? v![0] : 1;
  const cols = tr ? v![1] : n;
  const blocks = tr ? tc : 1;
  // Column c belongs to thumbnail column floor(c·tc/cols): block k is [colStart[k], colStart[k+1]).
  const colStart = new Float64Array(blocks + 1);
  for (let k = 0; k <= blocks; k++) colStart[k] = tr ? Math.ceil((k * cols) / tc) : k * cols;
  const cellSum = new Float64Array(tr * tc);
  const cellBad = new Uint32Array(tr * tc);
  let sum = 0;
  let sumSq = 0;
  let zeros = 0;
  let bad = 0;
  for (let r = 0; r < rows; r++) {
    const rowBase = tr ? Math.floor((r * tr) / rows) * tc : 0;
    const base = r * cols;
    for (let k = 0; k < blocks; k++) {
      let cs = 0;
      for (let i = base + colStart[k], end = base + colStart[k + 1]; i < end; i++) {
        const x = g[i];
        if (x - x !== 0) {
          // NaN or ±Inf: left out of everything but the counts.
          bad++;
          if (tr) cellBad[rowBase + k]++;
          continue;
        }
        sum += x;
        sumSq += x * x;
        const a = Math.abs(x);
        cs += a;
        // (arithmetic on the comparisons, not branches: zeros and decades come in no order)
        const b = bits[i] & 0x7fffffff;
        zeros += +(b === 0);
        const e = b >>> 23;
        hist[BIN_LO[e] + +(a >= THRESHOLD[e])]++;
      }
      if (tr) cellSum[rowBase + k] += cs;
    }
  }
  hist[0] -= zeros;
  const finite = n - bad;
  const mean = finite ? sum / finite : NaN;
  const variance = finite ? Math.max(0, sumSq / finite - mean * mean) : NaN;
  const thumb = new Float32Array(tr * tc);
  for (let cr = 0; cr < tr; cr++) {
    // Rows of cell row cr: floor(r·tr/rows) = cr.
    const nRows = Math.ceil(((cr + 1) * rows) / tr) - Math.ceil((cr * rows) / tr);
    for (let k = 0; k < tc; k++) {
      const cell = cr * tc + k;
      const cnt = nRows * (colStart[k + 1] - colStart[k]) - cellBad[cell];
      thumb[cell] = cnt ? cellSum[cell] / cnt : NaN;
    }
  }
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

/** A norm jump gets a detail tier only this many steps after the previous detail tier, or more (at least). */
export const JUMP_DETAIL_GAP = 10;

/**
 * Decides when a step is an anomaly worth a detail tier: the first non-finite value of the run, or a
 * sharp jump of a tensor's norm over its previous step. Shared by the worker and the on-device path.
 *
 * Jumps are rate-limited (JUMP_DETAIL_GAP): in a model of hundreds of tensors some small tensor's
 * norm jumps 10× on a quarter of the steps (measured on a 304-tensor net whose early layers vanish
 * to 1e-15), which made the detail tier run that often; an explosion still gets its first jump's
 * detail, and then the schedule's. In the automatic schedule the gap is the schedule's interval when
 * that is longer, so jumps stay within the detail tier's budget too (a 304-tensor detail tier is
 * 1.3 MB of frames).
 */
export class AnomalyTracker {
  private prevNorm = new Map<number, number>();
  private sawNonFinite = false;
  private lastDetail: number | null = null;
  constructor(private readonly jumpFactor = 10) {}

  /**
   * Whether `step` gets the detail tier: when scheduled, at the first non-finite value, or at a
   * jump not within `jumpGap` (≥ JUMP_DETAIL_GAP) steps of the previous detail tier. Records the answer.
   */
  wantsDetail(step: number, a: { firstNonFinite: number | null; jump: boolean }, scheduled: boolean, jumpGap = JUMP_DETAIL_GAP): boolean {
    const gap = Math.max(JUMP_DETAIL_GAP, jumpGap);
    const want = scheduled || a.firstNonFinite !== null || (a.jump && (this.lastDetail === null || step - this.lastDetail >= gap));
    if (want) this.lastDetail = step;
    return want;
  }

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
