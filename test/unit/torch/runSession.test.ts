// A real PyTorch run through RunSession: the interpreter check, `python -m gradscope_probe` on fd 3,
// frames decoded into the store, and how the run ends (step limit, stop, crash, missing torch).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Message, TensorInfo } from '../../../src/core/protocol/messages';
import { readRunFile } from '../../../src/core/store/runFile';
import { RunSession } from '../../../src/process/runSession';
import { checkTorch, choosePython } from '../../../src/process/python';
import { repoRoot } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

const runDir = mkdtempSync(join(tmpdir(), 'gs-torch-runs-'));
const examples = join(repoRoot, 'examples', 'torch');

function linesOf(file: string, needle: string): number[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((l, i) => (l.includes(needle) ? [i + 1] : []));
}

function groupAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('RunSession with PyTorch', { skip: torchSkip() }, () => {
  it('runs an example under the probe and stops cleanly at the step limit', async () => {
    const script = join(examples, 'healthy.py');
    const s = RunSession.start({ script, runDir, pythonPath: PYTHON, maxSteps: 12, detailEvery: 4 });
    const messages: Message[] = [];
    s.onMessage((m) => messages.push(m));
    const exit = await s.done;
    assert.equal(exit.reason, 'step-limit', exit.message);
    assert.equal(exit.steps, 12);
    assert.equal(groupAlive(s.pid), false);
    const hello = s.store.hello;
    assert.equal(hello?.framework, 'torch');
    assert.equal(hello?.backend, 'cpu');
    assert.equal(hello?.script, script);
    const tensors = messages.flatMap((m): TensorInfo[] => (m.type === 'tensors' ? m.tensors : []));
    assert.deepEqual(
      tensors.map((t) => t.name),
      ['model.fc1.weight', 'model.fc1.bias', 'model.fc2.weight', 'model.fc2.bias', 'model.fc3.weight', 'model.fc3.bias'],
    );
    const lines = linesOf(script, 'nn.Linear(');
    for (const t of tensors) {
      assert.equal(t.source?.file, script);
      assert.equal(t.source?.line, lines[Math.floor(t.id / 2)], t.name);
      assert.equal(t.source?.column, 20, 'the column of `nn.Linear(`');
      assert.equal(t.layerType, 'Linear');
    }
    assert.deepEqual(tensors[0].shape, [64, 10]);
    assert.equal(messages.filter((m) => m.type === 'step').length, 12);
    assert.deepEqual([...new Set(messages.filter((m) => m.type === 'detail').map((m) => (m as { step: number }).step))], [0, 4, 8]);
    const end = messages[messages.length - 1];
    assert.deepEqual(end, { type: 'end', reason: 'step-limit', steps: 12 });
    const back = readRunFile(s.runFile);
    assert.equal(back.exit?.reason, 'step-limit');
    assert.equal(back.store.hello?.framework, 'torch');
  });

  it('reports a crash with the frame in the user code, and passes arguments and cwd through', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gs-torch-crash-'));
    const script = join(dir, 'crash.py');
    writeFileSync(
      script,
      [
        'import os, sys',
        'import torch',
        'print("args", sys.argv[1:], os.getcwd())',
        'm = torch.nn.Linear(2, 1)',
        'opt = torch.optim.SGD(m.parameters(), lr=0.1)',
        'm(torch.ones(1, 2)).sum().backward()',
        'opt.step()',
        'raise RuntimeError("boom")',
        '',
      ].join('\n'),
    );
    const s = RunSession.start({ script, runDir, pythonPath: PYTHON, args: ['--lr', '0.1'], cwd: dir });
    let out = '';
    s.onOutput((o) => (out += o.text));
    const exit = await s.done;
    assert.equal(exit.reason, 'crashed');
    assert.equal(exit.error?.message, 'RuntimeError: boom');
    assert.deepEqual(exit.error?.frame, { file: script, line: 8, column: 1 });
    assert.match(exit.message, /crash\.py:8:1/);
    assert.match(out, new RegExp(`args \\['--lr', '0.1'\\] ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.match(out, /RuntimeError: boom/);
    assert.equal(s.store.stepCount, 1);
  });

  it('stop() ends a torch run as stopped and leaves no process behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gs-torch-stop-'));
    const script = join(dir, 'loop.py');
    writeFileSync(
      script,
      [
        'import torch, time',
        'm = torch.nn.Linear(2, 1)',
        'opt = torch.optim.SGD(m.parameters(), lr=0.01)',
        'while True:',
        '    opt.zero_grad(); m(torch.ones(4, 2)).sum().backward(); opt.step(); time.sleep(0.01)',
        '',
      ].join('\n'),
    );
    const s = RunSession.start({ script, runDir, pythonPath: PYTHON, graceMs: 1000 });
    await new Promise<void>((resolve) => {
      const d = s.onMessage((m) => {
        if (m.type === 'step' && m.step >= 3) {
          d.dispose();
          resolve();
        }
      });
    });
    const exit = await s.stop();
    assert.equal(exit.reason, 'stopped');
    assert.ok(exit.steps >= 4);
    assert.equal(groupAlive(s.pid), false);
  });

  it('names the interpreter it tried when torch does not import, and how to pick another', async () => {
    const s = RunSession.start({ script: join(examples, 'healthy.py'), runDir, pythonPath: '/nonexistent/python3' });
    const exit = await s.done;
    assert.equal(exit.reason, 'crashed');
    assert.match(exit.message, /\/nonexistent\/python3 \(the gradscope\.pythonPath setting\)/);
    assert.match(exit.message, /gradscope\.pythonPath/);
    assert.match(exit.message, /GRADSCOPE_PYTHON/);
    // An interpreter that exists but has no torch (a plain `python3 -S` wrapper stands in for one).
    const dir = mkdtempSync(join(tmpdir(), 'gs-notorch-'));
    const fakePy = join(dir, 'python-without-torch');
    writeFileSync(fakePy, `#!/bin/sh\nexec ${PYTHON} -S -I -c "import sys; sys.path[:] = [p for p in sys.path if 'packages' not in p]; exec(sys.argv[2])" -c "$2"\n`, { mode: 0o755 });
    const c = await checkTorch(choosePython(fakePy));
    assert.equal(c.ok, false);
    assert.match(c.ok ? '' : c.message, /torch is not installed for it/);
    const ok = await checkTorch(choosePython(undefined, { GRADSCOPE_PYTHON: PYTHON }));
    assert.ok(ok.ok && /^\d+\.\d+/.test(ok.torchVersion));
  });
});
