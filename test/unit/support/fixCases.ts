// The fix-engine golden cases' case.json entries (test/fixtures/fixes/{shapes,python}/<case>/) and
// the hand-built finding each one stands for, shared by the TS and the Python golden tests.
import { isRemedyId, REMEDY_IDS, type Finding, type FindingKind, type RemedyId } from '../../../src/core/analysis/finding';

/** The remedies that, applied a second time, report alreadyApplied (the learning rate moves again). */
export const IDEMPOTENT: ReadonlySet<string> = new Set<RemedyId>(REMEDY_IDS.filter((id) => id !== 'lower-lr' && id !== 'raise-lr'));

export interface CaseFix {
  name: string;
  remedy: string;
  finding: { kind: FindingKind; line?: number; column?: number; layer?: string; step?: number; evidence?: Record<string, number | string | null> };
  globalNorms?: (number | null)[];
}

/**
 * The finding of a case in `file`. `layerForLine`: the layer name a case with a line but no layer
 * gets (the TF.js cases' "layer"; the Python engine reads a Sequential index from the name, so its
 * cases get none).
 */
export function makeFinding(file: string, c: CaseFix, layerForLine: string | null = null): Finding {
  const g = c.finding;
  const layer = g.layer ?? (g.line ? layerForLine : null);
  return {
    id: `${g.kind}:${layer ?? 'global'}`,
    kind: g.kind,
    severity: 'error',
    step: g.step ?? 0,
    stepRange: [0, g.step ?? 0],
    tensors: [],
    layer,
    source: g.line ? { file, line: g.line, column: g.column ?? 1 } : null,
    message: '',
    evidence: g.evidence ?? {},
    // (a case may ask for an id GradScope does not know, as `--remedy` may: the engine refuses it; no finding ranks one)
    remedies: isRemedyId(c.remedy) ? [{ id: c.remedy, title: '' }] : [],
  };
}
