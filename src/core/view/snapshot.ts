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
import { encodeFloat, WIRE_ABSENT, WIRE_NAN, WIRE_NEG_INF, WIRE_POS_INF } from '../protocol/float';
import { BUCKET_ALL_ABSENT, FLAG_NAN, FLAG_NEG_INF, FLAG_POS_INF, type Curve, type RunStore, type Series, type SeriesOptions } from '../store/runStore';
import type {
  HeatmapMetric,
  PanelAppend,
  PanelCurve,
  PanelHeatmap,
  PanelOptimizer,
  PanelOptimizerCurves,
  PanelRanks,
  PanelReplace,
  PanelRunHeader,
  PanelSnapshot,
  PanelTensor,
  PanelTensorDetail,
  PanelView,
} from './messages';

type Cell = PanelHeatmap['values'][number];

/** A curve for the wire: each value through the one float codec (NaN and ±Inf by name). */
export function toPanelCurve(steps: ArrayLike<number>, values: ArrayLike<number>, from = 0): PanelCurve {
  const n = Math.max(0, steps.length - from);
  const out: PanelCurve = { steps: new Array<number>(n), values: new Array<PanelCurve['values'][number]>(n) };
  for (let i = 0; i < n; i++) {
    out.steps[i] = steps[from + i];
    out.values[i] = encodeFloat(values[from + i]);
  }
  return out;
}

const curveOf = (c: Curve): PanelCurve => toPanelCurve(c.steps, c.values);

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
 * A series as points, oldest first: envelope buckets (with their max) then recent steps, present and
 * absent ones merged in step order. The store already cut it to the steps asked for (`since`).
 */
function points(s: Series): Point[] {
  const e = s.envelope;
  const out: Point[] = [];
  for (let i = 0; i < e.stepFirst.length; i++) {
    out.push({ first: e.stepFirst[i], last: e.stepLast[i], value: e.max[i], flags: e.flags[i], absent: e.absent[i] === BUCKET_ALL_ABSENT });
  }
  let i = 0;
  let j = 0;
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

/**
 * One view's reading of the store: each statistic's series read once per tensor (only the steps
 * asked for), and the column grid taken once from the norm series, shared by the layer curves and
 * the heatmap.
 */
class ViewReader {
  private readonly read = new Map<StatName, Point[][]>();
  /** Column grid: first and last step of each column. */
  readonly first: number[] = [];
  readonly last: number[] = [];
  readonly layers: string[];
  /** Row of each tensor's layer (store.tensors order). */
  readonly rowOf: Int32Array;

  constructor(
    readonly store: RunStore,
    private readonly q: SeriesOptions,
  ) {
    this.layers = layersInOrder(store.tensors);
    const row = new Map(this.layers.map((l, i) => [l, i]));
    this.rowOf = Int32Array.from(store.tensors, (t) => row.get(t.layer) ?? -1);
    // The grid: the tensor known longest (its buckets + recent steps).
    let best: Point[] = [];
    for (const p of this.points('norm')) {
      if (p.length && (!best.length || p[0].first < best[0].first || (p[0].first === best[0].first && p.length > best.length))) best = p;
    }
    for (const p of best) {
      this.first.push(p.first);
      this.last.push(p.last);
    }
  }

  get columns(): number {
    return this.last.length;
  }

  /** Each tensor's points of one statistic (store.tensors order), read once. */
  points(stat: StatName): Point[][] {
    let p = this.read.get(stat);
    if (!p) {
      p = this.store.tensors.map((t) => points(this.store.series(t.id, stat, this.q)));
      this.read.set(stat, p);
    }
    return p;
  }

  /** Column of a step: the first column whose last step ≥ it (or -1). */
  columnOf(step: number): number {
    let lo = 0;
    let hi = this.last.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (this.last[m] < step) lo = m + 1;
      else hi = m;
    }
    return lo < this.last.length ? lo : -1;
  }
}

interface Accumulated {
  values: Float64Array;
  flags: Uint8Array;
  seen: Uint8Array;
  absent: Uint8Array;
  finite: Uint8Array;
}

/** Per layer × column accumulation of one statistic over the layer's tensors. */
function accumulate(v: ViewReader, stat: StatName, combine: 'sumsq' | 'max'): Accumulated {
  const nCols = v.columns;
  const size = v.layers.length * nCols;
  const values = new Float64Array(size);
  const flags = new Uint8Array(size);
  const seen = new Uint8Array(size);
  const absent = new Uint8Array(size);
  // Cells with at least one finite value: maxAbs, paramNorm and updateNorm are NaN on the steps that
  // did not measure them (the torch probe's sampled tier), and a cell of such steps only has no value.
  const finite = new Uint8Array(size);
  const first = v.first[0] ?? Infinity;
  const all = v.points(stat);
  for (let t = 0; t < all.length; t++) {
    const r = v.rowOf[t];
    if (r < 0) continue;
    for (const p of all[t]) {
      if (p.last < first) continue;
      const c = v.columnOf(p.last);
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

function nonFiniteCells(v: ViewReader): Uint8Array {
  const nan = accumulate(v, 'nanCount', 'max');
  const inf = accumulate(v, 'infCount', 'max');
  const out = new Uint8Array(nan.values.length);
  for (let k = 0; k < out.length; k++) {
    if (nan.values[k] > 0 || nan.flags[k] & FLAG_NAN) out[k] = FLAG_NAN;
    else if (inf.values[k] > 0) out[k] = FLAG_POS_INF;
  }
  return out;
}

const log10 = (v: number): Cell => (v > 0 ? Math.log10(v) : v === 0 ? WIRE_NEG_INF : null);

/** Layers × steps heatmap for one metric, from the view's grid and its norm accumulation. */
function heatmapOf(v: ViewReader, metric: HeatmapMetric, norm: Accumulated, bad: Uint8Array): PanelHeatmap {
  const cells = new Array<Cell>(v.layers.length * v.columns).fill(null);
  if (metric === 'zeroFrac') {
    fillZeroFrac(v, cells);
  } else {
    let main: Accumulated;
    let denom: Accumulated | null = null;
    switch (metric) {
      case 'norm':
        main = norm;
        break;
      case 'maxAbs':
        main = accumulate(v, 'maxAbs', 'max');
        break;
      case 'updateRatio':
        main = accumulate(v, 'updateNorm', 'sumsq');
        denom = accumulate(v, 'paramNorm', 'sumsq');
        break;
      default: {
        const never: never = metric;
        return never;
      }
    }
    for (let k = 0; k < cells.length; k++) {
      if (bad[k] & FLAG_NAN) cells[k] = WIRE_NAN;
      else if (bad[k] & FLAG_POS_INF) cells[k] = WIRE_POS_INF;
      else if (!main.seen[k]) cells[k] = main.absent[k] ? WIRE_ABSENT : null;
      else if (metric === 'maxAbs' && !main.finite[k])
        cells[k] = null; // not measured at these steps
      else if (denom) cells[k] = denom.values[k] > 0 && main.values[k] > 0 ? Math.log10(main.values[k] / denom.values[k]) : null;
      else cells[k] = log10(main.values[k]);
    }
  }
  return { metric, layers: v.layers, steps: v.last.slice(), values: cells };
}

function fillZeroFrac(v: ViewReader, cells: Cell[]): void {
  const nCols = v.columns;
  const sum = new Float64Array(cells.length);
  const weight = new Float64Array(cells.length);
  const tensors = v.store.tensors;
  for (let t = 0; t < tensors.length; t++) {
    const r = v.rowOf[t];
    if (r < 0) continue;
    const size = tensors[t].shape.reduce((a, b) => a * b, 1) || 1;
    for (const d of v.store.details(tensors[t].id)) {
      const c = v.columnOf(d.step);
      if (c < 0 || d.step < (v.first[0] ?? Infinity)) continue;
      sum[r * nCols + c] += d.zeroFrac * size;
      weight[r * nCols + c] += size;
    }
  }
  for (let k = 0; k < cells.length; k++) cells[k] = weight[k] > 0 ? sum[k] / weight[k] : null;
}

/**
 * Per-layer gradient norm curves: sqrt of the sum of the layer's tensors' squared norms per column.
 * A column where the layer had no gradient is a gap (`absent`), not a NaN point.
 */
function layerNormsOf(v: ViewReader, acc: Accumulated, bad: Uint8Array): Record<string, PanelCurve> {
  const nCols = v.columns;
  const out: Record<string, PanelCurve> = {};
  v.layers.forEach((layer, r) => {
    const curve: PanelCurve = { steps: [], values: [] };
    for (let c = 0; c < nCols; c++) {
      const k = r * nCols + c;
      if (!acc.seen[k]) {
        if (acc.absent[k]) {
          curve.steps.push(v.last[c]);
          curve.values.push(WIRE_ABSENT);
        }
        continue;
      }
      curve.steps.push(v.last[c]);
      curve.values.push(bad[k] & FLAG_NAN ? WIRE_NAN : encodeFloat(acc.values[k]));
    }
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
    thumbnail: chosen ? { step: chosen.step, rows: chosen.thumbRows, cols: chosen.thumbCols, values: Array.from(chosen.thumb, encodeFloat) } : null,
    stats: statsFrom ? { step: statsFrom.step, mean: encodeFloat(statsFrom.mean), std: encodeFloat(statsFrom.std), zeroFrac: encodeFloat(statsFrom.zeroFrac) } : null,
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
    // (a global-norm clip's threshold, drawn on the norm chart; a clip by value bounds elements, not that norm)
    clipNorm: [...store.events].reverse().find((e) => e.kind === 'clip' && (e.clipBy ?? 'norm') === 'norm' && e.value !== undefined && Number.isFinite(e.value))?.value ?? null,
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
export function reportData(
  store: RunStore,
  header: PanelRunHeader,
  findings: Finding[],
  ranks: PanelRanks | null = null,
): { snapshot: PanelSnapshot; details: PanelTensorDetail[]; views: PanelView[] } {
  const snapshot = buildSnapshot(store, { header, findings, metric: 'norm', compare: null, savedRuns: [] });
  // A distributed run: the ranks' list, every rank's global norm and the findings across ranks (the
  // report's picker shows which rank the charts are of; it cannot switch offline).
  if (ranks) snapshot.ranks = ranks;
  const views = snapshot.optimizers.length >= 2 ? snapshot.optimizers.map((o) => buildView(store, { metric: 'norm', optimizer: o.id })) : [];
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
 * Global norm and loss of the steps shown (after `q.since`): one optimizer's (`q.optimizer`), or
 * all steps, and then with two or more optimizers also each one's own curves (`byOptimizer`).
 */
function curvesOf(store: RunStore, q: SeriesOptions): Pick<PanelView, 'globalNorm' | 'loss' | 'byOptimizer'> {
  const globalNorm = curveOf(store.globalNorm(q));
  const loss = curveOf(store.loss(q));
  const ids = q.optimizer === undefined ? store.curveOptimizers : [];
  if (ids.length < 2) return { globalNorm, loss, byOptimizer: [] };
  const names = new Map(store.optimizers.map((o) => [o.id, o.name] as const));
  // Whether each optimizer carries its own loss is decided over the whole run, not the new steps.
  const hasLoss = ids.map((id) => store.loss({ optimizer: id }).steps.length > 0);
  const perLoss = hasLoss.filter((x) => x).length >= 2;
  const byOptimizer: PanelOptimizerCurves[] = ids.map((id, i) => ({
    id,
    name: names.get(id) ?? `optimizer ${id}`,
    globalNorm: curveOf(store.globalNorm({ optimizer: id, since: q.since })),
    loss: perLoss && hasLoss[i] ? curveOf(store.loss({ optimizer: id, since: q.since })) : null,
  }));
  return { globalNorm, loss, byOptimizer };
}

/** Which optimizers have curves of their own in a view, and whether each has its loss: a change needs a full resend. */
export function byOptimizerShape(v: Pick<PanelView, 'byOptimizer'>): string {
  return v.byOptimizer.map((c) => `${c.id}${c.loss ? '+loss' : ''}`).join(',');
}

export interface ViewOptions {
  /** The heatmap's metric. */
  metric: HeatmapMetric;
  /** Only the steps after this one (a live append); omitted: everything the store holds. */
  since?: number;
  /** Show only this optimizer's steps in every chart (null or absent, or an id the run does not have: all). */
  optimizer?: number | null;
}

/**
 * Every chart's data for one choice of the optimizer picker, at the store's resolution (the host owns
 * it: the webview draws what it gets). The one builder behind the snapshot, the append, the replace
 * and the report: each statistic is read once per tensor and the column grid is computed once.
 */
export function buildView(store: RunStore, opts: ViewOptions): PanelView {
  const sel = optimizerSelection(store, opts.optimizer);
  const q: SeriesOptions = opts.since === undefined ? sel : { ...sel, since: opts.since };
  const v = new ViewReader(store, q);
  const norm = accumulate(v, 'norm', 'sumsq');
  const bad = nonFiniteCells(v);
  return {
    optimizer: sel.optimizer ?? null,
    ...curvesOf(store, q),
    layerNorms: layerNormsOf(v, norm, bad),
    heatmap: heatmapOf(v, opts.metric, norm, bad),
  };
}

export function buildSnapshot(store: RunStore, ctx: SnapshotContext): PanelSnapshot {
  return {
    header: ctx.header,
    optimizers: panelOptimizers(store),
    tensors: panelTensors(store.tensors),
    layers: layersInOrder(store.tensors),
    ...buildView(store, { metric: ctx.metric, optimizer: ctx.optimizer }),
    findings: ctx.findings,
    compare: ctx.compare,
    savedRuns: ctx.savedRuns,
  };
}

export interface AppendContext {
  /** The last step the webview holds: the append carries the steps after it. */
  since: number;
  /** How many tensors the webview knows. */
  knownTensors: number;
  header: PanelRunHeader;
  metric: HeatmapMetric;
  /** The findings when they changed, else null. */
  findings: Finding[] | null;
  optimizer?: number | null;
}

/** What arrived after `ctx.since`: the live append. */
export function buildAppend(store: RunStore, ctx: AppendContext): PanelAppend {
  const before = new Set(layersInOrder(store.tensors.slice(0, ctx.knownTensors)));
  return {
    header: ctx.header,
    ...buildView(store, { metric: ctx.metric, since: ctx.since, optimizer: ctx.optimizer }),
    tensors: panelTensors(store.tensors.slice(ctx.knownTensors)),
    layers: layersInOrder(store.tensors).filter((l) => !before.has(l)),
    findings: ctx.findings,
    optimizers: panelOptimizers(store),
  };
}

/** Curves, heatmap and findings of the whole view, replacing what the webview holds (metric switch, host-side folding). */
export function buildReplace(store: RunStore, ctx: { header: PanelRunHeader; metric: HeatmapMetric; findings: Finding[]; optimizer?: number | null }): PanelReplace {
  return { header: ctx.header, ...buildView(store, { metric: ctx.metric, optimizer: ctx.optimizer }), findings: ctx.findings };
}

/** Global-norm overlay of a saved run, for before/after comparisons. */
export function compareCurve(store: RunStore): PanelCurve {
  return curveOf(store.globalNorm());
}
