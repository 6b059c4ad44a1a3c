// `gradscope fix` end to end: a real CLI process, real probe and TensorFlow.js, on copies of three
// diagnosis fixtures in a temporary folder next to the repository's node_modules (small step counts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fixture, repoRoot } from '../support/paths';

const bin = join(repoRoot, 'bin', 'gradscope.js');
// Inside the repository so that require('@tensorflow/tfjs') resolves from its node_modules.
const work = mkdtempSync(join(repoRoot, 'test', '.gs-fix-'));
after(() => rmSync(work, { recursive: true, force: true }));

function gradscope(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: work, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function copy(name: string): string {
  const dst = join(work, name);
  copyFileSync(fixture('diagnosis', name), dst);
  return dst;
}

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
