// The CLI summary and the run JSON of runs with absent gradients and several optimizers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSummary } from '../../../src/cli/summary';
import { formatNumber } from '../../../src/core/protocol/float';
import { RUN_JSON_SCHEMA, buildRunJson } from '../../../src/core/report/runJson';
import type { RunExit } from '../../../src/process/runSession';
import { RunStore } from '../../../src/core/store/runStore';
import { absentRun } from '../support/absentRun';
import { defaultValue, helloMsg, stepMsg, wire } from '../store/helpers';

const exit: RunExit = { reason: 'completed', code: 0, signal: null, error: null, message: 'completed', steps: 40 };
const where = { script: 'train.py', runFile: 'r.gsrun' };

describe('summary and JSON with absent gradients', () => {
  it('no non-finite step when the only gaps are absent gradients; says which tensors had none', () => {
    const text = formatSummary(absentRun({ steps: 40 }), exit, where);
    assert.match(text, /non-finite {2}none/);
    assert.doesNotMatch(text.replace('NaN/Inf', ''), /NaN/);
    assert.match(
      text,
      /no grad {3}3 tensors had no gradient at some steps \(left out of the analysis, not counted as non-finite\): frozen\.weight \(every step\), head\.weight \(20 of 40 steps\), head\.bias \(20 of 40 steps\)/,
    );
    // The head's last norm is its last present one, not NaN; the frozen layer has none.
    const head = text.split('\n').find((l) => l.startsWith('head.weight'))!;
    assert.match(head, /\s[\d.]+\s+[\d.]+\s+no$/);
    const frozen = text.split('\n').find((l) => l.startsWith('frozen.weight'))!;
    assert.match(frozen, /–\s+–\s+no$/);
  });

  it('a real NaN is still reported beside absent cells', () => {
    const text = formatSummary(absentRun({ steps: 40, nanAt: [13, 3] }), exit, where);
    assert.match(text, /non-finite {2}first at step 13 in l2\.weight/);
  });

  it('gives the loss, first and last, per optimizer when two carry one', () => {
    const one = formatSummary(absentRun({ steps: 40 }), exit, where);
    assert.match(one, /\nloss {6}first 2 · last 1\.12\n/); // 2 / (1 + step / 50), steps 0 and 39
    const two = formatSummary(absentRun({ steps: 40, twoOptimizers: true }), exit, where);
    // opt steps on odd steps (1 … 39), opt_head on even ones (0 … 38): two curves, not one mixed
    assert.match(two, /\nloss {6}opt: first 1\.96 · last 1\.12\n {10}opt_head: first 2 · last 1\.14\n/);
  });

  it('gives each optimizer its own global norm when two stepped (the run line alternates between them)', () => {
    const store = absentRun({ steps: 40, twoOptimizers: true });
    const text = formatSummary(store, exit, where);
    for (const [id, name] of [
      [0, 'opt'],
      [1, 'opt_head'],
    ] as const) {
      const c = store.globalNorm({ optimizer: id });
      const want = `${name}: first ${formatNumber(c.values[0])} · max ${formatNumber(Math.max(...c.values))} · last ${formatNumber(c.values[c.values.length - 1])}`;
      assert.ok(text.includes(`\n          ${want}\n`), `${want} in:\n${text}`);
    }
    assert.notEqual(store.globalNorm({ optimizer: 0 }).values[0], store.globalNorm({ optimizer: 1 }).values[0]);
    assert.doesNotMatch(formatSummary(absentRun({ steps: 40 }), exit, where), /\n {10}opt: first/);
    const doc = buildRunJson(store, '/t/train.py', exit, null);
    const c = store.globalNorm({ optimizer: 1 });
    assert.deepEqual(doc.optimizers[1].globalNorm, { first: c.values[0], max: Math.max(...c.values), last: c.values[c.values.length - 1] });
  });

  it('workers that train on their own are told apart by pid, not by their common rank 0', () => {
    const text = formatSummary(absentRun({ steps: 40 }), exit, where, [], { ranks: { shown: 0, ranks: [0, 0], cross: null, alone: { pids: [11, 12], shown: 11 } } });
    assert.match(text, /\nprocess {3}pid 11 is shown, of 2 processes that train on their own \(pids 11, 12\)\n/);
    assert.doesNotMatch(text, /rank {6}0 is shown/);
  });

  it('says a loss non-finite from the first step, and a run without a loss', () => {
    const run = (loss: (i: number) => number | null) => {
      const store = new RunStore();
      store.ingest(wire(helloMsg({ marksNoLoss: true })).msg);
      for (let i = 0; i < 5; i++) store.ingest(wire(stepMsg(i, 2, i, defaultValue, ['norm'], loss(i))).msg);
      return { text: formatSummary(store, exit, where), json: buildRunJson(store, '/t.py', exit, null).summary.loss };
    };
    assert.match(run((i) => (i === 0 ? Infinity : NaN)).text, /\nloss {6}first Inf · last NaN · Inf at step 0\n/);
    assert.deepEqual(run((i) => (i === 0 ? Infinity : NaN)).json, { first: null, last: null, steps: 5, firstNonFinite: { step: 0, value: 'Infinity' } });
    assert.deepEqual(run((i) => (i < 2 ? 1 : NaN)).json, { first: 1, last: null, steps: 5, firstNonFinite: { step: 2, value: 'NaN' } });
    assert.match(run(() => null).text, /\nloss {6}none seen\n/);
    assert.equal(run(() => null).json, null);
  });

  it('lists the optimizers, and --optimizer restricts the table to one of them', () => {
    const store = absentRun({ steps: 40, twoOptimizers: true });
    const all = formatSummary(store, exit, where);
    assert.match(all, /optimizers {2}opt \(AdamW\), 20 steps · opt_head \(SGD\), 20 steps/);
    const head = formatSummary(store, exit, where, [], { optimizer: 'opt_head' });
    assert.match(head, /optimizer {3}opt_head: 20 steps \(0–38\), 2 tensors; the table shows only these/);
    const rows = head.split('\n').filter((l) => /^(frozen|l1|l2|head)\./.test(l));
    assert.deepEqual(
      rows.map((r) => r.split(/\s+/)[0]),
      ['head.weight', 'head.bias'],
    );
    assert.doesNotMatch(head, /no grad/, 'the head has a gradient at every step of its own optimizer');
    assert.equal(formatSummary(store, exit, where, [], { optimizer: '1' }), head, 'by id too');
    const unknown = formatSummary(store, exit, where, [], { optimizer: 'opt_g' });
    assert.match(unknown, /warning {3}no optimizer named "opt_g" in this run \(it has: opt, opt_head\)/);
  });

  it('JSON: per-tensor absentSteps, the optimizers with their steps, schema 1.x', () => {
    const doc = buildRunJson(absentRun({ steps: 40, twoOptimizers: true }), '/t/train.py', exit, null);
    assert.match(doc.schema, /^gradscope\.run\/1(\.|$)/);
    assert.equal(doc.schema, RUN_JSON_SCHEMA);
    assert.deepEqual(
      doc.tensors.map((t) => [t.name, t.absentSteps]),
      [
        // (counted at the steps of the optimizer that trains each: opt's 20, opt_head's 20)
        ['frozen.weight', 20],
        ['l1.weight', 0],
        ['l1.bias', 0],
        ['l2.weight', 0],
        ['l2.bias', 0],
        ['head.weight', 0],
        ['head.bias', 0],
      ],
    );
    // Each optimizer's loss over its own steps: 2 / (1 + step / 50), odd steps for opt, even ones for opt_head.
    const loss = (first: number, last: number) => ({ first, last, steps: 20, firstNonFinite: null });
    assert.deepEqual(
      doc.optimizers.map(({ globalNorm: _g, ...o }) => o),
      [
        { id: 0, name: 'opt', className: 'AdamW', mode: 'optimizer', steps: 20, firstStep: 1, lastStep: 39, tensorIds: [0, 1, 2, 3, 4], loss: loss(2 / 1.02, 2 / 1.78) },
        { id: 1, name: 'opt_head', className: 'SGD', mode: 'optimizer', steps: 20, firstStep: 0, lastStep: 38, tensorIds: [5, 6], loss: loss(2, 2 / 1.76) },
      ],
    );
    assert.ok(
      doc.optimizers.every((o) => o.globalNorm !== null && o.globalNorm.first !== null),
      '(each one its own: checked above)',
    );
    assert.deepEqual(doc.summary.loss, { first: 2, last: 2 / 1.78, steps: 40, firstNonFinite: null });
    assert.equal(doc.summary.firstNonFiniteStep, null);
    assert.ok(doc.summary.globalNorm.max !== null && doc.summary.globalNorm.last !== null);
  });
});
