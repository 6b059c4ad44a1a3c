// The related lines of a finding (custom layers' weight lines, a recurrent layer's initialisation),
// on the recorded fixtures' scripts (their gs:related markers) and on small texts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Analyzer } from '../../../src/core/analysis/analyzer';
import type { FindingKind } from '../../../src/core/analysis/finding';
import { readRunFile } from '../../../src/core/store/runFile';
import { relatedLinesFor } from '../../../src/features/relatedLines';
import { expectations } from './expectations';

describe('related lines', () => {
  it("custom layers: the fixtures' gs:related lines are found from the recorded finding's layer", () => {
    let checked = 0;
    for (const e of expectations()) {
      for (const [kind, lines] of e.related) {
        const { store } = readRunFile(e.runFile);
        const f = new Analyzer(store).finish().find((x) => x.kind === kind);
        assert.ok(f?.layer && f.source, `${e.name}: a ${kind} finding on a layer`);
        const type = store.tensors.find((t) => t.layer === f.layer)!.layerType;
        const got = relatedLinesFor(readFileSync(e.script, 'utf8'), e.script.endsWith('.py'), kind as FindingKind, type, f.source.line).map((r) => r.line);
        assert.deepEqual(got, lines, e.name);
        checked++;
      }
    }
    assert.ok(checked >= 2, `${checked} scripts mark related lines`);
  });

  it('JS: the bias addWeight of the class only; none for a layer type the script does not define', () => {
    const js = [
      'class Gate extends tf.layers.Layer {',
      '  build(s) {',
      "    this.k = this.addWeight('kernel', [s[1], 4], 'float32', tf.initializers.heNormal({}));",
      "    this.b = this.addWeight('bias', [4], 'float32', tf.initializers.constant({ value: -5 })); // { tricky }",
      '  }',
      '}',
      "const other = { addWeight: () => 1, b: this.addWeight('bias') };",
      'model.add(new Gate({}));',
    ].join('\n');
    assert.deepEqual(relatedLinesFor(js, false, 'dead-units', 'Gate', 8), [{ line: 4, why: 'Gate creates its weight here' }]);
    assert.deepEqual(
      relatedLinesFor(js, false, 'vanishing-gradient', 'Gate', 8).map((r) => r.line),
      [3, 4],
    );
    assert.deepEqual(relatedLinesFor(js, false, 'dead-units', 'Dense', 8), []);
  });

  it('Python: nn.Parameter lines inside the class body, by indentation', () => {
    const py = [
      'class Gate(nn.Module):',
      '    def __init__(self):',
      '        super().__init__()',
      '        self.w = nn.Parameter(torch.ones(4, 4))',
      '',
      '        self.bias = nn.Parameter(torch.full((4,), -5.0))',
      '',
      'scale = nn.Parameter(torch.ones(1))  # outside',
      'g = Gate()',
    ].join('\n');
    assert.deepEqual(
      relatedLinesFor(py, true, 'dead-units', 'Gate', 9).map((r) => r.line),
      [6],
    );
  });

  it("recurrent: the initialiser named on the construction line, or torch's nn.init on weight_hh", () => {
    const js = ['const rec = tf.initializers.orthogonal({ gain: 1.5 });', 'model.add(tf.layers.simpleRNN({ units: 8, recurrentInitializer: rec, inputShape: [5, 2] }));'].join('\n');
    assert.deepEqual(
      relatedLinesFor(js, false, 'exploding-gradient', 'SimpleRNN', 2).map((r) => r.line),
      [1],
    );
    const inline = 'model.add(tf.layers.simpleRNN({ units: 8, recurrentInitializer: tf.initializers.identity({ gain: 2 }) }));';
    assert.deepEqual(
      relatedLinesFor(inline, false, 'exploding-gradient', 'SimpleRNN', 1).map((r) => r.line),
      [1],
    );
    const py = ['rnn = nn.RNN(4, 16)', 'nn.init.eye_(rnn.weight_hh_l0)  # identity', 'x = 1'].join('\n');
    assert.deepEqual(
      relatedLinesFor(py, true, 'exploding-gradient', 'RNN', 1).map((r) => r.line),
      [2],
    );
    assert.deepEqual(relatedLinesFor(py, true, 'exploding-gradient', 'Linear', 1), []);
    assert.deepEqual(relatedLinesFor(py, true, 'dead-units', 'RNN', 1), []);
  });
});
