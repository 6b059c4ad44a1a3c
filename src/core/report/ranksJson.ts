// The ranks of a distributed run in the `gradscope.run/1.1` JSON (issue 17): every process that
// joined, each with its own tensors, summary and findings; the ranks the job expected and those that
// never joined; which rank the rest of the document shows; and the cross-rank analysis (desync
// findings, and for a sharded run the model's global norm combined from every rank's shards).
import type { CrossRankAnalysis } from '../analysis/crossRank';
import type { Finding } from '../analysis/finding';
import type { RunStore } from '../store/runStore';
import { findingJson, summaryJson, tensorsJson, type RunJsonFinding, type RunJsonSummary, type RunJsonTensor } from './runJson';

export interface RanksJsonRank {
  rank: number;
  store: RunStore;
  runFile: string;
  /** This rank's own findings (its store's analyzer). */
  findings: readonly Finding[];
}

export interface RankJson {
  rank: number;
  localRank: number | null;
  worldSize: number | null;
  host: string | null;
  pid: number | null;
  steps: number;
  lastStep: number;
  /** This rank's global norm (of its shards only when `summary.globalNormScope` is `shard`). */
  globalNorm: { first: number | null; max: number | null; last: number | null };
  end: { reason: string; steps: number; error: unknown } | null;
  runFile: string;
  tensors: RunJsonTensor[];
  summary: RunJsonSummary;
  findings: RunJsonFinding[];
}

/** A norm series' first, largest and last finite value (null: none). */
export interface NormSummary {
  first: number | null;
  max: number | null;
  last: number | null;
}

export interface CrossRankJson {
  ranks: number[];
  sharded: boolean;
  /** Steps compared between replicas and replica groups (tensors, or shards, held by two ranks or more). */
  compared: { steps: number; groups: number };
  /** The relative tolerance between replicas' norms. */
  tolerance: number;
  /** The `rank-desync` findings (also in the document's `findings`). */
  findings: RunJsonFinding[];
  /** A sharded run: the model's norms combined from every rank's shards (docs/findings.md, rank-desync; crossRank.ts). */
  combined: {
    ranks: number[];
    globalNorm: NormSummary;
    /** Per step held by every rank: the combined global norm (null: non-finite entries were left out, see nonFiniteSteps). */
    series: { steps: number[]; globalNorm: number[] };
    nonFiniteSteps: number[];
    tensors: { name: string; layer: string; shape: number[]; blocks: number; norm: NormSummary }[];
  } | null;
}

export interface RanksJson {
  ranks: RankJson[];
  expectedRanks: number;
  missingRanks: number[];
  /** The rank whose store the rest of the document shows (null: the script's own process, no rank). */
  shownRank: number | null;
  crossRank: CrossRankJson | null;
}

const finite = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function normSummary(values: ArrayLike<number>, present?: ArrayLike<number>): NormSummary {
  let first: number | null = null;
  let max: number | null = null;
  let last: number | null = null;
  for (let i = 0; i < values.length; i++) {
    if (present && !present[i]) continue;
    const v = finite(values[i]);
    if (v === null) continue;
    if (first === null) first = v;
    if (max === null || v > max) max = v;
    last = v;
  }
  return { first, max, last };
}

export function crossRankJson(a: CrossRankAnalysis, tolerance: number): CrossRankJson {
  const c = a.combined;
  return {
    ranks: [...a.ranks],
    sharded: a.sharded,
    compared: { ...a.compared },
    tolerance,
    findings: a.findings.map(findingJson),
    combined: c
      ? {
          ranks: [...c.ranks],
          globalNorm: normSummary(c.globalNorm),
          series: { steps: [...c.steps], globalNorm: [...c.globalNorm] },
          nonFiniteSteps: [...c.steps].filter((_, i) => c.nonFinite[i]),
          tensors: c.tensors.map((t) => ({ name: t.name, layer: t.layer, shape: [...t.shape], blocks: t.blocks, norm: normSummary(t.norms, t.present) })),
        }
      : null,
  };
}

export function ranksJson(ranks: readonly RanksJsonRank[], expected: number, shownRank: number | null, cross: CrossRankJson | null): RanksJson {
  const seen = new Set(ranks.map((r) => r.rank));
  const missing: number[] = [];
  for (let r = 0; r < expected; r++) if (!seen.has(r)) missing.push(r);
  return {
    ranks: ranks.map((r) => {
      const h = r.store.hello;
      const end = r.store.end;
      const summary = summaryJson(r.store);
      return {
        rank: r.rank,
        localRank: h?.localRank ?? null,
        worldSize: h?.worldSize ?? null,
        host: h?.host ?? null,
        pid: h?.pid ?? null,
        steps: r.store.stepCount,
        lastStep: r.store.lastStep,
        globalNorm: summary.globalNorm,
        end: end ? { reason: end.reason, steps: end.steps, error: end.error ?? null } : null,
        runFile: r.runFile,
        tensors: tensorsJson(r.store),
        summary,
        findings: r.findings.map(findingJson),
      };
    }),
    expectedRanks: Math.max(expected, seen.size),
    missingRanks: missing,
    shownRank,
    crossRank: cross,
  };
}
