// The panel's view of a distributed run (issue 17): the rank picker's list, the process shown, and the
// cross-rank overlay, built from a real 2-rank DDP run (test/fixtures/distributed/diverge.py, recorded
// with `gradscope run --nproc-per-node 2`: rank 1 multiplies its gradients by 4 from step 12 on).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeFloat } from '../../../src/core/protocol/float';
import { readRunFile } from '../../../src/core/store/runFile';
import { RunStore } from '../../../src/core/store/runStore';
import { parseWebviewMessage, type PanelCurve } from '../../../src/core/view/messages';
import {
  advanceRankCursors,
  buildRanks,
  crossRankView,
  expectedRankCount,
  findRank,
  rankKeyText,
  rankList,
  RankView,
  runProcesses,
  wholeRanks,
  type RankSource,
} from '../../../src/core/view/ranks';
import { buildSnapshot, reportData, runHeader } from '../../../src/core/view/snapshot';
import { analyzeRanks } from '../../../src/core/analysis/crossRank';
import { readRankFiles } from '../../../src/process/rankRecorder';
import { savedRunHandle, shownStore } from '../../../src/process/runHandle';
import { parseHostMessage } from '../../../webview/hostMessages';
import { fixture } from '../support/paths';

const RUN = fixture('distributed', 'runs', 'diverge.gsrun');
const DIVERGE_AT = 12; // diverge.py's default

async function savedRun() {
  const read = readRunFile(RUN);
  return savedRunHandle(RUN, read, await readRankFiles(RUN));
}

const values = (c: PanelCurve): number[] => c.values.map((v) => decodeFloat(v, NaN, NaN));

function header(store: RunStore) {
  return runHeader(store, { runId: 'r', script: '/x/diverge.py', status: 'saved', statusMessage: 'saved' });
}

describe('ranks view (a real 2-rank DDP run)', () => {
  it('lists every process of a saved run: the run file is rank 0, the rank file rank 1, each with host, pid and steps', async () => {
    const run = await savedRun();
    assert.equal(run.ranks?.length, 1, 'the rank folder holds the other rank');
    const procs = runProcesses(run.store, run.ranks);
    assert.deepEqual(
      procs.map((r) => r.rank),
      [0, 1],
    );
    assert.equal(procs[0].store, run.store, 'rank 0 is the run file itself');
    const list = rankList(procs, expectedRankCount(procs));
    assert.equal(list.length, 2);
    for (const [i, r] of list.entries()) {
      const h = procs[i].store.hello!;
      assert.deepEqual(r, {
        rank: h.rank,
        pid: h.pid,
        state: 'joined',
        host: h.host ?? null,
        localRank: h.localRank ?? null,
        steps: procs[i].store.stepCount,
        end: procs[i].store.end?.reason ?? null,
      });
      assert.ok(r.steps > DIVERGE_AT, `rank ${r.rank} stepped past the divergence (${r.steps})`);
    }
    assert.notEqual(list[0].pid, list[1].pid);
  });

  it('overlays each rank’s true global norm: equal before the divergence, rank 1 at 4× on its first diverged step', async () => {
    const procs = runProcesses((await savedRun()).store, (await savedRun()).ranks);
    const view = buildRanks(procs, { shown: procs[0], expected: 2 })!;
    assert.deepEqual(view.shown, { rank: 0, pid: procs[0].store.hello!.pid });
    assert.equal(view.globalNorms.length, 2, 'one line per rank');
    for (const [i, c] of view.globalNorms.entries()) {
      const own = procs[i].store.globalNorm();
      assert.deepEqual(c.globalNorm.steps, Array.from(own.steps));
      assert.deepEqual(values(c.globalNorm), Array.from(own.values));
    }
    const [a, b] = view.globalNorms.map((c) => values(c.globalNorm));
    const steps = view.globalNorms[0].globalNorm.steps;
    for (let i = 0; i < steps.length && steps[i] < DIVERGE_AT; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-6 * a[i], `step ${steps[i]}: DDP norms agree (${a[i]} vs ${b[i]})`);
    const k = steps.indexOf(DIVERGE_AT);
    assert.ok(Math.abs(b[k] / a[k] - 4) < 1e-4, `step ${DIVERGE_AT}: rank 1 at 4× rank 0 (${b[k] / a[k]})`);
  });

  it('the picker’s choice rebuilds the whole view from that rank’s store', async () => {
    const run = await savedRun();
    const procs = runProcesses(run.store, run.ranks);
    const one = findRank(procs, { rank: 1, pid: procs[1].store.hello!.pid })!;
    assert.equal(one.store, procs[1].store);
    const s0 = buildSnapshot(procs[0].store, { header: header(procs[0].store), findings: [], metric: 'norm', compare: null, savedRuns: [] });
    const s1 = buildSnapshot(one.store, { header: header(one.store), findings: [], metric: 'norm', compare: null, savedRuns: [] });
    assert.deepEqual(values(s1.globalNorm), Array.from(one.store.globalNorm().values));
    assert.notDeepEqual(values(s1.globalNorm), values(s0.globalNorm));
    // Another process of the same rank (a restarted rank) still finds that rank; an unknown rank finds none.
    assert.equal(findRank(procs, { rank: 1, pid: 1 })?.store, procs[1].store);
    assert.equal(findRank(procs, { rank: 7, pid: null }), null);
    assert.equal(findRank(procs, null), null);
  });

  it('a live append carries each rank’s points after its cursor, and the webview merges them', async () => {
    const procs = runProcesses((await savedRun()).store, (await savedRun()).ranks);
    const full = buildRanks(procs, { shown: procs[0], expected: 2 })!;
    const cursors = new Map<string, number>();
    advanceRankCursors(cursors, full);
    const last = procs[0].store.lastStep;
    assert.equal(cursors.get(rankKeyText(full.globalNorms[0])), last);
    const none = buildRanks(procs, { shown: procs[0], expected: 2, since: cursors })!;
    assert.deepEqual(
      none.globalNorms.map((c) => c.globalNorm.steps.length),
      [0, 0],
      'nothing new',
    );
    // The webview held rank 0 up to step 20 and rank 1 up to step 25: the append carries the rest.
    cursors.set(rankKeyText(full.globalNorms[0]), 20);
    cursors.set(rankKeyText(full.globalNorms[1]), 25);
    const more = buildRanks(procs, { shown: procs[0], expected: 2, since: cursors })!;
    assert.deepEqual(more.globalNorms[0].globalNorm.steps[0], 21);
    assert.deepEqual(more.globalNorms[1].globalNorm.steps[0], 26);
    // Through the webview's validation (its model merges them: test/e2e/webview/ranks.test.mjs).
    const snap = buildSnapshot(procs[0].store, { header: header(procs[0].store), findings: [], metric: 'norm', compare: null, savedRuns: [] });
    const append = parseHostMessage(JSON.parse(JSON.stringify({ type: 'append', ...snap, tensors: [], layers: [], findings: null, ranks: more })));
    assert.ok(append?.type === 'append');
    assert.deepEqual(append.ranks, more);
  });

  it('a rank the job expected that never joined is listed as missing', async () => {
    const procs = runProcesses((await savedRun()).store, (await savedRun()).ranks);
    const view = buildRanks(procs, { shown: procs[1], expected: 4 })!;
    assert.deepEqual(
      view.list.map((r) => [r.rank, r.state]),
      [
        [0, 'joined'],
        [1, 'joined'],
        [2, 'missing'],
        [3, 'missing'],
      ],
    );
    assert.equal(view.globalNorms.length, 2, 'a missing rank has no line');
    assert.equal(view.shown?.rank, 1);
    // Only one process joined of two expected: still a picker (it says the other is missing).
    const solo = buildRanks([procs[0]], { shown: procs[0], expected: expectedRankCount([procs[0]]) })!;
    assert.deepEqual(
      solo.list.map((r) => r.state),
      ['joined', 'missing'],
      'its HELLO said world size 2',
    );
  });
});

describe('runProcesses', () => {
  const storeOf = (rank: number, pid: number, steps: number, worldSize?: number): RunStore => {
    const s = new RunStore();
    s.ingest({ type: 'hello', probeVersion: '1', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid, rank, script: '/x.py', detailEvery: 10, worldSize });
    s.ingest({ type: 'tensors', tensors: [{ id: 0, name: 'w', layer: 'l', layerType: 'Linear', shape: [2], source: null }] });
    for (let i = 0; i < steps; i++) s.ingest({ type: 'step', step: i, optimizer: 0, loss: NaN, wallMs: i, stats: ['norm'], columns: [Float64Array.of(1 + rank)], nTensors: 1 });
    return s;
  };

  it('a live launcher run lists its rank 0 (the run’s own store) once', () => {
    const own = storeOf(0, 10, 3, 2);
    const ranks: RankSource[] = [
      { rank: 0, store: own },
      { rank: 1, store: storeOf(1, 11, 3, 2) },
    ];
    assert.deepEqual(
      runProcesses(own, ranks).map((r) => r.store),
      ranks.map((r) => r.store),
    );
  });

  it('mp.spawn: the script’s own process (no step) is no rank, and the default shown is the first rank with steps', () => {
    const own = storeOf(0, 9, 0);
    const ranks = [
      { rank: 0, store: storeOf(0, 10, 3, 2), runFile: 'a' },
      { rank: 1, store: storeOf(1, 11, 3, 2), runFile: 'b' },
    ];
    const procs = runProcesses(own, ranks);
    assert.deepEqual(
      procs.map((r) => r.store),
      ranks.map((r) => r.store),
    );
    assert.equal(shownStore({ store: own, ranks }), ranks[0].store);
    // Shown before a rank stepped: the script's process, which is none of the ranks.
    assert.equal(buildRanks(procs, { shown: { rank: 0, store: own }, expected: 2 })?.shown, null);
  });

  it('a single process has no ranks: no picker', () => {
    const own = storeOf(0, 10, 3);
    assert.deepEqual(runProcesses(own, undefined), []);
    assert.deepEqual(runProcesses(own, []), []);
    assert.equal(buildRanks([], { shown: { rank: 0, store: own }, expected: 0 }), null);
  });
});

describe('RankView (the panel host’s rank state)', () => {
  const hello = (rank: number, pid: number, worldSize: number) =>
    ({ type: 'hello', probeVersion: '1', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid, rank, script: '/x.py', detailEvery: 10, worldSize }) as const;
  const step = (s: RunStore, i: number, norm: number) =>
    s.ingest({ type: 'step', step: i, optimizer: 0, loss: NaN, wallMs: i, stats: ['norm'], columns: [Float64Array.of(norm)], nTensors: 1 });
  const started = (rank: number, pid: number, worldSize: number): RunStore => {
    const s = new RunStore();
    s.ingest(hello(rank, pid, worldSize));
    s.ingest({ type: 'tensors', tensors: [{ id: 0, name: 'w', layer: 'l', layerType: 'Linear', shape: [2], source: null }] });
    return s;
  };

  it('live mp.spawn: ranks join and step while it runs; the default follows the first rank with steps, a pick is kept, appends carry only new points', () => {
    const own = new RunStore();
    own.ingest({ ...hello(0, 100, 1), worldSize: undefined });
    const ranks: RankSource[] = [];
    const view = new RankView({ store: own, ranks, expectedRanks: 2 });
    assert.equal(view.message(view.store(), 'whole'), null, 'no rank yet: a single process, no picker');
    assert.equal(view.store(), own);
    // Rank 1 joins first, then rank 0; neither stepped: the script's own process is still shown.
    const r1 = started(1, 102, 2);
    ranks.push({ rank: 1, store: r1 });
    let m = view.message(view.store(), 'whole')!;
    assert.equal(m.shown, null, "the script's own process is no rank");
    assert.deepEqual(
      m.list.map((r) => [r.rank, r.state]),
      [
        [0, 'missing'],
        [1, 'joined'],
      ],
    );
    const r0 = started(0, 101, 2);
    ranks.push({ rank: 0, store: r0 });
    step(r0, 0, 1);
    step(r1, 0, 1);
    assert.equal(view.store(), r0, 'rank 0 stepped: it is shown by default');
    m = view.message(view.store(), 'whole')!;
    assert.deepEqual(m.shown, { rank: 0, pid: 101 });
    assert.deepEqual(
      m.globalNorms.map((c) => [c.rank, c.globalNorm.steps]),
      [
        [0, [0]],
        [1, [0]],
      ],
    );
    // Only what is new since the last message; a rank that did not step carries nothing.
    step(r0, 1, 2);
    m = view.message(view.store(), 'append')!;
    assert.deepEqual(
      m.globalNorms.map((c) => [c.rank, c.globalNorm.steps, c.globalNorm.values]),
      [
        [0, [1], [2]],
        [1, [], []],
      ],
    );
    // The person picks rank 1: refused for a process that is not this run's, kept once taken.
    assert.equal(view.choose({ rank: 1, pid: 999 }), false);
    assert.equal(view.choose({ rank: 5, pid: 102 }), false);
    assert.equal(view.store(), r0);
    assert.equal(view.choose({ rank: 1, pid: 102 }), true);
    assert.equal(view.picked, true);
    assert.equal(view.store(), r1);
    step(r1, 1, 8);
    m = view.message(view.store(), 'append')!;
    assert.deepEqual(m.shown, { rank: 1, pid: 102 });
    assert.deepEqual(
      m.globalNorms.map((c) => c.globalNorm.values),
      [[], [8]],
    );
    // A replace (or a snapshot) sends every point again.
    m = view.message(view.store(), 'whole')!;
    assert.deepEqual(
      m.globalNorms.map((c) => c.globalNorm.values),
      [
        [1, 2],
        [1, 8],
      ],
    );
  });
});

describe('the cross-rank seam', () => {
  it('RankView passes the cross-rank analysis of the run’s processes into every message', async () => {
    const run = await savedRun();
    const seen: number[][] = [];
    const combined = { label: 'combined', globalNorm: { steps: [0], values: [1] } };
    const view = new RankView(run, (ranks) => {
      seen.push(ranks.map((r) => r.rank));
      return { findings: [], combined };
    });
    assert.deepEqual(view.message(view.store(), 'whole')?.crossRank, { findings: [], combined });
    assert.deepEqual(view.message(view.store(), 'append')?.crossRank, { findings: [], combined });
    assert.deepEqual(seen, [
      [0, 1],
      [0, 1],
    ]);
    assert.equal(new RankView(run).message(run.store, 'whole')?.crossRank, undefined, 'none until the analysis is plugged in');
  });
});

describe('setRank from the webview', () => {
  it('is validated like every message', () => {
    assert.deepEqual(parseWebviewMessage({ type: 'setRank', rank: 1, pid: 4242 }), { type: 'setRank', rank: 1, pid: 4242 });
    assert.deepEqual(parseWebviewMessage({ type: 'setRank', rank: 0, pid: null }), { type: 'setRank', rank: 0, pid: null });
    for (const bad of [
      { type: 'setRank', rank: -1, pid: 1 },
      { type: 'setRank', rank: '1', pid: 1 },
      { type: 'setRank', rank: 1 },
      { type: 'setRank', rank: 1.5, pid: null },
      { type: 'setRank', rank: 1, pid: 'x' },
    ]) {
      assert.equal(parseWebviewMessage(bad), null, JSON.stringify(bad));
    }
  });

  it('the panel gets the cross-rank analysis: the desync of rank 1 at the step it diverged, recomputed only when a rank stepped', async () => {
    const run = await savedRun();
    const procs = runProcesses(run.store, run.ranks);
    const view = crossRankView();
    const cross = view(procs);
    assert.ok(cross, 'two ranks: analysed');
    assert.equal(cross.combined, null, 'DDP replicas: nothing combined from shards');
    const desync = cross.findings.filter((f) => f.kind === 'rank-desync');
    assert.equal(desync.length, 1);
    assert.equal(desync[0].stepRange[0], DIVERGE_AT);
    assert.match(desync[0].message, /rank 1/);
    assert.equal(view(procs), cross, 'no step since: the same answer, not recomputed');
    // Through RankView, as the panel builds its messages.
    const rv = new RankView(run, crossRankView());
    const msg = rv.message(rv.store(), 'whole');
    assert.equal(msg?.crossRank?.findings[0]?.kind, 'rank-desync');
    // One process: nothing to compare.
    assert.equal(crossRankView()(procs.slice(0, 1)), null);
  });
});

describe('the report of a distributed run', () => {
  it('carries every rank: the list, each rank’s whole global norm, the desync across ranks; a report taken mid-run leaves the live cursors alone', async () => {
    const run = await savedRun();
    const procs = runProcesses(run.store, run.ranks);
    // gradscope run --report: the CLI's own analysis, rank 1 shown (--rank 1).
    const r = wholeRanks(run, procs[1].store, analyzeRanks(procs))!;
    assert.deepEqual(
      r.list.map((x) => [x.rank, x.state]),
      [
        [0, 'joined'],
        [1, 'joined'],
      ],
    );
    assert.deepEqual(r.shown, { rank: 1, pid: procs[1].store.hello!.pid });
    for (const [i, c] of r.globalNorms.entries()) assert.deepEqual(values(c.globalNorm), Array.from(procs[i].store.globalNorm().values), `rank ${i} whole`);
    assert.deepEqual(
      r.crossRank?.findings.map((f) => [f.kind, f.stepRange[0]]),
      [['rank-desync', DIVERGE_AT]],
    );
    const { snapshot } = reportData(procs[1].store, header(procs[1].store), [], r);
    assert.equal(snapshot.ranks, r);
    assert.equal(reportData(run.store, header(run.store), []).snapshot.ranks, undefined, 'no ranks given: none in the report');
    // Through the webview's validation, as the report's page reads its embedded snapshot.
    const parsed = parseHostMessage(JSON.parse(JSON.stringify({ type: 'snapshot', snapshot })));
    assert.ok(parsed?.type === 'snapshot');
    assert.deepEqual(parsed.snapshot.ranks, r);
    // A single process: no ranks part.
    assert.equal(wholeRanks({ store: run.store }, run.store, null), null);

    // The panel's "Export report" while the run is live: whole, and the next append still brings
    // only the points after what the webview holds.
    const view = new RankView(run, crossRankView());
    const first = view.message(view.store(), 'whole')!;
    assert.ok(first.globalNorms.every((c) => c.globalNorm.steps.length > 0));
    const report = view.report(view.store())!;
    assert.deepEqual(report.globalNorms, first.globalNorms);
    assert.equal(report.crossRank?.findings[0]?.kind, 'rank-desync');
    assert.deepEqual(
      view.message(view.store(), 'append')!.globalNorms.map((c) => c.globalNorm.steps.length),
      [0, 0],
      'the report moved no cursor',
    );
  });
});
