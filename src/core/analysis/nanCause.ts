// Locate-nan: reads what a checked re-run reported about the operation that made the first non-finite
// value, and puts it on the non-finite finding. Pure: the re-run itself is src/process/locateNan.ts.
//
// Both probes report the culprit as one `info` EVENT whose message is LOCATE_PREFIX + JSON
// {op, phase, file, line, column, step?} (src/probe/torch/gradscope_probe/locate.py,
// src/probe/tfjs/locate.ts). Without it, PyTorch's own anomaly-mode text on stderr ("Error detected
// in LogBackward0. Traceback of forward call that caused the error: File "…", line N") is read
// instead: it names the first node whose output had a NaN, which can be downstream of the real
// culprit (an Inf from log(0) becomes NaN only at the next node), hence the probe's own check first.
import type { EventMsg } from '../protocol/messages';
import type { Finding, FindingCause, Remedy } from './finding';

export const LOCATE_PREFIX = 'gradscope-locate-nan: ';

export const LOCATE_PHASES = ['forward', 'backward', 'anomaly'] as const;
export type LocatePhase = (typeof LOCATE_PHASES)[number];

export interface NanCause extends FindingCause {
  /** forward: the op's output went non-finite; backward: its gradient did; anomaly: read from PyTorch's own report. */
  phase: LocatePhase;
  /** The step at which it happened, when the probe knew it. */
  step?: number;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** The culprit from one EVENT message, or null when it is not a locate report (or a malformed one). */
export function parseLocateEvent(message: string): NanCause | null {
  if (!message.startsWith(LOCATE_PREFIX)) return null;
  let o: unknown;
  try {
    o = JSON.parse(message.slice(LOCATE_PREFIX.length));
  } catch {
    return null;
  }
  if (!o || typeof o !== 'object') return null;
  const r = o as Record<string, unknown>;
  const line = num(r.line);
  if (typeof r.op !== 'string' || !r.op || typeof r.file !== 'string' || !r.file || line === null || line < 1) return null;
  const phase = LOCATE_PHASES.includes(r.phase as LocatePhase) ? (r.phase as LocatePhase) : 'forward';
  const out: NanCause = { op: r.op, file: r.file, line, column: Math.max(1, num(r.column) ?? 1), phase };
  const step = num(r.step);
  if (step !== null) out.step = step;
  return out;
}

/**
 * PyTorch anomaly mode's warning: "Error detected in <Node>. Traceback of forward call that caused
 * the error:" then `File "<f>", line <n>, in <fn>` lines, outermost first. The innermost frame for
 * which `isUser` holds (not torch, not the probe) is the user's line.
 */
export function parseAnomalyText(text: string, isUser: (file: string) => boolean = defaultIsUser): NanCause | null {
  const m = /Error detected in (\w+)\. Traceback of forward call that caused the error:\n([\s\S]*?)(?:\n\s*\(Triggered internally|\n\S|$)/.exec(text);
  if (!m) return null;
  let best: { file: string; line: number } | null = null;
  for (const f of m[2].matchAll(/File "([^"]+)", line (\d+)/g)) if (isUser(f[1])) best = { file: f[1], line: Number(f[2]) };
  return best ? { op: m[1], file: best.file, line: best.line, column: 1, phase: 'anomaly' } : null;
}

function defaultIsUser(file: string): boolean {
  return !/[\\/](site-packages|dist-packages|gradscope_probe)[\\/]|^<|[\\/]lib[\\/]python\d/.test(file);
}

/** The culprit a re-run reported: its locate EVENT first, else anomaly mode's text in its stderr. */
export function findNanCause(events: readonly EventMsg[], stderr = ''): NanCause | null {
  for (const e of events) {
    if (e.kind !== 'info') continue;
    const c = parseLocateEvent(e.message);
    if (c) return c;
  }
  return stderr ? parseAnomalyText(stderr) : null;
}

/**
 * The operation a locate report named without a line (TF.js under model.fit: no frame of the user's
 * code on its stack), or null.
 */
export function findNanOp(events: readonly EventMsg[]): { op: string; phase: LocatePhase } | null {
  for (const e of events) {
    if (e.kind !== 'info' || !e.message.startsWith(LOCATE_PREFIX)) continue;
    try {
      const r = JSON.parse(e.message.slice(LOCATE_PREFIX.length)) as Record<string, unknown>;
      if (typeof r.op === 'string' && r.op) return { op: r.op, phase: LOCATE_PHASES.includes(r.phase as LocatePhase) ? (r.phase as LocatePhase) : 'forward' };
    } catch {
      // not a report
    }
  }
  return null;
}

/** What kind of guard the operation needs: an epsilon in a log, a clamp before a sqrt, an epsilon in a denominator. */
export type GuardKind = 'log' | 'sqrt' | 'div' | 'other';

export function guardKindOf(op: string): GuardKind {
  const o = op.replace(/Backward\d*$|Grad$/, '').toLowerCase();
  if (/^(log|log2|log10|log1p|xlogy)$/.test(o)) return 'log';
  if (/^(sqrt|rsqrt|pow)$/.test(o)) return o === 'pow' ? 'other' : 'sqrt';
  if (/^(div|truediv|rtruediv|realdiv|divnonan|reciprocal|floordiv)$/.test(o)) return 'div';
  return 'other';
}

const GUARD_TITLE: Record<Exclude<GuardKind, 'other'>, string> = {
  log: 'Add a small epsilon inside the log',
  sqrt: 'Clamp the argument of the sqrt from below (clamp(min=eps)) before taking the root',
  div: 'Add a small epsilon to the denominator',
};

export function guardTitle(cause: FindingCause): string | null {
  const k = guardKindOf(cause.op);
  return k === 'other' ? null : `${GUARD_TITLE[k]} (${cause.op} on line ${cause.line})`;
}

/**
 * The finding with the located cause: `cause` set, `source` moved to the operation's line (the
 * original site kept in evidence as `originalSource`; not moved when the non-finite value followed
 * growth of the norm), and the guard that matches the operation first among the remedies
 * (`guard-loss`, which the fix engines apply to the cause's line).
 */
export function withCause(f: Finding, cause: NanCause): Finding {
  const evidence: Finding['evidence'] = { ...f.evidence, causeOp: cause.op, causePhase: cause.phase, causeAt: `${cause.file}:${cause.line}:${cause.column}` };
  if (f.source && f.evidence.cause !== 'after-growth') evidence.originalSource = `${f.source.file}:${f.source.line}:${f.source.column}`;
  const title = guardTitle(cause);
  // An operation with no guard of its own (SigmoidBackward0 from anomaly mode) keeps the detector's ranking.
  const remedies: Remedy[] = title ? [{ id: 'guard-loss', title }, ...f.remedies.filter((r) => r.id !== 'guard-loss')] : f.remedies;
  // After the norm grew (an explosion that overflowed), the layer stays the finding's place: the
  // operation that overflowed first is evidence, not the origin.
  const grew = f.evidence.cause === 'after-growth';
  return {
    ...f,
    cause: { op: cause.op, file: cause.file, line: cause.line, column: cause.column },
    source: grew ? f.source : { file: cause.file, line: cause.line, column: cause.column },
    message: `${f.message} The first non-finite value was made by ${cause.op} (${cause.phase === 'backward' ? 'its gradient' : cause.phase === 'forward' ? 'its output' : 'PyTorch anomaly mode'}) at line ${cause.line}.`,
    evidence,
    remedies,
  };
}
