// Host ⇄ webview messages of the inspection panel, declared once. This file is compiled into both the
// extension (node) and the webview (browser, dom lib): at run time it imports only the pure text
// helpers (core/text.ts), which the webview bundles too.
// Every message from the webview is validated with `parseWebviewMessage`; anything else is dropped.
import type { Finding } from '../analysis/finding';
import type { OptimizerMode, SourceLocation } from '../protocol/messages';
import type { RunWarning } from '../report/warnings';
import { MAX_TEXT } from '../text';

export type RunStatus = 'starting' | 'running' | 'completed' | 'crashed' | 'stopped' | 'step-limit' | 'time-limit' | 'protocol-error' | 'probe-lost' | 'saved';

export interface PanelTensor {
  id: number;
  name: string;
  layer: string;
  layerType: string;
  shape: number[];
  source: SourceLocation | null;
}

/** A curve: step index and value per point. Non-finite values are kept (NaN/±Inf are information). */
export interface PanelCurve {
  steps: number[];
  values: (number | null)[];
  /** Indices of points whose value was NaN (JSON has no NaN: such values arrive as null). */
  nan?: number[];
  /** Indices of points whose value was +Inf or -Inf. */
  inf?: number[];
  /** Indices of points where there was no gradient (absent): a gap in the line, not a NaN. */
  absent?: number[];
}

/** Layers × steps matrix for one metric; layers in model order. Row-major: values[layer * steps.length + col]. */
export interface PanelHeatmap {
  metric: HeatmapMetric;
  layers: string[];
  steps: number[];
  /**
   * log10 applied already for norm/maxAbs/updateRatio; NaN cells as the string "NaN", ±Inf as
   * "Inf"/"-Inf" after JSON; "absent" where the layer had no gradient (not NaN); null: no data.
   */
  values: (number | 'NaN' | 'Inf' | '-Inf' | 'absent' | null)[];
}
export type HeatmapMetric = 'norm' | 'maxAbs' | 'updateRatio' | 'zeroFrac';

export interface PanelHistogramRow {
  step: number;
  histLo: number;
  histHi: number;
  counts: number[];
}

export interface PanelTensorDetail {
  tensorId: number;
  histograms: PanelHistogramRow[];
  /** Latest thumbnail of |g| at or before the selected step. */
  thumbnail: { step: number; rows: number; cols: number; values: number[] } | null;
  stats: { step: number; mean: number; std: number; zeroFrac: number } | null;
}

export interface PanelRunHeader {
  runId: string;
  script: string;
  backend: string | null;
  device: string | null;
  backendReason: string | null;
  status: RunStatus;
  statusMessage: string;
  /** Index of the last step received; −1 before the first. */
  step: number;
  stepsPerSec: number | null;
  droppedFrames: number;
  /** Max norm of the clipping in effect, when the probe saw one. */
  clipNorm: number | null;
  /** What GradScope could not see in this run (core/report/warnings.ts): the panel's banner. */
  warnings: RunWarning[];
}

/** An optimizer of the run, for the panel's picker (All / each optimizer by name). */
export interface PanelOptimizer {
  id: number;
  name: string;
  className: string;
  mode: OptimizerMode;
  steps: number;
}

/** One optimizer's own global norm and loss, over its own steps only. */
export interface PanelOptimizerCurves {
  id: number;
  /** Its name (OPTIMIZER message), or `optimizer <id>` when it was never announced. */
  name: string;
  globalNorm: PanelCurve;
  /** Its loss when two or more optimizers carry one; else null (the run's `loss` is the one loss). */
  loss: PanelCurve | null;
}

/**
 * What the charts show for one choice of the optimizer picker: the live panel gets it in snapshots
 * and deltas, the HTML report embeds one per optimizer.
 */
export interface PanelView {
  /** The optimizer whose steps every chart shows; null: all steps. */
  optimizer: number | null;
  /** Global gradient norm of the steps shown (with several optimizers and all shown, see byOptimizer). */
  globalNorm: PanelCurve;
  loss: PanelCurve;
  /**
   * Two or more when the run has several optimizers and all steps are shown: each optimizer's global
   * norm (and loss), drawn instead of `globalNorm` (and `loss`), which alternate between optimizers
   * whose steps interleave, each step's norm being over that optimizer's tensors only. Else empty.
   */
  byOptimizer: PanelOptimizerCurves[];
  /** Per-layer norm curves, keyed by layer name. */
  layerNorms: Record<string, PanelCurve>;
  heatmap: PanelHeatmap;
}

export interface PanelSnapshot extends PanelView {
  header: PanelRunHeader;
  /** The run's optimizers (the picker shows when there are two or more). */
  optimizers: PanelOptimizer[];
  tensors: PanelTensor[];
  /** Layers in model order (first built first). */
  layers: string[];
  /** Per-layer norm curves, keyed by layer name. */
  findings: Finding[];
  /** A second run's global norm, overlaid to compare (before/after a fix). */
  compare: { runId: string; label: string; globalNorm: PanelCurve } | null;
  savedRuns: { runFile: string; label: string }[];
}

/**
 * New steps since the last message, appended at the end of what the webview holds (the common
 * live case: at most 20 per second, each carrying only the steps that arrived since the previous).
 * Curves are appended point by point; heatmap columns are appended for the metric shown
 * (`heatmap.metric`), `layers` and `values` laid out as in PanelHeatmap (row-major over the new
 * columns only). The webview keeps its own bounded copy and folds old columns itself.
 */
export interface PanelAppend {
  header: PanelRunHeader;
  globalNorm: PanelCurve;
  loss: PanelCurve;
  /** Points of each optimizer's own curves after the last message (same optimizers as last sent). */
  byOptimizer: PanelOptimizerCurves[];
  layerNorms: Record<string, PanelCurve>;
  heatmap: PanelHeatmap;
  /** Tensors/layers that became known since the last message (layers built lazily). */
  tensors: PanelTensor[];
  layers: string[];
  /** The complete current findings list when it changed, else null. */
  findings: Finding[] | null;
  /** The run's optimizers (an OPTIMIZER can arrive mid-run). */
  optimizers: PanelOptimizer[];
}

export type HostToWebview =
  | { type: 'snapshot'; snapshot: PanelSnapshot }
  /** Replaces curves, heatmap and findings wholesale (after a metric switch, or when the host's store folded old steps). */
  | {
      type: 'delta';
      header: PanelRunHeader;
      globalNorm: PanelCurve;
      loss: PanelCurve;
      byOptimizer: PanelOptimizerCurves[];
      layerNorms: Record<string, PanelCurve>;
      heatmap: PanelHeatmap;
      findings: Finding[];
    }
  | ({ type: 'append' } & PanelAppend)
  | { type: 'tensorDetail'; detail: PanelTensorDetail }
  | { type: 'select'; layer: string; step: number | null };

export type WebviewToHost =
  | { type: 'ready' }
  | { type: 'selectTensor'; tensorId: number; step: number | null }
  | { type: 'setHeatmapMetric'; metric: HeatmapMetric }
  /** Show one optimizer's steps in every chart (null: all). */
  | { type: 'setOptimizer'; optimizer: number | null }
  | { type: 'goToLayer'; findingId: string }
  | { type: 'applyRemedy'; findingId: string; remedyId: string }
  | { type: 'stop' }
  | { type: 'rerun' }
  | { type: 'openRun'; runFile: string }
  | { type: 'compareRun'; runFile: string | null }
  | { type: 'exportReport' };

const METRICS: readonly HeatmapMetric[] = ['norm', 'maxAbs', 'updateRatio', 'zeroFrac'];

type Obj = Record<string, unknown>;
const own = (o: Obj, k: string): unknown => (Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined);
// The webview only echoes strings the host sent, cut to MAX_TEXT on arrival (finding ids carry layer names).
const str = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_TEXT;
const idx = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 31;

/**
 * Validates a message from the webview. Returns null for anything that is not exactly one of the
 * declared messages (unknown type, extra prototype tricks, wrong field types, oversize strings).
 */
export function parseWebviewMessage(raw: unknown): WebviewToHost | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const o = raw as Obj;
  const type = own(o, 'type');
  switch (type) {
    case 'ready':
    case 'stop':
    case 'rerun':
    case 'exportReport':
      return { type };
    case 'selectTensor': {
      const tensorId = own(o, 'tensorId');
      const step = own(o, 'step');
      if (!idx(tensorId) || !(step === null || idx(step))) return null;
      return { type, tensorId, step };
    }
    case 'setHeatmapMetric': {
      const metric = own(o, 'metric');
      return METRICS.includes(metric as HeatmapMetric) ? { type, metric: metric as HeatmapMetric } : null;
    }
    case 'setOptimizer': {
      const optimizer = own(o, 'optimizer');
      return optimizer === null || idx(optimizer) ? { type, optimizer } : null;
    }
    case 'goToLayer': {
      const findingId = own(o, 'findingId');
      return str(findingId) ? { type, findingId } : null;
    }
    case 'applyRemedy': {
      const findingId = own(o, 'findingId');
      const remedyId = own(o, 'remedyId');
      return str(findingId) && str(remedyId) ? { type, findingId, remedyId } : null;
    }
    case 'openRun': {
      const runFile = own(o, 'runFile');
      return str(runFile) ? { type, runFile } : null;
    }
    case 'compareRun': {
      const runFile = own(o, 'runFile');
      return runFile === null || str(runFile) ? { type, runFile } : null;
    }
    default:
      return null;
  }
}
