// RunStore → the panel's view model (PanelSnapshot, PanelAppend). Pure: no vscode, no DOM, so the
// CLI's HTML report and the live panel draw the same numbers.
//
// Alignment: tensors can appear mid-run, and the store folds old steps into envelope buckets, so
// series of different tensors need not share steps. The column grid is taken from the tensor that
// has been known longest (its buckets + recent steps); every other series' points are placed in the
// column whose step range contains them. A layer's norm in a folded column combines the tensors'
// bucket maxima, an upper bound of the true layer norm over that bucket (spikes survive folding).
//
// Absent gradients (a tensor with no gradient at a step) are their own state, never NaN: a heatmap
// cell where no tensor of the layer was present but one was absent is 'absent', and a layer's norm
// curve has a gap there (an index in `absent`, value null), not a NaN point.
import type { Finding } from '../analysis/finding';
import type { DetailMsg, StatName, TensorInfo } from '../protocol/messages';
import { runWarnings, type RunWarningExit } from '../report/warnings';
import { BUCKET_ALL_ABSENT, FLAG_NAN, FLAG_NEG_INF, FLAG_POS_INF, type Curve, type RunStore, type Series, type SeriesOptions } from '../store/runStore';
import type {
  HeatmapMetric,
  PanelAppend,
  PanelCurve,
  PanelHeatmap,
  PanelOptimizer,
  PanelOptimizerCurves,
  PanelRunHeader,
  PanelSnapshot,
  PanelTensor,
  PanelTensorDetail,
  PanelView,
} from './messages';

type Cell = PanelHeatmap['values'][number];

export function toPanelCurve(steps: ArrayLike<number>, values: ArrayLike<number>, from = 0): PanelCurve {
  const out: PanelCurve = { steps: [], values: [] };
  const nan: number[] = [];
  const inf: number[] = [];
  for (let i = from; i < steps.length; i++) {
    const v = values[i];
    const k = out.steps.length;
    out.steps.push(steps[i]);
    if (Number.isFinite(v)) out.values.push(v);
    else {
      out.values.push(null);
      (Number.isNaN(v) ? nan : inf).push(k);
    }
  }
  if (nan.length) out.nan = nan;
  if (inf.length) out.inf = inf;
  return out;
}

const curveOf = (c: Curve, sinceStep = -Infinity): PanelCurve => toPanelCurve(c.steps, c.values, firstAfter(c.steps, sinceStep));

/** Index of the first element > x in an ascending array. */
function firstAfter(steps: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (steps[m] <= x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

export function panelTensors(tensors: readonly TensorInfo[]): PanelTensor[] {
  return tensors.map((t) => ({ id: t.id, name: t.name, layer: t.layer, layerType: t.layerType, shape: [...t.shape], source: t.source ? { ...t.source } : null }));
}

/** Layers in model order: the order in which their first tensor became known. */
export function layersInOrder(tensors: readonly TensorInfo[]): string[] {
  return [...new Set(tensors.map((t) => t.layer))];
}

interface Point {
  first: number;
  last: number;
  value: number;
  flags: number;
  /** The tensor had no gradient here (every step of a folded bucket): not a value. */
  absent: boolean;
}

/**
 * A series as points after `sinceStep`, oldest first: envelope buckets (with their max) then recent
 * steps, present and absent ones merged in step order.
 */
function points(s: Series, sinceStep = -Infinity): Point[] {
  const e = s.envelope;
  const out: Point[] = [];
  if (e.stepLast.length && e.stepLast[e.stepLast.length - 1] > sinceStep) {
    for (let i = 0; i < e.stepFirst.length; i++) {
      if (e.stepLast[i] > sinceStep) out.push({ first: e.stepFirst[i], last: e.stepLast[i], value: e.max[i], flags: e.flags[i], absent: e.absent[i] === BUCKET_ALL_ABSENT });
    }
  }
  let i = firstAfter(s.steps, sinceStep);
  let j = firstAfter(s.absentSteps, sinceStep);
  while (i < s.steps.length || j < s.absentSteps.length) {
    if (j >= s.absentSteps.length || (i < s.steps.length && s.steps[i] <= s.absentSteps[j])) {
      const v = s.values[i];
      const flags = Number.isNaN(v) ? FLAG_NAN : v === Infinity ? FLAG_POS_INF : v === -Infinity ? FLAG_NEG_INF : 0;
      out.push({ first: s.steps[i], last: s.steps[i], value: v, flags, absent: false });
      i++;
    } else {
      const a = s.absentSteps[j++];
      out.push({ first: a, last: a, value: NaN, flags: 0, absent: true });
    }
  }
  return out;
}

interface Grid {
  first: number[];
  last: number[];
  sinceStep: number;
  /** Which steps the series are read at (one optimizer's, or all). */
  sel: SeriesOptions;
}

function gridOf(store: RunStore, sinceStep: number, sel: SeriesOptions = {}): Grid {
  const grid: Grid = { first: [], last: [], sinceStep, sel };
  let best: Point[] = [];
  for (const t of store.tensors) {
    const p = points(store.series(t.id, 'norm', sel), sinceStep);
    if (p.length && (!best.length || p[0].first < best[0].first || (p[0].first === best[0].first && p.length > best.length))) best = p;
  }
  for (const p of best) {
    grid.first.push(p.first);
    grid.last.push(p.last);
  }
  return grid;
}

/** Column of a point: the first column whose last step ≥ the point's last step (or -1). */
function columnOf(grid: Grid, step: number): number {
  let lo = 0;
  let hi = grid.last.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (grid.last[m] < step) lo = m + 1;
    else hi = m;
  }
  return lo < grid.last.length ? lo : -1;
}

/** Per layer × column accumulation of one statistic over the layer's tensors. */
function accumulate(
  store: RunStore,
  grid: Grid,
  layers: string[],
  stat: StatName,
  combine: 'sumsq' | 'max',
): { values: Float64Array; flags: Uint8Array; seen: Uint8Array; absent: Uint8Array; finite: Uint8Array } {
  const nCols = grid.last.length;
  const values = new Float64Array(layers.length * nCols);
  const flags = new Uint8Array(layers.length * nCols);
  const seen = new Uint8Array(layers.length * nCols);
  const absent = new Uint8Array(layers.length * nCols);
  // Cells with at least one finite value: maxAbs, paramNorm and updateNorm are NaN on the steps that
  // did not measure them (the torch probe's sampled tier), and a cell of such steps only has no value.
  const finite = new Uint8Array(layers.length * nCols);
  const row = new Map(layers.map((l, i) => [l, i]));
  for (const t of store.tensors) {
    const r = row.get(t.layer);
    if (r === undefined) continue;
    for (const p of points(store.series(t.id, stat, grid.sel), grid.sinceStep)) {
      if (p.last < (grid.first[0] ?? Infinity)) continue;
      const c = columnOf(grid, p.last);
      if (c < 0) continue;
      const k = r * nCols + c;
      if (p.absent) {
        absent[k] = 1;
        continue;
      }
      seen[k] = 1;
      flags[k] |= p.flags;
      if (!Number.isFinite(p.value)) continue;
      finite[k] = 1;
      values[k] = combine === 'sumsq' ? values[k] + p.value * p.value : Math.max(values[k], p.value);
    }
  }
  if (combine === 'sumsq') for (let k = 0; k < values.length; k++) values[k] = Math.sqrt(values[k]);
  return { values, flags, seen, absent, finite };
}

function nonFiniteCells(store: RunStore, grid: Grid, layers: string[]): Uint8Array {
  const nan = accumulate(store, grid, layers, 'nanCount', 'max');
  const inf = accumulate(store, grid, layers, 'infCount', 'max');
  const out = new Uint8Array(nan.values.length);
  for (let k = 0; k < out.length; k++) {
    if (nan.values[k] > 0 || nan.flags[k] & FLAG_NAN) out[k] = FLAG_NAN;
    else if (inf.values[k] > 0) out[k] = FLAG_POS_INF;
  }
  return out;
}

const log10 = (v: number): Cell => (v > 0 ? Math.log10(v) : v === 0 ? '-Inf' : null);

/**
 * Layers × steps heatmap for one metric, for steps after `sinceStep` (all when omitted), of all
 * steps or of one optimizer's (`sel.optimizer`).
 */
export function buildHeatmap(store: RunStore, metric: HeatmapMetric, sinceStep = -Infinity, sel: SeriesOptions = {}): PanelHeatmap {
  const layers = layersInOrder(store.tensors);
  const grid = gridOf(store, sinceStep, sel);
  const nCols = grid.last.length;
  const cells = new Array<Cell>(layers.length * nCols).fill(null);
  if (metric === 'zeroFrac') {
    fillZeroFrac(store, grid, layers, cells);
  } else {
    const bad = nonFiniteCells(store, grid, layers);
    let main: ReturnType<typeof accumulate>;
    let denom: ReturnType<typeof accumulate> | null = null;
    if (metric === 'norm') main = accumulate(store, grid, layers, 'norm', 'sumsq');
    else if (metric === 'maxAbs') main = accumulate(store, grid, layers, 'maxAbs', 'max');
    else {
      main = accumulate(store, grid, layers, 'updateNorm', 'sumsq');
      denom = accumulate(store, grid, layers, 'paramNorm', 'sumsq');
    }
    for (let k = 0; k < cells.length; k++) {
      if (bad[k] & FLAG_NAN) cells[k] = 'NaN';
      else if (bad[k] & FLAG_POS_INF) cells[k] = 'Inf';
      else if (!main.seen[k]) cells[k] = main.absent[k] ? 'absent' : null;
      else if (metric === 'maxAbs' && !main.finite[k])
        cells[k] = null; // not measured at these steps
      else if (denom) cells[k] = denom.values[k] > 0 && main.values[k] > 0 ? Math.log10(main.values[k] / denom.values[k]) : null;
      else cells[k] = log10(main.values[k]);
    }
  }
  return { metric, layers, steps: grid.last.slice(), values: cells };
}

function fillZeroFrac(store: RunStore, grid: Grid, layers: string[], cells: Cell[]): void {
  const nCols = grid.last.length;
  const row = new Map(layers.map((l, i) => [l, i]));
  const sum = new Float64Array(cells.length);
  const weight = new Float64Array(cells.length);
  for (const t of store.tensors) {
    const r = row.get(t.layer);
    if (r === undefined) continue;
    const size = t.shape.reduce((a, b) => a * b, 1) || 1;
    for (const d of store.details(t.id)) {
      const c = columnOf(grid, d.step);
      if (c < 0 || d.step < (grid.first[0] ?? Infinity)) continue;
      sum[r * nCols + c] += d.zeroFrac * size;
      weight[r * nCols + c] += size;
    }
  }
  for (let k = 0; k < cells.length; k++) cells[k] = weight[k] > 0 ? sum[k] / weight[k] : null;
}

/**
 * Per-layer gradient norm curves: sqrt of the sum of the layer's tensors' squared norms per column.
 * A column where the layer had no gradient is a gap (null, listed in `absent`), not a NaN point.
 */
export function buildLayerNorms(store: RunStore, sinceStep = -Infinity, sel: SeriesOptions = {}): Record<string, PanelCurve> {
  const layers = layersInOrder(store.tensors);
  const grid = gridOf(store, sinceStep, sel);
  const acc = accumulate(store, grid, layers, 'norm', 'sumsq');
  const bad = nonFiniteCells(store, grid, layers);
  const nCols = grid.last.length;
  const out: Record<string, PanelCurve> = {};
  layers.forEach((layer, r) => {
    const steps: number[] = [];
    const values: number[] = [];
    const gaps: number[] = [];
    for (let c = 0; c < nCols; c++) {
      const k = r * nCols + c;
      if (!acc.seen[k]) {
        if (acc.absent[k]) {
          gaps.push(steps.length);
          steps.push(grid.last[c]);
          values.push(0);
        }
        continue;
      }
      steps.push(grid.last[c]);
      values.push(bad[k] & FLAG_NAN ? NaN : acc.values[k]);
    }
    const curve = toPanelCurve(steps, values);
    for (const g of gaps) curve.values[g] = null;
    if (gaps.length) curve.absent = gaps;
    out[layer] = curve;
  });
  return out;
}

export function buildTensorDetail(store: RunStore, tensorId: number, step: number | null): PanelTensorDetail {
  const details = store.details(tensorId);
  const histograms = details.map((d) => ({ step: d.step, histLo: d.histLo, histHi: d.histHi, counts: Array.from(d.hist) }));
  let chosen: DetailMsg | undefined;
  const latest = store.latestDetail(tensorId);
  const candidates = latest && !details.includes(latest) ? [...details, latest] : details;
  for (const d of candidates) {
    if (step !== null && d.step > step) continue;
    if (d.thumb.length && (!chosen || d.step >= chosen.step)) chosen = d;
  }
  if (!chosen && step === null && latest?.thumb.length) chosen = latest;
  const statsFrom = [...candidates].reverse().find((d) => step === null || d.step <= step) ?? latest;
  return {
    tensorId,
    histograms,
    thumbnail: chosen ? { step: chosen.step, rows: chosen.thumbRows, cols: chosen.thumbCols, values: Array.from(chosen.thumb) } : null,
    stats: statsFrom ? { step: statsFrom.step, mean: statsFrom.mean, std: statsFrom.std, zeroFrac: statsFrom.zeroFrac } : null,
  };
}

/** The run header shared by the live panel and the report. */
export function runHeader(store: RunStore, run: { runId: string; script: string; status: PanelRunHeader['status']; statusMessage: string; stepsPerSec?: number | null }): PanelRunHeader {
  const hello = store.hello;
  return {
    runId: run.runId,
    script: run.script,
    backend: hello?.backend ?? null,
    device: hello?.device ?? null,
    backendReason: hello?.backendReason ?? null,
    status: run.status,
    statusMessage: run.statusMessage,
    step: store.lastStep,
    stepsPerSec: run.stepsPerSec ?? null,
    droppedFrames: store.events.filter((e) => e.kind === 'dropped').reduce((a, e) => a + (e.count ?? 0), 0),
    clipNorm: [...store.events].reverse().find((e) => e.kind === 'clip' && e.value !== undefined && Number.isFinite(e.value))?.value ?? null,
    warnings: runWarnings(store, warningExit(run.status)),
  };
}

/** How a run with this status ended, for runWarnings: live runs conclude nothing yet. */
function warningExit(status: PanelRunHeader['status']): RunWarningExit {
  switch (status) {
    case 'starting':
    case 'running':
      return null;
    case 'saved':
      return { reason: null };
    case 'completed':
    case 'crashed':
    case 'stopped':
    case 'step-limit':
    case 'time-limit':
    case 'protocol-error':
    case 'probe-lost':
      return { reason: status };
  }
}

/**
 * Everything the HTML report needs: the snapshot, every tensor's detail, and with two or more
 * optimizers the view of each one's steps (the report's picker switches between them offline).
 */
export function reportData(store: RunStore, header: PanelRunHeader, findings: Finding[]): { snapshot: PanelSnapshot; details: PanelTensorDetail[]; views: PanelView[] } {
  const snapshot = buildSnapshot(store, { header, findings, metric: 'norm', compare: null, savedRuns: [] });
  const views = snapshot.optimizers.length >= 2 ? snapshot.optimizers.map((o) => buildView(store, 'norm', o.id)) : [];
  return { snapshot, details: store.tensors.map((t) => buildTensorDetail(store, t.id, null)), views };
}

export interface SnapshotContext {
  header: PanelRunHeader;
  findings: Finding[];
  metric: HeatmapMetric;
  /** Show only this optimizer's steps in every chart (null or absent: all). */
  optimizer?: number | null;
  compare: PanelSnapshot['compare'];
  savedRuns: PanelSnapshot['savedRuns'];
}

/** The run's optimizers for the panel's picker. */
export function panelOptimizers(store: RunStore): PanelOptimizer[] {
  return store.optimizers.map((o) => ({ id: o.id, name: o.name, className: o.className, mode: o.mode, steps: o.steps }));
}

/** Series options for the optimizer shown: an id the run does not have shows all steps. */
export function optimizerSelection(store: RunStore, optimizer: number | null | undefined): SeriesOptions {
  return optimizer !== null && optimizer !== undefined && store.optimizers.some((o) => o.id === optimizer) ? { optimizer } : {};
}

/**
 * Global norm and loss of the steps shown, after `sinceStep`: one optimizer's (`sel.optimizer`), or
 * all steps, and then with two or more optimizers also each one's own curves (`byOptimizer`).
 */
export function buildCurves(store: RunStore, sel: SeriesOptions, sinceStep = -Infinity): Pick<PanelView, 'globalNorm' | 'loss' | 'byOptimizer'> {
  const globalNorm = curveOf(store.globalNorm(sel), sinceStep);
  const loss = curveOf(store.loss(sel), sinceStep);
  const ids = sel.optimizer === undefined ? store.curveOptimizers : [];
  if (ids.length < 2) return { globalNorm, loss, byOptimizer: [] };
  const names = new Map(store.optimizers.map((o) => [o.id, o.name] as const));
  const losses = ids.map((id) => store.loss({ optimizer: id }));
  const perLoss = losses.filter((c) => c.steps.length > 0).length >= 2;
  const byOptimizer: PanelOptimizerCurves[] = ids.map((id, i) => ({
    id,
    name: names.get(id) ?? `optimizer ${id}`,
    globalNorm: curveOf(store.globalNorm({ optimizer: id }), sinceStep),
    loss: perLoss && losses[i].steps.length > 0 ? curveOf(losses[i], sinceStep) : null,
  }));
  return { globalNorm, loss, byOptimizer };
}

/** Which optimizers have curves of their own in a view, and whether each has its loss: a change needs a full resend. */
export function byOptimizerShape(v: Pick<PanelView, 'byOptimizer'>): string {
  return v.byOptimizer.map((c) => `${c.id}${c.loss ? '+loss' : ''}`).join(',');
}

/** Every chart's data for one choice of the optimizer picker (an id the run does not have: all steps). */
export function buildView(store: RunStore, metric: HeatmapMetric, optimizer: number | null = null): PanelView {
  const sel = optimizerSelection(store, optimizer);
  return {
    optimizer: sel.optimizer ?? null,
    ...buildCurves(store, sel),
    layerNorms: buildLayerNorms(store, -Infinity, sel),
    heatmap: buildHeatmap(store, metric, -Infinity, sel),
  };
}

export function buildSnapshot(store: RunStore, ctx: SnapshotContext): PanelSnapshot {
  return {
    header: ctx.header,
    optimizers: panelOptimizers(store),
    tensors: panelTensors(store.tensors),
    layers: layersInOrder(store.tensors),
    ...buildView(store, ctx.metric, ctx.optimizer),
    findings: ctx.findings,
    compare: ctx.compare,
    savedRuns: ctx.savedRuns,
  };
}

/** What arrived after `sinceStep`: the live delta. `knownTensors` is how many tensors the webview has. */
export function buildAppend(
  store: RunStore,
  sinceStep: number,
  knownTensors: number,
  header: PanelRunHeader,
  metric: HeatmapMetric,
  findings: Finding[] | null,
  optimizer: number | null = null,
): PanelAppend {
  const sel = optimizerSelection(store, optimizer);
  const tensors = panelTensors(store.tensors.slice(knownTensors));
  const before = new Set(layersInOrder(store.tensors.slice(0, knownTensors)));
  return {
    header,
    ...buildCurves(store, sel, sinceStep),
    layerNorms: buildLayerNorms(store, sinceStep, sel),
    heatmap: buildHeatmap(store, metric, sinceStep, sel),
    tensors,
    layers: layersInOrder(store.tensors).filter((l) => !before.has(l)),
    findings,
    optimizers: panelOptimizers(store),
  };
}

/** Global-norm overlay of a saved run, for before/after comparisons. */
export function compareCurve(store: RunStore): PanelCurve {
  return curveOf(store.globalNorm());
}
