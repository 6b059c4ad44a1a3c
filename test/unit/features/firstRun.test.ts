import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { torchSetupAdvice } from '../../../src/features/firstRun';
import { checkTorch, type TorchCheck } from '../../../src/process/python';

/** A stand-in interpreter: a shell script that prints `stdout`/`stderr` and exits with `code`. */
function fakePython(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

async function failed(python: string, from: 'setting' | 'path' = 'setting'): Promise<Extract<TorchCheck, { ok: false }>> {
  const c: TorchCheck = await checkTorch({ python, from });
  if (c.ok) assert.fail(`torch is usable with ${python}: ${JSON.stringify(c)}`);
  return c;
}

describe('first run: what to install when PyTorch cannot run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gs-firstrun-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('no interpreter on PATH: install Python 3 and torch, pick an interpreter', async () => {
    const c = await failed('gradscope-no-such-python3', 'path');
    assert.equal(c.problem, 'no-interpreter');
    const a = torchSetupAdvice(c, { pythonExtension: true, platform: 'linux' });
    assert.match(a.message, /gradscope-no-such-python3 is not on PATH/);
    assert.match(a.message, /Install Python 3 and PyTorch 1\.13 or later \(`python3 -m pip install torch`\)/);
    assert.match(a.message, /Python: Select Interpreter/);
    assert.equal(a.installCommand, 'python3 -m pip install torch');
    assert.equal(a.pickLabel, 'Select Interpreter');
  });

  it('an interpreter without torch: the pip command for that very interpreter', async () => {
    const py = fakePython(dir, 'py nomod', `echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`);
    const c = await failed(py);
    assert.equal(c.problem, 'no-torch');
    const a = torchSetupAdvice(c, { pythonExtension: false });
    assert.equal(a.installCommand, `'${py}' -m pip install torch`);
    assert.match(a.message, /^PyTorch is not installed for .*py nomod\. Install it with `'.*' -m pip install torch` \(GradScope needs torch 1\.13 or later\)/);
    assert.match(a.message, /choose an interpreter that has it \(saved as gradscope\.pythonPath\)/);
    assert.equal(a.pickLabel, 'Choose Interpreter…');
  });

  it('torch older than 1.13: upgrade', async () => {
    const py = fakePython(dir, 'py-old', 'echo 1.12.1; echo 3.10.0');
    const c = await failed(py);
    assert.equal(c.problem, 'old-torch');
    assert.equal(c.torchVersion, '1.12.1');
    const a = torchSetupAdvice(c, { pythonExtension: true });
    assert.match(a.message, /has torch 1\.12\.1; GradScope needs 1\.13 or later/);
    assert.equal(a.installCommand, `${py} -m pip install --upgrade torch`);
  });

  it('torch that fails to import for another reason keeps the error', async () => {
    const py = fakePython(dir, 'py-broken', 'echo "OSError: libgomp.so.1: cannot open shared object file" >&2; exit 1');
    const c = await failed(py);
    assert.equal(c.problem, 'broken');
    assert.match(torchSetupAdvice(c, { pythonExtension: true }).message, /libgomp\.so\.1/);
  });
});
