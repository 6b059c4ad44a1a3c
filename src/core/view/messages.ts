// Host ⇄ webview messages of the inspection panel, declared once. This file is compiled into both the
// extension (node) and the webview (browser, dom lib): at run time it imports only the pure text
// helpers (core/text.ts), which the webview bundles too.
// Every message from the webview is validated with `parseWebviewMessage`; anything else is dropped.
import type { Finding } from '../analysis/finding';
import type { WireFloat } from '../protocol/float';
import type { OptimizerMode, SourceLocation } from '../protocol/messages';
import type { RunWarning } from '../report/warnings';
import { MAX_TEXT } from '../text';

/** A run's status as the panel's header shows it, declared once (the webview validates against it). */
export const RUN_STATUSES = ['starting', 'running', 'completed', 'crashed', 'stopped', 'step-limit', 'time-limit', 'protocol-error', 'probe-lost', 'saved'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export interface PanelTensor {
  id: number;
  name: string;
  layer: string;
  layerType: string;
  shape: number[];
  source: SourceLocation | null;
}

/**
 * A curve: step index and value per point, each value through the float codec (protocol/float.ts):
 * NaN/±Inf by name (they are information), `absent` where there was no gradient (a gap in the line,
 * not a NaN).
 */
export interface PanelCurve {
  steps: number[];
  values: WireFloat[];
}

/** Layers × steps matrix for one metric; layers in model order. Row-major: values[layer * steps.length + col]. */
export interface PanelHeatmap {
  metric: HeatmapMetric;
  layers: string[];
  steps: number[];
  /**
   * log10 applied already for norm/maxAbs/updateRatio; through the float codec (NaN, ±Inf, `absent`
   * where the layer had no gradient); null: no data.
   */
  values: WireFloat[];
}

/** The heatmap's metrics, declared once (the host's validation, the webview's radios and checks). */
export const HEATMAP_METRICS = ['norm', 'maxAbs', 'updateRatio', 'zeroFrac'] as const;
export type HeatmapMetric = (typeof HEATMAP_METRICS)[number];

export interface PanelHistogramRow {
  step: number;
  histLo: number;
  histHi: number;
  counts: number[];
}

export interface PanelTensorDetail {
  tensorId: number;
  histograms: PanelHistogramRow[];
  /** Latest thumbnail of |g| at or before the selected step (values through the float codec). */
  thumbnail: { step: number; rows: number; cols: number; values: WireFloat[] } | null;
  /** The latest detail's moments (through the float codec: a gradient of NaN has a NaN mean). */
  stats: { step: number; mean: WireFloat; std: WireFloat; zeroFrac: WireFloat } | null;
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
 * What the charts show for one choice of the optimizer picker (buildView): the live panel gets it in
 * snapshots, appends and replaces, the HTML report embeds one per optimizer.
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
 * columns only). The host owns resolution: when the webview would hold more than its store's view,
 * the host sends a `replace` instead (the webview never folds on its own).
 */
export interface PanelAppend extends PanelView {
  header: PanelRunHeader;
  /** Tensors/layers that became known since the last message (layers built lazily). */
  tensors: PanelTensor[];
  layers: string[];
  /** The complete current findings list when it changed, else null. */
  findings: Finding[] | null;
  /** The run's optimizers (an OPTIMIZER can arrive mid-run). */
  optimizers: PanelOptimizer[];
}

/** Curves, heatmap and findings replacing what the webview holds (after a metric switch, or when the host's store folded old steps). */
export interface PanelReplace extends PanelView {
  header: PanelRunHeader;
  findings: Finding[];
}

/** The host's messages, named for what they do to the webview's view. */
export type HostToWebview =
  /** Everything, for a new or reloaded webview, another run, or another optimizer's steps. */
  | { type: 'snapshot'; snapshot: PanelSnapshot }
  | ({ type: 'append' } & PanelAppend)
  | ({ type: 'replace' } & PanelReplace)
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
      return (HEATMAP_METRICS as readonly unknown[]).includes(metric) ? { type, metric: metric as HeatmapMetric } : null;
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
