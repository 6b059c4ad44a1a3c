// The `gradscope.run/1` JSON document: what `gradscope run --json` prints. Built from a run's store
// and exit only, so a saved run file produces the same document as the live run did.
import type { Finding } from '../analysis/finding';
import type { ErrorInfo, SourceLocation } from '../protocol/messages';
import type { RunStore } from '../store/runStore';

export interface RunJsonExit {
  reason: string;
  code: number | null;
  signal: string | null;
  error: ErrorInfo | null;
}

export interface RunJson {
  schema: 'gradscope.run/1';
  script: string;
  framework: string | null;
  backend: string | null;
  backendReason: string | null;
  device: string | null;
  exit: RunJsonExit & { message?: string };
  steps: number;
  runFile: string | null;
  tensors: { id: number; name: string; layer: string; layerType: string; shape: number[]; source: SourceLocation | null }[];
  summary: {
    globalNorm: { first: number | null; max: number | null; last: number | null };
    firstNonFiniteStep: number | null;
    droppedFrames: number;
  };
  findings: RunJsonFinding[];
}

/** A finding as the JSON carries it (docs/findings.md). */
export type RunJsonFinding = Pick<Finding, 'kind' | 'severity' | 'step' | 'tensors' | 'layer' | 'source' | 'message' | 'evidence' | 'remedies'> & {
  id: string;
  stepRange: [number, number];
};

/** JSON has no NaN/Infinity: non-finite numbers become null. */
const num = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function buildRunJson(
  store: RunStore,
  script: string,
  exit: RunJsonExit & { message?: string },
  runFile: string | null,
  findings: readonly Finding[] = [],
): RunJson {
  const s = store.summary();
  const hello = store.hello;
  const dropped = store.events.filter((e) => e.kind === 'dropped').reduce((a, e) => a + (e.count ?? 0), 0);
  return {
    schema: 'gradscope.run/1',
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
      message: f.message,
      evidence: Object.fromEntries(Object.entries(f.evidence).map(([k, v]) => [k, typeof v === 'number' && !Number.isFinite(v) ? null : v])),
      remedies: f.remedies.map((r) => ({ id: r.id, title: r.title })),
    })),
  };
}
