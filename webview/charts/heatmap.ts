// Layers × steps heatmap: a Chart.js chart (axes, layout) with a plugin that draws one ImageData
// bitmap. Columns are reduced to at most one bucket per device pixel (max per bucket, NaN winning,
// then +Inf), with power-of-two bucket sizes so that appending steps only recomputes the last
// buckets and a growing run re-buckets by merging pairs instead of rescanning the matrix.
import type { ChartOptions, Chart } from 'chart.js';
import { axisStyle, bitmapPlugin, chartCanvas, ensureChartJs, newBitmapLayer } from './chartSetup';
import { shownName, shownNameEnd } from '../display';
import { ABSENT, HeatmapMatrix, MISSING } from './heatmapMatrix';
import { cividisLut, lutCss, packRgba, toRgba, type Palette } from './theme';

export interface HeatmapCell {
  row: number;
  layer: string;
  /** Columns [col0, col1) form the bucket under the pointer. */
  col0: number;
  col1: number;
  /** Column and step where the bucket takes its value (first NaN, else +Inf, else the max). */
  col: number;
  step: number;
  value: number;
}

export interface HeatmapOptions {
  palette: Palette;
  /** Axis / legend label of the values, e.g. "log10 ‖g‖". */
  valueLabel: string;
  /** Fixed colour domain for finite values; null: from the data shown. */
  domain?: [number, number] | null;
  formatValue?: (v: number) => string;
  /** Selected layer row and step, outlined. */
  selected?: { row: number; step: number | null } | null;
  onSelect?: (cell: HeatmapCell) => void;
  /** Device pixel columns available (tests and benches); default: measured. */
  maxBuckets?: number;
}

export interface HeatmapHandle {
  /** Same matrix object after an append: incremental; another matrix: full re-render. */
  update(data: HeatmapMatrix, options?: Partial<HeatmapOptions>): void;
  /** The cell under a point in CSS pixels relative to the canvas, or null. */
  cellAt(x: number, y: number): HeatmapCell | null;
  readonly canvas: HTMLCanvasElement;
  dispose(): void;
}

export function formatHeatValue(v: number, fmt: (v: number) => string = (x) => x.toPrecision(3)): string {
  if (v !== v) return 'NaN';
  if (v === Infinity) return 'Inf';
  if (v === -Infinity) return '-Inf';
  if (v <= MISSING) return 'no data';
  if (v <= ABSENT) return 'no gradient';
  return fmt(v);
}

/**
 * The x axis ends a little past the last column, at a multiple of about 1/16 of the run, so live
 * appends redraw the bitmap without a new layout of the axes most of the time.
 */
export function xMax(columns: number): number {
  if (columns <= 16) return Math.max(1, columns);
  const q = 2 ** Math.floor(Math.log2(columns / 16));
  return Math.ceil(columns / q) * q;
}

/** Max of two reduced values with NaN winning. */
function nanMax(a: number, b: number): number {
  if (a !== a || b !== b) return NaN;
  return a > b ? a : b;
}

export function renderHeatmap(el: HTMLElement, data: HeatmapMatrix, options: HeatmapOptions): HeatmapHandle {
  const ChartJs = ensureChartJs();
  let opts = options;
  let matrix = data;

  el.classList.add('gs-heatmap');
  const { wrap, canvas } = chartCanvas();
  canvas.tabIndex = 0;
  const tip = document.createElement('div');
  tip.className = 'gs-tooltip';
  tip.setAttribute('role', 'status');
  tip.hidden = true;
  const legend = document.createElement('div');
  legend.className = 'gs-colorbar';
  wrap.append(tip);
  el.append(wrap, legend);

  const lut = cividisLut();
  let colors = paletteColors(opts.palette);
  const layer = newBitmapLayer();
  const { image } = layer;

  // Reduction state.
  let reduced = new Float32Array(0);
  let stride = 0;
  let bucket = 1;
  let nb = 0;
  let reducedCols = 0;
  let reducedMatrix: HeatmapMatrix | null = null;
  let domain: [number, number] = [0, 1];
  let cursor: { row: number; bucket: number } | null = null;

  let areaWidth = el.clientWidth - 120;
  const targetBuckets = (): number => {
    if (opts.maxBuckets) return opts.maxBuckets;
    return Math.max(16, Math.floor(Math.max(1, areaWidth) * (window.devicePixelRatio || 1)));
  };

  /** The smallest power-of-two bucket that fits the columns in the available pixel columns. */
  const wantBucket = (): number => {
    const maxB = targetBuckets();
    let b = 1;
    while (Math.ceil(matrix.columns / b) > maxB) b *= 2;
    return b;
  };

  /** Brings the reduction up to date; returns the first bucket that changed. */
  function reduce(): number {
    const N = matrix.columns;
    const L = matrix.rows;
    const want = wantBucket();
    const fresh = reducedMatrix !== matrix || reducedCols > N || want < bucket || Math.ceil(N / want) > stride;
    if (fresh) {
      bucket = want;
      stride = Math.max(targetBuckets(), Math.ceil(N / want));
      if (reduced.length < L * stride) reduced = new Float32Array(L * stride);
      matrix.reduceInto(reduced, stride, bucket, 0);
      reducedMatrix = matrix;
      reducedCols = N;
      nb = Math.ceil(N / bucket);
      return 0;
    }
    const before = bucket;
    // Grow the bucket by merging pairs of already reduced buckets, then reduce the new columns.
    while (bucket < want) {
      const oldNb = Math.ceil(reducedCols / bucket);
      for (let r = 0; r < L; r++) {
        const o = r * stride;
        for (let j = 0; 2 * j < oldNb; j++) {
          const a = reduced[o + 2 * j];
          reduced[o + j] = 2 * j + 1 < oldNb ? nanMax(a, reduced[o + 2 * j + 1]) : a;
        }
      }
      bucket *= 2;
    }
    matrix.reduceInto(reduced, stride, bucket, reducedCols);
    const first = bucket === before ? Math.floor(reducedCols / bucket) : 0;
    reducedCols = N;
    nb = Math.ceil(N / bucket);
    return first;
  }

  let img: ImageData | null = null;
  let painted = { nb: 0, lo: NaN, hi: NaN, absent: false };
  // Per bucket column, over all rows: the smallest and largest finite value and whether a cell is
  // absent. Only the buckets from `from` on changed since the last paint, so a live append rescans
  // those and combines the columns, instead of scanning every reduced cell for the colour domain.
  let colLo = new Float32Array(0);
  let colHi = new Float32Array(0);
  let colAbsent = new Uint8Array(0);
  let colsKnown = 0;

  /** The colour domain of the finite values shown (before opts.domain), and whether any cell is absent. */
  function scanDomain(from: number): { lo: number; hi: number; anyAbsent: boolean } {
    const L = matrix.rows;
    if (colLo.length < stride) {
      colLo = new Float32Array(stride);
      colHi = new Float32Array(stride);
      colAbsent = new Uint8Array(stride);
      colsKnown = 0;
    }
    const start = Math.max(0, Math.min(from, colsKnown));
    colLo.fill(Infinity, start, nb);
    colHi.fill(-Infinity, start, nb);
    colAbsent.fill(0, start, nb);
    const cells = reduced;
    for (let r = 0; r < L; r++) {
      const o = r * stride;
      for (let j = start; j < nb; j++) {
        const v = cells[o + j];
        if (v > ABSENT && v < Infinity) {
          if (v < colLo[j]) colLo[j] = v;
          if (v > colHi[j]) colHi[j] = v;
        } else if (v > MISSING && v <= ABSENT) colAbsent[j] = 1;
      }
    }
    colsKnown = nb;
    let lo = Infinity;
    let hi = -Infinity;
    let anyAbsent = false;
    for (let j = 0; j < nb; j++) {
      if (colLo[j] < lo) lo = colLo[j];
      if (colHi[j] > hi) hi = colHi[j];
      if (colAbsent[j]) anyAbsent = true;
    }
    return { lo, hi, anyAbsent };
  }

  /** Colours buckets [from, nb) of every row (all of them when the colour domain or the size changed). */
  function paint(from = 0): void {
    const L = matrix.rows;
    const shown = scanDomain(from);
    const anyAbsent = shown.anyAbsent;
    let { lo, hi } = shown;
    if (opts.domain) [lo, hi] = opts.domain;
    if (!(lo <= hi)) [lo, hi] = [0, 1];
    if (hi === lo) hi = lo + 1;
    const w = Math.max(1, stride);
    const h = Math.max(1, L);
    const ctx = image.getContext('2d');
    if (!ctx) return;
    if (image.width !== w || image.height !== h || !img) {
      image.width = w;
      image.height = h;
      img = ctx.createImageData(w, h);
      from = 0;
    }
    if (lo !== painted.lo || hi !== painted.hi || nb < painted.nb) from = 0;
    from = Math.max(0, Math.min(from, painted.nb, nb));
    domain = [lo, hi];
    const px = new Uint32Array(img.data.buffer);
    const scale = 255 / (hi - lo);
    const { nan, inf, zero, absent } = colors;
    // Locals, not the closure's `let`s, in the loop that may touch every cell.
    const cells = reduced;
    const n = nb;
    for (let r = 0; r < L; r++) {
      const o = r * stride;
      const po = r * w;
      for (let j = from; j < n; j++) {
        const v = cells[o + j];
        let c: number;
        // Finite values first (NaN fails both tests): a new colour domain repaints every cell.
        if (v > ABSENT && v < Infinity) {
          const i = ((v - lo) * scale) | 0;
          c = lut[i < 0 ? 0 : i > 255 ? 255 : i];
        } else if (v !== v) c = nan;
        else if (v === Infinity) c = inf;
        else if (v === -Infinity) c = zero;
        else if (v <= MISSING) c = 0;
        else c = absent;
        px[po + j] = c;
      }
    }
    if (nb > from) ctx.putImageData(img, 0, 0, from, 0, nb - from, h);
    const legendChanged = lo !== painted.lo || hi !== painted.hi || anyAbsent !== painted.absent;
    painted = { nb, lo, hi, absent: anyAbsent };
    layer.sourceWidth = nb;
    layer.x0 = 0;
    layer.x1 = nb * bucket;
    layer.y0 = 0;
    layer.y1 = L;
    // Attributes are written only when they change: each write invalidates the canvas's style.
    setAttr(canvas, 'data-buckets', String(nb));
    setAttr(canvas, 'data-bucket', String(bucket));
    setAttr(canvas, 'data-columns', String(matrix.columns));
    setAttr(canvas, 'data-xmax', String(xMax(matrix.columns)));
    setAttr(canvas, 'aria-label', `Heatmap of ${opts.valueLabel}: ${L} layers by ${matrix.columns} steps. Arrow keys move, Enter selects.`);
    if (legendChanged || from === 0) drawLegend();
  }

  let legendKey = '';
  let legendLo: HTMLElement | null = null;
  let legendHi: HTMLElement | null = null;

  /** The colour bar: rebuilt when its label, colours or swatches change, else only its two bounds are rewritten. */
  function drawLegend(): void {
    const fmt = (v: number): string => formatHeatValue(v, opts.formatValue);
    const p = opts.palette;
    const key = JSON.stringify([opts.valueLabel, p.nan, p.inf, p.zero, p.absent, painted.absent]);
    if (key !== legendKey || !legendLo || !legendHi) {
      legendKey = key;
      const stops = [0, 64, 128, 192, 255].map((i) => `${lutCss(lut, i)} ${Math.round((i / 255) * 100)}%`).join(', ');
      legend.replaceChildren();
      legendLo = document.createElement('span');
      const bar = document.createElement('span');
      bar.className = 'gs-colorbar-ramp';
      bar.style.background = `linear-gradient(to right, ${stops})`;
      legendHi = document.createElement('span');
      const label = document.createElement('span');
      label.className = 'gs-colorbar-label';
      label.textContent = opts.valueLabel;
      legend.append(label, legendLo, bar, legendHi, swatch('NaN', p.nan), swatch('Inf', p.inf), swatch('zero', p.zero));
      // Only runs with absent gradients (torch's set_to_none) have such cells.
      if (painted.absent) legend.append(swatch('no gradient', p.absent, 'gs-swatch-absent'));
    }
    const lo = fmt(domain[0]);
    const hi = fmt(domain[1]);
    if (legendLo.textContent !== lo) legendLo.textContent = lo;
    if (legendHi.textContent !== hi) legendHi.textContent = hi;
  }

  function rowTicks(): { value: number }[] {
    const L = matrix.rows;
    const h = chart ? chart.chartArea.bottom - chart.chartArea.top : el.clientHeight;
    const every = Math.max(1, Math.ceil(L / Math.max(1, Math.floor(h / 13))));
    const out: { value: number }[] = [];
    for (let r = 0; r < L; r += every) out.push({ value: r + 0.5 });
    return out;
  }

  const overlay = {
    id: 'gsHeatOverlay',
    afterLayout: (c: Chart) => {
      // Re-bucket when the drawing width changed (resize, first layout).
      areaWidth = c.chartArea.right - c.chartArea.left;
      if (reducedMatrix === null || wantBucket() !== bucket) paint(reduce());
    },
    afterDatasetsDraw: (c: Chart) => {
      const x = c.scales['x'];
      const y = c.scales['y'];
      if (!x || !y) return;
      const ctx = c.ctx;
      const a = c.chartArea;
      ctx.save();
      ctx.beginPath();
      ctx.rect(a.left, a.top, a.right - a.left, a.bottom - a.top);
      ctx.clip();
      // Outlines are stroked twice (dark, then light) so they read on every colour of the map.
      const twice = (draw: () => void, width: number): void => {
        ctx.lineWidth = width + 2;
        ctx.strokeStyle = 'rgba(0, 0, 0, 0.85)';
        draw();
        ctx.lineWidth = width;
        ctx.strokeStyle = 'rgba(255, 255, 255, 0.95)';
        draw();
      };
      const sel = opts.selected;
      if (sel && sel.row >= 0 && sel.row < matrix.rows) {
        const top = y.getPixelForValue(sel.row);
        const bot = y.getPixelForValue(sel.row + 1);
        twice(() => ctx.strokeRect(a.left + 1.5, Math.min(top, bot) + 1.5, a.right - a.left - 3, Math.max(1, Math.abs(bot - top) - 3)), 1);
        if (sel.step !== null) {
          const col = matrix.columnOfStep(sel.step);
          const px = Math.round(x.getPixelForValue(col + 0.5)) + 0.5;
          ctx.setLineDash([4, 3]);
          twice(() => {
            ctx.beginPath();
            ctx.moveTo(px, a.top);
            ctx.lineTo(px, a.bottom);
            ctx.stroke();
          }, 1);
          ctx.setLineDash([]);
        }
      }
      if (cursor) {
        const x0 = x.getPixelForValue(cursor.bucket * bucket);
        const x1 = x.getPixelForValue(Math.min(matrix.columns, (cursor.bucket + 1) * bucket));
        const y0 = y.getPixelForValue(cursor.row);
        const y1 = y.getPixelForValue(cursor.row + 1);
        twice(() => ctx.strokeRect(x0, Math.min(y0, y1), Math.max(2, x1 - x0), Math.abs(y1 - y0)), 2);
      }
      ctx.restore();
    },
  };

  // The first reduction waits for the first layout (afterLayout), when the drawing width is known.
  let chart: Chart | null = null;
  chart = new ChartJs(canvas, {
    type: 'scatter',
    data: { datasets: [] },
    options: chartOptions(),
    plugins: [bitmapPlugin(() => layer), overlay],
  });

  function chartOptions(): ChartOptions<'scatter'> {
    const ax = axisStyle(opts.palette);
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      events: [],
      plugins: { legend: { display: false }, tooltip: { enabled: false }, decimation: { enabled: false } },
      scales: {
        x: {
          type: 'linear',
          min: 0,
          max: xMax(matrix.columns),
          ...ax,
          grid: { display: false },
          title: { display: true, text: 'step', color: opts.palette.foreground },
          ticks: {
            color: opts.palette.foreground,
            maxRotation: 0,
            // Column starts only: with few columns (one optimizer's steps) Chart.js puts ticks at
            // half columns too, which would name a column twice.
            callback: (v) => {
              const x = Number(v);
              if (!Number.isInteger(x)) return '';
              const col = Math.min(matrix.columns - 1, Math.max(0, x));
              return matrix.columns > 0 && x < matrix.columns ? String(matrix.steps[col]) : '';
            },
          },
        },
        y: {
          type: 'linear',
          min: 0,
          max: Math.max(1, matrix.rows),
          reverse: true,
          ...ax,
          grid: { display: false },
          afterBuildTicks: (scale) => {
            scale.ticks = rowTicks();
          },
          ticks: {
            color: opts.palette.foreground,
            autoSkip: false,
            callback: (v) => {
              return shownNameEnd(matrix.layers[Math.floor(Number(v))] ?? '', 22).text;
            },
          },
        },
      },
    };
  }

  function cellAt(px: number, py: number): HeatmapCell | null {
    if (!chart) return null;
    const a = chart.chartArea;
    if (px < a.left || px >= a.right || py < a.top || py >= a.bottom || matrix.columns === 0) return null;
    const col = Math.floor(((px - a.left) / (a.right - a.left)) * xMax(matrix.columns));
    if (col >= matrix.columns) return null;
    const row = Math.floor(((py - a.top) / (a.bottom - a.top)) * matrix.rows);
    return cellOf(row, Math.floor(col / bucket));
  }

  function cellOf(row: number, bk: number): HeatmapCell | null {
    if (row < 0 || row >= matrix.rows || bk < 0 || bk >= nb) return null;
    const col0 = bk * bucket;
    const col1 = Math.min(matrix.columns, col0 + bucket);
    const col = matrix.argMax(row, col0, col1);
    return {
      row,
      layer: matrix.layers[row] ?? '',
      col0,
      col1,
      col,
      step: matrix.steps[col],
      value: reduced[row * stride + bk],
    };
  }

  function showTip(cell: HeatmapCell | null, px: number, py: number): void {
    if (!cell) {
      tip.hidden = true;
      return;
    }
    const s0 = matrix.steps[cell.col0];
    const s1 = matrix.steps[cell.col1 - 1];
    const steps = s0 === s1 ? `step ${s0}` : `steps ${s0}–${s1} (max at ${cell.step})`;
    tip.textContent = `${shownName(cell.layer).text} · ${steps} · ${opts.valueLabel} = ${formatHeatValue(cell.value, opts.formatValue)}`;
    tip.hidden = false;
    const w = wrap.clientWidth;
    tip.style.left = `${Math.min(px + 12, Math.max(0, w - tip.offsetWidth - 4))}px`;
    tip.style.top = `${py + 12}px`;
  }

  const onMove = (e: MouseEvent): void => {
    const r = canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    showTip(cellAt(x, y), x, y);
  };
  const onLeave = (): void => {
    tip.hidden = true;
  };
  const onClick = (e: MouseEvent): void => {
    const r = canvas.getBoundingClientRect();
    const cell = cellAt(e.clientX - r.left, e.clientY - r.top);
    if (cell) opts.onSelect?.(cell);
  };
  const onKey = (e: KeyboardEvent): void => {
    if (matrix.columns === 0 || matrix.rows === 0) return;
    const cur = cursor ?? { row: Math.max(0, opts.selected?.row ?? 0), bucket: nb - 1 };
    let { row, bucket: bk } = cur;
    const big = e.shiftKey ? 10 : 1;
    switch (e.key) {
      case 'ArrowUp':
        row -= 1;
        break;
      case 'ArrowDown':
        row += 1;
        break;
      case 'ArrowLeft':
        bk -= big;
        break;
      case 'ArrowRight':
        bk += big;
        break;
      case 'Home':
        bk = 0;
        break;
      case 'End':
        bk = nb - 1;
        break;
      case 'Enter':
      case ' ': {
        const cell = cellOf(row, bk);
        if (cell) opts.onSelect?.(cell);
        e.preventDefault();
        return;
      }
      case 'Escape':
        cursor = null;
        tip.hidden = true;
        chart?.draw();
        return;
      default:
        return;
    }
    e.preventDefault();
    cursor = { row: Math.max(0, Math.min(matrix.rows - 1, row)), bucket: Math.max(0, Math.min(nb - 1, bk)) };
    const cell = cellOf(cursor.row, cursor.bucket);
    if (chart && cell) {
      const x = chart.scales['x'].getPixelForValue(cell.col0);
      const y = chart.scales['y'].getPixelForValue(cell.row + 1);
      showTip(cell, x, y);
    }
    chart?.draw();
  };
  const onBlur = (): void => {
    cursor = null;
    tip.hidden = true;
    chart?.draw();
  };
  canvas.addEventListener('mousemove', onMove);
  canvas.addEventListener('mouseleave', onLeave);
  canvas.addEventListener('click', onClick);
  canvas.addEventListener('keydown', onKey);
  canvas.addEventListener('blur', onBlur);

  return {
    canvas,
    cellAt,
    update(next, patch) {
      const paletteChanged = patch?.palette !== undefined && patch.palette !== opts.palette;
      if (patch) opts = { ...opts, ...patch };
      if (paletteChanged) colors = paletteColors(opts.palette);
      const layoutChanged = next !== matrix && (next.rows !== matrix.rows || next.layers.some((l, i) => l !== matrix.layers[i]));
      matrix = next;
      if (cursor && cursor.row >= matrix.rows) cursor = null;
      const oldMax = chart?.options.scales?.['x']?.max;
      const first = reduce();
      // New NaN / Inf / zero / absent colours (a theme switch) apply to every bucket, not only the new ones.
      paint(paletteChanged ? 0 : first);
      if (!chart) return;
      if (paletteChanged || layoutChanged || patch) {
        chart.options = chartOptions();
        chart.update('none');
      } else if (oldMax !== xMax(matrix.columns)) {
        const xs = chart.options.scales?.['x'];
        if (xs) xs.max = xMax(matrix.columns);
        chart.update('none');
      } else chart.draw(); // same axes: only the bitmap changed, no layout needed
    },
    dispose() {
      canvas.removeEventListener('mousemove', onMove);
      canvas.removeEventListener('mouseleave', onLeave);
      canvas.removeEventListener('click', onClick);
      canvas.removeEventListener('keydown', onKey);
      canvas.removeEventListener('blur', onBlur);
      chart?.destroy();
      chart = null;
      el.replaceChildren();
    },
  };
}

function setAttr(el: Element, name: string, value: string): void {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

function paletteColors(p: Palette): { nan: number; inf: number; zero: number; absent: number } {
  return { nan: packRgba(toRgba(p.nan)), inf: packRgba(toRgba(p.inf)), zero: packRgba(toRgba(p.zero)), absent: packRgba(toRgba(p.absent)) };
}

function swatch(label: string, color: string, extraClass = ''): HTMLElement {
  const s = document.createElement('span');
  s.className = extraClass ? `gs-swatch ${extraClass}` : 'gs-swatch';
  const box = document.createElement('span');
  box.className = 'gs-swatch-box';
  box.style.background = color;
  s.append(box, document.createTextNode(label));
  return s;
}

/**
 * The per-cell alternative the issue asks to measure against: one fillRect per matrix cell (what a
 * matrix-controller chart does with one element per cell). Used by the bench only.
 */
export function drawCellsNaive(
  ctx: CanvasRenderingContext2D,
  matrix: HeatmapMatrix,
  area: { left: number; top: number; width: number; height: number },
  palette: Palette,
  domain: [number, number],
): void {
  const lut = cividisLut();
  const L = matrix.rows;
  const N = matrix.columns;
  const cw = area.width / N;
  const ch = area.height / L;
  const scale = 255 / (domain[1] - domain[0] || 1);
  for (let r = 0; r < L; r++) {
    for (let c = 0; c < N; c++) {
      const v = matrix.get(r, c);
      if (v !== v) ctx.fillStyle = palette.nan;
      else if (v === Infinity) ctx.fillStyle = palette.inf;
      else if (v === -Infinity) ctx.fillStyle = palette.zero;
      else if (v <= MISSING) continue;
      else if (v <= ABSENT) ctx.fillStyle = palette.absent;
      else ctx.fillStyle = lutCss(lut, ((v - domain[0]) * scale) | 0);
      ctx.fillRect(area.left + c * cw, area.top + r * ch, Math.max(cw, 0.5), ch);
    }
  }
}
