// The panel's rank view (core/view/ranks.ts RankView) over a live 2-rank DDP run (torchrun, gloo, CPU):
// driven as the panel host drives it (a message every 50 ms while the run goes on, ranks joining as
// they start), the webview's copy of each rank's global norm ends equal to that rank's store, point
// for point, and a rank picked mid-run is the one shown from then on.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { decodeFloat, type WireFloat } from '../../../src/core/protocol/float';
import type { PanelRanks } from '../../../src/core/view/messages';
import { rankKeyOf, rankKeyText, RankView } from '../../../src/core/view/ranks';
import { RunSession } from '../../../src/process/runSession';
import { fixture } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

/** torch's launcher does not start with every interpreter (see distributed.test.ts); the test skips there, saying why. */
function launcherSkip(): false | string {
  if (torchSkip()) return false;
  const r = spawnSync(PYTHON, ['-c', 'from torch.distributed.elastic.multiprocessing.api import Std, to_map; to_map(Std.from_str("0"), 2)'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? false : `skipped: torch.distributed.run does not start with ${PYTHON}`;
}

type Held = Map<string, { steps: number[]; values: WireFloat[] }>;

/** What the webview does with the ranks part of a message: a whole one replaces, an append extends each rank after its last step. */
function apply(held: Held, r: PanelRanks | null, kind: 'whole' | 'append'): number {
  if (!r) return 0;
  if (kind === 'whole') held.clear();
  let added = 0;
  for (const c of r.globalNorms) {
    const key = rankKeyText(c);
    const cur = held.get(key) ?? { steps: [], values: [] };
    const last = cur.steps.at(-1) ?? -1;
    assert.ok(
      c.globalNorm.steps.every((s) => s > last),
      `rank ${c.rank}: an append brings only steps after ${last}`,
    );
    cur.steps.push(...c.globalNorm.steps);
    cur.values.push(...c.globalNorm.values);
    held.set(key, cur);
    added += c.globalNorm.steps.length;
  }
  return added;
}

describe('the panel’s rank view of a live distributed run', { skip: torchSkip() || launcherSkip(), timeout: 300_000 }, () => {
  it('follows every rank live, and a rank picked mid-run is shown from then on', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'gs-rankpanel-'));
    const session = RunSession.start({
      script: fixture('distributed', 'diverge.py'),
      runDir,
      pythonPath: PYTHON,
      launcher: { nprocPerNode: 2 },
      env: { STEP_SLEEP: '0.05', STEPS: '30' },
    });
    const view = new RankView(session);
    const held: Held = new Map();
    let whole = 0;
    let appends = 0;
    let pickedAt = -1;
    const tick = (): void => {
      const store = view.store();
      // The first message with ranks is a snapshot; the rest append.
      const kind = whole === 0 ? 'whole' : 'append';
      const m = view.message(store, kind);
      if (!m) return;
      if (kind === 'whole') whole++;
      else if (apply(held, m, kind) > 0) appends++;
      if (kind === 'whole') apply(held, m, kind);
      // Rank 1 is picked once it has stepped: a snapshot of it follows.
      const one = view.processes().find((r) => r.rank === 1);
      if (pickedAt < 0 && one && one.store.stepCount >= 5) {
        assert.equal(view.choose(rankKeyOf(one)), true);
        pickedAt = one.store.lastStep;
        assert.equal(view.store(), one.store);
        const snap = view.message(view.store(), 'whole')!;
        whole++;
        apply(held, snap, 'whole');
        assert.deepEqual(snap.shown, rankKeyOf(one));
      }
    };
    const timer = setInterval(tick, 50);
    await new Promise<void>((resolve) => {
      if (session.exited) resolve();
      else session.onDidEnd(() => resolve());
    });
    clearInterval(timer);
    tick(); // the last append, after the end
    assert.equal(session.exit?.reason, 'completed', session.exit?.message);
    assert.ok(pickedAt >= 4 && pickedAt < 29, `rank 1 was picked while the run went on (at its step ${pickedAt})`);
    assert.ok(appends >= 3, `the overlay grew by appends while the run went on (${appends})`);
    const procs = view.processes();
    assert.deepEqual(
      procs.map((r) => [r.rank, r.store.stepCount]),
      [
        [0, 30],
        [1, 30],
      ],
    );
    assert.equal(procs[0].store, session.store, "under a launcher rank 0 is the run's own store");
    assert.equal(view.store(), procs[1].store, 'the picked rank is still shown');
    // The webview's copy of each rank's line is its store's series, point for point.
    for (const r of procs) {
      const got = held.get(rankKeyText(rankKeyOf(r)))!;
      const want = r.store.globalNorm();
      assert.deepEqual(got.steps, Array.from(want.steps), `rank ${r.rank}: steps`);
      assert.deepEqual(
        got.values.map((v) => decodeFloat(v, NaN, NaN)),
        Array.from(want.values),
        `rank ${r.rank}: values`,
      );
    }
    // The script's divergence, as the overlay shows it: equal until step 12, then rank 1 at 4× on that step.
    const [a, b] = procs.map((r) => r.store.globalNorm().values);
    for (let i = 0; i < 12; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-6 * a[i], `step ${i}`);
    assert.ok(Math.abs(b[12] / a[12] - 4) < 1e-4, `step 12: ${b[12] / a[12]}`);
  });
});
