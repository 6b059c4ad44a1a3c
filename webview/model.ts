// The panel's data: the snapshot decoded into typed, appendable series (values through the one float
// codec, protocol/float.ts), and the merge of an append or a replace into it. The host owns
// resolution (it sends a `replace` when its store folded what the webview holds): nothing is folded here.
import type { Finding } from '../src/core/analysis/finding';
import { decodeFloat } from '../src/core/protocol/float';
import type {
  HeatmapMetric,
  HostToWebview,
  PanelCurve,
  PanelHeatmap,
  PanelOptimizer,
  PanelOptimizerCurves,
  PanelRank,
  PanelRankKey,
  PanelRanks,
  PanelRunHeader,
  PanelSnapshot,
  PanelTensor,
  PanelView,
} from '../src/core/view/messages';
import { ABSENT, HeatmapMatrix, MISSING } from './charts/heatmapMatrix';
import { GAP } from './charts/normCurves';

export interface Curve {
  steps: number[];
  /** NaN and ±Inf restored; GAP where there was no gradient (absent): the line breaks, no marker. */
  values: number[];
}

/** One optimizer's own global norm and loss (PanelOptimizerCurves, decoded). */
export interface OptimizerCurves {
  id: number;
  name: string;
  globalNorm: Curve;
  loss: Curve | null;
}

/** A distributed run's ranks (PanelRanks, curves decoded): the picker's list and the overlay. */
export interface RanksModel {
  shown: PanelRankKey | null;
  list: PanelRank[];
  globalNorms: (PanelRankKey & { globalNorm: Curve })[];
  crossRank: { findings: Finding[]; combined: { label: string; globalNorm: Curve } | null } | null;
}

export function ranksModel(r: PanelRanks | null | undefined): RanksModel | null {
  if (!r) return null;
  return {
    shown: r.shown,
    list: r.list,
    globalNorms: r.globalNorms.map((c) => ({ rank: c.rank, pid: c.pid, globalNorm: decodeCurve(c.globalNorm) })),
    crossRank: r.crossRank
      ? { findings: r.crossRank.findings, combined: r.crossRank.combined ? { label: r.crossRank.combined.label, globalNorm: decodeCurve(r.crossRank.combined.globalNorm) } : null }
      : null,
  };
}

/** Merges an append's ranks: the list, the shown key and the cross-rank part replaced; each rank's curve extended after its last step. */
function appendRanks(model: PanelModel, r: PanelRanks): void {
  const cur = model.ranks;
  if (!cur) {
    model.ranks = ranksModel(r);
    return;
  }
  cur.shown = r.shown;
  cur.list = r.list;
  for (const c of r.globalNorms) {
    const had = cur.globalNorms.find((x) => x.rank === c.rank && x.pid === c.pid);
    if (had) decodeCurve(c.globalNorm, had.globalNorm, lastStep(had.globalNorm));
    else cur.globalNorms.push({ rank: c.rank, pid: c.pid, globalNorm: decodeCurve(c.globalNorm) });
  }
  if (r.crossRank) cur.crossRank = ranksModel(r)!.crossRank;
}

export interface PanelModel {
  header: PanelRunHeader;
  tensors: PanelTensor[];
  layers: string[];
  globalNorm: Curve;
  loss: Curve;
  /** Each optimizer's own curves, drawn instead of globalNorm/loss when there are two or more. */
  byOptimizer: OptimizerCurves[];
  layerNorms: Map<string, Curve>;
  heatmap: HeatmapMatrix;
  metric: HeatmapMetric;
  findings: Finding[];
  compare: { runId: string; label: string; globalNorm: Curve } | null;
  savedRuns: { runFile: string; label: string }[];
  optimizers: PanelOptimizer[];
  /** The optimizer whose steps every chart shows; null: all. */
  optimizer: number | null;
  /** A distributed run's ranks; null: one process. */
  ranks: RanksModel | null;
}

const decodeOptimizerCurves = (c: PanelOptimizerCurves): OptimizerCurves => ({
  id: c.id,
  name: c.name,
  globalNorm: decodeCurve(c.globalNorm),
  loss: c.loss ? decodeCurve(c.loss) : null,
});

/** Decodes a wire curve after `afterStep`: NaN and ±Inf restored, `absent` a GAP (the line breaks); null points dropped. */
export function decodeCurve(c: PanelCurve, into: Curve = { steps: [], values: [] }, afterStep = -Infinity): Curve {
  for (let i = 0; i < c.steps.length; i++) {
    const s = c.steps[i];
    if (!(s > afterStep)) continue;
    const v = c.values[i];
    if (v === null) continue;
    into.steps.push(s);
    into.values.push(typeof v === 'number' ? v : decodeFloat(v, GAP, GAP));
    afterStep = s;
  }
  return into;
}

const lastStep = (c: Curve): number => (c.steps.length > 0 ? c.steps[c.steps.length - 1] : -Infinity);

export const cellValue = (v: PanelHeatmap['values'][number]): number => decodeFloat(v ?? null, ABSENT, MISSING);

/** Builds a matrix from a wire heatmap, keeping only the columns after `afterStep`. */
function appendHeatmap(m: HeatmapMatrix, h: PanelHeatmap, rowOf: (layer: string) => number): void {
  const n = h.steps.length;
  const after = m.lastStep;
  let first = 0;
  while (first < n && !(h.steps[first] > after)) first++;
  const k = n - first;
  if (k <= 0) return;
  const L = m.rows;
  const vals = new Float32Array(L * k).fill(MISSING);
  for (let r = 0; r < h.layers.length; r++) {
    const target = rowOf(h.layers[r]);
    if (target < 0) continue;
    const src = r * n + first;
    for (let c = 0; c < k; c++) vals[target * k + c] = cellValue(h.values[src + c] ?? null);
  }
  m.append(vals, h.steps.slice(first));
}

export function heatmapMatrix(h: PanelHeatmap): HeatmapMatrix {
  const m = new HeatmapMatrix(h.layers, h.steps.length);
  appendHeatmap(m, h, (l) => h.layers.indexOf(l));
  return m;
}

function indexer(layers: readonly string[]): (l: string) => number {
  const map = new Map(layers.map((l, i) => [l, i] as const));
  return (l) => map.get(l) ?? -1;
}

export function modelFromSnapshot(s: PanelSnapshot): PanelModel {
  const layerNorms = new Map<string, Curve>();
  for (const k of Object.keys(s.layerNorms)) layerNorms.set(k, decodeCurve(s.layerNorms[k]));
  const m = new HeatmapMatrix(s.heatmap.layers, s.heatmap.steps.length);
  appendHeatmap(m, s.heatmap, indexer(s.heatmap.layers));
  return {
    header: s.header,
    tensors: s.tensors,
    layers: s.layers,
    globalNorm: decodeCurve(s.globalNorm),
    loss: decodeCurve(s.loss),
    byOptimizer: s.byOptimizer.map(decodeOptimizerCurves),
    layerNorms,
    heatmap: m,
    metric: s.heatmap.metric,
    findings: s.findings,
    compare: s.compare ? { runId: s.compare.runId, label: s.compare.label, globalNorm: decodeCurve(s.compare.globalNorm) } : null,
    savedRuns: s.savedRuns,
    optimizers: s.optimizers,
    optimizer: s.optimizer,
    ranks: ranksModel(s.ranks),
  };
}

export interface AppendEffect {
  /** The heatmap matrix object was replaced (metric or layers changed) rather than appended to. */
  heatmapReplaced: boolean;
  layersChanged: boolean;
  optimizersChanged: boolean;
}

/** Rebuilds the matrix with more layers (new ones appended in the order given), keeping the values. */
function withLayers(m: HeatmapMatrix, layers: string[]): HeatmapMatrix {
  const grown = new HeatmapMatrix(layers, m.columns);
  const vals = new Float32Array(layers.length * m.columns).fill(MISSING);
  for (let r = 0; r < m.rows; r++) {
    const target = layers.indexOf(m.layers[r]);
    for (let c = 0; c < m.columns; c++) vals[target * m.columns + c] = m.get(r, c);
  }
  grown.append(vals, m.steps.subarray(0, m.columns));
  return grown;
}

/**
 * Merges an `append`: curve points and heatmap columns after the last known step are appended
 * (anything at or before it is ignored, so a repeated message is harmless); new tensors and layers
 * are added; findings, when given, replace the list; the header is replaced. A heatmap of another
 * metric than the one shown is ignored (a `replace` with the new metric follows a switch).
 */
export function applyAppend(model: PanelModel, a: Extract<HostToWebview, { type: 'append' }>): AppendEffect {
  model.header = a.header;
  decodeCurve(a.globalNorm, model.globalNorm, lastStep(model.globalNorm));
  decodeCurve(a.loss, model.loss, lastStep(model.loss));
  for (const c of a.byOptimizer) {
    const cur = model.byOptimizer.find((o) => o.id === c.id);
    if (!cur) {
      model.byOptimizer.push(decodeOptimizerCurves(c));
      continue;
    }
    decodeCurve(c.globalNorm, cur.globalNorm, lastStep(cur.globalNorm));
    if (c.loss) cur.loss = decodeCurve(c.loss, cur.loss ?? undefined, cur.loss ? lastStep(cur.loss) : -Infinity);
  }
  for (const k of Object.keys(a.layerNorms)) {
    const cur = model.layerNorms.get(k) ?? { steps: [], values: [] };
    decodeCurve(a.layerNorms[k], cur, lastStep(cur));
    model.layerNorms.set(k, cur);
  }
  const knownIds = a.tensors.length > 0 ? new Set(model.tensors.map((t) => t.id)) : null;
  const newTensors = knownIds ? a.tensors.filter((t) => !knownIds.has(t.id)) : [];
  if (newTensors.length > 0) model.tensors = [...model.tensors, ...newTensors];
  const newLayers = [...a.layers, ...newTensors.map((t) => t.layer)].filter((l, i, all) => !model.layers.includes(l) && all.indexOf(l) === i);
  if (newLayers.length > 0) model.layers = [...model.layers, ...newLayers];
  let heatmapReplaced = false;
  const h = a.heatmap;
  if (h.metric === model.metric && h.steps.length > 0) {
    let rowOf = indexer(model.heatmap.layers);
    const missing = h.layers.filter((l) => rowOf(l) < 0);
    if (missing.length > 0) {
      model.heatmap = withLayers(model.heatmap, [...model.heatmap.layers, ...missing]);
      rowOf = indexer(model.heatmap.layers);
      heatmapReplaced = true;
    }
    appendHeatmap(model.heatmap, h, rowOf);
  }
  if (a.findings) model.findings = a.findings;
  if (a.ranks) appendRanks(model, a.ranks);
  const optimizersChanged = JSON.stringify(a.optimizers.map((o) => [o.id, o.name])) !== JSON.stringify(model.optimizers.map((o) => [o.id, o.name]));
  model.optimizers = a.optimizers;
  return { heatmapReplaced, layersChanged: newLayers.length > 0, optimizersChanged };
}

/** Applies a `replace`: curves, heatmap and findings replaced wholesale (metric switch, host-side folding). */
export function applyReplace(model: PanelModel, d: Extract<HostToWebview, { type: 'replace' }>): void {
  model.header = d.header;
  replaceCharts(model, d);
  model.findings = d.findings;
  if (d.ranks) model.ranks = ranksModel(d.ranks);
}

/** Shows another optimizer's view (the HTML report's picker: every view is embedded). */
export function applyView(model: PanelModel, v: PanelView): void {
  replaceCharts(model, v);
  model.optimizer = v.optimizer;
}

function replaceCharts(model: PanelModel, v: Omit<PanelView, 'optimizer'>): void {
  model.globalNorm = decodeCurve(v.globalNorm);
  model.loss = decodeCurve(v.loss);
  model.byOptimizer = v.byOptimizer.map(decodeOptimizerCurves);
  model.layerNorms = new Map(Object.keys(v.layerNorms).map((k) => [k, decodeCurve(v.layerNorms[k])] as const));
  model.heatmap = heatmapMatrix(v.heatmap);
  model.metric = v.heatmap.metric;
}
