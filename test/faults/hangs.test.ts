// Fault row 8: nothing hangs. A FIFO given as a run file, a report or a script is refused unopened
// (opening it would block with the event loop stuck, deaf to Ctrl-C); --out and --report under
// /proc fail at once (Node's recursive mkdir spins there at 100 % CPU); Ctrl-C ends a run.
// Each case has a deadline far below the old behaviour (forever) and above a slow machine's start-up.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { caseDir, copyExample, gradscope, hasStack, leftRunning, makeFifo, runFilesIn } from './support';
import { readRunFile } from '../../src/core/store/runFile';

const DEADLINE_MS = 15_000;
const dir = caseDir('hangs');
copyExample('exploding-mlp.js', dir, 'train.js');
const fifo = join(dir, 'pipe.gsrun');
const haveFifo = makeFifo(fifo);

describe('fault 8: no command hangs, every command ends on Ctrl-C', () => {
  it('fix --from-run on a FIFO: refused at once (exit 1), not opened', { skip: !haveFifo && 'mkfifo is not available' }, async () => {
    const r = await gradscope(['fix', '--from-run', fifo, '--dry-run'], { cwd: dir, timeoutMs: DEADLINE_MS });
    assert.equal(r.signal, null, `it hung and was killed after ${r.ms} ms`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^gradscope: could not read .*pipe\.gsrun: .*pipe\.gsrun is a named pipe \(FIFO\), not a run file$/m);
    assert.ok(!hasStack(r.stderr));
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('--report naming a FIFO: refused before the run (exit 4)', { skip: !haveFifo && 'mkfifo is not available' }, async () => {
    const r = await gradscope(['run', 'train.js', '--out', 'runs-fifo', '--report', fifo], { cwd: dir, timeoutMs: DEADLINE_MS });
    assert.equal(r.signal, null, `it hung and was killed after ${r.ms} ms`);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /cannot write the report \(--report\): .*pipe\.gsrun is a named pipe \(FIFO\), not a regular file; nothing was run/);
    assert.deepEqual(runFilesIn(join(dir, 'runs-fifo')), []);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('a FIFO as the script: refused (exit 2), not run', { skip: !haveFifo && 'mkfifo is not available' }, async () => {
    const script = join(dir, 'pipe.js');
    assert.ok(makeFifo(script));
    const r = await gradscope(['run', script, '--out', 'runs-fifo-script'], { cwd: dir, timeoutMs: DEADLINE_MS });
    assert.equal(r.signal, null, `it hung and was killed after ${r.ms} ms`);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /pipe\.js is a named pipe \(FIFO\), not a script file/);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('--out under /proc: a clear error within seconds (exit 4), no spinning', { skip: process.platform !== 'linux' && 'Linux /proc' }, async () => {
    const r = await gradscope(['run', 'train.js', '--out', '/proc/gradscope-fault/runs'], { cwd: dir, timeoutMs: DEADLINE_MS });
    assert.equal(r.signal, null, `it spun and was killed after ${r.ms} ms`);
    assert.equal(r.code, 4, r.stderr);
    assert.match(
      r.stderr,
      /^gradscope: cannot use the run folder \(--out\): cannot create the folder \/proc\/gradscope-fault: folders cannot be created there \(ENOENT\); nothing was run$/m,
    );
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('--report under /proc: refused before the run (exit 4), no spinning', { skip: process.platform !== 'linux' && 'Linux /proc' }, async () => {
    const r = await gradscope(['run', 'train.js', '--out', 'runs-proc', '--report', '/proc/gradscope-fault/r.html'], { cwd: dir, timeoutMs: DEADLINE_MS });
    assert.equal(r.signal, null, `it spun and was killed after ${r.ms} ms`);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /cannot write the report \(--report\): cannot create the folder \/proc\/gradscope-fault/);
    assert.deepEqual(runFilesIn(join(dir, 'runs-proc')), []);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('Ctrl-C (SIGINT) during a run that would never end: stopped, exit 0, the run file complete, nothing left running', async () => {
    const forever = join(dir, 'forever.js');
    writeFileSync(
      forever,
      [
        "const tf = require('@tensorflow/tfjs');",
        "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
        "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
        'const opt = tf.train.sgd(0.01);',
        'let i = 0;',
        "(function step() { opt.minimize(() => x.matMul(w).square().mean()); if (++i === 5) console.log('training'); setTimeout(step, 5); })();",
        '',
      ].join('\n'),
    );
    let sent = false;
    const r = await gradscope(['run', 'forever.js', '--out', 'runs-int'], {
      cwd: dir,
      timeoutMs: 60_000,
      onStart: (child) =>
        child.stdout?.on('data', (d: Buffer) => {
          if (!sent && d.toString().includes('training')) {
            sent = true;
            child.kill('SIGINT');
          }
        }),
    });
    assert.ok(sent, `the script never trained: ${r.stderr}`);
    assert.equal(r.signal, null, `Ctrl-C did not end it; killed after ${r.ms} ms`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stopping the run/);
    assert.match(r.stdout, /^run {7}stopped by the user after \d+ steps/m);
    const [file] = runFilesIn(join(dir, 'runs-int'));
    assert.ok(file && existsSync(file));
    const back = readRunFile(file);
    assert.equal(back.error, null);
    assert.equal(back.exit?.reason, 'stopped');
    assert.deepEqual(await leftRunning(r.mark), []);
  });
});
