// The `gradscope.run/1.x` JSON document: what `gradscope run --json` prints. Built from a run's store
// and exit only, so a saved run file produces the same document as the live run did.
// Versions: 1.1 adds fields (`warnings`, `optimizers`, `tensors[].absentSteps`, …) and changes none
// of 1's; a reader of 1 reads 1.1 by ignoring what it does not know (match the schema on the prefix
// `gradscope.run/1`).
import type { Finding } from '../analysis/finding';
import type { ErrorInfo, OptimizerMode, TensorInfo } from '../protocol/messages';
import type { RunStore } from '../store/runStore';
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
  tensors: (TensorInfo & {
    /** Steps at which the tensor had no gradient (absent: not NaN, not counted as non-finite). 1.1. */
    absentSteps: number;
  })[];
  /** The optimizers the probe announced, by id (1.1). `steps`: STEPs of that optimizer. */
  optimizers: RunJsonOptimizer[];
  summary: {
    globalNorm: { first: number | null; max: number | null; last: number | null };
    firstNonFiniteStep: number | null;
    droppedFrames: number;
  };
  findings: RunJsonFinding[];
  /** What GradScope could not see in this run (warnings first, then notes); see docs/findings.md. */
  warnings: RunWarning[];
}

export const RUN_JSON_SCHEMA = 'gradscope.run/1.1';

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
}

/** A finding as the JSON carries it (docs/findings.md). */
export type RunJsonFinding = Pick<Finding, 'kind' | 'severity' | 'step' | 'tensors' | 'layer' | 'source' | 'locations' | 'cause' | 'message' | 'evidence' | 'remedies'> & {
  id: string;
  stepRange: [number, number];
};

/** JSON has no NaN/Infinity: non-finite numbers become null. */
const num = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function buildRunJson(store: RunStore, script: string, exit: RunJsonExit & { message?: string }, runFile: string | null, findings: readonly Finding[] = []): RunJson {
  const s = store.summary();
  const hello = store.hello;
  const dropped = store.events.filter((e) => e.kind === 'dropped').reduce((a, e) => a + (e.count ?? 0), 0);
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
    tensors: store.tensors.map((t) => ({
      id: t.id,
      name: t.name,
      layer: t.layer,
      layerType: t.layerType,
      shape: [...t.shape],
      source: t.source ? { ...t.source } : null,
      ...(t.aliases?.length ? { aliases: [...t.aliases] } : {}),
      ...(t.builtIn ? { builtIn: { ...t.builtIn } } : {}),
      absentSteps: store.absentSteps(t.id),
    })),
    optimizers: store.optimizers.map((o) => ({
      id: o.id,
      name: o.name,
      className: o.className,
      mode: o.mode,
      steps: o.steps,
      firstStep: o.firstStep,
      lastStep: o.lastStep,
      tensorIds: [...o.tensorIds],
    })),
    summary: {
      globalNorm: { first: num(s.globalNorm.first), max: num(s.globalNorm.max), last: num(s.globalNorm.last) },
      firstNonFiniteStep: s.firstNonFiniteStep,
      droppedFrames: dropped,
    },
    findings: findings.map((f) => ({
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
    })),
    warnings: runWarnings(store, { reason: exit.reason }),
  };
}
