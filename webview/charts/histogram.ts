// One tensor's log10 |g| histogram over time: a steps × bins image (one column per histogram row,
// y = log10 |g| on a common grid), drawn as a bitmap under Chart.js axes.
import type { ChartOptions } from 'chart.js';
import { axisStyle, bitmapChart, chartCanvas, newBitmapLayer } from './chartSetup';
import { cividisLut, type Palette } from './theme';

export interface HistogramRow {
  step: number;
  /** The bins cover log10 |g| in [histLo, histHi]. */
  histLo: number;
  histHi: number;
  counts: ArrayLike<number>;
}

export interface HistogramOptions {
  palette: Palette;
  /** Bins of the common y grid. */
  bins?: number;
  title?: string;
}

export interface ChartHandle<D, O> {
  update(data: D, options?: Partial<O>): void;
  readonly canvas: HTMLCanvasElement;
  dispose(): void;
}

/** Re-bins every row onto one grid over the union of their ranges; returns column-major densities in 0..1 (per row max). */
export function histogramGrid(rows: readonly HistogramRow[], bins: number): { lo: number; hi: number; density: Float32Array } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of rows) {
    if (Number.isFinite(r.histLo) && Number.isFinite(r.histHi) && r.histHi > r.histLo) {
      lo = Math.min(lo, r.histLo);
      hi = Math.max(hi, r.histHi);
    }
  }
  if (!(hi > lo)) {
    lo = -8;
    hi = 0;
  }
  const density = new Float32Array(rows.length * bins);
  const scale = bins / (hi - lo);
  rows.forEach((r, i) => {
    const n = r.counts.length;
    if (n === 0 || !(r.histHi > r.histLo)) return;
    const w = (r.histHi - r.histLo) / n;
    const col = density.subarray(i * bins, (i + 1) * bins);
    for (let k = 0; k < n; k++) {
      const c = r.counts[k];
      if (!(c > 0)) continue;
      // Spread the source bin over the target bins it overlaps, in proportion.
      const t0 = (r.histLo + k * w - lo) * scale;
      const t1 = (r.histLo + (k + 1) * w - lo) * scale;
      for (let t = Math.max(0, Math.floor(t0)); t < Math.min(bins, Math.ceil(t1)); t++) {
        const overlap = Math.min(t1, t + 1) - Math.max(t0, t);
        if (overlap > 0) col[t] = col[t] + (c * overlap) / (t1 - t0);
      }
    }
    let m = 0;
    for (let t = 0; t < bins; t++) m = Math.max(m, col[t]);
    if (m > 0) for (let t = 0; t < bins; t++) col[t] = col[t] / m;
  });
  return { lo, hi, density };
}

export function renderHistogramOverTime(el: HTMLElement, data: readonly HistogramRow[], options: HistogramOptions): ChartHandle<readonly HistogramRow[], HistogramOptions> {
  let opts = options;
  let rows = data;
  const lut = cividisLut();
  const layer = newBitmapLayer();
  const { image } = layer;
  const { wrap, canvas } = chartCanvas();
  el.append(wrap);

  function paint(): void {
    const bins = opts.bins ?? 64;
    const { lo, hi, density } = histogramGrid(rows, bins);
    const w = Math.max(1, rows.length);
    image.width = w;
    image.height = bins;
    const ctx = image.getContext('2d');
    if (!ctx) return;
    const img = ctx.createImageData(w, bins);
    const px = new Uint32Array(img.data.buffer);
    for (let i = 0; i < rows.length; i++) {
      for (let t = 0; t < bins; t++) {
        const d = density[i * bins + t];
        // Highest bin at the top of the image.
        if (d > 0) px[(bins - 1 - t) * w + i] = lut[Math.min(255, Math.max(16, Math.round(Math.sqrt(d) * 255)))];
      }
    }
    ctx.putImageData(img, 0, 0);
    layer.x0 = 0;
    layer.x1 = rows.length;
    layer.y0 = lo;
    layer.y1 = hi;
    canvas.setAttribute('aria-label', `${opts.title ?? 'Histogram of log10 |g|'} over ${rows.length} steps`);
  }

  function chartOptions(): ChartOptions<'scatter'> {
    const p = opts.palette;
    const ax = axisStyle(p);
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      events: [],
      plugins: { legend: { display: false }, tooltip: { enabled: false } },
      scales: {
        x: {
          type: 'linear',
          min: 0,
          max: Math.max(1, rows.length),
          ...ax,
          grid: { display: false },
          title: { display: true, text: 'step', color: p.foreground },
          ticks: { color: p.foreground, maxRotation: 0, callback: (v) => String(rows[Math.min(rows.length - 1, Math.floor(Number(v)))]?.step ?? '') },
        },
        y: { type: 'linear', min: layer.y0, max: layer.y1, ...ax, title: { display: true, text: 'log10 |g|', color: p.foreground } },
      },
    };
  }

  paint();
  return bitmapChart(el, canvas, layer, chartOptions, (next, patch) => {
    if (patch) opts = { ...opts, ...patch };
    rows = next;
    paint();
  });
}
