// The Python probe declares the wire's lists again (it is stdlib Python, it cannot import the
// TypeScript): its statistic ids, message type codes and per-tensor row layout are checked here
// against the one TypeScript definition (src/core/protocol/messages.ts).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MSG_TYPE_NAMES, MsgType, ROW, ROW_LENGTH, STAT_IDS, STAT_NAMES, TENSOR_ROW_STATS } from '../../../src/core/protocol/messages';
import { repoRoot } from '../support/paths';

const wirePy = readFileSync(join(repoRoot, 'src/probe/torch/gradscope_probe/wire.py'), 'utf8');

/** The right-hand side of `NAME = …` at the start of a line of wire.py (up to the line's end, or a closing bracket's). */
function assigned(name: string): string {
  const m = new RegExp(`^${name} = ([^\\n]*(?:\\n[ \\t]+[^\\n]*)*)`, 'm').exec(wirePy);
  assert.ok(m, `wire.py assigns ${name}`);
  return m[1];
}
const strings = (s: string): string[] => [...s.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
const snakeUpper = (camel: string): string => camel.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

describe('the Python probe’s wire lists agree with src/core/protocol/messages.ts', () => {
  it('statistic ids', () => {
    assert.deepEqual(JSON.parse(assigned('STAT_IDS')), STAT_IDS);
    assert.deepEqual(Object.keys(JSON.parse(assigned('STAT_IDS')) as object), [...STAT_NAMES]);
  });

  it('message type codes and names', () => {
    const names = /^([A-Z_, ]+) = ([0-9, ]+)$/m.exec(wirePy.slice(wirePy.indexOf('\nHELLO')));
    assert.ok(names, 'wire.py assigns HELLO, TENSORS, … = 1, 2, …');
    const codes = names[2].split(',').map(Number);
    const py = Object.fromEntries(names[1].split(',').map((n, i) => [n.trim(), codes[i]]));
    assert.deepEqual(py, Object.fromEntries(Object.entries(MsgType).map(([k, v]) => [k.toUpperCase(), v])));
    assert.deepEqual(Object.values(MSG_TYPE_NAMES), Object.keys(py));
    // TYPE_CODES: each message's "type" key to its code.
    const typeCodes = assigned('TYPE_CODES');
    for (const k of Object.keys(MsgType)) assert.match(typeCodes, new RegExp(`"${k.toLowerCase()}": ${k.toUpperCase()}\\b`));
  });

  it('the per-tensor row: the same statistics in the same order, each offset named', () => {
    assert.deepEqual(strings(assigned('TENSOR_ROW_STATS')), [...TENSOR_ROW_STATS]);
    const rowNames = /^(ROW_[A-Z_, ]+) = range\(len\(TENSOR_ROW_STATS\)\)$/m.exec(wirePy);
    assert.ok(rowNames, 'wire.py numbers ROW_* by range(len(TENSOR_ROW_STATS))');
    assert.deepEqual(
      rowNames[1].split(',').map((n) => n.trim()),
      TENSOR_ROW_STATS.map((s) => `ROW_${snakeUpper(s)}`),
    );
    assert.equal(ROW_LENGTH, TENSOR_ROW_STATS.length);
    TENSOR_ROW_STATS.forEach((s, i) => assert.equal(ROW[s], i));
    assert.match(assigned('GRAD_ROW_LENGTH'), /^ROW_INF_COUNT \+ 1$/);
  });
});
