// Registers the few Chart.js parts the panel uses (tree-shaken bundle) and small shared helpers.
import {
  CategoryScale,
  Chart,
  Decimation,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  LogarithmicScale,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartOptions,
  type Plugin,
} from 'chart.js';
import type { ChartHandle } from './histogram';
import type { Palette } from './theme';

let registered = false;
export function ensureChartJs(): typeof Chart {
  if (!registered) {
    Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, LogarithmicScale, CategoryScale, Decimation, Legend, Tooltip);
    registered = true;
  }
  return Chart;
}

/** A bitmap laid over the chart area in data coordinates (x0..x1, y0..y1), drawn without smoothing. */
export interface BitmapLayer {
  image: HTMLCanvasElement | null;
  /** Width of the image's left part to draw (default: all of it). */
  sourceWidth?: number;
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** An offscreen bitmap and its layer, spanning the data square 0..1 until the chart sets its extent. */
export function newBitmapLayer(): BitmapLayer & { image: HTMLCanvasElement } {
  return { image: document.createElement('canvas'), x0: 0, x1: 1, y0: 0, y1: 1 };
}

/** A chart's canvas (role img) in its sizing wrapper (`.gs-chart-wrap`), not yet attached. */
export function chartCanvas(): { wrap: HTMLDivElement; canvas: HTMLCanvasElement } {
  const wrap = document.createElement('div');
  wrap.className = 'gs-chart-wrap';
  const canvas = document.createElement('canvas');
  canvas.setAttribute('role', 'img');
  wrap.append(canvas);
  return { wrap, canvas };
}

/** Draws `get()`'s bitmap under the datasets, and records the chart area on the canvas (data-area) so tests and tools can locate cells. */
export function bitmapPlugin(get: () => BitmapLayer | null): Plugin {
  return {
    id: 'gsBitmap',
    beforeDatasetsDraw(chart) {
      const layer = get();
      const x = chart.scales['x'];
      const y = chart.scales['y'];
      if (!layer || !layer.image || !x || !y) return;
      const { ctx, chartArea: a } = chart;
      const px0 = x.getPixelForValue(layer.x0);
      const px1 = x.getPixelForValue(layer.x1);
      const py0 = y.getPixelForValue(layer.y0);
      const py1 = y.getPixelForValue(layer.y1);
      ctx.save();
      ctx.beginPath();
      ctx.rect(a.left, a.top, a.right - a.left, a.bottom - a.top);
      ctx.clip();
      ctx.imageSmoothingEnabled = false;
      const sw = layer.sourceWidth ?? layer.image.width;
      if (sw > 0) ctx.drawImage(layer.image, 0, 0, sw, layer.image.height, Math.min(px0, px1), Math.min(py0, py1), Math.abs(px1 - px0), Math.abs(py1 - py0));
      ctx.restore();
    },
    afterDraw(chart) {
      const a = chart.chartArea;
      chart.canvas.dataset['area'] = [a.left, a.top, a.right, a.bottom].map((v) => Math.round(v * 100) / 100).join(',');
    },
  };
}

export function axisStyle(p: Palette): { ticks: { color: string }; grid: { color: string }; border: { color: string }; title: { color: string } } {
  return { ticks: { color: p.foreground }, grid: { color: p.grid }, border: { color: p.grid }, title: { color: p.foreground } };
}

export function applyFont(p: Palette): void {
  const C = ensureChartJs();
  C.defaults.font.family = p.fontFamily;
  C.defaults.color = p.foreground;
}

/**
 * The handle every one-bitmap chart shares: a Chart.js scatter chart with the bitmap plugin under it;
 * `update` lets the caller take the new data and repaint, then refreshes the options (axes follow the
 * bitmap's extent) without animation.
 */
export function bitmapChart<D, O>(
  el: HTMLElement,
  canvas: HTMLCanvasElement,
  layer: BitmapLayer,
  chartOptions: () => ChartOptions<'scatter'>,
  take: (next: D, patch?: Partial<O>) => void,
): ChartHandle<D, O> {
  const ChartJs = ensureChartJs();
  let chart: Chart | null = new ChartJs(canvas, { type: 'scatter', data: { datasets: [] }, options: chartOptions(), plugins: [bitmapPlugin(() => layer)] });
  return {
    canvas,
    update(next, patch) {
      take(next, patch);
      if (!chart) return;
      chart.options = chartOptions();
      chart.update('none');
    },
    dispose() {
      chart?.destroy();
      chart = null;
      el.replaceChildren();
    },
  };
}
