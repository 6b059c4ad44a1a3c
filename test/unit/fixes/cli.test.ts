// `gradscope fix` end to end: a real CLI process, real probe and TensorFlow.js, on copies of three
// diagnosis fixtures in a temporary folder next to the repository's node_modules (small step counts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeMessage } from '../../../src/core/protocol/codec';
import type { Message, StatName } from '../../../src/core/protocol/messages';
import { RunFileWriter } from '../../../src/core/store/runFile';
import { gradscopeSync, type CliResult } from '../support/cli';
import { fixture, repoRoot } from '../support/paths';

// Inside the repository so that require('@tensorflow/tfjs') resolves from its node_modules.
const work = mkdtempSync(join(repoRoot, 'test', '.gs-fix-'));
after(() => rmSync(work, { recursive: true, force: true }));

const gradscope = (args: string[], env: NodeJS.ProcessEnv = process.env): CliResult => gradscopeSync(args, { cwd: work, env, timeoutMs: 180_000 });

function copy(name: string): string {
  const dst = join(work, name);
  copyFileSync(fixture('diagnosis', name), dst);
  return dst;
}

// PyTorch cases need an interpreter that imports torch (GRADSCOPE_PYTHON, else the system python3).
const python = process.env.GRADSCOPE_PYTHON || '/usr/bin/python3';
const hasTorch = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

const leftovers = (): string[] => readdirSync(work).filter((f) => f.includes('gradscope-verify'));

describe('gradscope fix', () => {
  it('explode-lr-mlp: --verify --remedy clip-global-norm prints the diff and a before/after, writes only when cured', () => {
    const script = copy('explode-lr-mlp.js');
    const before = readFileSync(script, 'utf8');
    const r = gradscope(['fix', 'explode-lr-mlp.js', '--remedy', 'clip-global-norm', '--verify', '--steps', '30']);
    assert.match(r.stdout, /^Finding: exploding-gradient/m);
    assert.match(r.stdout, /^\+const optimizer = gradscopeClipByGlobalNorm\(tf\.train\.sgd\(0\.5\), [\d.]+\);/m);
    assert.match(r.stdout, /^-const optimizer = tf\.train\.sgd\(0\.5\);/m);
    assert.match(r.stdout, /Verify \(30 steps\):/);
    assert.match(r.stdout, /max global norm\s+4\.\d+e\+11/);
    assert.match(r.stdout, /first non-finite\s+step 4\s+none/);
    assert.deepEqual(leftovers(), [], 'the verification copy is removed');
    const cured = /^cured:/m.test(r.stdout);
    assert.equal(r.code, cured ? 0 : 5, r.stdout + r.stderr);
    assert.equal(readFileSync(script, 'utf8') === before, !cured, 'written exactly when cured');
  });

  it('nan-log0: the top remedy (guard-loss) is written without --verify, and a second run says it is already applied', () => {
    const script = copy('nan-log0.js');
    const r = gradscope(['fix', 'nan-log0.js', '--steps', '60']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Remedy: guard-loss/);
    assert.match(r.stdout, /\nWrote nan-log0\.js\n/);
    const text = readFileSync(script, 'utf8');
    assert.match(text, /tf\.log\(yPred\.add\(1e-7\)\)/);
    const again = gradscope(['fix', 'nan-log0.js', '--steps', '60', '--remedy', 'guard-loss', '--finding', 'non-finite-gradient']);
    // Guarded, the run has no non-finite finding any more: nothing of that kind to fix.
    assert.equal(again.code, 4, again.stdout + again.stderr);
    assert.match(again.stdout, /No non-finite-gradient finding in this run/);
    assert.equal(readFileSync(script, 'utf8'), text);
  });

  it('--verify tries the next remedy when the first does not cure, and writes only the one that cured', { skip: hasTorch ? false : `${python} cannot import torch` }, () => {
    // SGD with momentum 0.99 at lr 1.0: clipping bounds each gradient but the velocity still
    // overshoots (the pre-clip norms keep growing); a 10× lower rate cures it.
    const name = 'torch_momentum_explode.py';
    const script = join(work, name);
    copyFileSync(fixture('fixes', 'verify', name), script);
    const r = gradscope(['fix', name, '--verify', '--steps', '60'], { ...process.env, GRADSCOPE_PYTHON: python });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^Remedy: clip-global-norm/m);
    assert.match(r.stdout, /Verify \(60 steps\): clip-global-norm\n[\s\S]*?^not cured: exploding-gradient still found/m);
    assert.match(r.stdout, /^clip-global-norm did not cure the run: trying the next remedy\.\nRemedy: lower-lr: /m);
    assert.match(r.stdout, /Verify \(60 steps\): lower-lr\n[\s\S]*?^cured: /m);
    assert.match(r.stdout, /^Cured by lower-lr \(remedy 2 of those tried; clip-global-norm did not cure the run\)\.$/m);
    assert.match(r.stdout, /\nWrote torch_momentum_explode\.py\n/);
    const text = readFileSync(script, 'utf8');
    assert.match(text, /torch\.optim\.SGD\(model\.parameters\(\), lr=0\.1, momentum=0\.99\)/, 'the cured remedy is written');
    assert.doesNotMatch(text, /clip_grad_norm_/, 'the remedy that did not cure is not');
    assert.deepEqual(leftovers(), [], 'the verification copies are removed');
  });

  it('a run whose only finding proposes no change (large first updates that settled): nothing to fix, exit 0', async () => {
    // pytorch-tutorial's linear regression, as a run file: the update ratio 40 % at first, then small,
    // the loss falling (it was told "learning rate too high" and offered lr ÷ 100).
    const script = join(work, 'linreg.py');
    writeFileSync(script, 'import torch\n');
    const stats: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
    const w = RunFileWriter.create(work, { runId: 'linreg', script, args: [], cwd: work, startedAt: '2026-01-01T00:00:00.000Z', framework: 'torch' });
    let seq = 0;
    const put = (m: Message): void => w.append(encodeMessage(m, seq++));
    put({ type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script, detailEvery: 10 });
    put({ type: 'tensors', tensors: [{ id: 0, name: 'model.weight', layer: 'model', layerType: 'Linear', shape: [1, 1], source: { file: script, line: 1, column: 1 } }] });
    for (let step = 0; step < 60; step++) {
      const ratio = 0.4 * Math.exp(-step / 10);
      const v = { norm: 1, maxAbs: 0.1, nanCount: 0, infCount: 0, paramNorm: 1, updateNorm: ratio };
      put({
        type: 'step',
        step,
        optimizer: 0,
        loss: 28.6 * Math.exp(-step / 5) + 0.34,
        wallMs: step,
        stats,
        columns: stats.map((k) => Float64Array.of(v[k as keyof typeof v])),
        nTensors: 1,
      });
    }
    await w.close({ reason: 'completed', code: 0, signal: null, error: null, endedAt: '2026-01-01T00:01:00.000Z', steps: 60 });
    const r = gradscope(['fix', 'linreg.py', '--from-run', w.path, '--dry-run']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^Finding: update-ratio \(info\): Large first updates, then settled/m);
    assert.match(r.stdout, /^Nothing to fix: no finding proposes a change to the code\.$/m);
  });

  it('lr-tiny: --from-run with --dry-run prints the raise-lr diff and changes nothing; usage errors exit 2', () => {
    const script = copy('lr-tiny.js');
    const before = readFileSync(script, 'utf8');
    const r = gradscope(['fix', 'lr-tiny.js', '--from-run', fixture('diagnosis', 'runs', 'lr-tiny.gsrun'), '--dry-run']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Remedy: raise-lr: Raise the learning rate ×1000: 1e-6 → 1e-3/);
    assert.match(r.stdout, /^\+model\.compile\(\{ optimizer: tf\.train\.sgd\(1e-3\)/m);
    assert.match(r.stdout, /dry run: nothing written/);
    assert.equal(readFileSync(script, 'utf8'), before);
    assert.equal(gradscope(['fix', 'lr-tiny.js', '--finding', 'nope']).code, 2);
  });
});
