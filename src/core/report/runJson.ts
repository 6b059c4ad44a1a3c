// The `gradscope.run/1.x` JSON document: what `gradscope run --json` prints. Built from a run's store
// and exit only, so a saved run file produces the same document as the live run did.
// Versions: 1.1 adds fields (`warnings`, `optimizers` with their `loss` and `globalNorm`, `tensors[].absentSteps`, `summary.loss`, …) and changes none
// of 1's; a reader of 1 reads 1.1 by ignoring what it does not know (match the schema on the prefix
// `gradscope.run/1`).
import type { Finding } from '../analysis/finding';
import type { ErrorInfo, OptimizerMode, TensorInfo } from '../protocol/messages';
import type { LossSummary, RunStore } from '../store/runStore';
import { runWarnings, type RunWarning } from './warnings';

export interface RunJsonExit {
  reason: string;
  code: number | null;
  signal: string | null;
  error: ErrorInfo | null;
}

export interface RunJson {
  schema: typeof RUN_JSON_SCHEMA;
  script: string;
  framework: string | null;
  backend: string | null;
  backendReason: string | null;
  device: string | null;
  exit: RunJsonExit & { message?: string };
  steps: number;
  runFile: string | null;
  tensors: RunJsonTensor[];
  /** The optimizers the probe announced, by id (1.1). `steps`: STEPs of that optimizer. */
  optimizers: RunJsonOptimizer[];
  summary: RunJsonSummary;
  findings: RunJsonFinding[];
  /** What GradScope could not see in this run (warnings first, then notes); see docs/findings.md. */
  warnings: RunWarning[];
}

/**
 * The loss (1.1): first and last (null where not finite: `firstNonFinite` says the first such, with
 * its step), and how many steps carried one. The summary's and each optimizer's `loss` is null when
 * none of their steps carried one (not a NaN loss: docs/protocol.md, *Loss*).
 */
export interface RunJsonLoss {
  first: number | null;
  last: number | null;
  steps: number;
  firstNonFinite: { step: number; value: 'NaN' | 'Infinity' | '-Infinity' } | null;
}

export interface RunJsonSummary {
  globalNorm: { first: number | null; max: number | null; last: number | null };
  /** 1.1: the loss over the run's steps (of every optimizer: each optimizer's own is `optimizers[].loss`). */
  loss: RunJsonLoss | null;
  /** `shard`: the process held only blocks of its tensors (FSDP2): globalNorm is over its blocks, not the model's (the model's: `crossRank.combined`). */
  globalNormScope?: 'shard';
  firstNonFiniteStep: number | null;
  droppedFrames: number;
}

export const RUN_JSON_SCHEMA = 'gradscope.run/1.1';

/** A tensor as the JSON lists it; `shard` (TENSORS) when this process held only a block of it. */
export type RunJsonTensor = TensorInfo & {
  /**
   * Steps at which the tensor had no gradient (absent: not NaN, not counted as non-finite), among the
   * steps of the optimizer(s) that train it (all steps where no OPTIMIZER names its tensors). 1.1.
   */
  absentSteps: number;
};

export interface RunJsonOptimizer {
  id: number;
  name: string;
  className: string;
  /** `backward`: the script has no optimizer; each backward pass is a step. */
  mode: OptimizerMode;
  steps: number;
  firstStep: number | null;
  lastStep: number | null;
  tensorIds: number[];
  /** 1.1: the loss over this optimizer's steps (null: none of them carried one). */
  loss: RunJsonLoss | null;
  /** 1.1: the global norm over this optimizer's steps (null: none of them carried a norm). */
  globalNorm: { first: number | null; max: number | null; last: number | null } | null;
}

/** A finding as the JSON carries it (docs/findings.md). */
export type RunJsonFinding = Pick<Finding, 'kind' | 'severity' | 'step' | 'tensors' | 'layer' | 'source' | 'locations' | 'cause' | 'message' | 'evidence' | 'remedies'> & {
  id: string;
  stepRange: [number, number];
};

/** JSON has no NaN/Infinity: non-finite numbers become null. */
const num = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function buildRunJson(store: RunStore, script: string, exit: RunJsonExit & { message?: string }, runFile: string | null, findings: readonly Finding[] = []): RunJson {
  const hello = store.hello;
  return {
    schema: RUN_JSON_SCHEMA,
    script,
    framework: hello?.framework ?? null,
    backend: hello?.backend ?? null,
    backendReason: hello?.backendReason ?? null,
    device: hello?.device ?? null,
    exit: { reason: exit.reason, code: exit.code, signal: exit.signal, error: exit.error, ...(exit.message ? { message: exit.message } : {}) },
    steps: store.stepCount,
    runFile,
    tensors: tensorsJson(store),
    optimizers: store.optimizers.map((o) => ({
      id: o.id,
      name: o.name,
      className: o.className,
      mode: o.mode,
      steps: o.steps,
      firstStep: o.firstStep,
      lastStep: o.lastStep,
      tensorIds: [...o.tensorIds],
      loss: lossJson(store.lossSummary(o.id)),
      globalNorm: normJson(store.optimizerGlobalNorm(o.id)),
    })),
    summary: summaryJson(store),
    findings: findings.map(findingJson),
    warnings: runWarnings(store, { reason: exit.reason }),
  };
}

export function tensorsJson(store: RunStore): RunJsonTensor[] {
  return store.tensors.map((t) => ({
    id: t.id,
    name: t.name,
    layer: t.layer,
    layerType: t.layerType,
    shape: [...t.shape],
    source: t.source ? { ...t.source } : null,
    ...(t.aliases?.length ? { aliases: [...t.aliases] } : {}),
    ...(t.builtIn ? { builtIn: { ...t.builtIn } } : {}),
    ...(t.shard ? { shard: { offset: [...t.shard.offset], localShape: [...t.shard.localShape] } } : {}),
    absentSteps: store.absentSteps(t.id),
  }));
}

export function findingJson(f: Finding): RunJsonFinding {
  return {
    id: f.id,
    kind: f.kind,
    severity: f.severity,
    step: f.step,
    stepRange: [f.stepRange[0], f.stepRange[1]],
    tensors: [...f.tensors],
    layer: f.layer,
    source: f.source ? { ...f.source } : null,
    // Every affected layer, when the finding concerns several (absent otherwise).
    ...(f.locations?.length
      ? {
          locations: f.locations.map((l) => ({ file: l.file, line: l.line, column: l.column, ...(l.cell !== undefined ? { cell: l.cell } : {}), layer: l.layer, tensors: [...l.tensors] })),
        }
      : {}),
    ...(f.cause ? { cause: { op: f.cause.op, file: f.cause.file, line: f.cause.line, column: f.cause.column } } : {}),
    message: f.message,
    evidence: Object.fromEntries(Object.entries(f.evidence).map(([k, v]) => [k, typeof v === 'number' && !Number.isFinite(v) ? null : v])),
    remedies: f.remedies.map((r) => ({ id: r.id, title: r.title })),
  };
}

/** Whether some tensor of the store is a shard (TENSORS `shard`): its norms, and its global norm, are then this process's blocks only. */
export const isShardStore = (store: RunStore): boolean => store.tensors.some((t) => t?.shard);

function lossJson(l: LossSummary | null): RunJsonLoss | null {
  if (!l) return null;
  const bad = l.firstNonFinite;
  return {
    first: num(l.first),
    last: num(l.last),
    steps: l.steps,
    firstNonFinite: bad ? { step: bad.step, value: Number.isNaN(bad.value) ? 'NaN' : bad.value > 0 ? 'Infinity' : '-Infinity' } : null,
  };
}

function normJson(g: { first: number; max: number | null; last: number } | null): RunJsonOptimizer['globalNorm'] {
  return g ? { first: num(g.first), max: num(g.max), last: num(g.last) } : null;
}

export function summaryJson(store: RunStore): RunJsonSummary {
  const s = store.summary();
  const dropped = store.events.filter((e) => e.kind === 'dropped').reduce((a, e) => a + (e.count ?? 0), 0);
  return {
    globalNorm: { first: num(s.globalNorm.first), max: num(s.globalNorm.max), last: num(s.globalNorm.last) },
    loss: lossJson(store.lossSummary()),
    ...(isShardStore(store) ? { globalNormScope: 'shard' as const } : {}),
    firstNonFiniteStep: s.firstNonFiniteStep,
    droppedFrames: dropped,
  };
}
