// The gradient thumbnail of one tensor at one step: a rows × cols image of log10 |g|.
import type { ChartOptions } from 'chart.js';
import { axisStyle, bitmapChart, chartCanvas, newBitmapLayer } from './chartSetup';
import type { ChartHandle } from './histogram';
import { cividisLut, packRgba, toRgba, type Palette } from './theme';

export interface Thumbnail {
  step: number;
  rows: number;
  cols: number;
  /** |g| per cell, row-major; NaN / Inf kept. */
  values: ArrayLike<number>;
}

export interface ThumbnailOptions {
  palette: Palette;
}

export function renderThumbnail(el: HTMLElement, data: Thumbnail, options: ThumbnailOptions): ChartHandle<Thumbnail, ThumbnailOptions> {
  let opts = options;
  let thumb = data;
  const lut = cividisLut();
  const layer = newBitmapLayer();
  const { image } = layer;
  const { wrap, canvas } = chartCanvas();
  el.append(wrap);
  let range: [number, number] = [0, 1];

  function paint(): void {
    const { rows, cols, values } = thumb;
    image.width = Math.max(1, cols);
    image.height = Math.max(1, rows);
    const ctx = image.getContext('2d');
    if (!ctx) return;
    let lo = Infinity;
    let hi = -Infinity;
    const logs = new Float32Array(rows * cols);
    for (let i = 0; i < rows * cols; i++) {
      const v = Math.abs(values[i]);
      const l = v > 0 ? Math.log10(v) : -Infinity;
      logs[i] = v !== v ? NaN : l;
      if (Number.isFinite(l)) {
        lo = Math.min(lo, l);
        hi = Math.max(hi, l);
      }
    }
    if (!(hi >= lo)) [lo, hi] = [0, 1];
    if (hi === lo) hi = lo + 1;
    range = [lo, hi];
    const nan = packRgba(toRgba(opts.palette.nan));
    const inf = packRgba(toRgba(opts.palette.inf));
    const zero = packRgba(toRgba(opts.palette.zero));
    const img = ctx.createImageData(image.width, image.height);
    const px = new Uint32Array(img.data.buffer);
    const scale = 255 / (hi - lo);
    for (let i = 0; i < rows * cols; i++) {
      const l = logs[i];
      px[i] = l !== l ? nan : l === Infinity ? inf : l === -Infinity ? zero : lut[Math.max(0, Math.min(255, ((l - lo) * scale) | 0))];
    }
    ctx.putImageData(img, 0, 0);
    layer.x0 = 0;
    layer.x1 = cols;
    layer.y0 = 0;
    layer.y1 = rows;
    canvas.setAttribute('aria-label', `Gradient |g| at step ${thumb.step}, ${rows}×${cols}, log10 from ${lo.toFixed(1)} to ${hi.toFixed(1)}`);
  }

  function chartOptions(): ChartOptions<'scatter'> {
    const p = opts.palette;
    const ax = axisStyle(p);
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      events: [],
      plugins: {
        legend: { display: false },
        tooltip: { enabled: false },
      },
      scales: {
        x: {
          type: 'linear',
          min: 0,
          max: Math.max(1, thumb.cols),
          ...ax,
          grid: { display: false },
          ticks: { display: false },
          title: { display: true, text: `step ${thumb.step} · log10 |g| ${range[0].toFixed(1)} … ${range[1].toFixed(1)}`, color: p.foreground },
        },
        y: { type: 'linear', min: 0, max: Math.max(1, thumb.rows), reverse: true, ...ax, grid: { display: false }, ticks: { display: false } },
      },
    };
  }

  paint();
  return bitmapChart(el, canvas, layer, chartOptions, (next, patch) => {
    if (patch) opts = { ...opts, ...patch };
    thumb = next;
    paint();
  });
}
