// Run files under faults: a writer whose disk fills up (ENOSPC injected at fs.write, the writer's
// only way to the disk: test/faults/fullDisk.test.ts does it on a real tmpfs), readers given a FIFO,
// a version spelled "01", damaged files (said in words by describeRunRead), a cancelled read.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs, { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, mock } from 'node:test';
import type { Message } from '../../../src/core/protocol/messages';
import { describeRunRead, listRuns, readRunFile, readRunFileAsync, RunFileWriter, type RunExitRecord, type RunFileFailure, type RunMeta } from '../../../src/core/store/runFile';
import { stepMsg, tensorInfos, wire } from './helpers';

const root = mkdtempSync(join(tmpdir(), 'gradscope-runfile-faults-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const newDir = (): string => join(root, `d${n++}`);

const meta = (runId: string): RunMeta => ({ runId, script: '/w/train.js', args: [], cwd: '/w', startedAt: '2025-01-02T03:04:05.678Z', framework: 'tfjs' });
const exit: RunExitRecord = { reason: 'completed', code: 0, signal: null, error: null, endedAt: '2025-01-02T03:05:00.000Z', steps: 40 };

function frames(steps: number, tensors = 20): Message[] {
  return [
    { type: 'hello', probeVersion: '0.1.0', framework: 'tfjs', backend: 'cpu', device: 'CPU', backendReason: 'test', pid: 1, rank: 0, script: '/w/train.js', detailEvery: 0 },
    { type: 'tensors', tensors: tensorInfos(0, tensors) },
    ...Array.from({ length: steps }, (_, i) => stepMsg(i, tensors)),
    { type: 'end', reason: 'completed', steps },
  ];
}

/** fs.write fails with ENOSPC past `limit` bytes of the file (after writing what still fits), as a full disk does. */
function fullDiskAt(limit: number): void {
  const real = fs.write;
  mock.method(fs, 'write', function (this: unknown, fd: number, buf: Uint8Array, off: number, len: number, pos: number, cb: (e: Error | null, n?: number) => void) {
    if (pos + len > limit) {
      const room = Math.max(0, limit - pos);
      if (room > 0) return (real as (...a: unknown[]) => void).call(fs, fd, buf, off, room, pos, cb);
      return process.nextTick(cb, Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
    }
    return (real as (...a: unknown[]) => void).call(fs, fd, buf, off, len, pos, cb);
  });
}

/** Appends the frames as RunSession does (mark: steps recorded once the frame is on disk), a batch per macrotask. */
async function record(w: RunFileWriter, msgs: Message[]): Promise<void> {
  let steps = 0;
  for (const [i, m] of msgs.entries()) {
    if (m.type === 'step') steps++;
    w.append(wire(m, i).raw, steps);
    if (i % 4 === 3) await new Promise((r) => setTimeout(r, 110)); // let the 100 ms flush run mid-run
  }
}

describe('RunFileWriter on a full disk', () => {
  it('stops at the first ENOSPC, cuts the file back to its last whole frame, says how many steps it keeps; the file reads back', async (t) => {
    t.after(() => mock.restoreAll());
    const msgs = frames(40);
    const stepBytes = wire(msgs[2]).raw.byteLength;
    const limit = 3000 + 9 * stepBytes + 123; // inside a frame, some way into the run
    fullDiskAt(limit);
    const w = RunFileWriter.create(newDir(), meta('full'));
    const fired: RunFileFailure[] = [];
    w.onDidFail((f) => fired.push(f));
    await record(w, msgs);
    await w.close(exit);
    assert.equal(fired.length, 1, 'onDidFail fires once');
    const f = w.failure!;
    assert.equal(f, fired[0]);
    assert.equal(f.reason, 'no space left on device (ENOSPC)');
    assert.ok(f.mark > 0 && f.mark < 40, `steps kept: ${f.mark}`);
    assert.ok(f.bytes <= limit);
    assert.equal(statSync(w.path).size, f.bytes, 'cut back to the whole frames');
    const back = readRunFile(w.path);
    assert.equal(back.error, null);
    assert.equal(back.truncated, false);
    assert.equal(back.exit, null, 'no exit record after a write error');
    assert.equal(back.store.stepCount, f.mark);
    const said = describeRunRead(back);
    assert.equal(said.complete, false);
    assert.match(said.notRead.join('\n'), /no exit record/);
  });

  it('a disk that fills exactly at the exit record: every step kept, no partial trailer', async (t) => {
    t.after(() => mock.restoreAll());
    const msgs = frames(10);
    const dir = newDir();
    // Measure the size without the trailer on a healthy write first.
    const probe = RunFileWriter.create(dir, meta('size1'));
    await record(probe, msgs);
    await probe.close();
    const framesSize = statSync(probe.path).size;
    fullDiskAt(framesSize + 5);
    const w = RunFileWriter.create(dir, meta('size2')); // same header length
    await record(w, msgs);
    await w.close(exit);
    assert.equal(w.failure?.mark, 10);
    assert.equal(statSync(w.path).size, framesSize);
    const back = readRunFile(w.path);
    assert.equal(back.error, null);
    assert.equal(back.truncated, false);
    assert.equal(back.store.stepCount, 10);
  });

  it('create(): a run folder that is a file, one line and no file left', () => {
    const p = join(root, 'afile');
    writeFileSync(p, 'x');
    assert.throws(() => RunFileWriter.create(p, meta('x')), /^RunFileError: cannot create the run file in .*afile: /);
  });
});

describe('reading what is not a healthy run file', () => {
  it('a FIFO is refused unopened (the read would block forever), and left out of listRuns', (t) => {
    const dir = newDir();
    fs.mkdirSync(dir);
    const p = join(dir, 'pipe.gsrun');
    try {
      execFileSync('mkfifo', [p], { stdio: 'ignore' });
    } catch {
      return t.skip('mkfifo not available');
    }
    const r = readRunFile(p);
    assert.equal(r.error?.message, `${p} is a named pipe (FIFO), not a run file`);
    assert.equal(describeRunRead(r).usable, false);
    assert.deepEqual(listRuns(dir), []);
    assert.match(readRunFile(dir).error?.message ?? '', /is a folder, not a run file/);
  });

  it('"GSRUN 01" and "GSRUN +1" are not version 1; "GSRUN 2" is a version this reader does not know', async () => {
    const dir = newDir();
    const w = RunFileWriter.create(dir, meta('v'));
    frames(2).forEach((m, i) => w.append(wire(m, i).raw));
    await w.close(exit);
    const good = readFileSync(w.path);
    const rest = good.subarray('GSRUN 1 '.length);
    for (const [v, msg] of [
      ['01', /"01" is not a run file version/],
      ['+1', /"\+1" is not a run file version/],
      ['2', /run file version 2 is not supported/],
    ] as const) {
      const p = join(dir, `v${v}.gsrun`);
      writeFileSync(p, Buffer.concat([Buffer.from(`GSRUN ${v} `), rest]));
      const r = readRunFile(p);
      assert.equal(r.error?.name, 'RunFileError');
      assert.match(r.error?.message ?? '', msg);
      assert.equal(r.store.stepCount, 0);
      assert.equal(describeRunRead(r).usable, false);
    }
    assert.equal(readRunFile(w.path).error, null);
  });

  it('describeRunRead: garbage, a header only, a cut trailer, each said', async () => {
    const dir = newDir();
    const w = RunFileWriter.create(dir, meta('d'));
    frames(8).forEach((m, i) => w.append(wire(m, i).raw));
    await w.close({ ...exit, steps: 8 });
    const good = readFileSync(w.path);
    const head = good.indexOf(0x0a) + 1;
    const intact = describeRunRead(readRunFile(w.path));
    assert.deepEqual(intact, { usable: true, complete: true, read: "8 steps (up to step 7), the run's end: completed", notRead: [] });

    const mid = head + Math.floor((good.length - head) / 2);
    writeFileSync(join(dir, 'g.gsrun'), Buffer.concat([good.subarray(0, mid), Buffer.alloc(16, 0xab), good.subarray(mid)]));
    const g = describeRunRead(readRunFile(join(dir, 'g.gsrun')));
    assert.equal(g.usable, true);
    assert.equal(g.complete, false);
    assert.match(g.read, /^\d steps/);
    assert.match(g.notRead[0], /^the file is damaged at byte [\d,]+ \(.+\): the [\d,]+ bytes of frames from there on were not read$/);

    writeFileSync(join(dir, 'h.gsrun'), good.subarray(0, head));
    const h = describeRunRead(readRunFile(join(dir, 'h.gsrun')));
    assert.equal(h.read, 'no steps, no HELLO');
    assert.match(h.notRead.join('\n'), /no optimizer step is in the file/);

    writeFileSync(join(dir, 'c.gsrun'), good.subarray(0, good.length - 3));
    const c = describeRunRead(readRunFile(join(dir, 'c.gsrun')));
    assert.equal(c.read, '8 steps (up to step 7)');
    assert.match(c.notRead[0], /^the file ends inside a frame or its exit record/);
  });

  it('readRunFileAsync stops at an aborted signal between chunks, and says so', async () => {
    const dir = newDir();
    const w = RunFileWriter.create(dir, meta('big'));
    frames(30, 3000).forEach((m, i) => w.append(wire(m, i).raw)); // ~5.8 MB: more than one 4 MiB chunk
    await w.close({ ...exit, steps: 30 });
    const ac = new AbortController();
    ac.abort();
    const r = await readRunFileAsync(w.path, undefined, { signal: ac.signal });
    assert.equal(r.cancelled, true);
    assert.ok(r.store.stepCount < 30);
    assert.match(describeRunRead(r).notRead[0], /^the read was cancelled at byte/);
    assert.equal((await readRunFileAsync(w.path)).store.stepCount, 30);
  });
});
