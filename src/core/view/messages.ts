// Host ⇄ webview messages of the inspection panel, declared once. This file is compiled into both the
// extension (node) and the webview (browser, dom lib): at run time it imports only the pure text
// helpers (core/text.ts), which the webview bundles too.
// Every message from the webview is validated with `parseWebviewMessage`; anything else is dropped.
import type { Finding } from '../analysis/finding';
import type { WireFloat } from '../protocol/float';
import type { OptimizerMode, TensorInfo } from '../protocol/messages';
import type { RunWarning } from '../report/warnings';
import { MAX_TEXT } from '../text';

/** A run's status as the panel's header shows it, declared once (the webview validates against it). */
export const RUN_STATUSES = ['starting', 'running', 'completed', 'crashed', 'stopped', 'step-limit', 'time-limit', 'protocol-error', 'probe-lost', 'saved'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** A tensor as the panel lists it: its TENSORS description without aliases, library site or shard. */
export type PanelTensor = Pick<TensorInfo, 'id' | 'name' | 'layer' | 'layerType' | 'shape' | 'source'>;

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

/** Whether a process of a distributed run joined (its HELLO came), or the job expected it and it never did. */
export const RANK_STATES = ['joined', 'missing'] as const;
export type RankState = (typeof RANK_STATES)[number];

/** Which process of a run the charts show: its rank, and its pid to tell apart two processes that said the same rank. */
export interface PanelRankKey {
  rank: number;
  /** null: a rank that never joined (it has no process). */
  pid: number | null;
}

/** One process of a distributed run, for the rank picker (core/view/ranks.ts). */
export interface PanelRank extends PanelRankKey {
  state: RankState;
  host: string | null;
  localRank: number | null;
  /** Optimizer steps it reported (0 for a missing rank). */
  steps: number;
  /** How it ended (its END), null while it runs or when it never said. */
  end: string | null;
}

/** One rank's global norm, for the cross-rank overlay (an append carries the points after the last one sent). */
export interface PanelRankCurve extends PanelRankKey {
  globalNorm: PanelCurve;
}

/**
 * What the cross-rank analysis says (issue 17: DDP desync findings, FSDP norms combined from the
 * shards), drawn when present. The seam for that analysis: the panel renders it, never computes it.
 */
export interface PanelCrossRank {
  findings: Finding[];
  /** A series combined over the ranks (FSDP: the global norm from every shard's sum of squares), drawn over the per-rank lines. */
  combined: { label: string; globalNorm: PanelCurve } | null;
}

/** A distributed run's ranks (null in a snapshot of a single process: no picker, no overlay). */
export interface PanelRanks {
  /** The process every other chart shows; null: the script's own process, no rank (it started its ranks, mp.spawn, and none has stepped yet). */
  shown: PanelRankKey | null;
  /** Every process that joined, by rank, and the ranks the job expected that never joined. */
  list: PanelRank[];
  /** Each joined rank's global norm, overlaid in the cross-rank view. */
  globalNorms: PanelRankCurve[];
  crossRank?: PanelCrossRank;
}

export interface PanelSnapshot extends PanelView {
  header: PanelRunHeader;
  /** A distributed run's ranks (picker and overlay); null or absent: one process. */
  ranks?: PanelRanks | null;
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
  /** The ranks' list, and each rank's global norm after the points already sent; null or absent: unchanged (one process). */
  ranks?: PanelRanks | null;
}

/** Curves, heatmap and findings replacing what the webview holds (after a metric switch, or when the host's store folded old steps). */
export interface PanelReplace extends PanelView {
  header: PanelRunHeader;
  findings: Finding[];
  /** The ranks whole (their curves replace the overlay's); null or absent: one process. */
  ranks?: PanelRanks | null;
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
  /** Show this process of a distributed run in every chart (the rank picker). */
  | { type: 'setRank'; rank: number; pid: number | null }
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
    case 'setRank': {
      const rank = own(o, 'rank');
      const pid = own(o, 'pid');
      return idx(rank) && (pid === null || idx(pid)) ? { type, rank, pid } : null;
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
