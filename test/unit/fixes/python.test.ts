// Golden before/after tests of the Python (PyTorch) fix engine over script shapes:
// test/fixtures/fixes/python/<case>/{before.py, case.json, after.<name>.py, refused.<name>.txt}.
// Findings are built by hand (kind, layer, source line/column, evidence, the run's global norms).
// The text after a fix must equal the golden file exactly and parse with no ERROR node; an
// idempotent remedy applied a second time reports alreadyApplied.
// GRADSCOPE_UPDATE_GOLDEN=1 rewrites the golden files (review the diff before committing).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type { Finding } from '../../../src/core/analysis/finding';
import { computeFix, prepareFixes, SUPPORTED_REMEDIES } from '../../../src/core/fixes/index';
import { computePythonFix, pythonParserReady } from '../../../src/core/fixes/python/index';
import { parsePython, wasmDir } from '../../../src/core/fixes/python/parser';
import { errorCount } from '../../../src/core/fixes/python/syntax';
import type { FixResult } from '../../../src/core/fixes/types';
import { makeFinding, type CaseFix } from '../support/fixCases';
import { fixture } from '../support/paths';

const UPDATE = process.env.GRADSCOPE_UPDATE_GOLDEN === '1';
const IDEMPOTENT = new Set(['clip-global-norm', 'he-init', 'glorot-init', 'guard-loss', 'zero-bias-init']);

function parsesClean(text: string): number {
  const tree = parsePython(text);
  try {
    return errorCount(tree.rootNode);
  } finally {
    tree.delete();
  }
}

function checkGolden(dir: string, name: string, before: string, r: FixResult): void {
  const afterPath = join(dir, `after.${name}.py`);
  const refusedPath = join(dir, `refused.${name}.txt`);
  if (UPDATE) {
    if (r.ok) writeFileSync(afterPath, r.after);
    else writeFileSync(refusedPath, `${r.alreadyApplied ? 'already applied: ' : ''}${r.reason}\n`);
  }
  if (r.ok) {
    assert.ok(existsSync(afterPath), `${afterPath} exists (GRADSCOPE_UPDATE_GOLDEN=1 to create)${existsSync(refusedPath) ? ` — the golden says refused: ${readFileSync(refusedPath, 'utf8')}` : ''}`);
    assert.equal(r.after, readFileSync(afterPath, 'utf8'), `${name}: after text equals ${afterPath}`);
    assert.notEqual(r.after, before);
    assert.equal(parsesClean(r.after), 0, `${name}: the text after parses with no ERROR node`);
    assert.ok(r.title.length > 0);
  } else {
    assert.ok(existsSync(refusedPath), `${refusedPath} exists: ${r.reason}`);
    assert.equal(`${r.alreadyApplied ? 'already applied: ' : ''}${r.reason}\n`, readFileSync(refusedPath, 'utf8'));
  }
}

let goldenCount = 0;
const shapes = new Set<string>();

describe('python fix engine: script shapes', () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  const root = fixture('fixes', 'python');
  for (const dirName of readdirSync(root).sort()) {
    const dir = join(root, dirName);
    const file = join(dir, 'before.py');
    if (!existsSync(file)) continue;
    const spec = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { fixes: CaseFix[] };
    for (const c of spec.fixes) {
      it(`${dirName}: ${c.name} (${c.remedy})`, () => {
        const text = readFileSync(file, 'utf8');
        assert.equal(parsesClean(text), 0, `${dirName}/before.py parses`);
        const f = makeFinding(file, c);
        const ctx = { file, globalNorms: c.globalNorms?.map((x) => x ?? NaN), version: 3 };
        const r = computeFix(text, f, c.remedy, ctx);
        checkGolden(dir, c.name, text, r);
        if (r.ok) {
          assert.equal(r.version, 3, 'the document version is echoed');
          for (let i = 1; i < r.edits.length; i++) assert.ok(r.edits[i - 1].end <= r.edits[i].start, 'edits are sorted and disjoint');
          if (IDEMPOTENT.has(c.remedy)) {
            const again = computeFix(r.after, f, c.remedy, ctx);
            assert.equal(again.ok, false, `${c.remedy} applied twice: ${again.ok ? again.title : ''}`);
            if (!again.ok) assert.equal(again.alreadyApplied, true, `${c.remedy} second time: alreadyApplied (${again.reason})`);
          }
        }
        goldenCount++;
        shapes.add(dirName);
      });
    }
  }

  it('counts the golden cases', () => {
    console.log(`# python golden fix cases checked: ${goldenCount} over ${shapes.size} script shapes`);
    assert.ok(shapes.size >= 10, `${shapes.size} shapes`);
    assert.ok(goldenCount >= 50, `${goldenCount} golden cases`);
  });
});

describe('python fix engine: dispatch and loading', () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  it('finds the wasm next to the bundle (dist/tree-sitter) when built', () => {
    const dir = wasmDir();
    for (const f of ['tree-sitter.wasm', 'tree-sitter-python.wasm']) assert.ok(existsSync(join(dir, f)), `${f} in ${dir}`);
    if (__dirname.includes(`${join('dist', 'test')}`)) assert.match(dir.replace(/\\/g, '/'), /\/dist\/tree-sitter$/);
  });

  it('routes .py files to the Python engine and .js files to the TF.js engine', () => {
    assert.ok(pythonParserReady());
    const py = 'import torch\nm = torch.nn.Linear(2, 2)\nopt = torch.optim.SGD(m.parameters(), lr=0.5)\n';
    const f: Finding = { id: 'x', kind: 'update-ratio', severity: 'warning', step: 0, stepRange: [0, 0], tensors: [], layer: null, source: null, message: '', evidence: {}, remedies: [] };
    const r = computeFix(py, f, 'lower-lr', { file: '/tmp/train.py' });
    assert.ok(r.ok && r.after.includes('lr=0.05'));
    const js = computeFix(py, f, 'lower-lr', { file: '/tmp/train.js' });
    assert.equal(js.ok, false, 'the TF.js engine does not see a torch optimizer');
    for (const id of SUPPORTED_REMEDIES) {
      const res = computePythonFix(py, f, id, { file: '/tmp/train.py' });
      assert.ok(res.ok || !/no automatic edit/.test(res.reason), `${id} is handled by the Python engine`);
    }
  });

  it('refuses a finding located in another file', () => {
    const f: Finding = { id: 'x', kind: 'exploding-gradient', severity: 'error', step: 0, stepRange: [0, 0], tensors: [], layer: 'fc1', source: { file: '/tmp/model.py', line: 3, column: 1 }, message: '', evidence: {}, remedies: [] };
    const r = computeFix('import torch\n', f, 'he-init', { file: '/tmp/train.py' });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /model\.py/);
  });

  it('keeps CRLF line endings', () => {
    const text = 'import torch\r\nm = torch.nn.Linear(2, 2)\r\nopt = torch.optim.SGD(m.parameters(), lr=0.5)\r\nfor _ in range(2):\r\n    m(torch.ones(1, 2)).sum().backward()\r\n    opt.step()\r\n';
    const f: Finding = { id: 'x', kind: 'exploding-gradient', severity: 'error', step: 0, stepRange: [0, 0], tensors: [], layer: 'm', source: { file: '/tmp/t.py', line: 2, column: 5 }, message: '', evidence: {}, remedies: [] };
    const clip = computeFix(text, f, 'clip-global-norm', { file: '/tmp/t.py', globalNorms: [1, 1, 1] });
    assert.ok(clip.ok);
    if (clip.ok) assert.equal(clip.after, text.replace('backward()\r\n', 'backward()\r\n    torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm=2)\r\n'));
    const he = computeFix(text, f, 'he-init', { file: '/tmp/t.py' });
    assert.ok(he.ok);
    if (he.ok) assert.equal(he.after, text.replace('Linear(2, 2)\r\n', 'Linear(2, 2)\r\ntorch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")\r\n'));
  });

  it('inserts at the end of a file without a final newline', () => {
    const text = 'import torch\nm = torch.nn.Linear(2, 2)';
    const f: Finding = { id: 'x', kind: 'vanishing-gradient', severity: 'warning', step: 0, stepRange: [0, 0], tensors: [], layer: 'm', source: { file: '/tmp/t.py', line: 2, column: 5 }, message: '', evidence: {}, remedies: [] };
    const r = computeFix(text, f, 'glorot-init', { file: '/tmp/t.py' });
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.after, 'import torch\nm = torch.nn.Linear(2, 2)\ntorch.nn.init.xavier_uniform_(m.weight)\n');
  });
});
