// A run file written inside a Jupyter kernel by `%gradscope on` (src/probe/torch/gradscope_probe/notebook.py),
// read back by the host: the fixture is what the real probe wrote for test/fixtures/notebook/train.ipynb
// (src/probe/torch/tests/test_notebook.py's notebook; cell 3 builds and trains the exploding MLP).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyzeStore } from '../../../src/core/analysis/analyzer';
import { locationText } from '../../../src/core/protocol/messages';
import { buildRunJson } from '../../../src/core/report/runJson';
import { readRunFile } from '../../../src/core/store/runFile';
import { fixture } from '../support/paths';

const RUN = fixture('notebook', 'train-run.gsrun');

describe('a notebook run file (%gradscope on … off)', () => {
  const r = readRunFile(RUN);

  it('reads whole: meta naming the notebook, every step, the END and the trailer', () => {
    assert.equal(r.error, null);
    assert.equal(r.truncated, false);
    assert.equal(r.meta.framework, 'torch');
    assert.match(r.meta.script, /train\.ipynb$/);
    assert.equal(r.store.stepCount, 9);
    assert.equal(r.exit?.reason, 'completed');
    assert.equal(r.exit?.steps, 9);
  });

  it("places each layer on its cell's line, and the layers built before %gradscope on nowhere", () => {
    const byName = new Map(r.store.tensors.filter((t) => t).map((t) => [t.name, t]));
    const first = byName.get('net.0.weight');
    assert.ok(first?.source);
    assert.match(first.source.file, /train\.ipynb$/);
    assert.equal(first.source.cell, 3);
    assert.equal(first.source.line, 4);
    assert.equal(locationText('train.ipynb', first.source), 'train.ipynb cell 4 line 4');
    assert.equal(byName.get('before.weight')?.source, null);
  });

  it('carries the cell into the findings and the run JSON', () => {
    const findings = analyzeStore(r.store);
    const top = findings.find((f) => f.kind === 'non-finite-gradient');
    assert.ok(top?.source, JSON.stringify(findings.map((f) => f.kind)));
    assert.equal(top.source.cell, 3);
    const json = buildRunJson(r.store, r.meta.script, { reason: 'completed', code: null, signal: null, steps: 9 } as never, RUN, findings);
    const jf = json.findings.find((f) => f.kind === 'non-finite-gradient');
    assert.equal(jf?.source?.cell, 3);
    for (const f of json.findings) for (const l of f.locations ?? []) if (/train\.ipynb$/.test(l.file)) assert.equal(typeof l.cell, 'number');
  });
});
