// A distributed run's processes as the panel shows them (issue 17): the rank picker's list (every
// process that joined, and the ranks the job expected that never did), the process the charts show,
// and the cross-rank overlay (each rank's global norm). Pure: the host builds it from the ranks'
// stores, the webview only draws it. The cross-rank analysis (desync findings, FSDP norms combined
// from the shards) is computed elsewhere and passed through as `crossRank`.
import type { RunStore } from '../store/runStore';
import type { PanelCrossRank, PanelRank, PanelRankCurve, PanelRankKey, PanelRanks } from './messages';
import { toPanelCurve } from './snapshot';

/** One process of a run: its rank and its store (src/process/runHandle.ts RunRank is one). */
export interface RankSource {
  readonly rank: number;
  readonly store: RunStore;
}

export const rankKeyOf = (r: RankSource): PanelRankKey => ({ rank: r.rank, pid: r.store.hello?.pid ?? null });
export const sameRankKey = (a: PanelRankKey, b: PanelRankKey): boolean => a.rank === b.rank && a.pid === b.pid;
/** A key as a string, for maps (cursors of the live overlay). */
export const rankKeyText = (k: PanelRankKey): string => `${k.rank}:${k.pid ?? '-'}`;

/**
 * Every process of a run: its ranks, and the run's own store when it is a rank they do not list.
 * Under a launcher a live session lists its rank 0 (the run's own store) itself, but a saved run's
 * rank files hold only the other ranks; a script that started its ranks (mp.spawn) is no rank of
 * its own (the ranks list its rank 0). A run without ranks has none: one process, no picker.
 */
export function runProcesses(own: RunStore, ranks: readonly RankSource[] | undefined): RankSource[] {
  const list = (ranks ?? []).filter((r) => r.rank >= 0);
  if (list.length === 0) return [];
  const ownRank = own.hello?.rank;
  if (!list.some((r) => r.store === own) && ownRank !== undefined && ownRank >= 0 && !list.some((r) => r.rank === ownRank)) list.push({ rank: ownRank, store: own });
  return list.sort((a, b) => a.rank - b.rank || (a.store.hello?.pid ?? 0) - (b.store.hello?.pid ?? 0));
}

/** Ranks the job has: what the launcher said (0: unknown) or the largest world size a HELLO gave, at least the ranks seen. */
export function expectedRankCount(ranks: readonly RankSource[], said = 0): number {
  let n = said;
  for (const r of ranks) n = Math.max(n, r.store.hello?.worldSize ?? 0, r.rank + 1);
  return n;
}

/** The picker's list: each process that joined, and each rank below `expected` that none did (missing, in rank order). */
export function rankList(ranks: readonly RankSource[], expected: number): PanelRank[] {
  const out: PanelRank[] = ranks.map((r) => {
    const h = r.store.hello;
    return {
      rank: r.rank,
      pid: h?.pid ?? null,
      state: 'joined',
      host: h?.host ?? null,
      localRank: h?.localRank ?? null,
      steps: r.store.stepCount,
      end: r.store.end?.reason ?? null,
    };
  });
  const seen = new Set(ranks.map((r) => r.rank));
  for (let rank = 0; rank < expected; rank++) {
    if (!seen.has(rank)) out.push({ rank, pid: null, state: 'missing', host: null, localRank: null, steps: 0, end: null });
  }
  return out.sort((a, b) => a.rank - b.rank);
}

/**
 * The process to show: the one asked for (rank and pid; a rank whose process changed: the same
 * rank), else null (the caller shows its default: shownStore).
 */
export function findRank<R extends RankSource>(ranks: readonly R[], want: PanelRankKey | null): R | null {
  if (!want) return null;
  return ranks.find((r) => sameRankKey(rankKeyOf(r), want)) ?? ranks.find((r) => r.rank === want.rank) ?? null;
}

/** Each rank's global norm, after the step its cursor says (`since`: the last step the webview holds of that rank; absent: all). */
export function rankCurves(ranks: readonly RankSource[], since?: ReadonlyMap<string, number>): PanelRankCurve[] {
  return ranks.map((r) => {
    const key = rankKeyOf(r);
    const after = since?.get(rankKeyText(key));
    const c = r.store.globalNorm(after === undefined ? {} : { since: after });
    return { ...key, globalNorm: toPanelCurve(c.steps, c.values) };
  });
}

export interface RanksViewOptions {
  /** The process the charts show: one of `ranks`, or the script's own process that is none of them (it started its ranks: mp.spawn). */
  shown: RankSource;
  /** Ranks the job has (expectedRankCount). */
  expected: number;
  /** Per rank (rankKeyText), the last step already sent: the overlay carries only later points. */
  since?: ReadonlyMap<string, number>;
  /** The cross-rank analysis' findings and combined series, when it ran. */
  crossRank?: PanelCrossRank;
}

/** The ranks part of a snapshot, an append or a replace; null for a run of one process (no picker, no overlay). */
export function buildRanks(ranks: readonly RankSource[], opts: RanksViewOptions): PanelRanks | null {
  const list = rankList(ranks, opts.expected);
  if (list.length < 2) return null;
  const shown = ranks.some((r) => r.store === opts.shown.store) ? rankKeyOf(opts.shown) : null;
  const view: PanelRanks = { shown, list, globalNorms: rankCurves(ranks, opts.since) };
  if (opts.crossRank) view.crossRank = opts.crossRank;
  return view;
}

/** The cursors after sending `view`'s curves: each rank's last step sent. */
export function advanceRankCursors(cursors: Map<string, number>, view: PanelRanks | null): void {
  for (const c of view?.globalNorms ?? []) {
    const n = c.globalNorm.steps.length;
    if (n > 0) cursors.set(rankKeyText(c), c.globalNorm.steps[n - 1]);
  }
}
