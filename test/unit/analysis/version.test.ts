// The analyzer's findings version: readers (the panel's flush, the diagnostics' refresh) compare it
// instead of the findings, so it must change exactly when the findings' content changes.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Analyzer, fixedFindings, sameValue } from '../../../src/core/analysis/analyzer';
import { readRunFile } from '../../../src/core/store/runFile';
import { RunStore } from '../../../src/core/store/runStore';
import { TappedStore } from '../support/tappedStore';
import { RUNS_DIR } from './expectations';

describe('Analyzer.version', () => {
  for (const name of ['example-exploding-mlp', 'example-vanishing-deep', 'example-healthy-mlp']) {
    it(`${name}: read after every step, it changes exactly when the findings' JSON does`, () => {
      let version = 0;
      let json = '[]';
      let bumps = 0;
      let changes = 0;
      const store: RunStore = new TappedStore((m) => {
        if (m.type !== 'step') return;
        a.update();
        const v = a.version;
        const j = JSON.stringify(a.findings);
        assert.equal(v !== version, j !== json, `step ${store.lastStep}: version ${version} → ${v}, findings ${j === json ? 'unchanged' : 'changed'}`);
        if (v !== version) bumps++;
        if (j !== json) changes++;
        assert.equal(a.version, v, 'reading it again without an update gives the same version');
        version = v;
        json = j;
      });
      const a = new Analyzer(store);
      readRunFile(join(RUNS_DIR, `${name}.gsrun`), store);
      a.finish();
      assert.equal(a.version !== version, JSON.stringify(a.findings) !== json, 'finish()');
      assert.equal(bumps, changes);
      if (name.includes('healthy')) assert.equal(a.version, 0, 'a healthy run: never changed');
      else assert.ok(bumps >= 1, 'findings appeared, and the version said so');
    });
  }

  it('an update that recomputes equal findings keeps the version', () => {
    const store = readRunFile(join(RUNS_DIR, 'example-exploding-mlp.gsrun')).store;
    const a = new Analyzer(store);
    a.finish();
    const v = a.version;
    const before = a.findings;
    a.finish();
    assert.notEqual(a.findings, before, 'a new array');
    assert.equal(a.version, v);
  });

  it('fixed findings keep version 0', () => {
    const f = fixedFindings([]);
    assert.equal(f.version, 0);
    assert.deepEqual(f.findings, []);
  });

  it('sameValue: deep, NaN equals NaN, 0 equals -0, arrays are not objects', () => {
    assert.ok(sameValue({ a: [1, { b: NaN }], c: 'x' }, { c: 'x', a: [1, { b: NaN }] }));
    assert.ok(sameValue(0, -0));
    assert.ok(!sameValue({ a: [1, 2] }, { a: [1, 2, 3] }));
    assert.ok(!sameValue({ a: 1 }, { a: 1, b: 2 }));
    assert.ok(!sameValue([], {}));
    assert.ok(!sameValue({ a: null }, { a: 0 }));
    assert.ok(!sameValue(null, {}));
  });
});
