// A distributed run's processes as the panel shows them (issue 17): the rank picker's list (every
// process that joined, and the ranks the job expected that never did), the process the charts show,
// and the cross-rank overlay (each rank's global norm). Pure: the host builds it from the ranks'
// stores, the webview only draws it. The cross-rank analysis (desync findings, FSDP norms combined
// from the shards) is computed elsewhere and passed through as `crossRank`.
import { analyzeRanks, distributedRanks, type CrossRankAnalysis } from '../analysis/crossRank';
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
 * its own. A run without ranks has none: one process, no picker.
 */
export function runProcesses(own: RunStore, ranks: readonly RankSource[] | undefined): RankSource[] {
  const list = (ranks ?? []).filter((r) => r.rank >= 0);
  if (list.length === 0) return [];
  // The run's own process is a rank when its HELLO says it is one of several (a world size); a script
  // that only started its ranks says none.
  const h = own.hello;
  if (h && h.worldSize !== undefined && h.rank >= 0 && !list.some((r) => r.store === own || r.rank === h.rank)) list.push({ rank: h.rank, store: own });
  return list.sort((a, b) => a.rank - b.rank || (a.store.hello?.pid ?? 0) - (b.store.hello?.pid ?? 0));
}

/**
 * What a run's end says of its processes (`joined`: the HELLOs of the connections, some of which may
 * have no store): "2 ranks seen (rank 0: 20 steps, rank 1: 20 steps)", or,
 * where the job expected more ranks than joined, `missing` ("only 1 of 2 ranks seen: rank 1 never
 * connected (not observed)"); and processes that train on their own (world size 1: Hogwild workers,
 * which all say rank 0) by pid: "2 processes that train on their own (pid 11: 94 steps, pid 12: 94
 * steps; no process group: not ranks of one job, not compared)".
 */
export function ranksSeenNote(ranks: readonly RankSource[], expected: number, joined: readonly { rank: number; worldSize: number | null }[] = []): { text: string; missing: string | null } {
  const job = distributedRanks(ranks);
  const alone = ranks.filter((r) => !job.includes(r));
  const stepsOf = (r: RankSource): string => `${r.store.stepCount} step${r.store.stepCount === 1 ? '' : 's'}`;
  const more = (n: number): string => (n > 8 ? ', …' : '');
  const parts: string[] = [];
  let missing: string | null = null;
  if (job.length || !alone.length) {
    // Seen: every rank of the job that joined (`joined`: those whose connection said HELLO, recorded
    // or not, a rank whose run file could not be made included), else those with a store.
    const seen = new Set([...job.map((r) => r.rank), ...joined.filter((j) => j.worldSize === null || j.worldSize >= 2).map((j) => j.rank)]);
    if (expected > seen.size) {
      const absent: number[] = [];
      for (let r = 0; r < expected && absent.length < 8; r++) if (!seen.has(r)) absent.push(r);
      missing = `only ${seen.size} of ${expected} ranks seen: rank${absent.length === 1 ? '' : 's'} ${absent.join(', ')} never connected (not observed)`;
      parts.push(missing);
    } else {
      const each = job.slice(0, 8).map((r) => `rank ${r.rank}: ${stepsOf(r)}`);
      parts.push(`${seen.size} rank${seen.size === 1 ? '' : 's'} seen${each.length ? ` (${each.join(', ')}${more(job.length)})` : ''}`);
    }
  }
  if (alone.length) {
    const each = alone.slice(0, 8).map((r) => `pid ${r.store.hello?.pid ?? '?'}: ${stepsOf(r)}`);
    parts.push(
      `${alone.length} process${alone.length === 1 ? '' : 'es'} that train${alone.length === 1 ? 's' : ''} on ${alone.length === 1 ? 'its' : 'their'} own (${each.join(', ')}${more(alone.length)}; no process group: not ranks of one job, not compared)`,
    );
  }
  return { text: parts.join('; '), missing };
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

/**
 * The cross-rank analysis (core/analysis/crossRank.ts) as the panel shows it: its `rank-desync`
 * findings and, for a sharded run (FSDP2), the model's global norm combined from every rank's shards,
 * drawn over the per-rank lines. The function it returns keeps its last answer until a rank takes a
 * step or one joins, so a flush that brought no step does not re-run the analysis.
 */
export function crossRankView(): (ranks: readonly RankSource[]) => PanelCrossRank | null {
  let key = '';
  let last: PanelCrossRank | null = null;
  return (ranks) => {
    // The script's own process of an mp.spawn run is no rank (rank < 0 or no HELLO rank): left out;
    // so are workers that train on their own (world size 1: Hogwild), which are no replicas.
    const joined = distributedRanks(ranks.filter((r) => r.rank >= 0));
    const now = joined.map((r) => `${r.rank}:${r.store.stepCount}`).join(',');
    if (now === key) return last;
    key = now;
    if (joined.length < 2) return (last = null);
    return (last = panelCrossRank(analyzeRanks(joined)));
  };
}

/** A cross-rank analysis as the panel shows it: its findings, and the series combined from the shards (FSDP), labelled. */
export function panelCrossRank(a: CrossRankAnalysis): PanelCrossRank {
  const combined = a.combined ? { label: `model (${a.combined.ranks.length} ranks' shards)`, globalNorm: toPanelCurve(a.combined.steps, a.combined.globalNorm) } : null;
  return { findings: a.findings, combined };
}

/** The cursors after sending `view`'s curves: each rank's last step sent. */
export function advanceRankCursors(cursors: Map<string, number>, view: PanelRanks | null): void {
  for (const c of view?.globalNorms ?? []) {
    const n = c.globalNorm.steps.length;
    if (n > 0) cursors.set(rankKeyText(c), c.globalNorm.steps[n - 1]);
  }
}

/** A run as the rank view reads it: its own store, its ranks (they may grow while it runs), the ranks the job said it has. */
export interface RankedRun {
  readonly store: RunStore;
  readonly ranks?: readonly RankSource[];
  readonly expectedRanks?: number;
}

/**
 * The store a run shows by default: its own, unless it observed no step while a rank did (the script
 * only started its ranks: mp.spawn), then the lowest rank's that has steps.
 */
export function defaultStore(run: Pick<RankedRun, 'store' | 'ranks'>): RunStore {
  if (run.store.stepCount > 0 || !run.ranks?.length) return run.store;
  let best: RankSource | null = null;
  for (const r of run.ranks) if (r.store.stepCount > 0 && r.rank >= 0 && (!best || r.rank < best.rank)) best = r;
  return best?.store ?? run.store;
}

/**
 * The panel's rank state for one run shown: which process the person picked (validated against the
 * run's processes), the store the charts come from, and the overlay's live cursors. The host's panel
 * holds one; pure, so its rules are unit-tested.
 */
export class RankView {
  private choice: PanelRankKey | null = null;
  private readonly cursors = new Map<string, number>();

  /**
   * @param crossRank the cross-rank analysis (DDP desync findings, FSDP norms combined from the
   *   shards) over the run's processes, run for each message (its findings and combined series go
   *   whole, replacing what the webview holds); absent: the view has none yet.
   */
  constructor(
    private readonly run: RankedRun,
    private readonly crossRank?: (ranks: readonly RankSource[]) => PanelCrossRank | null,
  ) {}

  /** The run's processes now (ranks join while it runs); none for a single process. */
  processes(): RankSource[] {
    return runProcesses(this.run.store, this.run.ranks);
  }

  /** Whether the person picked a process (else the default is shown, and follows defaultStore). */
  get picked(): boolean {
    return this.choice !== null;
  }

  /** The store the charts show: the process picked, else the default (rank 0, or the first rank with steps). */
  store(): RunStore {
    return findRank(this.processes(), this.choice)?.store ?? defaultStore(this.run);
  }

  /** Picks a process the webview named: only one of this run's that joined (exact rank and pid). False: refused, nothing changes. */
  choose(key: PanelRankKey): boolean {
    if (!this.processes().some((r) => sameRankKey(rankKeyOf(r), key))) return false;
    this.choice = { rank: key.rank, pid: key.pid };
    return true;
  }

  /**
   * The ranks part of a message about `store` (the store the charts show): whole for a snapshot or a
   * replace, each rank's points after the last sent for an append. Null for a single process.
   */
  message(store: RunStore, kind: 'whole' | 'append'): PanelRanks | null {
    if (kind === 'whole') this.cursors.clear();
    const view = ranksAbout(this.run, store, this.crossRank, kind === 'append' ? this.cursors : undefined);
    advanceRankCursors(this.cursors, view);
    return view;
  }

  /** The ranks part of a report about `store` (the panel's "Export report"): whole, the live cursors left as they are. */
  report(store: RunStore): PanelRanks | null {
    return ranksAbout(this.run, store, this.crossRank);
  }
}

/**
 * The ranks part of a message about `store` (the store the charts show) for a run: each rank's
 * points after `since` (absent: all), and the cross-rank analysis where `crossRank` is given. Null
 * for a single process. `gradscope run --report` writes its report's with it (wholeRanks).
 */
function ranksAbout(
  run: RankedRun,
  store: RunStore,
  crossRank: ((ranks: readonly RankSource[]) => PanelCrossRank | null) | undefined,
  since?: ReadonlyMap<string, number>,
): PanelRanks | null {
  const procs = runProcesses(run.store, run.ranks);
  if (procs.length === 0) return null;
  const shown = procs.find((r) => r.store === store) ?? { rank: store.hello?.rank ?? 0, store };
  const cross = crossRank?.(procs) ?? undefined;
  return buildRanks(procs, { shown, expected: expectedRankCount(procs, run.expectedRanks ?? 0), since, crossRank: cross });
}

/**
 * The ranks part of a report about `store` (`gradscope run --report`): every process of the run in
 * the list, each one's global norm whole, and `cross` (the analysis the CLI ran) for the findings
 * across ranks and the combined norm. Null for a single process.
 */
export function wholeRanks(run: RankedRun, store: RunStore, cross: CrossRankAnalysis | null): PanelRanks | null {
  return ranksAbout(run, store, cross ? () => panelCrossRank(cross) : undefined);
}
