// Layers × steps matrix of one metric, stored in column blocks so appending steps is cheap and no
// copy of the whole matrix is ever made. NaN and ±Inf are stored as such (they are information);
// a missing cell is MISSING, a cell where the layer had no gradient (absent, not NaN) is ABSENT.
// Reductions for drawing take the max per bucket of columns, NaN winning, then +Inf, then the
// largest finite value, then ABSENT, then MISSING (both sentinels sort below every real value).

/** No data. Exactly representable in Float32 so stored cells compare equal. */
export const MISSING = Math.fround(-3.4e38);
/** No gradient at that step (absent). Above MISSING, below any value a metric takes. */
export const ABSENT = Math.fround(-3.3e38);
const BLOCK = 4096;
/** Columns per summary cell: a max-per-64-columns level kept up to date on append, so drawing a long run reads 64× fewer cells. */
const COARSE_SHIFT = 6;
const COARSE = 1 << COARSE_SHIFT;

export class HeatmapMatrix {
  readonly layers: string[];
  /** Step of each column. */
  steps: Float64Array;
  columns = 0;
  private blocks: Float32Array[] = [];
  private coarse = new Float32Array(0);
  private coarseStride = 0;
  /** Bumped on every change so reductions can be cached. */
  version = 0;

  constructor(layers: string[], capacitySteps = 0) {
    this.layers = layers.slice();
    this.steps = new Float64Array(Math.max(16, capacitySteps));
  }

  get rows(): number {
    return this.layers.length;
  }

  /**
   * Appends `k` columns. `values` is row-major layers × k (values[row * k + c]); `steps` has k entries.
   */
  append(values: ArrayLike<number>, steps: ArrayLike<number>): void {
    const k = steps.length;
    const L = this.layers.length;
    if (this.columns + k > this.steps.length) {
      const grown = new Float64Array(Math.max(this.columns + k, this.steps.length * 2));
      grown.set(this.steps.subarray(0, this.columns));
      this.steps = grown;
    }
    for (let c = 0; c < k; c++) {
      const col = this.columns + c;
      const b = (col / BLOCK) | 0;
      const off = col - b * BLOCK;
      let block = this.blocks[b];
      if (!block) {
        block = new Float32Array(L * BLOCK).fill(MISSING);
        this.blocks[b] = block;
      }
      for (let r = 0; r < L; r++) block[r * BLOCK + off] = values[r * k + c];
      this.steps[col] = steps[c];
    }
    this.updateCoarse(this.columns, this.columns + k);
    this.columns += k;
    this.version++;
  }

  /** Recomputes the summary cells covering columns [c0, c1). */
  private updateCoarse(c0: number, c1: number): void {
    const L = this.layers.length;
    const need = (c1 + COARSE - 1) >> COARSE_SHIFT;
    if (need > this.coarseStride) {
      const stride = Math.max(need, this.coarseStride * 2, 64);
      const grown = new Float32Array(L * stride).fill(-Infinity);
      for (let r = 0; r < L; r++) grown.set(this.coarse.subarray(r * this.coarseStride, (r + 1) * this.coarseStride), r * stride);
      this.coarse = grown;
      this.coarseStride = stride;
    }
    const saved = this.columns;
    this.columns = c1;
    this.reduceFine(this.coarse, this.coarseStride, COARSE_SHIFT, c0);
    this.columns = saved;
  }

  get(row: number, col: number): number {
    const b = (col / BLOCK) | 0;
    const block = this.blocks[b];
    return block ? block[row * BLOCK + (col - b * BLOCK)] : MISSING;
  }

  /**
   * Max per bucket of `bucket` consecutive columns (bucket a power of two), for columns in
   * [fromCol, columns), written into `out` (rows × nBuckets, row-major with stride `stride`).
   */
  reduceInto(out: Float32Array, stride: number, bucket: number, fromCol = 0): void {
    const shift = Math.log2(bucket) | 0;
    if (shift < COARSE_SHIFT) {
      this.reduceFine(out, stride, shift, fromCol);
      return;
    }
    // Buckets of 64 columns or more: combine whole summary cells.
    const L = this.layers.length;
    const per = shift - COARSE_SHIFT;
    const nCoarse = (this.columns + COARSE - 1) >> COARSE_SHIFT;
    const first = (fromCol >> shift) << per;
    const cs = this.coarseStride;
    const coarse = this.coarse;
    for (let r = 0; r < L; r++) {
      const ro = r * cs;
      for (let j = first; j < nCoarse;) {
        const bk = j >> per;
        const e = Math.min(nCoarse, (bk + 1) << per);
        let m = -Infinity;
        for (; j < e; j++) {
          const v = coarse[ro + j];
          if (v > m) m = v;
          else if (v !== v) {
            m = NaN;
            j = e;
            break;
          }
        }
        out[r * stride + bk] = m;
      }
    }
  }

  private reduceFine(out: Float32Array, stride: number, shift: number, fromCol: number): void {
    const L = this.layers.length;
    const start = (fromCol >> shift) << shift;
    const end = this.columns;
    const blocks = this.blocks;
    for (let r = 0; r < L; r++) {
      const rowOut = r * stride;
      for (let col = start; col < end;) {
        const bk = col >> shift;
        const bEnd = Math.min(end, (bk + 1) << shift);
        let m = -Infinity;
        while (col < bEnd) {
          const b = (col / BLOCK) | 0;
          const block = blocks[b];
          const base = r * BLOCK - b * BLOCK;
          const stop = Math.min(bEnd, (b + 1) * BLOCK);
          // NaN wins and ends the scan of its bucket; +Inf beats every finite value by itself.
          if (m === m) {
            for (let i = base + col, e = base + stop; i < e; i++) {
              const v = block[i];
              if (v > m) m = v;
              else if (v !== v) {
                m = NaN;
                break;
              }
            }
          }
          col = stop;
        }
        out[rowOut + bk] = m;
      }
    }
  }

  /** Column index where row `row` reaches its bucket max in [c0, c1): NaN first, then +Inf, then the largest. */
  argMax(row: number, c0: number, c1: number): number {
    let best = c0;
    let m = -Infinity;
    for (let c = c0; c < Math.min(c1, this.columns); c++) {
      const v = this.get(row, c);
      if (v !== v) return c;
      if (v > m) {
        m = v;
        best = c;
      }
    }
    return best;
  }

  /** Index of the first column whose step is >= step (binary search; steps ascend). */
  columnOfStep(step: number): number {
    let lo = 0;
    let hi = this.columns;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.steps[mid] < step) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get lastStep(): number {
    return this.columns > 0 ? this.steps[this.columns - 1] : -Infinity;
  }
}
