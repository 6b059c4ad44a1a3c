// The numbers "Verify fix" compares before and after a fix, read from a run's store and findings:
// max global norm, first non-finite step, loss trend, finding kinds. Pure (no Node), so the CLI,
// the editor and the panel read a run the same way.
import { formatNumber } from '../protocol/float';
import type { Finding, FindingKind } from '../analysis/finding';
import type { SourceLocation } from '../protocol/messages';
import type { RunStore } from '../store/runStore';

export interface RunMeasure {
  /** How the run ended ('completed', 'step-limit', 'crashed', …) and its one-line message. */
  exit: { reason: string; message: string };
  steps: number;
  /** Largest finite global gradient norm. */
  maxNorm: number | null;
  firstNonFiniteStep: number | null;
  loss: { first: number | null; last: number | null; trend: 'falling' | 'rising' | 'flat' | 'unknown' };
  /** `settled`: something the run came back from (a gradient spike, large first updates: evidence `settled`, severity info). */
  findings: { id: string; kind: FindingKind; layer: string | null; source: SourceLocation | null; step: number; settled?: true }[];
  /** The kinds found, but for settled ones: a fix after which the run only spikes and settles cured it. */
  kinds: FindingKind[];
}

/** Per-step global norms as an array indexed by step (holes for steps the store no longer has). */
export function globalNormsOf(store: RunStore): number[] {
  const c = store.globalNorm();
  const out: number[] = [];
  for (let i = 0; i < c.steps.length; i++) {
    const s = c.steps[i];
    if (Number.isInteger(s) && s >= 0 && s < 1e7) out[s] = c.values[i];
  }
  for (let i = 0; i < out.length; i++) if (out[i] === undefined) out[i] = NaN;
  return out;
}

/** Loss trend: last finite loss vs the first, ±10 % counts as flat. */
export function lossTrend(first: number | null, last: number | null): RunMeasure['loss']['trend'] {
  if (first === null || last === null) return 'unknown';
  const rel = (last - first) / Math.max(Math.abs(first), 1e-12);
  return rel < -0.1 ? 'falling' : rel > 0.1 ? 'rising' : 'flat';
}

export function measureRun(store: RunStore, findings: readonly Finding[], exit: { reason: string; message: string; steps?: number }, mapFile: (f: string) => string = (f) => f): RunMeasure {
  const s = store.summary();
  const lc = store.loss();
  let first: number | null = null;
  let last: number | null = null;
  for (let i = 0; i < lc.values.length; i++) {
    const v = lc.values[i];
    if (!Number.isFinite(v) || lc.nonFinite[i]) continue;
    if (first === null) first = v;
    last = v;
  }
  const fs = findings.map((f) => ({
    id: f.id,
    kind: f.kind,
    layer: f.layer,
    source: f.source ? { ...f.source, file: mapFile(f.source.file) } : null,
    step: f.step,
    ...(f.evidence.settled === 1 ? { settled: true as const } : {}),
  }));
  return {
    exit: { reason: exit.reason, message: exit.message },
    steps: exit.steps ?? store.stepCount,
    maxNorm: s.globalNorm.max !== null && Number.isFinite(s.globalNorm.max) ? s.globalNorm.max : null,
    firstNonFiniteStep: s.firstNonFiniteStep,
    loss: { first, last, trend: lossTrend(first, last) },
    findings: fs,
    kinds: [...new Set(fs.filter((f) => !f.settled).map((f) => f.kind))].sort(),
  };
}

export interface VerifyVerdict {
  cured: boolean;
  /** One line: "cured: exploding-gradient gone, no non-finite step in 60 steps (max norm 2e10 → 14.2)". */
  summary: string;
}

/** Cured: the finding's kind is gone from the re-run, no step went non-finite, and the run trained. */
export function verdict(kind: FindingKind | null, before: RunMeasure, after: RunMeasure): VerifyVerdict {
  const n = formatNumber;
  const norms = `max norm ${n(before.maxNorm)} → ${n(after.maxNorm)}`;
  if (after.exit.reason === 'crashed' || after.exit.reason === 'protocol-error') return { cured: false, summary: `not cured: the fixed script ${after.exit.message}` };
  // The probe went away mid-run: the steps after it were not seen, so nothing says the fix held.
  if (after.exit.reason === 'probe-lost') return { cured: false, summary: `not cured (not observed to the end): ${after.exit.message}` };
  if (after.steps === 0) return { cured: false, summary: 'not cured: the fixed script took no optimizer step' };
  const still = kind !== null && after.kinds.includes(kind);
  const nonFinite = after.firstNonFiniteStep !== null;
  if (!still && !nonFinite) {
    // Cured by the rule; a person still wants to know when the loss went up or other findings appeared.
    const added = after.kinds.filter((k) => !before.kinds.includes(k));
    const spikes = after.findings.filter((f) => f.settled).map((f) => `${f.kind === 'exploding-gradient' ? 'a gradient spike' : f.kind} at step ${f.step}`);
    const caveats = [after.loss.trend === 'rising' ? 'but the loss rose' : '', added.length ? `new: ${added.join(', ')}` : '', spikes.length ? `${spikes.join(', ')} that settled` : '']
      .filter(Boolean)
      .join('; ');
    return { cured: true, summary: `cured: ${kind ?? 'the finding'} gone, no non-finite step in ${after.steps} steps (${norms})${caveats ? ` — ${caveats}` : ''}` };
  }
  const why = [still ? `${kind} still found` : '', nonFinite ? `non-finite at step ${after.firstNonFiniteStep}` : ''].filter(Boolean).join(', ');
  return { cured: false, summary: `not cured: ${why} (${norms})` };
}
