// Fault rows 1 and 10: a TF.js script takes the probe's channel away. It finds the descriptor as any
// code in the process could (the one socket past stdio in /proc/self/fd, whatever its number),
// closes it, and (row 1) opens a file of its own under that very number. The probe must never write
// into that file, and (row 10) must say what happened: a warning on stderr, the script going on to
// its own end uninstrumented, and the run reported as probe-lost (exit 7) with the last step seen and
// the cause, not the backend line as a crash text.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../src/core/report/runJson';
import { readRunFile } from '../../src/core/store/runFile';
import { caseDir, gradscope, hasStack, leftRunning, runFilesIn, sha256 } from './support';

const STEPS = 40;
const TAKE_AT = 5;

/** The channel's descriptor: the socket past stdio (the probe's only one). */
const FIND_CHANNEL = [
  'function channelFd() {',
  "  const socks = fs.readdirSync('/proc/self/fd').map(Number).filter((n) => {",
  "    try { return n > 2 && fs.readlinkSync('/proc/self/fd/' + n).startsWith('socket:'); } catch { return false; }",
  '  });',
  "  if (socks.length !== 1) throw new Error('expected one socket past stdio, found: ' + socks.join(','));",
  '  return socks[0];',
  '}',
];

/** A script that trains STEPS steps and at step TAKE_AT runs `take` (with `fs`, `channelFd()`). */
function script(take: string[], eachStep: string[] = [], atEnd: string[] = []): string {
  return [
    "const fs = require('fs');",
    "const tf = require('@tensorflow/tfjs');",
    ...FIND_CHANNEL,
    "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
    "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
    'const opt = tf.train.sgd(0.01);',
    'let mine = -1;',
    `for (let i = 0; i < ${STEPS}; i++) {`,
    '  opt.minimize(() => x.matMul(w).square().mean());',
    `  if (i === ${TAKE_AT}) {`,
    ...take.map((l) => '    ' + l),
    '  }',
    ...eachStep.map((l) => '  ' + l),
    '}',
    ...atEnd,
    "console.log('script done');",
    '',
  ].join('\n');
}

/** Closes the channel's descriptor and opens `mine.txt` under the same number (filling the numbers below it first). */
const TAKE_NUMBER = [
  'const target = channelFd();',
  'fs.closeSync(target);',
  'const fillers = [];',
  "for (;;) { const f = fs.openSync('/dev/null', 'r'); if (f >= target) { fs.closeSync(f); break; } fillers.push(f); }",
  "mine = fs.openSync('mine.txt', 'w');",
  'for (const f of fillers) fs.closeSync(f);',
  "if (mine !== target) throw new Error('mine.txt got fd ' + mine + ', not the channel\\'s ' + target);",
  "console.log('mine.txt on fd ' + mine);",
];

function expectedMine(): string {
  let s = '';
  for (let i = TAKE_AT; i < STEPS; i++) s += `user line ${i}\n`;
  return s;
}

const LOST_MESSAGE = (cause: string): RegExp =>
  new RegExp(
    `^probe lost: the probe's channel closed without an END after step \\d+ \\(\\d+ steps? seen\\), because the script closed the channel's descriptor \\(fd \\d+\\)${cause}: later steps, if any, were not observed; the script exited with code 0$`,
  );

describe("fault rows 1 and 10: the script takes the probe's channel away (TF.js)", () => {
  it('closes the channel and opens its own file under that number: the file is byte-identical to what the script wrote; probe-lost, exit 7, the cause said', async () => {
    const dir = caseDir('take-fd');
    const file = join(dir, 'take.js');
    writeFileSync(file, script(TAKE_NUMBER, ['if (mine >= 0) fs.writeSync(mine, `user line ${i}\\n`);'], ['fs.closeSync(mine);']));
    const sum = sha256(file);
    const r = await gradscope(['run', 'take.js', '--json', '--out', 'runs'], { cwd: dir, timeoutMs: 60_000 });
    assert.match(r.stderr, /^mine\.txt on fd \d+$/m, r.stderr);
    // Every byte of the file is the script's own: no frame of the probe in it.
    const got = readFileSync(join(dir, 'mine.txt'));
    assert.ok(!got.includes(Buffer.from('GSCP')), 'no protocol frame (magic GSCP) in the user file');
    assert.equal(got.toString('latin1'), expectedMine(), 'the user file holds exactly what the script wrote');
    assert.equal(r.code, 7, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    assert.match(
      r.stderr,
      /\[gradscope\] warning: the script closed the channel's descriptor \(fd \d+\) and opened something else under its number: GradScope sees nothing more of this run; the script goes on without inspection/,
    );
    assert.match(r.stderr, /^script done$/m, 'the script went on to its own end');
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'probe-lost');
    assert.equal(doc.exit.code, 0, 'the script itself exited 0');
    assert.ok(doc.steps >= 1 && doc.steps <= TAKE_AT + 1, `steps seen before the take-over: ${doc.steps}`);
    assert.match(doc.exit.message ?? '', LOST_MESSAGE(' and opened something else under its number'));
    const back = readRunFile(runFilesIn(join(dir, 'runs'))[0]);
    assert.equal(back.error, null, `the run file reads whole: ${back.error?.message}`);
    assert.equal(back.exit?.reason, 'probe-lost');
    assert.equal(back.store.stepCount, doc.steps);
    assert.equal(sha256(file), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it("closes the channel's descriptor and its own server socket gets that number: the socket works, the script ends normally (probe-lost)", async () => {
    const dir = caseDir('take-socket');
    const file = join(dir, 'server.js');
    writeFileSync(
      file,
      [
        "const fs = require('fs');",
        "const net = require('net');",
        "const tf = require('@tensorflow/tfjs');",
        ...FIND_CHANNEL,
        "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
        "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
        'const opt = tf.train.sgd(0.01);',
        'for (let i = 0; i < 5; i++) opt.minimize(() => x.matMul(w).square().mean());',
        'const target = channelFd();',
        "const before = fs.readlinkSync('/proc/self/fd/' + target);",
        'fs.closeSync(target);',
        "const srv = net.createServer((c) => c.end('hello from the server')).listen(0, '127.0.0.1', () => {",
        "  const now = fs.readlinkSync('/proc/self/fd/' + target);",
        "  console.log(now.startsWith('socket:') && now !== before ? 'server on the old number' : 'server elsewhere: ' + now);",
        "  const c = net.connect(srv.address().port, '127.0.0.1');",
        "  let got = '';",
        "  c.on('data', (d) => (got += d));",
        "  c.on('end', () => { console.log('client got: ' + got); srv.close(); });",
        '});',
        '',
      ].join('\n'),
    );
    const sum = sha256(file);
    const r = await gradscope(['run', 'server.js', '--json', '--out', 'runs'], { cwd: dir, timeoutMs: 60_000 });
    assert.match(r.stderr, /^server on the old number$/m, r.stderr);
    assert.match(r.stderr, /^client got: hello from the server$/m, "the script's own socket worked");
    assert.equal(r.code, 7, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'probe-lost');
    assert.equal(doc.exit.code, 0, 'the script itself exited 0');
    assert.equal(doc.steps, 5);
    assert.equal(sha256(file), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it("closes the channel's descriptor: a clear warning, the script goes on to its end, probe-lost with the last step and the cause (not the backend line)", async () => {
    const dir = caseDir('close-fd');
    const file = join(dir, 'close.js');
    writeFileSync(file, script(['fs.closeSync(channelFd());', "console.log('closed');"]));
    const sum = sha256(file);
    const r = await gradscope(['run', 'close.js', '--out', 'runs'], { cwd: dir, timeoutMs: 60_000 });
    assert.equal(r.code, 7, `${r.stdout}\n${r.stderr}`);
    assert.ok(!hasStack(r.stderr), r.stderr);
    const warnings =
      r.stderr.match(/\[gradscope\] warning: the script closed the channel's descriptor \(fd \d+\): GradScope sees nothing more of this run; the script goes on without inspection/g) ?? [];
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(r.stdout, /^script done$/m, 'the script went on to its own end');
    const run = /^run {7}(.*)$/m.exec(r.stdout)?.[1] ?? '';
    assert.match(run, LOST_MESSAGE(''));
    assert.ok(!/running on|backend|wasm/.test(run), `the run line is not the backend line: ${run}`);
    const back = readRunFile(runFilesIn(join(dir, 'runs'))[0]);
    assert.equal(back.exit?.reason, 'probe-lost');
    assert.equal(back.exit?.code, 0);
    assert.ok(back.store.stepCount >= 1 && back.store.stepCount <= TAKE_AT + 1, `steps seen: ${back.store.stepCount}`);
    assert.equal(sha256(file), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });
});
