// Cross-rank analysis of a distributed run (issue 17): what no single rank's store can tell.
//
// API (stable; the panel's rank picker and the CLI call it):
//   analyzeRanks(ranks: readonly RankStore[], opts?) → CrossRankAnalysis
//     .findings  `rank-desync` findings (at most one: the first divergence, with every rank it concerns)
//     .sharded   true when some tensor is held as shards (TENSORS `shard`: FSDP2, DTensor)
//     .combined  for a sharded run, the whole model's series combined from every rank's shards
//                (CombinedSeries); null otherwise
//     .compared  how much was compared (steps held by two ranks or more, tensor groups)
//
// Replicas must agree. Tensors are matched across ranks by name and by block (a tensor held whole,
// or one shard's offset and shape): every group of two ranks or more holds replicas of the same
// values. Under DDP every parameter is such a group (after the all-reduce every rank's gradient is the
// same, and so are the parameters); under FSDP2 each block is held by one rank (nothing to compare);
// under HSDP each block by its replicas. Each group's gradient norms, and where those agree its
// parameter norms, are compared step by step over the steps every rank still holds at full resolution
// (RunStore's ring). A relative difference above DESYNC_RELATIVE_TOLERANCE,
// a gradient present on one rank and absent on another, NaN on one and a number on another, or a step
// one rank skipped while it went on to later ones (a rank that ended early, crashed, is said by the
// run's exit, not here) is a desync.
//
// Combined (sharded runs): per tensor and step, √Σ over its distinct blocks of the block's norm², one
// replica per block (the lowest rank holding it); the global norm √Σ over tensors of that, i.e. the
// square root of the sum over ranks and tensors of norm² with replicas counted once. Steps are those
// every rank holding a block of the model has at full resolution.
import type { Finding } from './finding';
import type { TensorInfo } from '../protocol/messages';
import type { RunStore } from '../store/runStore';

/** One process of the run and its store (RunRank in src/process/runHandle.ts has this shape). */
export interface RankStore {
  readonly rank: number;
  readonly store: RunStore;
}

/**
 * Largest relative difference |a − b| / max(|a|, |b|) between two replicas' norms that is not a desync.
 * After an all-reduce the replicas hold bit-identical gradients and the probe computes each norm with
 * the same code on the same values: measured on DDP 2 ranks (gloo, CPU, test/fixtures/distributed/
 * ddp.py) the difference is exactly 0. The norms travel as float64 and are kept as float32 (relative
 * rounding 6e-8); a replica whose norm is summed in another order (other thread counts, another
 * device kind) differs by about √n·1e-7 in fp32, under 1e-5 for n up to 10⁴ per thread chunk.
 * A desync (one rank's other data, a skipped all-reduce, a scaled gradient) differs by 1e-3 or more.
 */
export const DESYNC_RELATIVE_TOLERANCE = 1e-5;
/** Norms both below this are equal (a zero gradient on one rank and 1e-40 on another is no desync). */
const DESYNC_ABSOLUTE_FLOOR = 1e-30;

export interface CombinedTensor {
  /** The tensor's name (the same on every rank). */
  name: string;
  layer: string;
  /** The whole tensor's shape. */
  shape: number[];
  /** Distinct blocks combined (1 for a tensor held whole). */
  blocks: number;
  /** Per step of CombinedSeries.steps: √Σ over blocks of norm² (finite norms); NaN where no block had a gradient (see `present`). */
  norms: Float64Array;
  /** 1 where at least one block had a gradient at that step. */
  present: Uint8Array;
}

/** The whole model's series of a sharded run, combined from every rank's shards. */
export interface CombinedSeries {
  /** The ranks combined, ascending. */
  ranks: number[];
  /** Step indices (ascending) that every rank holding a block has at full resolution. */
  steps: Float64Array;
  /** Per step: √Σ over tensors of the combined norm² (finite norms only, absent tensors left out). */
  globalNorm: Float64Array;
  /** Per step: 1 when some block had a NaN or ±Inf entry (the norms are over finite entries). */
  nonFinite: Uint8Array;
  tensors: CombinedTensor[];
}

export interface CrossRankAnalysis {
  ranks: number[];
  /** Some tensor is held as shards on some rank (TENSORS `shard`). */
  sharded: boolean;
  findings: Finding[];
  /** Set when sharded: the combined series; null otherwise. */
  combined: CombinedSeries | null;
  /** Steps compared between replicas (held by two ranks or more), replica groups compared. */
  compared: { steps: number; groups: number };
}

export interface AnalyzeRanksOptions {
  /** Relative tolerance between replicas (default DESYNC_RELATIVE_TOLERANCE). */
  tolerance?: number;
}

/** One tensor of one rank: where its column is in that rank's store. */
interface Member {
  rank: number;
  /** Index into the `ranks` argument. */
  r: number;
  id: number;
}

interface Group {
  name: string;
  info: TensorInfo;
  /** Block key: 'whole' or offset/localShape. */
  block: string;
  members: Member[];
}

/** A rank's full-resolution steps: step key → ordinal in its store. */
interface HeldSteps {
  byKey: Map<string, number>;
  first: number;
  last: number;
}

const keyOf = (step: number, optimizer: number): string => `${optimizer}:${step}`;
const blockKey = (t: TensorInfo): string => (t.shard ? `${t.shard.offset.join(',')}/${t.shard.localShape.join(',')}` : 'whole');

function heldSteps(store: RunStore): HeldSteps {
  const byKey = new Map<string, number>();
  let first = Infinity;
  let last = -Infinity;
  for (let o = store.recentFirstOrdinal; o < store.stepCount; o++) {
    const { step, optimizer } = store.recentStep(o);
    byKey.set(keyOf(step, optimizer), o);
    first = Math.min(first, step);
    last = Math.max(last, step);
  }
  return { byKey, first, last };
}

/** Relative difference of two norms as the tolerance reads it; NaN/±Inf equal only to themselves (then 0), else Infinity. */
export function relativeDifference(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b ? 0 : Infinity;
  const m = Math.max(Math.abs(a), Math.abs(b));
  if (m < DESYNC_ABSOLUTE_FLOOR) return 0;
  return Math.abs(a - b) / m;
}

/** What replicas must agree on, in this order: the gradient's norm, then the parameter's. */
const COMPARED_STATS = ['norm', 'paramNorm'] as const;
type ComparedStat = (typeof COMPARED_STATS)[number];
const STAT_TEXT: Record<ComparedStat, string> = { norm: 'gradient norm', paramNorm: 'parameter norm' };

/** One disagreement at one step. */
interface Divergence {
  step: number;
  /** The ranks that disagree with the reference (the largest agreeing set, the lowest rank's on a tie). */
  ranks: number[];
  reference: number;
  tensors: string[];
  /** Largest relative difference among the tensors (Infinity: absent vs present, NaN vs number). */
  relDiff: number;
  /** The first tensor's values (of `stat`): the reference's and the first disagreeing rank's. */
  tensor: string;
  stat: ComparedStat;
  value: number | 'absent';
  other: number | 'absent';
  /** Set for a skipped step: the ranks that went on without it. */
  skipped?: boolean;
}

/**
 * The processes that are ranks of one distributed job: those whose HELLO gives a world of two or more
 * (or none: run files from before worldSize). A script's own workers that train on their own
 * (pytorch/examples' mnist_hogwild: `mp.Process` children, spawn-started, each stepping a shared
 * model with no process group) join the run as processes of world size 1: they are not replicas, and
 * their gradients differ by design.
 */
export function distributedRanks<T extends RankStore>(ranks: readonly T[]): T[] {
  return ranks.filter((r) => {
    const w = r.store.hello?.worldSize;
    return w === undefined || w >= 2;
  });
}

/** analyzeRanks over the ranks of a distributed job (distributedRanks), or null where fewer than two joined. */
export function crossRankOf(ranks: readonly RankStore[], opts: AnalyzeRanksOptions = {}): CrossRankAnalysis | null {
  const job = distributedRanks(ranks);
  return job.length > 1 ? analyzeRanks(job, opts) : null;
}

export function analyzeRanks(ranks: readonly RankStore[], opts: AnalyzeRanksOptions = {}): CrossRankAnalysis {
  const tol = opts.tolerance ?? DESYNC_RELATIVE_TOLERANCE;
  const sorted = [...ranks].sort((a, b) => a.rank - b.rank);
  const rankIds = sorted.map((r) => r.rank);
  const groups = new Map<string, Group>();
  let sharded = false;
  sorted.forEach(({ rank, store }, r) => {
    for (const t of store.tensors) {
      if (!t) continue;
      if (t.shard) sharded = true;
      const k = `${t.name}\u0000${blockKey(t)}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { name: t.name, info: t, block: blockKey(t), members: [] }));
      g.members.push({ rank, r, id: t.id });
    }
  });
  const held = sorted.map((r) => heldSteps(r.store));
  const replicaGroups = [...groups.values()].filter((g) => g.members.length > 1);
  const { divergences, compared } = compare(sorted, held, replicaGroups, tol);
  const findings = divergences.length ? [desyncFinding(divergences, replicaGroups, tol)] : [];
  return {
    ranks: rankIds,
    sharded,
    findings,
    combined: sharded ? combine(sorted, held, [...groups.values()]) : null,
    compared: { steps: compared, groups: replicaGroups.length },
  };
}

/** Steps held by two ranks or more, in step order, each with the ranks that hold it. */
function commonSteps(held: readonly HeldSteps[]): { key: string; step: number; holders: number[] }[] {
  const all = new Map<string, { key: string; step: number; holders: number[] }>();
  held.forEach((h, r) => {
    for (const key of h.byKey.keys()) {
      let e = all.get(key);
      if (!e) all.set(key, (e = { key, step: Number(key.slice(key.indexOf(':') + 1)), holders: [] }));
      e.holders.push(r);
    }
  });
  return [...all.values()].sort((a, b) => a.step - b.step || a.key.localeCompare(b.key));
}

function compare(ranks: readonly RankStore[], held: readonly HeldSteps[], groups: readonly Group[], tol: number): { divergences: Divergence[]; compared: number } {
  const out: Divergence[] = [];
  let compared = 0;
  if (ranks.length < 2) return { divergences: out, compared };
  // Rows read once per rank and step: each rank's norms, NaN/Inf counts and absence by tensor id.
  const rowLen = ranks.map((r) => Math.max(r.store.stepTensorCount, r.store.tensors.length));
  const steps = commonSteps(held);
  for (const s of steps) {
    // A rank that holds none of this step while its own held steps run past it skipped it.
    const skippers: number[] = [];
    held.forEach((h, r) => {
      if (!h.byKey.has(s.key) && s.step > h.first && s.step < h.last) skippers.push(r);
    });
    if (skippers.length) {
      const refR = s.holders[0];
      out.push({
        step: s.step,
        ranks: skippers.map((r) => ranks[r].rank),
        reference: ranks[refR].rank,
        tensors: [],
        relDiff: Infinity,
        tensor: '',
        stat: 'norm',
        value: 'absent',
        other: 'absent',
        skipped: true,
      });
    }
    if (s.holders.length < 2) continue;
    compared++;
    const rows = new Map<number, { norm: Float64Array; absent: Uint8Array; param: Float64Array | null }>();
    for (const r of s.holders) {
      const o = held[r].byKey.get(s.key) as number;
      const norm = new Float64Array(rowLen[r]);
      const absent = new Uint8Array(rowLen[r]);
      const param = new Float64Array(rowLen[r]);
      ranks[r].store.readRecentRow(o, 'norm', norm, absent);
      rows.set(r, { norm, absent, param: ranks[r].store.readRecentRow(o, 'paramNorm', param) ? param : null });
    }
    const bad = new Map<number, { tensors: string[]; relDiff: number; first: { tensor: string; stat: ComparedStat; value: number | 'absent'; other: number | 'absent' } }>();
    let reference = -1;
    const agree = (a: number | 'absent', b: number | 'absent'): boolean => (a === 'absent' || b === 'absent' ? a === b : relativeDifference(a, b) <= tol);
    for (const g of groups) {
      // The gradient first; where the gradients agree, the parameter (replicas whose parameters
      // drifted apart, after one rank applied another update, show it at every later step).
      for (const stat of COMPARED_STATS) {
        const vals: { r: number; v: number | 'absent' }[] = [];
        for (const m of g.members) {
          const row = rows.get(m.r);
          if (!row || m.id >= row.norm.length) continue;
          if (stat === 'norm') vals.push({ r: m.r, v: row.absent[m.id] ? 'absent' : row.norm[m.id] });
          else if (row.param && !row.absent[m.id] && !Number.isNaN(row.param[m.id])) vals.push({ r: m.r, v: row.param[m.id] });
        }
        if (vals.length < 2) continue;
        // The reference value: the one most members agree with, the lowest rank's on a tie.
        let best = vals[0];
        let bestCount = -1;
        for (const c of vals) {
          const n = vals.filter((x) => agree(c.v, x.v)).length;
          if (n > bestCount) {
            best = c;
            bestCount = n;
          }
        }
        let differs = false;
        for (const x of vals) {
          if (agree(best.v, x.v)) continue;
          differs = true;
          const rel = best.v === 'absent' || x.v === 'absent' ? Infinity : relativeDifference(best.v, x.v);
          const rank = ranks[x.r].rank;
          let b = bad.get(rank);
          if (!b) bad.set(rank, (b = { tensors: [], relDiff: 0, first: { tensor: g.name, stat, value: best.v, other: x.v } }));
          if (!b.tensors.includes(g.name)) b.tensors.push(g.name);
          b.relDiff = Math.max(b.relDiff, rel);
          if (reference < 0) reference = ranks[best.r].rank;
        }
        if (differs) break;
      }
    }
    if (bad.size) {
      const worst = [...bad.entries()].sort((a, b) => a[0] - b[0]);
      const first = worst[0][1];
      const tensors = [...new Set(worst.flatMap(([, b]) => b.tensors))];
      out.push({
        step: s.step,
        ranks: worst.map(([r]) => r),
        reference,
        tensors,
        relDiff: Math.max(...worst.map(([, b]) => b.relDiff)),
        tensor: first.first.tensor,
        stat: first.first.stat,
        value: first.first.value,
        other: first.first.other,
      });
    }
  }
  return { divergences: out, compared };
}

const listText = (xs: readonly (string | number)[], max = 4): string => `${xs.slice(0, max).join(', ')}${xs.length > max ? `, … (${xs.length} in all)` : ''}`;
const num = (v: number | 'absent'): string => (v === 'absent' ? 'no gradient' : Number.isFinite(v) ? v.toPrecision(6) : String(v));

/** One finding for the run: the first divergence, with the counts and every rank that ever diverged. */
function desyncFinding(ds: readonly Divergence[], groups: readonly Group[], tol: number): Finding {
  const d = ds[0];
  const allRanks = [...new Set(ds.flatMap((x) => x.ranks))].sort((a, b) => a - b);
  const skippedSteps = ds.filter((x) => x.skipped);
  const who = `rank${d.ranks.length === 1 ? '' : 's'} ${listText(d.ranks)}`;
  const what = d.skipped
    ? `${who} skipped step ${d.step}, which rank ${d.reference} took, and went on to later steps`
    : `${who} disagree${d.ranks.length === 1 ? 's' : ''} with rank ${d.reference} at step ${d.step}: ${d.tensor}'s ${STAT_TEXT[d.stat]} is ${num(d.other)} there and ${num(d.value)} on rank ${d.reference}${
        Number.isFinite(d.relDiff) ? ` (relative difference ${d.relDiff.toPrecision(3)})` : ''
      }${d.tensors.length > 1 ? `; ${d.tensors.length} tensors differ` : ''}`;
  const later = ds.length > 1 ? `; ${ds.length} steps disagree in all (${listText(allRanks.map((r) => `rank ${r}`))})` : '';
  const info = groups.find((g) => g.name === d.tensor)?.info;
  return {
    id: 'rank-desync:global',
    kind: 'rank-desync',
    severity: 'error',
    step: d.step,
    stepRange: [d.step, ds[ds.length - 1].step],
    tensors: d.tensors,
    layer: null,
    source: info?.source ? { ...info.source } : null,
    message: `ranks out of step: ${what}${later}. Replicas of a parameter (DDP after its all-reduce) must hold the same gradient and the same values on every rank`,
    evidence: {
      firstStep: d.step,
      ranks: d.ranks.join(', '),
      referenceRank: d.reference,
      tensor: d.skipped ? null : d.tensor,
      statistic: d.skipped ? null : d.stat,
      relDiff: d.skipped ? null : d.relDiff,
      value: d.skipped || d.value === 'absent' ? null : d.value,
      rankValue: d.skipped || d.other === 'absent' ? null : d.other,
      skipped: d.skipped ? 'yes' : 'no',
      stepsDisagreeing: ds.length,
      skippedSteps: skippedSteps.length,
      ranksDisagreeing: allRanks.join(', '),
      tolerance: tol,
    },
    remedies: [],
  };
}

function combine(ranks: readonly RankStore[], held: readonly HeldSteps[], groups: readonly Group[]): CombinedSeries {
  // The ranks that hold a block of the model: their common steps.
  const holders = new Set<number>();
  for (const g of groups) for (const m of g.members) holders.add(m.r);
  const hs = [...holders].sort((a, b) => a - b);
  let keys: string[] = hs.length ? [...held[hs[0]].byKey.keys()] : [];
  for (const r of hs.slice(1)) keys = keys.filter((k) => held[r].byKey.has(k));
  const stepOf = (k: string): number => Number(k.slice(k.indexOf(':') + 1));
  keys.sort((a, b) => stepOf(a) - stepOf(b));
  // Per tensor name: its distinct blocks, one replica each (the lowest rank's).
  const byName = new Map<string, { info: TensorInfo; blocks: Member[] }>();
  for (const g of groups) {
    let e = byName.get(g.name);
    if (!e) byName.set(g.name, (e = { info: g.info, blocks: [] }));
    e.blocks.push([...g.members].sort((a, b) => a.rank - b.rank)[0]);
  }
  const names = [...byName.keys()];
  const n = keys.length;
  const tensors: CombinedTensor[] = names.map((name) => {
    const e = byName.get(name) as { info: TensorInfo; blocks: Member[] };
    return { name, layer: e.info.layer, shape: [...e.info.shape], blocks: e.blocks.length, norms: new Float64Array(n), present: new Uint8Array(n) };
  });
  const globalNorm = new Float64Array(n);
  const nonFinite = new Uint8Array(n);
  const rowLen = ranks.map((r) => Math.max(r.store.stepTensorCount, r.store.tensors.length));
  keys.forEach((k, i) => {
    const rows = new Map<number, { norm: Float64Array; absent: Uint8Array; nan: Float64Array; inf: Float64Array }>();
    for (const r of hs) {
      const o = held[r].byKey.get(k) as number;
      const row = { norm: new Float64Array(rowLen[r]), absent: new Uint8Array(rowLen[r]), nan: new Float64Array(rowLen[r]), inf: new Float64Array(rowLen[r]) };
      ranks[r].store.readRecentRow(o, 'norm', row.norm, row.absent);
      ranks[r].store.readRecentRow(o, 'nanCount', row.nan);
      ranks[r].store.readRecentRow(o, 'infCount', row.inf);
      rows.set(r, row);
    }
    let total = 0;
    names.forEach((name, t) => {
      let sq = 0;
      let present = false;
      for (const m of (byName.get(name) as { blocks: Member[] }).blocks) {
        const row = rows.get(m.r);
        if (!row || m.id >= row.norm.length || row.absent[m.id]) continue;
        present = true;
        const v = row.norm[m.id];
        if (Number.isFinite(v)) sq += v * v;
        if (row.nan[m.id] > 0 || row.inf[m.id] > 0 || !Number.isFinite(v)) nonFinite[i] = 1;
      }
      tensors[t].present[i] = present ? 1 : 0;
      tensors[t].norms[i] = present ? Math.sqrt(sq) : NaN;
      if (present) total += sq;
    });
    globalNorm[i] = Math.sqrt(total);
  });
  return { ranks: hs.map((r) => ranks[r].rank), steps: Float64Array.from(keys.map(stepOf)), globalNorm, nonFinite, tensors };
}
