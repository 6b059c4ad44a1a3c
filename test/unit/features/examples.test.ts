import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { copyExample, FIRST_EXAMPLE, listExamples, summaryOf } from '../../../src/features/examples';

// The repository's examples/ folder is what the package ships (scripts/package.mjs copies it).
const ROOT = resolve(__dirname, '..', '..', '..', '..', 'examples');

describe('examples (Get started walkthrough)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'gs-examples-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('lists both frameworks, TF.js first, each with the first sentence of its comment', () => {
    const all = listExamples(ROOT);
    assert.ok(
      all.some((e) => e.id === FIRST_EXAMPLE),
      'the walkthrough’s first example exists',
    );
    assert.ok(all.some((e) => e.id === 'torch/exploding_init.py'));
    assert.equal(all[0]?.framework, 'tfjs');
    assert.equal(all.at(-1)!.framework, 'torch');
    for (const e of all) assert.ok(e.summary.length > 10 && !e.summary.includes('\n'), `${e.id}: ${e.summary}`);
    assert.match(all.find((e) => e.id === 'torch/exploding_init.py')!.summary, /^Exploding gradients from a bad initialisation: an MLP whose weights .*[^.]$/);
  });

  it('summaryOf reads // blocks and docstrings up to the end of the first sentence', () => {
    assert.equal(summaryOf('// An MLP, trained badly. More text.\n// more\nconst x = 1;'), 'An MLP, trained badly');
    assert.equal(summaryOf('"""Dead units: the layer never fires. Its bias is -5."""\nimport torch'), 'Dead units: the layer never fires');
    assert.equal(summaryOf('// lr 0.5 is too high for\n// this net. More.'), 'lr 0.5 is too high for this net');
    assert.equal(summaryOf('import torch\n'), '');
  });

  it('copies into <dest>/<framework>/<file> once and keeps an edited copy', () => {
    const first = copyExample(ROOT, 'torch/healthy.py', tmp);
    assert.deepEqual(first, { path: join(tmp, 'torch', 'healthy.py'), created: true });
    assert.equal(readFileSync(first.path, 'utf8'), readFileSync(join(ROOT, 'torch', 'healthy.py'), 'utf8'));
    writeFileSync(first.path, '# edited\n');
    assert.deepEqual(copyExample(ROOT, 'torch/healthy.py', tmp), { path: first.path, created: false });
    assert.equal(readFileSync(first.path, 'utf8'), '# edited\n');
  });

  it('refuses an id that is not an example (no path escapes)', () => {
    assert.throws(() => copyExample(ROOT, '../package.json', tmp), /no example/);
    assert.throws(() => copyExample(ROOT, 'tfjs/../../package.json', tmp), /no example/);
  });
});
