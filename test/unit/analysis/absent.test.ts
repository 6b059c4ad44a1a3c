// Absent gradients (torch 2.x zero_grad(set_to_none=True): a head used on some steps only, a frozen
// layer) are missing data for the analyzer, never NaN: a healthy run with gaps has no finding.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Analyzer } from '../../../src/core/analysis/analyzer';
import { RunStore } from '../../../src/core/store/runStore';
import { absentRunMessages as messages, absentRun as run } from '../support/absentRun';

describe('absent gradients in the analyzer', () => {
  it('a healthy run whose head is absent on odd steps and whose first layer is frozen: no finding, no non-finite step', () => {
    const store = run({ steps: 300 });
    assert.equal(store.absentSteps(5), 150);
    assert.equal(store.absentSteps(0), 300);
    assert.equal(store.summary().firstNonFinite, null);
    const findings = new Analyzer(store).finish();
    assert.deepEqual(
      findings.map((f) => f.message),
      [],
    );
    const g = store.globalNorm();
    assert.ok(g.nonFinite.every((f) => f === 0) && g.values.every((v) => Number.isFinite(v)), 'the global norm is over present tensors');
  });

  it('finds the same when the analyzer reads the run live, a few steps at a time', () => {
    for (const o of [{ steps: 150 }, { steps: 150, nanAt: [80, 6] as [number, number] }]) {
      const live = new RunStore();
      const a = new Analyzer(live);
      messages(o).forEach((m, i) => {
        live.ingest(m);
        if (i % 7 === 0) a.update();
      });
      const strip = (x: unknown): unknown => JSON.parse(JSON.stringify(x));
      assert.deepEqual(strip(a.finish()), strip(new Analyzer(run(o)).finish()));
      assert.equal(a.stats.stepsSeen, 150);
    }
  });

  it('a real NaN among absent cells is still found, at its own step and tensor', () => {
    const store = run({ steps: 120, nanAt: [61, 3] });
    assert.deepEqual(store.summary().firstNonFinite, { step: 61, tensorId: 3 });
    const findings = new Analyzer(store).finish();
    const nf = findings.filter((f) => f.kind === 'non-finite-gradient');
    assert.equal(nf.length, 1, findings.map((f) => f.message).join(' | '));
    assert.equal(nf[0].step, 61);
    assert.deepEqual(nf[0].tensors, ['l2.weight']);
  });
});
