// Fault row 5: damaged run files given to `gradscope fix --from-run`. What was read and what was not
// is always said (stderr, "read …" then "not read: …"); a file that is not a run file, or holds no
// step, is refused (exit 1); "GSRUN 01" is not version 1. The script is never touched (--dry-run).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { readRunFile } from '../../src/core/store/runFile';
import { caseDir, copyExample, gradscope, hasStack, leftRunning, runFilesIn, sha256 } from './support';

const dir = caseDir('damaged');
const script = copyExample('exploding-mlp.js', dir, 'train.js');
let good: Buffer;
let steps = 0;
let headerEnd = 0;

before(async () => {
  const r = await gradscope(['run', 'train.js', '--steps', '20', '--detail-every', '2', '--out', 'runs'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const file = runFilesIn(join(dir, 'runs'))[0];
  good = readFileSync(file);
  const back = readRunFile(file);
  assert.equal(back.error, null);
  steps = back.store.stepCount;
  headerEnd = good.indexOf(0x0a) + 1;
});

/** Writes a variant of the recorded run file and runs `fix --from-run` on it (dry run). */
async function fixFrom(name: string, bytes: Buffer): Promise<Awaited<ReturnType<typeof gradscope>>> {
  const file = join(dir, `${name}.gsrun`);
  writeFileSync(file, bytes);
  const sum = sha256(script);
  const r = await gradscope(['fix', '--from-run', `${name}.gsrun`, '--dry-run'], { cwd: dir });
  assert.equal(sha256(script), sum, 'the script is untouched');
  assert.ok(!hasStack(r.stderr), r.stderr);
  assert.deepEqual(await leftRunning(r.mark), []);
  return r;
}

const readLine = (stderr: string): string => /^gradscope: read .*$/m.exec(stderr)?.[0] ?? '';

describe('fault 5: a damaged run file is read with a word about what is missing', () => {
  it('control: an intact file says what it read and nothing is "not read"', async () => {
    const r = await fixFrom('intact', good);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readLine(r.stderr), new RegExp(`read intact\\.gsrun: ${steps} steps \\(up to step ${steps - 1}\\), the run's end: step-limit`));
    assert.doesNotMatch(r.stderr, /not read/);
  });

  it('garbage in the middle: the steps before it are used, and the damage is named with its byte offset', async () => {
    const at = headerEnd + Math.floor((good.length - headerEnd) / 2);
    const r = await fixFrom('garbage', Buffer.concat([good.subarray(0, at), Buffer.alloc(40, 0xee), good.subarray(at)]));
    assert.equal(r.code, 0, r.stderr);
    const m = /read garbage\.gsrun: (\d+) steps/.exec(r.stderr);
    assert.ok(m && Number(m[1]) > 0 && Number(m[1]) < steps, readLine(r.stderr));
    assert.match(r.stderr, /not read: the file is damaged at byte [\d,]+ \(.+\): the [\d,]+ bytes of frames from there on were not read/);
    assert.match(r.stdout, /^Finding: /m, 'the partial data is still diagnosed, after saying so');
  });

  it('a cut exit record: every step is read, the cut and the missing end are said', async () => {
    const r = await fixFrom('cut', good.subarray(0, good.length - 10));
    assert.equal(r.code, 0, r.stderr);
    assert.match(readLine(r.stderr), new RegExp(`read cut\\.gsrun: ${steps} steps`));
    assert.match(r.stderr, /not read: the file ends inside a frame or its exit record \([\d,]+ bytes at the end are incomplete\)/);
    assert.match(r.stderr, /not read: no exit record/);
  });

  it('a file cut inside a frame: the whole frames before the cut are read', async () => {
    const r = await fixFrom('midframe', good.subarray(0, headerEnd + Math.floor((good.length - headerEnd) * 0.6)));
    assert.equal(r.code, 0, r.stderr);
    const m = /read midframe\.gsrun: (\d+) steps/.exec(r.stderr);
    assert.ok(m && Number(m[1]) > 0 && Number(m[1]) < steps, readLine(r.stderr));
    assert.match(r.stderr, /not read: the file ends inside a frame/);
  });

  it('a header only: refused, nothing to diagnose (exit 1)', async () => {
    const r = await fixFrom('header', good.subarray(0, headerEnd));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /read header\.gsrun: no steps, no HELLO/);
    assert.match(r.stderr, /header\.gsrun holds no optimizer step: nothing to diagnose/);
    assert.equal(r.stdout, '');
  });

  it('"GSRUN 01": not version 1, refused (exit 1)', async () => {
    const r = await fixFrom('v01', Buffer.concat([Buffer.from('GSRUN 01 '), good.subarray('GSRUN 1 '.length)]));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /could not read v01\.gsrun: "01" is not a run file version \(this GradScope reads version 1/);
    assert.equal(r.stdout, '');
  });

  it('a file that is not a run file: refused (exit 1)', async () => {
    const r = await fixFrom('text', Buffer.from('epoch 1 loss 0.3\nepoch 2 loss 0.2\n'));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /could not read text\.gsrun: not a GradScope run file/);
    assert.equal(r.stdout, '');
  });
});
