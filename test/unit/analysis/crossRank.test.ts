// The cross-rank analysis (src/core/analysis/crossRank.ts) on synthetic ranks whose frames go through
// the real codec: DDP replicas that agree or not, a skipped step, FSDP2 shards combined.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyzeRanks, crossRankOf, DESYNC_RELATIVE_TOLERANCE, distributedRanks, relativeDifference, type RankStore } from '../../../src/core/analysis/crossRank';
import { crossRankView, ranksSeenNote } from '../../../src/core/view/ranks';
import { isFindingKind } from '../../../src/core/analysis/finding';
import type { ShardInfo, StatName, TensorInfo } from '../../../src/core/protocol/messages';
import { RunStore } from '../../../src/core/store/runStore';
import { wire } from '../store/helpers';

const STATS: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'hasGrad', 'paramNorm'];

interface RankSpec {
  rank: number;
  /** Per tensor: name, shape, shard (none: whole). */
  tensors: { name: string; shape: number[]; shard?: ShardInfo }[];
  /** Step indices this rank reports. */
  steps: number[];
  /** Norm of tensor t at step s (NaN allowed; 'absent': no gradient). */
  norm: (step: number, t: number) => number | 'absent';
  nanAt?: (step: number, t: number) => boolean;
  /** Parameter norm of tensor t at step s (default: 10 + t, the same on every rank). */
  param?: (step: number, t: number) => number;
  /** HELLO's worldSize (absent: not given, as run files from before it); pid (default 100 + rank). */
  worldSize?: number;
  pid?: number;
}

function rankStore(spec: RankSpec): RankStore {
  const store = new RunStore();
  store.ingest(
    wire({
      type: 'hello',
      probeVersion: 't',
      framework: 'torch',
      backend: 'cpu',
      device: 'cpu',
      backendReason: '',
      pid: spec.pid ?? 100 + spec.rank,
      rank: spec.rank,
      ...(spec.worldSize !== undefined ? { worldSize: spec.worldSize } : {}),
      script: '/t/train.py',
      detailEvery: 0,
    }).msg,
  );
  const tensors: TensorInfo[] = spec.tensors.map((t, id) => ({
    id,
    name: t.name,
    layer: t.name.split('.')[0],
    layerType: 'Linear',
    shape: t.shape,
    source: { file: '/t/train.py', line: 10 + id, column: 5 },
    ...(t.shard ? { shard: t.shard } : {}),
  }));
  store.ingest(wire({ type: 'tensors', tensors }).msg);
  for (const s of spec.steps) {
    const n = tensors.length;
    const cols = STATS.map(() => new Float64Array(n));
    for (let t = 0; t < n; t++) {
      const v = spec.norm(s, t);
      const nan = spec.nanAt?.(s, t) ?? false;
      cols[0][t] = v === 'absent' ? NaN : v;
      cols[1][t] = v === 'absent' ? NaN : 0.1;
      cols[2][t] = v === 'absent' ? NaN : nan ? 1 : 0;
      cols[3][t] = v === 'absent' ? NaN : 0;
      cols[4][t] = v === 'absent' ? 0 : 1;
      cols[5][t] = v === 'absent' ? NaN : (spec.param?.(s, t) ?? 10 + t);
    }
    store.ingest(wire({ type: 'step', step: s, optimizer: 0, loss: 0.5, wallMs: s, stats: STATS, columns: cols, nTensors: n }).msg);
  }
  return { rank: spec.rank, store };
}

const PARAMS = [
  { name: 'fc1.weight', shape: [8, 4] },
  { name: 'fc1.bias', shape: [8] },
  { name: 'fc2.weight', shape: [1, 8] },
];
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const healthy = (s: number, t: number): number => (1 + t) * (1 + 0.3 * Math.sin(s + t));

describe('analyzeRanks: DDP replicas', () => {
  it('identical norms on every rank: no finding, every step compared', () => {
    const ranks = [0, 1, 2].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(20), norm: healthy }));
    const a = analyzeRanks(ranks);
    assert.deepEqual(a.findings, []);
    assert.equal(a.sharded, false);
    assert.equal(a.combined, null);
    assert.deepEqual(a.compared, { steps: 20, groups: 3 });
    assert.deepEqual(a.ranks, [0, 1, 2]);
  });

  it('a difference within the tolerance (another summation order) is no desync', () => {
    const ranks = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(10), norm: (s, t) => healthy(s, t) * (rank === 1 ? 1 + 2e-6 : 1) }));
    assert.deepEqual(analyzeRanks(ranks).findings, []);
  });

  it('rank 1 scaled its gradients at step 6: rank-desync at step 6, naming rank 1, its tensors and the relative difference', () => {
    const ranks = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(12), norm: (s, t) => healthy(s, t) * (rank === 1 && s === 6 ? 3 : 1) }));
    const [f, ...rest] = analyzeRanks(ranks).findings;
    assert.equal(rest.length, 0);
    assert.ok(isFindingKind(f.kind));
    assert.equal(f.kind, 'rank-desync');
    assert.equal(f.severity, 'error');
    assert.equal(f.step, 6);
    assert.deepEqual(f.stepRange, [6, 6]);
    assert.deepEqual(f.tensors, ['fc1.weight', 'fc1.bias', 'fc2.weight']);
    assert.equal(f.evidence.ranks, '1');
    assert.equal(f.evidence.referenceRank, 0);
    assert.equal(f.evidence.tensor, 'fc1.weight');
    // Float32 storage: (3x − x) / 3x = 2/3 to float32 precision.
    assert.ok(Math.abs((f.evidence.relDiff as number) - 2 / 3) < 1e-6, String(f.evidence.relDiff));
    assert.match(f.message, /^ranks out of step: rank 1 disagrees with rank 0 at step 6: fc1\.weight's gradient norm is /);
    assert.deepEqual(f.remedies, []);
  });

  it('parameters that drifted apart while the gradients agree (one rank applied another update) are a desync at every step they differ', () => {
    const ranks = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(8), norm: healthy, param: (s, t) => 10 + t + (rank === 1 && s >= 5 ? 0.01 : 0) }));
    const [f] = analyzeRanks(ranks).findings;
    assert.equal(f.step, 5);
    assert.deepEqual(f.stepRange, [5, 7]);
    assert.equal(f.evidence.statistic, 'paramNorm');
    assert.equal(f.evidence.stepsDisagreeing, 3);
    assert.match(f.message, /rank 1 disagrees with rank 0 at step 5: fc1\.weight's parameter norm is 10\.01/);
    // The gradient is named first when both differ.
    const both = [0, 1].map((rank) =>
      rankStore({ rank, tensors: PARAMS, steps: range(4), norm: (s, t) => healthy(s, t) * (rank === 1 && s === 2 ? 2 : 1), param: (s, t) => 10 + t + (rank === 1 && s === 2 ? 1 : 0) }),
    );
    assert.equal(analyzeRanks(both).findings[0]?.evidence.statistic, 'norm');
  });

  it('with three ranks the odd one out is named, even when it is rank 0', () => {
    const ranks = [0, 1, 2].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(8), norm: (s, t) => healthy(s, t) + (rank === 0 && s >= 3 ? 0.5 : 0) }));
    const [f] = analyzeRanks(ranks).findings;
    assert.equal(f.step, 3);
    assert.deepEqual(f.stepRange, [3, 7]);
    assert.equal(f.evidence.ranks, '0');
    assert.equal(f.evidence.referenceRank, 1);
    assert.equal(f.evidence.stepsDisagreeing, 5);
  });

  it('a gradient present on one rank and absent on another, or NaN on one only, is a desync', () => {
    const absent = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(5), norm: (s, t) => (rank === 1 && s === 2 && t === 1 ? 'absent' : healthy(s, t)) }));
    const [f] = analyzeRanks(absent).findings;
    assert.equal(f.step, 2);
    assert.deepEqual(f.tensors, ['fc1.bias']);
    assert.equal(f.evidence.relDiff, Infinity);
    assert.match(f.message, /fc1\.bias's gradient norm is no gradient there/);
    const nan = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(5), norm: (s, t) => (rank === 0 && s === 4 && t === 2 ? NaN : healthy(s, t)) }));
    assert.equal(analyzeRanks(nan).findings[0]?.step, 4);
    // NaN on both (the same bad batch everywhere after the all-reduce): replicas agree.
    const both = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(5), norm: (s, t) => (s === 4 && t === 2 ? NaN : healthy(s, t)) }));
    assert.deepEqual(analyzeRanks(both).findings, []);
  });

  it('a rank that skipped a step the others took and went on is a desync; a rank that stopped early is not', () => {
    const skip = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(10).filter((s) => !(rank === 1 && s === 4)), norm: healthy }));
    const [f] = analyzeRanks(skip).findings;
    assert.equal(f.step, 4);
    assert.equal(f.evidence.skipped, 'yes');
    assert.equal(f.evidence.ranks, '1');
    assert.match(f.message, /rank 1 skipped step 4, which rank 0 took/);
    const early = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(rank === 1 ? 6 : 10), norm: healthy }));
    assert.deepEqual(analyzeRanks(early).findings, []);
  });

  it('one rank, or none: nothing to compare', () => {
    assert.deepEqual(analyzeRanks([rankStore({ rank: 0, tensors: PARAMS, steps: range(4), norm: healthy })]).findings, []);
    assert.deepEqual(analyzeRanks([]).findings, []);
  });

  it('relativeDifference: zero floor, non-finite values equal only to themselves', () => {
    assert.equal(relativeDifference(0, 1e-40), 0);
    assert.equal(relativeDifference(NaN, NaN), 0);
    assert.equal(relativeDifference(Infinity, Infinity), 0);
    assert.equal(relativeDifference(NaN, 1), Infinity);
    assert.equal(relativeDifference(2, 1), 0.5);
    assert.ok(DESYNC_RELATIVE_TOLERANCE > 0 && DESYNC_RELATIVE_TOLERANCE < 1e-3);
  });
});

describe('analyzeRanks: FSDP2 shards', () => {
  // fc1.weight [8,4] split in rows 0-3 / 4-7; fc2.bias [1] whole on rank 0, an empty block on rank 1.
  const shardedParams = (rank: number): RankSpec['tensors'] => [
    { name: 'fc1.weight', shape: [8, 4], shard: { offset: [4 * rank, 0], localShape: [4, 4] } },
    { name: 'fc2.bias', shape: [1], shard: { offset: [rank], localShape: [1 - rank] } },
  ];
  const shardNorm = (rank: number) => (s: number, t: number) => (t === 1 && rank === 1 ? 0 : (rank + 1) * (t + 1) * (1 + 0.1 * s));

  it('combines the shards: per tensor √Σ norm² over blocks, the global norm over ranks and tensors; no desync between distinct blocks', () => {
    const ranks = [1, 0].map((rank) => rankStore({ rank, tensors: shardedParams(rank), steps: range(5), norm: shardNorm(rank) }));
    const a = analyzeRanks(ranks);
    assert.equal(a.sharded, true);
    assert.deepEqual(a.findings, []);
    assert.deepEqual(a.compared.groups, 0);
    const c = a.combined;
    assert.ok(c);
    assert.deepEqual(c.ranks, [0, 1]);
    assert.deepEqual([...c.steps], [0, 1, 2, 3, 4]);
    assert.deepEqual(
      c.tensors.map((t) => [t.name, t.blocks, t.shape]),
      [
        ['fc1.weight', 2, [8, 4]],
        ['fc2.bias', 2, [1]],
      ],
    );
    for (let s = 0; s < 5; s++) {
      const w0 = Math.fround(1 + 0.1 * s);
      const w1 = Math.fround(2 * (1 + 0.1 * s));
      const b0 = Math.fround(2 * (1 + 0.1 * s));
      assert.ok(Math.abs(c.tensors[0].norms[s] - Math.hypot(w0, w1)) < 1e-12);
      assert.ok(Math.abs(c.tensors[1].norms[s] - b0) < 1e-12);
      assert.ok(Math.abs(c.globalNorm[s] - Math.hypot(w0, w1, b0)) < 1e-12);
      assert.equal(c.nonFinite[s], 0);
    }
  });

  it('HSDP: replicas of one block (same offset and shape) count once and are compared', () => {
    // ranks 0 and 2 hold rows 0-3, ranks 1 and 3 rows 4-7.
    const spec = (rank: number, bump = false): RankSpec => ({
      rank,
      tensors: [{ name: 'fc1.weight', shape: [8, 4], shard: { offset: [4 * (rank % 2), 0], localShape: [4, 4] } }],
      steps: range(4),
      norm: (s) => (1 + (rank % 2)) * (1 + s) + (bump && s === 2 ? 1 : 0),
    });
    const a = analyzeRanks([0, 1, 2, 3].map((r) => rankStore(spec(r))));
    assert.deepEqual(a.findings, []);
    assert.equal(a.compared.groups, 2);
    assert.ok(Math.abs((a.combined?.globalNorm[1] ?? 0) - Math.hypot(2, 4)) < 1e-6);
    const bad = analyzeRanks([0, 1, 2, 3].map((r) => rankStore(spec(r, r === 3))));
    assert.equal(bad.findings[0]?.step, 2);
    assert.equal(bad.findings[0]?.evidence.ranks, '3');
    assert.equal(bad.findings[0]?.evidence.referenceRank, 1);
  });

  it('a NaN in one shard marks the combined step non-finite; steps are those every rank holds', () => {
    const ranks = [0, 1].map((rank) =>
      rankStore({ rank, tensors: shardedParams(rank), steps: range(rank === 0 ? 6 : 5), norm: shardNorm(rank), nanAt: (s, t) => rank === 1 && s === 3 && t === 0 }),
    );
    const c = analyzeRanks(ranks).combined;
    assert.ok(c);
    assert.deepEqual([...c.steps], [0, 1, 2, 3, 4]);
    assert.deepEqual([...c.nonFinite], [0, 0, 0, 1, 0]);
  });
});

describe('processes that train on their own (Hogwild) are not ranks of one job', () => {
  // pytorch/examples' mnist_hogwild: mp.Process children (spawn) each step a shared model, no process
  // group: every one says rank 0, world size 1, and their gradients differ by design.
  const workers = [11, 12].map((pid, i) => ({ ...rankStore({ rank: 0, pid, worldSize: 1, tensors: PARAMS, steps: range(10), norm: (s, t) => healthy(s + 3 * i, t) }) }));

  it('are not compared (no rank-desync), and are named by pid', () => {
    assert.equal(analyzeRanks(workers).findings.length, 1, 'control: compared as replicas they disagree');
    assert.deepEqual(distributedRanks(workers), []);
    assert.equal(crossRankOf(workers), null);
    assert.equal(crossRankView()(workers), null);
    assert.deepEqual(ranksSeenNote(workers, 1), {
      text: '2 processes that train on their own (pid 11: 10 steps, pid 12: 10 steps; no process group: not ranks of one job, not compared)',
      missing: null,
    });
  });

  it('ranks of a job (world size 2, or none given) still are, and a missing rank is still said', () => {
    const ddp = [0, 1].map((rank) => rankStore({ rank, worldSize: 2, tensors: PARAMS, steps: range(10), norm: (s, t) => healthy(s, t) * (rank === 1 && s === 4 ? 2 : 1) }));
    assert.equal(crossRankOf(ddp)?.findings[0].step, 4);
    const old = [0, 1].map((rank) => rankStore({ rank, tensors: PARAMS, steps: range(10), norm: (s, t) => healthy(s, t) * (rank === 1 && s === 4 ? 2 : 1) }));
    assert.equal(crossRankOf(old)?.findings[0].step, 4, 'run files without worldSize: compared as before');
    assert.deepEqual(ranksSeenNote(ddp, 2), { text: '2 ranks seen (rank 0: 10 steps, rank 1: 10 steps)', missing: null });
    const note = ranksSeenNote(ddp.slice(0, 1), 2);
    assert.equal(note.missing, 'only 1 of 2 ranks seen: rank 1 never connected (not observed)');
    assert.equal(note.text, note.missing);
    // A rank that joined (said HELLO) but has no store (its run file could not be made) was seen.
    const joined = [0, 1].map((rank) => ({ rank, worldSize: 2 }));
    assert.deepEqual(ranksSeenNote(ddp.slice(0, 1), 2, joined), { text: '2 ranks seen (rank 0: 10 steps)', missing: null });
    assert.equal(
      ranksSeenNote([...ddp, workers[0]], 2).text,
      '2 ranks seen (rank 0: 10 steps, rank 1: 10 steps); 1 process that trains on its own (pid 11: 10 steps; no process group: not ranks of one job, not compared)',
    );
  });
});
