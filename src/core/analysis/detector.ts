// The detector contract. A detector folds step rows into a small, bounded state (no I/O, no clock)
// and turns that state into findings on demand; the same sequence of rows gives the same findings
// whether they arrive one at a time (live) or all at once (a replay).
import type { DetailMsg } from '../protocol/messages';
import type { Finding } from './finding';
import type { AnalysisContext, StepRow } from './model';

/** What one detector publishes for the others (read-only to them). */
export interface SharedFacts {
  /** The first row seen (initial gains are read from it). */
  firstRow: StepRow | null;
  /** Step at which an explosion was detected, if it was. */
  explodingAt: number | null;
  /** First step of the growth that was flagged. */
  explodingFrom: number | null;
  /** Step at which vanishing gradients were detected, if they were. */
  vanishingAt: number | null;
  /** Step of the first non-finite gradient, if any. */
  firstNonFiniteAt: number | null;
}

export interface DetectorEnv {
  ctx: AnalysisContext;
  shared: SharedFacts;
  /** DETAIL history of a tensor, oldest first (the store's bounded history). */
  details(tensorId: number): readonly DetailMsg[];
}

export interface Detector {
  /** Folds one step (rows arrive in step order). */
  step(row: StepRow, env: DetectorEnv): void;
  /** Current findings (may be called after every step). `final`: the run has ended. */
  findings(env: DetectorEnv, final: boolean): Finding[];
}
