// The one run handle: a live RunSession is its own handle; a saved run is read back into one. Both
// carry the same fields, and a saved run's findings are those of one analyzer pass over its store.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { Analyzer, fixedFindings } from '../../../src/core/analysis/analyzer';
import { readRunFile, readRunFileAsync } from '../../../src/core/store/runFile';
import { activationFromFiles } from '../../../src/process/activationFromFiles';
import { savedRunHandle, withFindings } from '../../../src/process/runHandle';
import { RunSession } from '../../../src/process/runSession';
import { fixture, repoRoot } from '../support/paths';

const recorded = join(repoRoot, 'test', 'fixtures', 'diagnosis', 'runs', 'example-exploding-mlp.gsrun');

describe('RunHandle', () => {
  it('a live run: the session is the handle, its exit set when it ends', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'gs-handle-runs-'));
    const script = join(mkdtempSync(join(tmpdir(), 'gs-handle-script-')), 'train.js');
    writeFileSync(script, '// not run: the fake probe stands in for the runner\n');
    const s = RunSession.start({ script, args: ['--epochs', '2'], runDir, probeDir: fixture('fakeProbes', 'garbage'), graceMs: 300 });
    assert.equal(s.live, s);
    assert.equal(s.exit, null);
    assert.equal(s.cwd, dirname(script));
    assert.deepEqual(s.args, ['--epochs', '2']);
    assert.equal(s.analyzer.findings, s.findings);
    let seen: unknown = null;
    s.live.onDidEnd(() => (seen = s.exit));
    const exit = await s.done;
    assert.equal(s.live.exited, true);
    assert.equal(s.exit, exit);
    assert.equal(seen, exit, 'the exit is on the handle when onDidEnd fires');
    const back = readRunFile(s.runFile);
    assert.deepEqual([back.meta.runId, back.meta.script, back.meta.cwd, back.meta.args], [s.id, s.script, s.cwd, [...s.args]], 'the run file says the same');
  });

  it('a saved run: fields from its run file, findings from one analyzer pass, not live', async () => {
    const r = await readRunFileAsync(recorded);
    const h = savedRunHandle(recorded, r);
    assert.deepEqual([h.id, h.script, h.cwd, h.args, h.runFile], [r.meta.runId, r.meta.script, r.meta.cwd, r.meta.args, recorded]);
    assert.equal(h.store, r.store);
    assert.equal(h.live, null);
    assert.equal(h.exit, r.exit);
    const fresh = new Analyzer(readRunFile(recorded).store, { activationOf: activationFromFiles() }).finish();
    assert.ok(fresh.length > 0);
    assert.deepEqual(JSON.parse(JSON.stringify(h.analyzer.findings)), JSON.parse(JSON.stringify(fresh)));
    const v = h.analyzer.version;
    assert.equal(h.analyzer.version, v, 'a saved run does not change');
  });

  it('withFindings: the same run data under another id, with the given findings, never live', async () => {
    const h = savedRunHandle(recorded, await readRunFileAsync(recorded));
    const f = [{ ...h.analyzer.findings[0], message: 'located' }];
    const w = withFindings(h, `${h.id}+located`, fixedFindings(f));
    assert.equal(w.id, `${h.id}+located`);
    assert.deepEqual([w.script, w.cwd, w.args, w.runFile, w.store, w.exit], [h.script, h.cwd, h.args, h.runFile, h.store, h.exit]);
    assert.equal(w.analyzer.findings, f);
    assert.equal(w.live, null);
  });
});
