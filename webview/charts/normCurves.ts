// Norm curves: global gradient norm per step on a log axis (one line per optimizer when a run has
// several, whose steps interleave), the loss on a second (linear) axis,
// chosen per-layer norms, a compared run, and the clipping threshold. Long series go through
// Chart.js decimation (parsing: false, linear x). Non-finite points are never dropped: they break
// the line and are marked at the top edge (NaN, +Inf) or bottom edge (-Inf, and 0 on the log axis).
// A GAP (no gradient at that step: absent, not NaN) adds no point and no marker; the segment that
// spans it is dotted, so a head used on every other step still reads as a curve.
import type { ChartOptions, Chart, ChartDataset, Plugin } from 'chart.js';
import { formatNumber } from '../../src/core/protocol/float';
import { axisStyle, chartCanvas, ensureChartJs } from './chartSetup';
import type { Palette } from './theme';

/** A value meaning "no gradient here" (absent): the line breaks, nothing is marked. */
export const GAP = -Number.MAX_VALUE;

/** One curve. values may hold NaN / ±Inf / GAP. steps ascend. */
export interface Series {
  label: string;
  /** What keeps the series' dataset across updates, when the label (a cut name) may not be unique. */
  key?: string;
  steps: ArrayLike<number>;
  values: ArrayLike<number>;
  color: string;
  dashed?: boolean;
}

export interface NormCurvesData {
  /** The global norm: one series, or one per optimizer. */
  globalNorms: Series[];
  /** The loss: none, one, or one per optimizer. */
  losses: Series[];
  layers: Series[];
  compare: Series | null;
  clipNorm: number | null;
}

export interface NormCurvesOptions {
  palette: Palette;
  /** Selected step, drawn as a vertical line. */
  selectedStep?: number | null;
}

export interface NormCurvesHandle {
  update(data: NormCurvesData, options?: Partial<NormCurvesOptions>): void;
  readonly canvas: HTMLCanvasElement;
  dispose(): void;
}

type Pt = { x: number; y: number | null };
type Mark = { x: number; kind: 'nan' | 'inf' | 'low' };

/**
 * Points and non-finite markers of one series, extended in place when the series only grew: the same
 * values array (the model's curve, which an append extends in place) with more entries. A curve the
 * model replaced (a snapshot, another rank or optimizer: new arrays, maybe of the same steps) is
 * read again whole.
 */
interface Cache {
  src: ArrayLike<number>;
  points: Pt[];
  marks: Mark[];
  /** Steps with no gradient (GAP), ascending. */
  gaps: number[];
  len: number;
  lastStep: number;
  log: boolean;
}

function extend(cache: Cache | undefined, s: Series, log: boolean): Cache {
  const n = s.steps.length;
  let c = cache;
  if (!c || c.src !== s.values || c.log !== log || n < c.len || (c.len > 0 && s.steps[c.len - 1] !== c.lastStep)) {
    c = { src: s.values, points: [], marks: [], gaps: [], len: 0, lastStep: NaN, log };
  }
  for (let i = c.len; i < n; i++) {
    const x = s.steps[i];
    const v = s.values[i];
    if (v === GAP) c.gaps.push(x);
    else if (v !== v) {
      c.points.push({ x, y: null });
      c.marks.push({ x, kind: 'nan' });
    } else if (v === Infinity || v === -Infinity) {
      c.points.push({ x, y: null });
      c.marks.push({ x, kind: v > 0 ? 'inf' : 'low' });
    } else if (log && v <= 0) {
      c.points.push({ x, y: null });
      c.marks.push({ x, kind: 'low' });
    } else c.points.push({ x, y: v });
  }
  c.len = n;
  c.lastStep = n > 0 ? s.steps[n - 1] : NaN;
  return c;
}

/** Whether a step with no gradient lies strictly between x0 and x1 (gaps ascending). */
function spansGap(gaps: readonly number[], x0: number, x1: number): boolean {
  let lo = 0;
  let hi = gaps.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (gaps[m] <= x0) lo = m + 1;
    else hi = m;
  }
  return lo < gaps.length && gaps[lo] < x1;
}

export function renderNormCurves(el: HTMLElement, data: NormCurvesData, options: NormCurvesOptions): NormCurvesHandle {
  const ChartJs = ensureChartJs();
  let opts = options;
  let current = data;
  const caches = new Map<string, Cache>();
  const dsByKey = new Map<string, ChartDataset<'line', Pt[]>>();
  const assigned = new Map<string, Pt[]>();
  // The markers of each drawn series; `loss`: the loss's (on y2), drawn apart from the gradients'.
  let markSets: { marks: Mark[]; color: string; loss: boolean }[] = [];

  el.classList.add('gs-norms');
  const { wrap, canvas } = chartCanvas();
  el.append(wrap);

  const markers: Plugin = {
    id: 'gsNonFinite',
    afterDatasetsDraw(chart) {
      const x = chart.scales['x'];
      if (!x) return;
      const { ctx, chartArea: a } = chart;
      const p = opts.palette;
      ctx.save();
      for (const set of markSets) {
        let lastPx = -1;
        let lastKind = '';
        for (const m of set.marks) {
          const px = Math.round(x.getPixelForValue(m.x));
          if (px < a.left - 1 || px > a.right + 1) continue;
          if (px === lastPx && m.kind === lastKind) continue;
          lastPx = px;
          lastKind = m.kind;
          const color = m.kind === 'nan' ? p.nan : m.kind === 'inf' ? p.inf : p.zero;
          // The loss's markers are hollow, one row in from the edge: a NaN loss and a NaN gradient at
          // the same step are two things, both seen.
          const inset = set.loss ? LOSS_MARK_INSET : 0;
          ctx.beginPath();
          if (m.kind === 'low') {
            ctx.moveTo(px - 4, a.bottom - inset);
            ctx.lineTo(px + 4, a.bottom - inset);
            ctx.lineTo(px, a.bottom - inset - 7);
          } else {
            ctx.moveTo(px - 4, a.top + inset);
            ctx.lineTo(px + 4, a.top + inset);
            ctx.lineTo(px, a.top + inset + 7);
          }
          ctx.closePath();
          if (set.loss) {
            ctx.strokeStyle = color;
            ctx.lineWidth = 1.5;
            ctx.stroke();
          } else {
            ctx.fillStyle = color;
            ctx.fill();
          }
        }
      }
      const sel = opts.selectedStep;
      if (sel !== null && sel !== undefined) {
        const px = x.getPixelForValue(sel);
        if (px >= a.left && px <= a.right) {
          ctx.strokeStyle = p.muted;
          ctx.setLineDash([3, 3]);
          ctx.beginPath();
          ctx.moveTo(px, a.top);
          ctx.lineTo(px, a.bottom);
          ctx.stroke();
        }
      }
      ctx.restore();
    },
    afterDraw(chart) {
      const a = chart.chartArea;
      const y = chart.scales['y'];
      chart.canvas.dataset['area'] = [a.left, a.top, a.right, a.bottom].map((v) => Math.round(v)).join(',');
      if (y) chart.canvas.dataset['yRange'] = `${y.min},${y.max}`;
    },
  };

  function datasets(): ChartDataset<'line', Pt[]>[] {
    const p = opts.palette;
    const d = current;
    const used = new Set<string>();
    const out: ChartDataset<'line', Pt[]>[] = [];
    markSets = [];
    const add = (s: Series, axis: 'y' | 'y2', width: number, key: string): void => {
      used.add(key);
      const c = extend(caches.get(key), s, axis === 'y');
      caches.set(key, c);
      markSets.push({ marks: c.marks, color: s.color, loss: axis === 'y2' });
      // Dataset objects are kept across updates (Chart.js keys its element caches by them), and
      // their point arrays only grow, so an append costs the new points only.
      let ds = dsByKey.get(key);
      if (!ds) {
        ds = {
          label: s.label,
          data: c.points,
          pointRadius: 0,
          pointHoverRadius: 3,
          spanGaps: false,
          tension: 0,
        };
        dsByKey.set(key, ds);
        assigned.set(key, c.points);
      } else if (assigned.get(key) !== c.points) {
        ds.data = c.points;
        assigned.set(key, c.points);
      }
      // Per-segment styling makes Chart.js resolve a scriptable option for every drawn segment
      // (most of a redraw's time), so only a series that has steps without a gradient gets it.
      if (c.gaps.length > 0) ds.segment ??= { borderDash: (sc) => (spansGap(caches.get(key)?.gaps ?? [], sc.p0.parsed.x ?? NaN, sc.p1.parsed.x ?? NaN) ? [1, 3] : undefined) };
      else delete ds.segment;
      ds.label = s.label;
      ds.yAxisID = axis;
      ds.borderColor = s.color;
      ds.backgroundColor = s.color;
      ds.borderWidth = width;
      ds.borderDash = s.dashed ? [5, 4] : [];
      out.push(ds);
    };
    for (const s of d.globalNorms) add(s, 'y', 2, `global:${s.label}`);
    if (d.compare) add(d.compare, 'y', 1.5, `compare:${d.compare.label}`);
    for (const s of d.layers) add(s, 'y', 1.25, `layer:${s.key ?? s.label}`);
    for (const s of d.losses) if (s.steps.length > 0) add(s, 'y2', 1, `loss:${s.label}`);
    const drawn = d.globalNorms.filter((s) => s.steps.length > 0);
    if (d.clipNorm !== null && d.clipNorm > 0 && drawn.length > 0) {
      const x0 = Math.min(...drawn.map((s) => s.steps[0]));
      const x1 = Math.max(...drawn.map((s) => s.steps[s.steps.length - 1]));
      out.push({
        label: `clip ${formatNumber(d.clipNorm)}`,
        data: [
          { x: x0, y: d.clipNorm },
          { x: Math.max(x1, x0 + 1), y: d.clipNorm },
        ],
        yAxisID: 'y',
        borderColor: p.clip,
        backgroundColor: p.clip,
        borderWidth: 1,
        borderDash: [2, 3],
        pointRadius: 0,
      });
    }
    const kinds = new Set(markSets.flatMap((m) => (m.marks.length > 0 ? m.marks.map((k) => k.kind) : [])));
    if (kinds.has('nan')) out.push(legendOnly('NaN', p.nan));
    if (kinds.has('inf')) out.push(legendOnly('Inf', p.inf));
    if (kinds.has('low')) out.push(legendOnly('0 / -Inf', p.zero));
    if (markSets.some((m) => m.loss && m.marks.length > 0)) out.push(legendOnly('loss not finite (hollow)', p.muted));
    for (const k of [...caches.keys()]) if (!used.has(k)) caches.delete(k);
    for (const k of [...dsByKey.keys()])
      if (!used.has(k)) {
        dsByKey.delete(k);
        assigned.delete(k);
      }
    // What is drawn, for tests and tools: each line's label, colour, point count and last point's value.
    canvas.dataset['series'] = JSON.stringify(
      out.map((s) => {
        const pts = assigned.get([...dsByKey].find(([, v]) => v === s)?.[0] ?? '') ?? s.data;
        const last = pts.at(-1);
        return { label: s.label, color: s.borderColor, points: pts.length, last: last && typeof last === 'object' ? last.y : null };
      }),
    );
    canvas.dataset['gaps'] = JSON.stringify(Object.fromEntries([...caches].filter(([, c]) => c.gaps.length > 0).map(([k, c]) => [k, c.gaps.length])));
    canvas.setAttribute('aria-label', `Gradient norm curves: ${out.map((s) => s.label).join(', ')}`);
    return out;
  }

  function chartOptions(): ChartOptions<'line'> {
    const p = opts.palette;
    const ax = axisStyle(p);
    const hasLoss = showsLoss(current);
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      plugins: {
        decimation: { enabled: true, algorithm: 'min-max' },
        legend: { labels: { color: p.foreground, boxWidth: 14, boxHeight: 2 } },
        tooltip: {
          callbacks: {
            title: (items) => (items[0] ? `step ${items[0].parsed.x}` : ''),
          },
        },
      },
      scales: {
        x: { type: 'linear', ...ax, title: { display: true, text: 'step', color: p.foreground }, ticks: { color: p.foreground, maxRotation: 0 } },
        y: {
          type: 'logarithmic',
          ...ax,
          title: { display: true, text: 'gradient norm (log)', color: p.foreground },
          // Only powers of ten, thinned to about 8: Chart.js measures every tick label on each update.
          // A range within one decade (one optimizer's steps, a steady run) has none: then its bounds.
          afterBuildTicks: (scale) => {
            const pow = scale.ticks.filter((t) => logTick(t.value) !== '');
            const every = Math.ceil(pow.length / 8);
            scale.ticks = pow.length > 0 ? pow.filter((_, i) => i % every === 0) : scale.min > 0 ? [{ value: scale.min }, { value: scale.max }] : [];
          },
          ticks: { color: p.foreground, callback: (v) => logTick(Number(v)) || Number(Number(v).toPrecision(2)).toString() },
        },
        y2: { type: 'linear', position: 'right', display: hasLoss, ...ax, grid: { drawOnChartArea: false }, title: { display: true, text: 'loss', color: p.foreground } },
      },
    };
  }

  let chart: Chart<'line', Pt[]> | null = new ChartJs<'line', Pt[]>(canvas, {
    type: 'line',
    data: { datasets: datasets() },
    options: chartOptions(),
    plugins: [markers],
  });

  return {
    canvas,
    update(next, patch) {
      if (!chart) return;
      const restyle = patch !== undefined && patch.palette !== undefined;
      if (patch) opts = { ...opts, ...patch };
      const lossShown = showsLoss(current);
      current = next;
      const lossNow = showsLoss(current);
      chart.data.datasets = datasets();
      if (restyle || lossShown !== lossNow) chart.options = chartOptions();
      chart.update('none');
    },
    dispose() {
      chart?.destroy();
      chart = null;
      el.replaceChildren();
    },
  };
}

/**
 * Whether the loss axis is shown: some loss is a number. A loss that is NaN or ±Inf at every step has
 * its markers (which need no axis) and no axis, whose 0–1 ticks would read as a scale of the loss.
 */
const showsLoss = (d: NormCurvesData): boolean =>
  d.losses.some((s) => {
    for (let i = 0; i < s.values.length; i++) if (Number.isFinite(s.values[i])) return true;
    return false;
  });

/** Labels powers of ten only: 0.01, 0.1, 1, 10, 100, 1000, then 1e4, 1e5 … */
export function logTick(v: number): string {
  if (!(v > 0)) return '';
  const l = Math.log10(v);
  const k = Math.round(l);
  if (Math.abs(l - k) > 1e-6) return '';
  return k >= -2 && k <= 3 ? String(Number(v.toPrecision(1))) : `1e${k}`;
}

/** Pixels between the plot's edge and the loss's non-finite markers (the gradients' are at the edge). */
const LOSS_MARK_INSET = 9;

function legendOnly(label: string, color: string): ChartDataset<'line', Pt[]> {
  return { label, data: [], borderColor: color, backgroundColor: color, borderWidth: 6, pointRadius: 0 };
}
