// OpenRuns: where the features publish and find runs (instead of reaching into each other).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixedFindings } from '../../../src/core/analysis/analyzer';
import { RunStore } from '../../../src/core/store/runStore';
import { OpenRuns } from '../../../src/features/openRuns';
import type { RunHandle } from '../../../src/process/runHandle';

const handle = (id: string, script: string): RunHandle => ({
  id,
  script,
  cwd: '/w',
  args: [],
  runFile: `/runs/${id}.gsrun`,
  store: new RunStore(),
  analyzer: fixedFindings([]),
  live: null,
  exit: null,
});

describe('OpenRuns', () => {
  it('tells its listeners of each run opened, and keeps the newest of each script', () => {
    const runs = new OpenRuns();
    const heard: string[] = [];
    runs.onDidOpen((r) => heard.push(r.id));
    const a1 = handle('a1', '/w/a.py');
    const a2 = handle('a2', '/w/a.py');
    const b1 = handle('b1', '/w/b.js');
    runs.open(a1);
    runs.open(b1);
    runs.open(a2);
    assert.deepEqual(heard, ['a1', 'b1', 'a2']);
    assert.equal(runs.latest('/w/a.py'), a2);
    assert.equal(runs.latest('/w/b.js'), b1);
    assert.equal(runs.latest('/w/c.py'), undefined);
  });

  it('a run read back on its own does not displace a run of its script started while it was read', () => {
    const runs = new OpenRuns();
    const heard: string[] = [];
    runs.onDidOpen((r) => heard.push(r.id));
    // Ids sort by start time (makeRunId): the saved run is the older one.
    const saved = handle('2026-12-03T12-18-42-994Z-076b', '/w/a.js');
    const started = handle('2026-12-03T12-18-48-297Z-968b', '/w/a.js');
    runs.open(started);
    assert.equal(runs.openUnlessSuperseded(saved), false);
    assert.equal(runs.latest('/w/a.js'), started);
    assert.deepEqual(heard, [started.id], 'the editor is not told of the stale run');
    // With nothing newer it is opened like any run.
    const other = handle('2026-12-03T12-00-00-000Z-0001', '/w/b.js');
    assert.equal(runs.openUnlessSuperseded(other), true);
    assert.equal(runs.latest('/w/b.js'), other);
  });

  it('holds the run the panel shows; dispose() lets go of everything', () => {
    const runs = new OpenRuns();
    const a = handle('a', '/w/a.py');
    runs.shown = a;
    runs.open(a);
    let heard = 0;
    runs.onDidOpen(() => heard++);
    runs.dispose();
    assert.equal(runs.shown, null);
    assert.equal(runs.latest('/w/a.py'), undefined);
    runs.open(a);
    assert.equal(heard, 0, 'no listener after dispose()');
  });
});
