// Anchors that keep a diagnostic on its line through edits, and never on a stale one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anchorHolds, assignedName, constructionText, findOptimizerLine, shiftLine, shiftLineThrough, type LineEdit } from '../../../src/features/lineAnchors';

const ins = (line: number, ch: number, text: string): LineEdit => ({ startLine: line, startChar: ch, endLine: line, endChar: ch, newText: text });
const rep = (sl: number, sc: number, el: number, ec: number, text: string): LineEdit => ({ startLine: sl, startChar: sc, endLine: el, endChar: ec, newText: text });

/** Applies edits (coordinates of the text before all of them) to a text, last first. */
function apply(text: string, edits: LineEdit[]): string {
  const lines = text.split('\n');
  const off = (l: number, c: number): number => lines.slice(0, l).reduce((a, x) => a + x.length + 1, 0) + c;
  let out = text;
  for (const e of [...edits].sort((a, b) => off(b.startLine, b.startChar) - off(a.startLine, a.startChar))) {
    out = out.slice(0, off(e.startLine, e.startChar)) + e.newText + out.slice(off(e.endLine, e.endChar));
  }
  return out;
}

describe('shiftLine', () => {
  it('moves a line by the net line count of an edit above it', () => {
    assert.equal(shiftLine(5, ins(0, 0, '// a\n// b\n')), 7);
    assert.equal(shiftLine(5, rep(1, 0, 3, 0, '')), 3);
    assert.equal(shiftLine(5, rep(1, 2, 4, 7, 'x\ny')), 3);
  });
  it('keeps a line for edits below it or inside it', () => {
    assert.equal(shiftLine(5, ins(6, 0, 'x\n')), 5);
    assert.equal(shiftLine(5, rep(5, 3, 5, 9, 'abc')), 5);
    assert.equal(shiftLine(5, rep(5, 3, 8, 0, 'abc'), [0, 2]), 5);
  });
  it('pushes a line down when lines are inserted at its start', () => {
    assert.equal(shiftLine(5, ins(5, 0, 'x\ny\n')), 7);
    assert.equal(shiftLine(5, ins(5, 0, 'x')), 5);
  });
  it('follows the tail of a line joined to the line above when the anchored text survives', () => {
    // Deleting the newline at the end of line 4 joins line 5 onto it.
    assert.equal(shiftLine(5, rep(4, 10, 5, 0, ''), [0, 16]), 4);
    assert.equal(shiftLine(5, rep(4, 10, 5, 3, ''), [0, 16]), null);
    assert.equal(shiftLine(5, rep(4, 10, 5, 0, '')), null, 'unknown span: dropped, never stale');
  });
  it('keeps the head of a line when a multi-line edit starts after the anchored text', () => {
    assert.equal(shiftLine(5, rep(5, 30, 7, 0, ''), [10, 26]), 5);
    assert.equal(shiftLine(5, rep(5, 20, 7, 0, ''), [10, 26]), null);
  });
  it('drops a line that was deleted whole (it must not land on the next, identical-looking line)', () => {
    assert.equal(shiftLine(5, rep(5, 0, 6, 0, ''), [10, 26]), null);
    assert.equal(shiftLine(5, rep(4, 40, 5, 45, ''), [10, 26]), null);
  });
  it('drops a line inside a replaced range', () => {
    assert.equal(shiftLine(5, rep(3, 0, 7, 0, 'x\n')), null);
    assert.equal(shiftLine(5, rep(4, 2, 6, 1, ''), [0, 3]), null);
  });
  it('agrees with the text after random edits (the line holding a marker)', () => {
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let trial = 0; trial < 300; trial++) {
      const lines = Array.from({ length: 12 }, (_, i) => `line ${i} text`);
      const target = rnd(12);
      // Every line looks alike: an anchor that slid onto a neighbour would still "hold".
      for (let i = 0; i < lines.length; i++) lines[i] = `model.add(tf.layers.dense({ units: ${i} }));`;
      lines[target] = 'model.add(tf.layers.dense({ units: 99 }));';
      const text = lines.join('\n');
      const sl = rnd(12);
      const el = Math.min(11, sl + rnd(3));
      const sc = rnd(4);
      const ec = el === sl ? sc + rnd(3) : rnd(4);
      const e = rep(sl, sc, el, ec, ['', 'x', 'a\nb', '\n', 'q\nr\ns\n'][rnd(5)]);
      const after = apply(text, [e]).split('\n');
      const at = lines[target].indexOf('tf.layers.dense(');
      const got = shiftLine(target, e, [at, at + 'tf.layers.dense('.length]);
      const truth = after.findIndex((l) => l.includes('tf.layers.dense({ units: 99 })'));
      // Never stale: a kept anchor whose line still holds the call is the layer's own line.
      if (got !== null && anchorHolds({ line: got, text: 'tf.layers.dense(' }, after[got]) && after[got].includes('dense({ units: ')) {
        const unitsHere = /units: (\d+)/.exec(after[got])?.[1];
        if (unitsHere !== undefined && unitsHere !== '99' && !after[got].includes('units: 99')) assert.fail(`anchor slid to another layer: ${JSON.stringify(e)} → ${after[got]}`);
        if (truth >= 0 && after[got].includes('units: 99')) assert.equal(got, truth);
      }
    }
  });
  it('shifts through several changes given in the coordinates before them', () => {
    const edits = [ins(0, 0, 'a\n'), ins(8, 0, 'b\nc\n'), rep(2, 0, 3, 0, '')];
    assert.equal(shiftLineThrough(5, edits), 5);
    assert.equal(shiftLineThrough(9, edits), 11);
    assert.equal(shiftLineThrough(2, edits), null);
  });
});

describe('construction text, variable names, the optimizer line', () => {
  it('takes the whole callee chain around the column', () => {
    const line = "model.add(tf.layers.dense({ units: 64, activation: 'relu' }));";
    assert.equal(constructionText(line, 21), 'tf.layers.dense(');
    assert.equal(constructionText(line, 11), 'tf.layers.dense(');
    assert.equal(constructionText('const w = tf.variable(tf.randomNormal([3, 3]));', 11), 'tf.variable(');
    assert.equal(constructionText('  }', 2), '}');
  });
  it('finds the variable a layer is assigned to', () => {
    assert.equal(assignedName('const dense1 = tf.layers.dense({ units: 4 });', 16), 'dense1');
    assert.equal(assignedName('  let enc = tf.layers.lstm({ units: 8 })', 13), 'enc');
    assert.equal(assignedName('model.add(tf.layers.dense({ units: 1 }));', 11), null);
    assert.equal(assignedName('const x = y.apply(tf.layers.dense({ units: 1 }));', 20), 'x');
  });
  it('finds the first tf.train.* call outside comments', () => {
    const text = ['// tf.train.adam(0.1) in a comment', '/* tf.train.sgd(1)', '*/ const a = 1;', 'model.compile({ optimizer: tf.train.sgd(0.007), loss: "mse" });'].join('\n');
    assert.deepEqual(findOptimizerLine(text), { line: 3, column: 28, text: 'tf.train.sgd(' });
    assert.equal(findOptimizerLine('model.compile({ optimizer: "adam" })'), null);
  });
  it('finds the first torch.optim.<Class>( in a Python script, outside comments and docstrings', () => {
    const text = [
      '"""Trains with torch.optim.SGD(model.parameters(), lr=0.9)',
      'and a long docstring."""',
      '# optimizer = torch.optim.Adam(model.parameters())',
      "note = '''torch.optim.RMSprop(x)'''",
      'from torch import optim',
      'opt_d = optim.Adam(disc.parameters(), lr=2e-4)  # the discriminator',
      'opt_g = torch.optim.Adam(gen.parameters())',
    ].join('\n');
    assert.deepEqual(findOptimizerLine(text, true), { line: 5, column: 9, text: 'optim.Adam(' });
    assert.deepEqual(findOptimizerLine('x = 1\noptimizer = torch.optim.SGD(model.parameters(), lr=0.007)', true), { line: 1, column: 13, text: 'torch.optim.SGD(' });
    assert.equal(findOptimizerLine('opt = make_optimizer(model)  # torch.optim.SGD(', true), null);
    assert.equal(findOptimizerLine('optimizer = tf.train.sgd(0.1)', true), null);
  });
});
