// Validation of what the host (or an embedded report) hands the webview. Anything that is not
// exactly one of the declared messages, within size limits, is dropped: a bad message must never
// break the page or reach the DOM unchecked. Mirrors parseWebviewMessage on the host side.
// One exception to "dropped": a string longer than MAX_TEXT is cut, not refused. Names and messages
// come from the user's run (a 250-block model's dead-units message is 4,500 characters), and one long
// string must not blank the whole panel or report.
import { REMEDY_IDS, SEVERITIES, type Finding, type Remedy } from '../src/core/analysis/finding';
import { isWireFloat, type WireFloat } from '../src/core/protocol/float';
import { OPTIMIZER_MODES, type SourceLocation } from '../src/core/protocol/messages';
import { RUN_WARNING_CODES, type RunWarning, type RunWarningLevel } from '../src/core/report/warnings';
import { MAX_TEXT, clip } from '../src/core/text';
import {
  HEATMAP_METRICS,
  RANK_STATES,
  RUN_STATUSES,
  type PanelCrossRank,
  type PanelRank,
  type PanelRankCurve,
  type PanelRankKey,
  type PanelRanks,
  type HostToWebview,
  type PanelCurve,
  type PanelHeatmap,
  type PanelHistogramRow,
  type PanelOptimizer,
  type PanelOptimizerCurves,
  type PanelRunHeader,
  type PanelSnapshot,
  type PanelTensor,
  type PanelTensorDetail,
  type PanelView,
} from '../src/core/view/messages';

const MAX_LIST = 100_000;
const MAX_POINTS = 5_000_000;
const MAX_CELLS = 50_000_000;
const WARNING_LEVELS: readonly RunWarningLevel[] = ['warning', 'info'];
const MAX_WARNINGS = 200;

type Obj = Record<string, unknown>;
class Invalid extends Error {}
const fail = (what: string): never => {
  throw new Invalid(what);
};

const obj = (v: unknown, what: string): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : fail(what));
const own = (o: Obj, k: string): unknown => (Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined);
const str = (v: unknown, what: string): string => (typeof v === 'string' ? clip(v, MAX_TEXT) : fail(what));
const strOrNull = (v: unknown, what: string): string | null => (v === null ? null : str(v, what));
const num = (v: unknown, what: string): number => (typeof v === 'number' && Number.isFinite(v) ? v : fail(what));
const numOrNull = (v: unknown, what: string): number | null => (v === null ? null : num(v, what));
const int = (v: unknown, what: string): number => (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= Number.MAX_SAFE_INTEGER ? (v as number) : fail(what));
const arr = (v: unknown, what: string, max = MAX_LIST): unknown[] => (Array.isArray(v) && v.length <= max ? v : fail(what));
const oneOf = <T extends string>(v: unknown, set: readonly T[], what: string): T => (set.includes(v as T) ? (v as T) : fail(what));

function source(v: unknown): SourceLocation | null {
  if (v === null || v === undefined) return null;
  const o = obj(v, 'source');
  const loc: SourceLocation = { file: str(own(o, 'file'), 'source.file'), line: int(own(o, 'line'), 'source.line'), column: int(own(o, 'column'), 'source.column') };
  const cell = own(o, 'cell');
  if (cell !== undefined && cell !== null) loc.cell = int(cell, 'source.cell');
  return loc;
}

/** A list of wire floats (protocol/float.ts): finite numbers, the names of NaN/±Inf/absent, or null. */
function wireFloats(v: unknown, what: string, max: number): WireFloat[] {
  const values = arr(v, what, max);
  for (const x of values) if (!isWireFloat(x)) fail(what);
  return values as WireFloat[];
}

const wireFloat = (v: unknown, what: string): WireFloat => (isWireFloat(v) ? v : fail(what));

export function parseCurve(v: unknown, what = 'curve'): PanelCurve {
  const o = obj(v, what);
  const steps = arr(own(o, 'steps'), `${what}.steps`, MAX_POINTS);
  const values = wireFloats(own(o, 'values'), `${what}.values`, MAX_POINTS);
  if (steps.length !== values.length) fail(`${what}: steps and values differ in length`);
  for (const s of steps) if (typeof s !== 'number' || !Number.isFinite(s)) fail(`${what}.steps`);
  return { steps: steps as number[], values };
}

export function parseHeatmap(v: unknown): PanelHeatmap {
  const o = obj(v, 'heatmap');
  const metric = oneOf(own(o, 'metric'), HEATMAP_METRICS, 'heatmap.metric');
  const layers = arr(own(o, 'layers'), 'heatmap.layers').map((l) => str(l, 'heatmap.layers'));
  const steps = arr(own(o, 'steps'), 'heatmap.steps', MAX_POINTS);
  for (const s of steps) if (typeof s !== 'number' || !Number.isFinite(s)) fail('heatmap.steps');
  const values = wireFloats(own(o, 'values'), 'heatmap.values', MAX_CELLS);
  if (values.length !== layers.length * steps.length) fail('heatmap: values is not layers × steps');
  return { metric, layers, steps: steps as number[], values };
}

function header(v: unknown): PanelRunHeader {
  const o = obj(v, 'header');
  return {
    runId: str(own(o, 'runId'), 'header.runId'),
    script: str(own(o, 'script'), 'header.script'),
    backend: strOrNull(own(o, 'backend'), 'header.backend'),
    device: strOrNull(own(o, 'device'), 'header.device'),
    backendReason: strOrNull(own(o, 'backendReason') ?? null, 'header.backendReason'),
    status: oneOf(own(o, 'status'), RUN_STATUSES, 'header.status'),
    statusMessage: str(own(o, 'statusMessage') ?? '', 'header.statusMessage'),
    // −1 before the first step of a live run.
    step: own(o, 'step') === -1 ? -1 : int(own(o, 'step'), 'header.step'),
    stepsPerSec: numOrNull(own(o, 'stepsPerSec') ?? null, 'header.stepsPerSec'),
    droppedFrames: int(own(o, 'droppedFrames') ?? 0, 'header.droppedFrames'),
    clipNorm: numOrNull(own(o, 'clipNorm') ?? null, 'header.clipNorm'),
    warnings: arr(own(o, 'warnings') ?? [], 'header.warnings', MAX_WARNINGS).map(runWarning),
  };
}

function runWarning(v: unknown): RunWarning {
  const o = obj(v, 'warning');
  const w: RunWarning = {
    code: oneOf(own(o, 'code'), RUN_WARNING_CODES, 'warning.code'),
    level: oneOf(own(o, 'level'), WARNING_LEVELS, 'warning.level'),
    message: str(own(o, 'message'), 'warning.message'),
  };
  if (own(o, 'step') !== undefined) w.step = int(own(o, 'step'), 'warning.step');
  if (own(o, 'count') !== undefined) w.count = int(own(o, 'count'), 'warning.count');
  return w;
}

function tensor(v: unknown): PanelTensor {
  const o = obj(v, 'tensor');
  return {
    id: int(own(o, 'id'), 'tensor.id'),
    name: str(own(o, 'name'), 'tensor.name'),
    layer: str(own(o, 'layer'), 'tensor.layer'),
    layerType: str(own(o, 'layerType') ?? '', 'tensor.layerType'),
    shape: arr(own(o, 'shape'), 'tensor.shape', 16).map((d) => int(d, 'tensor.shape')),
    source: source(own(o, 'source')),
  };
}

export function parseFinding(v: unknown): Finding {
  const o = obj(v, 'finding');
  const range = arr(own(o, 'stepRange'), 'finding.stepRange', 2);
  if (range.length !== 2) fail('finding.stepRange');
  const evidence: Record<string, number | string | null> = {};
  const ev = obj(own(o, 'evidence') ?? {}, 'finding.evidence');
  const keys = Object.keys(ev);
  if (keys.length > 64) fail('finding.evidence');
  for (const k of keys) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') continue;
    const x = ev[k];
    if (x !== null && typeof x !== 'string' && typeof x !== 'number') fail('finding.evidence');
    evidence[str(k, 'finding.evidence')] = typeof x === 'string' ? str(x, 'finding.evidence') : (x as number | null);
  }
  const remedies: Remedy[] = arr(own(o, 'remedies'), 'finding.remedies', 32).map((r) => {
    const ro = obj(r, 'remedy');
    return { id: oneOf(own(ro, 'id'), REMEDY_IDS, 'remedy.id'), title: str(own(ro, 'title'), 'remedy.title') };
  });
  return {
    id: str(own(o, 'id'), 'finding.id'),
    kind: str(own(o, 'kind'), 'finding.kind') as Finding['kind'],
    severity: oneOf(own(o, 'severity'), SEVERITIES, 'finding.severity'),
    step: int(own(o, 'step'), 'finding.step'),
    stepRange: [int(range[0], 'finding.stepRange'), int(range[1], 'finding.stepRange')],
    tensors: arr(own(o, 'tensors'), 'finding.tensors').map((t) => str(t, 'finding.tensors')),
    layer: strOrNull(own(o, 'layer') ?? null, 'finding.layer'),
    source: source(own(o, 'source')),
    message: str(own(o, 'message'), 'finding.message'),
    evidence,
    remedies,
  };
}

function layerNorms(v: unknown): Record<string, PanelCurve> {
  const o = obj(v, 'layerNorms');
  const out: Record<string, PanelCurve> = Object.create(null) as Record<string, PanelCurve>;
  const keys = Object.keys(o);
  if (keys.length > MAX_LIST) fail('layerNorms');
  for (const k of keys) out[str(k, 'layerNorms key')] = parseCurve(o[k], `layerNorms[${k}]`);
  return out;
}

/** The run's optimizers; older snapshots (a report written before 1.1) have none. */
function optimizers(v: unknown): PanelOptimizer[] {
  if (v === undefined || v === null) return [];
  return arr(v, 'optimizers', 1000).map((x) => {
    const o = obj(x, 'optimizer');
    return {
      id: int(own(o, 'id'), 'optimizer.id'),
      name: str(own(o, 'name'), 'optimizer.name'),
      className: str(own(o, 'className'), 'optimizer.className'),
      mode: oneOf(own(o, 'mode'), OPTIMIZER_MODES, 'optimizer.mode'),
      steps: int(own(o, 'steps'), 'optimizer.steps'),
    };
  });
}

/** Each optimizer's own curves; absent in snapshots written before they existed. */
function byOptimizer(v: unknown): PanelOptimizerCurves[] {
  if (v === undefined || v === null) return [];
  return arr(v, 'byOptimizer', 1000).map((x, i) => {
    const o = obj(x, 'byOptimizer');
    const loss = own(o, 'loss');
    return {
      id: int(own(o, 'id'), 'byOptimizer.id'),
      name: str(own(o, 'name'), 'byOptimizer.name'),
      globalNorm: parseCurve(own(o, 'globalNorm'), `byOptimizer[${i}].globalNorm`),
      loss: loss === null || loss === undefined ? null : parseCurve(loss, `byOptimizer[${i}].loss`),
    };
  });
}

const intOrNull = (v: unknown, what: string): number | null => (v === null || v === undefined ? null : int(v, what));

function rankKey(o: Obj, what: string): PanelRankKey {
  return { rank: int(own(o, 'rank'), `${what}.rank`), pid: intOrNull(own(o, 'pid'), `${what}.pid`) };
}

/** A distributed run's ranks (core/view/ranks.ts); null when absent (one process, or a snapshot from before ranks). */
export function parseRanks(v: unknown): PanelRanks | null {
  if (v === null || v === undefined) return null;
  const o = obj(v, 'ranks');
  const shown = own(o, 'shown');
  const list: PanelRank[] = arr(own(o, 'list'), 'ranks.list', 100_000).map((x) => {
    const r = obj(x, 'rank');
    return {
      ...rankKey(r, 'rank'),
      state: oneOf(own(r, 'state'), RANK_STATES, 'rank.state'),
      host: strOrNull(own(r, 'host') ?? null, 'rank.host'),
      localRank: intOrNull(own(r, 'localRank'), 'rank.localRank'),
      steps: int(own(r, 'steps'), 'rank.steps'),
      end: strOrNull(own(r, 'end') ?? null, 'rank.end'),
    };
  });
  const globalNorms: PanelRankCurve[] = arr(own(o, 'globalNorms'), 'ranks.globalNorms', 100_000).map((x, i) => {
    const c = obj(x, 'rankCurve');
    return { ...rankKey(c, 'rankCurve'), globalNorm: parseCurve(own(c, 'globalNorm'), `ranks.globalNorms[${i}]`) };
  });
  const out: PanelRanks = { shown: shown === null || shown === undefined ? null : rankKey(obj(shown, 'ranks.shown'), 'ranks.shown'), list, globalNorms };
  const cr = own(o, 'crossRank');
  if (cr !== null && cr !== undefined) {
    const c = obj(cr, 'crossRank');
    const comb = own(c, 'combined');
    let combined: PanelCrossRank['combined'] = null;
    if (comb !== null && comb !== undefined) {
      const co = obj(comb, 'crossRank.combined');
      combined = { label: str(own(co, 'label'), 'crossRank.combined.label'), globalNorm: parseCurve(own(co, 'globalNorm'), 'crossRank.combined.globalNorm') };
    }
    out.crossRank = { findings: arr(own(c, 'findings') ?? [], 'crossRank.findings', 1000).map(parseFinding), combined };
  }
  return out;
}

/** One optimizer's view (buildView): the charts of a snapshot, an append or a replace, and each view the HTML report embeds for its picker. */
export function parseView(v: unknown): PanelView {
  const o = obj(v, 'view');
  const sel = own(o, 'optimizer');
  return {
    optimizer: sel === null || sel === undefined ? null : int(sel, 'view.optimizer'),
    globalNorm: parseCurve(own(o, 'globalNorm'), 'globalNorm'),
    loss: parseCurve(own(o, 'loss'), 'loss'),
    byOptimizer: byOptimizer(own(o, 'byOptimizer')),
    layerNorms: layerNorms(own(o, 'layerNorms')),
    heatmap: parseHeatmap(own(o, 'heatmap')),
  };
}

/** parseView, or null (with the reason in `onError`) when the value is not one. */
export function tryParseView(v: unknown, onError?: (reason: string) => void): PanelView | null {
  try {
    return parseView(v);
  } catch (e) {
    if (e instanceof Invalid) {
      onError?.(e.message);
      return null;
    }
    throw e;
  }
}

export function parseSnapshot(v: unknown): PanelSnapshot {
  const o = obj(v, 'snapshot');
  const cmp = own(o, 'compare');
  let compare: PanelSnapshot['compare'] = null;
  if (cmp !== null && cmp !== undefined) {
    const c = obj(cmp, 'compare');
    compare = { runId: str(own(c, 'runId'), 'compare.runId'), label: str(own(c, 'label'), 'compare.label'), globalNorm: parseCurve(own(c, 'globalNorm'), 'compare.globalNorm') };
  }
  return {
    header: header(own(o, 'header')),
    optimizers: optimizers(own(o, 'optimizers')),
    tensors: arr(own(o, 'tensors'), 'tensors').map(tensor),
    layers: arr(own(o, 'layers'), 'layers').map((l) => str(l, 'layers')),
    ...parseView(o),
    findings: arr(own(o, 'findings'), 'findings', 1000).map(parseFinding),
    compare,
    ranks: parseRanks(own(o, 'ranks')),
    savedRuns: arr(own(o, 'savedRuns') ?? [], 'savedRuns', 1000).map((r) => {
      const ro = obj(r, 'savedRun');
      return { runFile: str(own(ro, 'runFile'), 'savedRun.runFile'), label: str(own(ro, 'label'), 'savedRun.label') };
    }),
  };
}

export function parseDetail(v: unknown): PanelTensorDetail {
  const o = obj(v, 'detail');
  const histograms: PanelHistogramRow[] = arr(own(o, 'histograms'), 'detail.histograms').map((r) => {
    const ro = obj(r, 'histogram');
    return {
      step: int(own(ro, 'step'), 'histogram.step'),
      histLo: num(own(ro, 'histLo'), 'histogram.histLo'),
      histHi: num(own(ro, 'histHi'), 'histogram.histHi'),
      counts: arr(own(ro, 'counts'), 'histogram.counts', 1024).map((c) => num(c, 'histogram.counts')),
    };
  });
  const t = own(o, 'thumbnail');
  let thumbnail: PanelTensorDetail['thumbnail'] = null;
  if (t !== null && t !== undefined) {
    const to = obj(t, 'thumbnail');
    const rows = int(own(to, 'rows'), 'thumbnail.rows');
    const cols = int(own(to, 'cols'), 'thumbnail.cols');
    if (rows > 256 || cols > 256) fail('thumbnail too large');
    const values = wireFloats(own(to, 'values'), 'thumbnail.values', 65536);
    if (values.length !== rows * cols) fail('thumbnail.values');
    thumbnail = { step: int(own(to, 'step'), 'thumbnail.step'), rows, cols, values };
  }
  const s = own(o, 'stats');
  let stats: PanelTensorDetail['stats'] = null;
  if (s !== null && s !== undefined) {
    const so = obj(s, 'stats');
    stats = {
      step: int(own(so, 'step'), 'stats.step'),
      mean: wireFloat(own(so, 'mean'), 'stats.mean'),
      std: wireFloat(own(so, 'std'), 'stats.std'),
      zeroFrac: wireFloat(own(so, 'zeroFrac'), 'stats.zeroFrac'),
    };
  }
  return { tensorId: int(own(o, 'tensorId'), 'detail.tensorId'), histograms, thumbnail, stats };
}

/** Returns the message, validated and copied, or null (with the reason in `onError`) when it is not a HostToWebview. */
export function parseHostMessage(raw: unknown, onError?: (reason: string) => void): HostToWebview | null {
  try {
    const o = obj(raw, 'message');
    const type = own(o, 'type');
    switch (type) {
      case 'snapshot':
        return { type, snapshot: parseSnapshot(own(o, 'snapshot')) };
      case 'replace':
        return {
          type,
          ...parseView(o),
          header: header(own(o, 'header')),
          findings: arr(own(o, 'findings'), 'findings', 1000).map(parseFinding),
          ranks: parseRanks(own(o, 'ranks')),
        };
      case 'append': {
        const f = own(o, 'findings');
        return {
          type,
          ...parseView(o),
          header: header(own(o, 'header')),
          tensors: arr(own(o, 'tensors') ?? [], 'tensors').map(tensor),
          layers: arr(own(o, 'layers') ?? [], 'layers').map((l) => str(l, 'layers')),
          findings: f === null || f === undefined ? null : arr(f, 'findings', 1000).map(parseFinding),
          optimizers: optimizers(own(o, 'optimizers')),
          ranks: parseRanks(own(o, 'ranks')),
        };
      }
      case 'tensorDetail':
        return { type, detail: parseDetail(own(o, 'detail')) };
      case 'select': {
        const step = own(o, 'step');
        return { type, layer: str(own(o, 'layer'), 'select.layer'), step: step === null || step === undefined ? null : int(step, 'select.step') };
      }
      default:
        return fail(`unknown message type ${JSON.stringify(String(type)).slice(0, 64)}`);
    }
  } catch (e) {
    if (e instanceof Invalid) {
      onError?.(e.message);
      return null;
    }
    throw e;
  }
}
