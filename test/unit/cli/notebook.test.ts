// The CLI and a notebook: `gradscope run x.ipynb` says how notebooks are recorded, and a run file
// written by `%gradscope on` (test/fixtures/notebook, from the real probe in a Jupyter kernel) is
// read back with its findings on the notebook's cell lines.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gradscopeSync, type CliResult } from '../support/cli';

const gradscope = (args: string[]): CliResult => gradscopeSync(args);

describe('gradscope and Jupyter notebooks', () => {
  it('run refuses a notebook and says how a notebook run is recorded', () => {
    const r = gradscope(['run', 'test/fixtures/notebook/train.ipynb']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /don't know how to run .*train\.ipynb/);
    assert.match(r.stderr, /%load_ext gradscope_probe and %gradscope on/);
  });

  it('fix --from-run reads a notebook run, names the cell and its line, and edits nothing', () => {
    const r = gradscope(['fix', '--dry-run', '--from-run', 'test/fixtures/notebook/train-run.gsrun', 'test/fixtures/notebook/train.ipynb']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /read test\/fixtures\/notebook\/train-run\.gsrun: 9 steps .*completed/);
    // The exploding MLP is built in the notebook's 4th cell (index 3); the finding is on its Sequential line.
    assert.match(r.stdout, /^Finding: non-finite-gradient \(error\) at \S*train\.ipynb cell 4 line 5: /m);
    assert.match(r.stdout, /Cannot fix inside a notebook \(\.ipynb\) yet/);
  });
});
