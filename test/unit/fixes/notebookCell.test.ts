import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { cellFileName, cellFixInput, cellSourceOf, computeCellFix, editsInCell, findingForCell, notebookCodeCells, placeKey } from '../../../src/core/fixes/notebookCell';
import { readRunFileAsync } from '../../../src/core/store/runFile';
import { computeFix, prepareFixes } from '../../../src/process/fixEngine';
import { analyzerFor } from '../../../src/process/runHandle';
import { fixture } from '../support/paths';

// The notebook fixture and the run file the real notebook probe wrote from it (test_notebook.py).
const NB = fixture('notebook', 'train.ipynb');
const nbText = readFileSync(NB, 'utf8');

test('notebookCodeCells: code cells by their index among all cells (markdown ones counted), sources joined', () => {
  const cells = notebookCodeCells(nbText)!;
  const raw = JSON.parse(nbText) as { cells: { cell_type: string; source: string[] }[] };
  const want = raw.cells.flatMap((c, index) => (c.cell_type === 'code' ? [{ index, source: c.source.join('') }] : []));
  assert.deepEqual(cells, want);
  assert.equal(raw.cells[0].cell_type, 'markdown');
  assert.equal(cells[0].index, 1);
  assert.equal(cellSourceOf(nbText, 0), null, 'a markdown cell has no code');
  assert.equal(cellSourceOf(nbText, 99), null);
  assert.equal(notebookCodeCells('{"cells": 3}'), null);
  assert.equal(notebookCodeCells('not json'), null);
  assert.deepEqual(notebookCodeCells(JSON.stringify({ cells: [{ cell_type: 'code', source: 'x = 1\ny = 2' }] })), [{ index: 0, source: 'x = 1\ny = 2' }]);
});

test('placeKey: a file and each cell of a notebook are distinct places', () => {
  assert.equal(placeKey('/a/b.py'), '/a/b.py');
  assert.notEqual(placeKey('/a/n.ipynb', 0), placeKey('/a/n.ipynb', 1));
  assert.notEqual(placeKey('/a/n.ipynb', 0), placeKey('/a/n.ipynb'));
});

test('the fixture run: its findings name cells of the notebook, and the line in the cell holds the layer', async () => {
  const read = await readRunFileAsync(fixture('notebook', 'train-run.gsrun'));
  const analyzer = analyzerFor(read.store);
  analyzer.finish();
  const inCells = analyzer.findings.filter((f) => f.source?.cell !== undefined);
  assert.ok(inCells.length > 0, `findings: ${analyzer.findings.map((f) => f.kind).join(', ')}`);
  for (const f of inCells) {
    const src = cellSourceOf(nbText, f.source!.cell!);
    assert.ok(src !== null, `cell ${f.source!.cell} is a code cell`);
    const line = src.split('\n')[f.source!.line - 1];
    assert.match(line, /torch\.nn\.Linear\(/, `${f.kind} at cell ${f.source!.cell} line ${f.source!.line}: ${line}`);
  }
});

test('cellFixInput / editsInCell: the imports of the cells above after the cell (its lines keep their numbers), edits checked to be the cell’s', () => {
  const cell = 'opt = torch.optim.SGD(p, lr=1)';
  const input = cellFixInput(['import torch\nx = 1\nfrom torch import nn\nfrom a import (\n  b)\n', 'import numpy as np'], cell);
  assert.equal(input.text, 'opt = torch.optim.SGD(p, lr=1)\nimport torch\nfrom torch import nn\nimport numpy as np\n');
  assert.equal(input.text.slice(0, input.cellLength), cell);
  const at = cell.indexOf('lr=1');
  const r = editsInCell([{ start: at + 3, end: at + 4, newText: '0.1' }], input.text.replace('lr=1', 'lr=0.1'), input)!;
  assert.deepEqual(r.edits, [{ start: at + 3, end: at + 4, newText: '0.1' }]);
  assert.equal(r.after, 'opt = torch.optim.SGD(p, lr=0.1)');
  const imp = input.text.indexOf('import torch');
  assert.equal(editsInCell([{ start: imp, end: imp, newText: 'x' }], '', input), null, 'an edit of an import line from above is not this cell');
  assert.equal(editsInCell([{ start: input.cellLength, end: input.cellLength, newText: 'x' }], '', input), null, 'nor one at the seam');
  assert.deepEqual(cellFixInput([], 'a\n'), { text: 'a\n', cellLength: 2 });
  assert.equal(cellFixInput(['import torch'], 'a\n').text, 'a\nimport torch\n');
});

test('findingForCell + computeCellFix: a fix of a notebook finding edits the cell text at the cell line', async () => {
  await prepareFixes();
  const read = await readRunFileAsync(fixture('notebook', 'train-run.gsrun'));
  const analyzer = analyzerFor(read.store);
  analyzer.finish();
  const f = analyzer.findings.find((x) => x.source?.cell !== undefined && x.remedies.length)!;
  assert.ok(f, 'a finding in a cell with remedies');
  const notebook = f.source!.file;
  const cell = f.source!.cell!;
  assert.equal(findingForCell(f, notebook, cell + 1), null, 'not that cell');
  const cf = findingForCell(f, notebook, cell)!;
  assert.equal(cf.source!.file, cellFileName(notebook, cell));
  assert.equal(cf.source!.line, f.source!.line, 'the cell line');
  assert.equal('cell' in cf.source!, false);
  for (const l of cf.locations ?? []) assert.equal(l.file, cellFileName(notebook, cell));
  const cells = notebookCodeCells(nbText)!;
  const text = cellSourceOf(nbText, cell)!;
  const input = { notebook, cell, cellText: text, cellsAbove: cells.filter((c) => c.index < cell).map((c) => c.source) };
  const globalNorms = Array.from(read.store.globalNorm().values);
  const results = f.remedies.map((r) => ({ r, x: computeCellFix(computeFix, input, f, r.id, { globalNorms, version: 1 }) }));
  const ok = results.filter((x) => x.x.ok);
  assert.ok(ok.length > 0, results.map((x) => `${x.r.id}: ${x.x.ok ? 'ok' : x.x.reason}`).join('; '));
  for (const { x } of ok) {
    if (!x.ok) continue;
    // Every edit is inside the cell's text, and applying them gives the engine's text after.
    let after = text;
    for (const e of [...x.edits].sort((a, b) => b.start - a.start)) {
      assert.ok(e.start >= 0 && e.end <= text.length);
      after = after.slice(0, e.start) + e.newText + after.slice(e.end);
    }
    assert.equal(after, x.after);
    assert.notEqual(after, text);
    assert.doesNotMatch(after, /"cell_type"|^import torch/m);
    // Line numbers in the title are the cell's own: the optimizer is on line 9 of cell 3.
    const optLine = text.split('\n').findIndex((l) => /torch\.optim\.SGD\(/.test(l)) + 1;
    const named = /on line (\d+)/.exec(x.title);
    if (named) assert.equal(Number(named[1]), optLine, x.title);
  }
  // Without the cell's imports the engine cannot find torch's optimizer in the cell: the prelude is what makes it work.
  const bare = computeCellFix(computeFix, { ...input, cellsAbove: [] }, f, ok[0].r.id, { globalNorms, version: 1 });
  assert.equal(bare.ok, false);
  // Another cell's finding is refused.
  assert.equal(computeCellFix(computeFix, { ...input, cell: cell + 1 }, f, ok[0].r.id, {}).ok, false);
});
