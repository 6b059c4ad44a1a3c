// Fault row 4: the probe's channel closes without an END frame and the script exits 0. That is not
// "completed": the exit reason is `probe-lost`, with the last step seen, in the summary and the
// JSON, and the CLI exits 7. The script leaves through process.reallyExit(0), which skips every
// exit hook (the probe's END among them), as os._exit does in Python.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../src/core/report/runJson';
import { readRunFile } from '../../src/core/store/runFile';
import { caseDir, gradscope, hasStack, leftRunning, runFilesIn, sha256 } from './support';

const LOST = [
  "const tf = require('@tensorflow/tfjs');",
  "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
  "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
  'const opt = tf.train.sgd(0.01);',
  'let i = 0;',
  'function step() {',
  '  opt.minimize(() => x.matMul(w).square().mean());',
  // A pause lets the probe's last frames out before the hard exit (the host reads what arrived).
  '  if (++i === 30) setTimeout(() => process.reallyExit(0), 300);',
  '  else setImmediate(step);',
  '}',
  'step();',
  '',
].join('\n');

describe('fault 4: a probe that vanishes without END is not a completed run', () => {
  it('exit reason probe-lost with the last step seen, exit code 7, in the JSON; the run file records it', async () => {
    const dir = caseDir('lost');
    const script = join(dir, 'lost.js');
    writeFileSync(script, LOST);
    const sum = sha256(script);
    const r = await gradscope(['run', 'lost.js', '--json', '--out', 'runs'], { cwd: dir });
    assert.equal(r.code, 7, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'probe-lost');
    assert.equal(doc.exit.code, 0, 'the script itself exited 0');
    assert.equal(doc.steps, 30);
    assert.match(doc.exit.message ?? '', /^probe lost: the probe's channel closed without an END after step 29 \(30 steps seen\)/);
    assert.match(doc.exit.error?.message ?? '', /after step 29/);
    assert.deepEqual(
      doc.warnings.filter((w) => w.level === 'warning'),
      [],
      'the exit reason says it; no "completed but no END" warning on top',
    );
    const back = readRunFile(runFilesIn(join(dir, 'runs'))[0]);
    assert.equal(back.exit?.reason, 'probe-lost', 'a reopened run says the same');
    assert.equal(back.store.stepCount, 30);
    assert.equal(sha256(script), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('the readable summary says "probe lost" on the run line (exit 7)', async () => {
    const dir = caseDir('lost-summary');
    writeFileSync(join(dir, 'lost.js'), LOST);
    const r = await gradscope(['run', 'lost.js', '--out', 'runs'], { cwd: dir });
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stdout, /^run {7}probe lost: the probe's channel closed without an END after step 29 \(30 steps seen\)/m);
    assert.deepEqual(await leftRunning(r.mark), []);
  });
});
