// Real torch runs through the CLI: a script that builds a model and never steps is not a clean
// success (a warning in the summary and the JSON, exit code 6), and a healthy language model with
// a large-vocabulary nn.Embedding gets no finding (its row-sparse gradient is not dead units).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../../src/core/report/runJson';
import { gradscope as runCli, type CliResult } from '../support/cli';
import { PYTHON, torchSkip } from './torchEnv';

const dir = mkdtempSync(join(tmpdir(), 'gs-torch-warnings-'));

const gradscope = (args: string[]): Promise<CliResult> => runCli(args, { env: { ...process.env, GRADSCOPE_PYTHON: PYTHON } });

// Builds a model and an optimizer, evaluates once, and exits: no backward, no optimizer step.
const neverSteps = join(dir, 'never_steps.py');
writeFileSync(
  neverSteps,
  [
    'import torch',
    'from torch import nn',
    'model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))',
    'opt = torch.optim.SGD(model.parameters(), lr=0.1)',
    'with torch.no_grad():',
    '    print("eval loss", float(model(torch.randn(4, 8)).pow(2).mean()))',
    '',
  ].join('\n'),
);

// Replaces its own process: the probe goes with it before it has sent anything.
const execs = join(dir, 'execs.py');
writeFileSync(execs, 'import os, sys\nos.execv(sys.executable, [sys.executable, "-c", "print(1)"])\n');
// Trains 3 steps, then leaves through os._exit: no atexit, so the probe cannot send END (probe-lost). The frames
// go out on the probe's writer thread, which os._exit may cut short: the pause after the first two
// steps lets those through for sure; the third may or may not make it.
const hardExit = join(dir, 'hard_exit.py');
writeFileSync(
  hardExit,
  [
    'import os, time, torch',
    'm = torch.nn.Linear(2, 1)',
    'opt = torch.optim.SGD(m.parameters(), lr=0.1)',
    'for _ in range(3):',
    '    opt.zero_grad()',
    '    m(torch.randn(4, 2)).pow(2).mean().backward()',
    '    opt.step()',
    '    if _ == 1:',
    '        time.sleep(1.0)',
    'os._exit(0)',
    '',
  ].join('\n'),
);

describe('gradscope run: what it could not see, on real torch', { skip: torchSkip() }, () => {
  it('a script that never steps: a warning in the JSON and exit code 6', async () => {
    const r = await gradscope(['run', neverSteps, '--json', '--out', dir]);
    assert.equal(r.code, 6, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'completed');
    assert.equal(doc.steps, 0);
    const w = doc.warnings.find((x) => x.code === 'no-steps');
    assert.ok(w, JSON.stringify(doc.warnings));
    assert.equal(w.level, 'warning');
    assert.match(w.message, /^the script ran but no optimizer step was seen/);
  });

  it('a script that never steps: the summary prints the warning under "completed, 0 steps"', async () => {
    const r = await gradscope(['run', neverSteps, '--out', dir]);
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stdout, /run\s+completed, 0 steps\n(?:.*\n)*?warning\s+the script ran but no optimizer step was seen/);
    assert.match(r.stdout, /eval loss/);
  });

  it('a script that replaces its own process: nothing observed is said, exit code 6', async () => {
    const r = await gradscope(['run', execs, '--json', '--out', dir]);
    assert.equal(r.code, 6, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'completed');
    const w = doc.warnings.find((x) => x.code === 'no-probe' || x.code === 'no-steps');
    assert.ok(w, JSON.stringify(doc.warnings));
    assert.equal(w.level, 'warning');
  });

  it('a script that leaves through os._exit: its steps are kept, the probe is said lost (not completed), exit code 7', async () => {
    const r = await gradscope(['run', hardExit, '--json', '--out', dir]);
    assert.equal(r.code, 7, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.ok(doc.steps >= 2 && doc.steps <= 3, `steps: ${doc.steps}`);
    assert.equal(doc.exit.reason, 'probe-lost');
    assert.match(doc.exit.message ?? '', /the probe's channel closed without an END after step [12] \([23] steps seen\)/);
    assert.deepEqual(
      doc.warnings.map((w) => w.code),
      [],
    );
  });

  it('a healthy language model with nn.Embedding(5000, 32): no finding, no warning, exit 0', async () => {
    const r = await gradscope(['run', 'test/fixtures/diagnosis/healthy-embedding-lm.py', '--json', '--detail-every', '4', '--out', dir]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.steps, 60);
    assert.equal(doc.tensors.find((t) => t.name.endsWith('tok.weight'))?.layerType, 'Embedding');
    assert.deepEqual(
      doc.findings.map((f) => `${f.kind}:${f.layer}`),
      [],
    );
    assert.deepEqual(
      doc.warnings.filter((w) => w.level === 'warning'),
      [],
    );
  });
});
