// Locate-nan on real PyTorch runs: a first run finds the non-finite step, the bounded re-run with
// the probe's locate mode names the operation and the user's line; a script whose NaN does not come
// back on the re-run says so.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { withCause } from '../../../src/core/analysis/nanCause';
import { locateNan } from '../../../src/process/locateNan';
import { RunSession } from '../../../src/process/runSession';
import { repoRoot } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

const runDir = mkdtempSync(join(tmpdir(), 'gs-locate-'));
const fixtures = join(repoRoot, 'test', 'fixtures', 'locate-nan');

function lineOf(file: string, needle: string): number {
  const i = readFileSync(file, 'utf8')
    .split('\n')
    .findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `${needle} not in ${file}`);
  return i + 1;
}

async function firstRun(script: string, args: string[] = []) {
  const s = RunSession.start({ script, args, runDir, pythonPath: PYTHON, maxSteps: 20 });
  await s.done;
  const nf = s.findings.find((f) => f.kind === 'non-finite-gradient');
  assert.ok(nf, `the first run of ${script} has a non-finite finding`);
  return nf;
}

describe('locate-nan with PyTorch', { skip: torchSkip() }, () => {
  it('names torch.log of a probability that reached 0, on its line', async () => {
    const script = join(fixtures, 'torch_log.py');
    const nf = await firstRun(script);
    const r = await locateNan({ script, firstStep: nf.step, pythonPath: PYTHON, runDir, timeoutSec: 60 });
    assert.equal(r.status, 'located', r.message);
    assert.equal(r.cause!.op, 'log');
    assert.equal(r.cause!.line, lineOf(script, 'torch.log(p)'));
    assert.equal(r.cause!.file, script);
    assert.ok(r.steps <= nf.step + 1);
    const f = withCause(nf, r.cause!);
    assert.equal(f.source!.line, r.cause!.line);
    assert.equal(f.remedies[0].id, 'guard-loss');
    assert.match(f.remedies[0].title, /epsilon inside the log/);
  });

  it('names the sqrt whose gradient at 0 is infinite (backward), on the forward line', async () => {
    const script = join(fixtures, 'torch_sqrt.py');
    const nf = await firstRun(script);
    const r = await locateNan({ script, firstStep: nf.step, pythonPath: PYTHON, runDir, timeoutSec: 60 });
    assert.equal(r.status, 'located', r.message);
    assert.equal(r.cause!.op, 'SqrtBackward0');
    assert.equal(r.cause!.phase, 'backward');
    assert.equal(r.cause!.line, lineOf(script, 'torch.sqrt('));
    assert.match(withCause(nf, r.cause!).remedies[0].title, /Clamp/);
  });

  it('picks the right one of two logs on a line (the repository example nan_loss_log0.py)', async () => {
    const script = join(repoRoot, 'examples', 'torch', 'nan_loss_log0.py');
    const nf = await firstRun(script);
    const r = await locateNan({ script, firstStep: nf.step, pythonPath: PYTHON, runDir, timeoutSec: 60 });
    assert.equal(r.status, 'located', r.message);
    const line = lineOf(script, 'torch.log(1 - p)');
    assert.equal(r.cause!.line, line);
    // log(1 - p) with p = 1 in float32 (the second log on the line), not log(p).
    assert.equal(r.cause!.column, readFileSync(script, 'utf8').split('\n')[line - 1].indexOf('torch.log(1 - p)') + 1);
  });

  it('says when the re-run does not reproduce the NaN', async () => {
    const script = join(fixtures, 'torch_flaky.py');
    const marker = join(mkdtempSync(join(tmpdir(), 'gs-flaky-')), 'ran-once');
    const nf = await firstRun(script, [marker]);
    const r = await locateNan({ script, args: [marker], firstStep: nf.step, pythonPath: PYTHON, runDir, timeoutSec: 60 });
    assert.equal(r.status, 'not-reproduced');
    assert.equal(r.cause, null);
    assert.match(r.message, /did not reproduce/);
  });
});
