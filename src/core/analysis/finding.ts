// A finding: what the analyzer concluded about a run. The CLI's JSON, the diagnostics, the hover and
// the panel all render these same objects.
import type { SourceLocation } from '../protocol/messages';

/** The kinds of finding, declared once (CLI --finding, diagnostics, webview validation). */
/** `rank-desync` comes from the cross-rank analysis of a distributed run (crossRank.ts), not from the Analyzer. */
export const FINDING_KINDS = ['exploding-gradient', 'vanishing-gradient', 'non-finite-gradient', 'dead-units', 'update-ratio', 'rank-desync'] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

/** Severities, most severe first: the one order findings are listed in (analyzer, panel). */
export const SEVERITIES = ['error', 'warning', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];
/** Rank of a severity in SEVERITIES (0: most severe), for sorting. */
export const severityRank = (s: Severity): number => SEVERITIES.indexOf(s);

export const isFindingKind = (x: unknown): x is FindingKind => typeof x === 'string' && (FINDING_KINDS as readonly string[]).includes(x);
/**
 * Every remedy GradScope can propose, declared once: the analyzer's titles (model.ts) and each fix
 * language's rewrites (src/core/fixes: a `Record<RemedyId, …>`) are keyed by it, so a remedy added
 * here that one of them lacks fails to compile. The ids are the contract with the quick fixes and
 * the CLI's `--remedy` (docs/findings.md).
 */
export const REMEDY_IDS = ['clip-global-norm', 'he-init', 'glorot-init', 'lower-lr', 'raise-lr', 'guard-loss', 'zero-bias-init', 'lower-clip-threshold', 'normalize-inputs'] as const;
export type RemedyId = (typeof REMEDY_IDS)[number];

export function isRemedyId(s: string): s is RemedyId {
  return (REMEDY_IDS as readonly string[]).includes(s);
}

export interface Remedy {
  id: RemedyId;
  title: string;
}

/** One affected layer of a finding that concerns several: where it was built and its own tensors. */
export interface FindingLocation {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** The notebook cell's 0-based index when `file` is a notebook (SourceLocation.cell). */
  cell?: number;
  layer: string;
  tensors: string[];
}

/** The operation that produced the first non-finite value, read from a checked re-run (locate-nan). */
export interface FindingCause {
  /** The framework's name for it: `LogBackward0`, `sqrt`, `div`. */
  op: string;
  file: string;
  /** 1-based. */
  line: number;
  column: number;
}

export interface Finding {
  /** Stable within a run: kind + layer, so a live update replaces rather than duplicates. */
  id: string;
  kind: FindingKind;
  severity: Severity;
  /** The step at which the problem was detected (or first seen). */
  step: number;
  stepRange: [number, number];
  /** Names of the tensors concerned. */
  tensors: string[];
  /** The responsible layer, or null when the finding is global. */
  layer: string | null;
  /** Where that layer (or, for global findings, the optimizer) was built. */
  source: SourceLocation | null;
  /**
   * Every affected layer, when the finding concerns several (the primary one, in `source`, among
   * them); absent when it concerns one layer or none.
   */
  locations?: FindingLocation[];
  /** The operation that made the first non-finite value, when a locate-nan re-run found it. */
  cause?: FindingCause;
  message: string;
  /** Numbers a person can check, by name. */
  evidence: Record<string, number | string | null>;
  /** Ranked, best first. */
  remedies: Remedy[];
}
