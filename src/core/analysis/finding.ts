// A finding: what the analyzer concluded about a run. The CLI's JSON, the diagnostics, the hover and
// the panel all render these same objects.
import type { SourceLocation } from '../protocol/messages';

export type FindingKind = 'exploding-gradient' | 'vanishing-gradient' | 'non-finite-gradient' | 'dead-units' | 'update-ratio';
export type Severity = 'error' | 'warning' | 'info';
export type RemedyId = 'clip-global-norm' | 'he-init' | 'glorot-init' | 'lower-lr' | (string & {});

export interface Remedy {
  id: RemedyId;
  title: string;
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
  message: string;
  /** Numbers a person can check, by name. */
  evidence: Record<string, number | string | null>;
  /** Ranked, best first. */
  remedies: Remedy[];
}
