import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ProtocolError } from '../../../src/core/protocol/codec';
import { STAT_NAMES, type Message } from '../../../src/core/protocol/messages';
import { RunFileError, RunFileWriter, TRAILER_MAGIC, listRuns, makeRunId, readRunFile, readRunFileAsync, type RunExitRecord, type RunMeta } from '../../../src/core/store/runFile';
import { RunStore } from '../../../src/core/store/runStore';
import { detailMsg, stepMsg, tensorInfos, wire } from './helpers';

const root = mkdtempSync(join(tmpdir(), 'gradscope-runfile-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const newDir = (): string => join(root, `d${dirs++}`);

function meta(runId: string, startedAt = '2025-01-02T03:04:05.678Z'): RunMeta {
  return { runId, script: '/home/ü/train.js', args: ['--epochs', '3'], cwd: '/home/ü', startedAt, framework: 'tfjs' };
}

/** A small run: HELLO, TENSORS, STEPs with a DETAIL every 5 steps, an EVENT, END. */
function runFrames(steps: number, nTensors = 4): { raws: Uint8Array[]; msgs: Message[] } {
  const msgs: Message[] = [
    { type: 'hello', probeVersion: '0.1.0', framework: 'tfjs', backend: 'cpu', device: 'CPU', backendReason: 'test', pid: 42, rank: 0, script: '/x.js', detailEvery: 5 },
    { type: 'tensors', tensors: tensorInfos(0, nTensors) },
  ];
  msgs.push({ type: 'optimizer', id: 0, name: 'opt', className: 'Adam', mode: 'optimizer', tensorIds: [0, 1] });
  msgs.push({ type: 'optimizer', id: 1, name: 'opt_d', className: 'SGD', mode: 'optimizer', tensorIds: [2] });
  for (let o = 0; o < steps; o++) {
    // Optimizer 1 steps on odd ordinals, where tensor 1 has no gradient (hasGrad 0).
    const m = stepMsg(o, nTensors, o, (ord, t, stat) => (stat === 'hasGrad' ? (ord % 2 === 1 && t === 1 ? 0 : 1) : stat === 'nanCount' || stat === 'infCount' ? 0 : 0.5 + t + ord));
    m.optimizer = o % 2;
    msgs.push(m);
    if (o % 5 === 0) msgs.push(detailMsg(o, o % nTensors));
    if (o === 7) msgs.push({ type: 'event', kind: 'warning', message: 'something happened', step: 7 });
  }
  msgs.push({ type: 'end', reason: 'completed', steps });
  const out = msgs.map((m, i) => wire(m, i));
  return { raws: out.map((o) => o.raw), msgs: out.map((o) => o.msg) };
}

const exitRecord: RunExitRecord = {
  reason: 'crashed',
  code: 1,
  signal: null,
  error: { message: 'boom', stack: 'Error: boom\n    at train (/x.js:3:9)', frame: { file: '/x.js', line: 3, column: 9 } },
  endedAt: '2025-01-02T03:05:00.000Z',
  steps: 30,
};

function sameStore(a: RunStore, b: RunStore): void {
  assert.equal(a.stepCount, b.stepCount);
  assert.equal(a.lastStep, b.lastStep);
  assert.deepEqual(a.hello, b.hello);
  assert.deepEqual(a.end, b.end);
  assert.deepEqual(a.tensors, b.tensors);
  assert.deepEqual(a.events, b.events);
  assert.deepEqual(a.optimizers, b.optimizers);
  assert.deepEqual(a.summary(), b.summary());
  assert.deepEqual(a.globalNorm(), b.globalNorm());
  assert.deepEqual(a.loss(), b.loss());
  for (let t = 0; t < Math.max(a.stepTensorCount, b.stepTensorCount); t++) {
    for (const s of STAT_NAMES) assert.deepEqual(a.series(t, s), b.series(t, s));
    assert.equal(a.absentSteps(t), b.absentSteps(t));
    assert.deepEqual(a.latestDetail(t), b.latestDetail(t));
    assert.deepEqual(a.details(t), b.details(t));
  }
}

async function writeRun(dir: string, runId: string, raws: Uint8Array[], exit?: RunExitRecord, m = meta(runId)): Promise<string> {
  const w = RunFileWriter.create(dir, m);
  for (const r of raws) w.append(r);
  await w.close(exit);
  assert.equal(w.error, null);
  return w.path;
}

describe('run file', () => {
  it('reads back what was written', async () => {
    const dir = newDir();
    const { raws, msgs } = runFrames(30);
    const path = await writeRun(dir, 'run-a', raws, exitRecord);
    assert.equal(path, join(dir, 'run-a.gsrun'));
    const firstLine = readFileSync(path).subarray(0, readFileSync(path).indexOf(10)).toString('latin1');
    assert.match(firstLine, /^GSRUN 1 \{/);
    assert.ok(/^[\x20-\x7e]*$/.test(firstLine), 'the first line is ASCII');
    const r = readRunFile(path, new RunStore({ recentSteps: 8, envelopeBuckets: 4 }));
    assert.equal(r.error, null);
    assert.equal(r.truncated, false);
    assert.deepEqual(r.meta, meta('run-a'));
    assert.deepEqual(r.exit, exitRecord);
    const direct = new RunStore({ recentSteps: 8, envelopeBuckets: 4 });
    for (const m of msgs) direct.ingest(m);
    sameStore(r.store, direct);
    assert.equal(r.store.stepCount, 30);
    assert.equal(r.store.end?.reason, 'completed');
    // OPTIMIZER frames and the hasGrad column come back from the file.
    assert.deepEqual(
      r.store.optimizers.map((o) => [o.id, o.name, o.className, o.tensorIds, o.steps]),
      [
        [0, 'opt', 'Adam', [0, 1], 15],
        [1, 'opt_d', 'SGD', [2], 15],
      ],
    );
    // Tensor 1 has no gradient at opt_d's steps only, which do not train it: not absent at its own.
    assert.equal(r.store.absentSteps(1), 0);
    assert.equal(r.store.ownedSteps(1), 15);
    assert.equal(r.store.absentSteps(0), 0);
    assert.equal(r.store.summary().firstNonFinite, null);
    // Frames are stored byte for byte: the file is the line, the frames, the trailer.
    const bytes = readFileSync(path);
    const framesLen = raws.reduce((n, x) => n + x.byteLength, 0);
    const lineLen = bytes.indexOf(10) + 1;
    assert.deepEqual(bytes.subarray(lineLen, lineLen + framesLen), Buffer.concat(raws));
    assert.equal(bytes.readUInt32LE(lineLen + framesLen), TRAILER_MAGIC);
    const a = await readRunFileAsync(path, new RunStore({ recentSteps: 8, envelopeBuckets: 4 }));
    assert.equal(a.error, null);
    assert.deepEqual(a.exit, exitRecord);
    sameStore(a.store, direct);
  });

  it('reads a run that never ended (no trailer)', async () => {
    const dir = newDir();
    const { raws } = runFrames(12);
    const path = await writeRun(dir, 'open', raws.slice(0, -1));
    const r = readRunFile(path);
    assert.equal(r.error, null);
    assert.equal(r.truncated, false);
    assert.equal(r.exit, null);
    assert.equal(r.store.stepCount, 12);
    assert.equal(r.store.end, null);
  });

  it('reopens a file cut mid-frame with every complete frame and truncated=true', async () => {
    const dir = newDir();
    const { raws, msgs } = runFrames(20);
    const path = await writeRun(dir, 'cut', raws);
    const lineLen = readFileSync(path).indexOf(10) + 1;
    // Cut inside frame k for several k, at several depths inside it.
    let offset = lineLen;
    const starts = raws.map((r) => {
      const s = offset;
      offset += r.byteLength;
      return s;
    });
    for (const k of [2, 3, 10, raws.length - 1]) {
      for (const into of [1, 15, 16, 40]) {
        if (into >= raws[k].byteLength) continue;
        writeFileSync(join(dir, 'x.gsrun'), readFileSync(path).subarray(0, starts[k] + into));
        const r = readRunFile(join(dir, 'x.gsrun'));
        assert.equal(r.truncated, true, `cut in frame ${k} at +${into}`);
        assert.equal(r.error, null);
        const direct = new RunStore();
        for (const m of msgs.slice(0, k)) direct.ingest(m);
        sameStore(r.store, direct);
      }
    }
    // Cut exactly between frames: complete, not truncated.
    writeFileSync(join(dir, 'y.gsrun'), readFileSync(path).subarray(0, starts[10]));
    const r = readRunFile(join(dir, 'y.gsrun'));
    assert.equal(r.truncated, false);
    assert.equal(r.store.stepCount, msgs.slice(0, 10).filter((m) => m.type === 'step').length);
  });

  it('treats a trailer cut short as truncated, keeping every frame', async () => {
    const dir = newDir();
    const { raws } = runFrames(10);
    const path = await writeRun(dir, 'tr', raws, exitRecord);
    for (const cut of [3, 10, 30]) {
      truncateSync(path, statSync(path).size - cut);
      const r = readRunFile(path);
      assert.equal(r.exit, null);
      assert.equal(r.truncated, true, `trailer cut by ${cut}`);
      assert.equal(r.error, null);
      assert.equal(r.store.stepCount, 10);
      assert.equal(r.store.end?.reason, 'completed');
    }
  });

  it('reports garbage with a clear error and never throws', async () => {
    const dir = newDir();
    const { raws } = runFrames(10);
    const path = await writeRun(dir, 'g', raws.slice(0, 10));
    const good = statSync(path).size;
    appendFileSync(path, Buffer.from('this is not a frame, just some text that went astray'));
    const r = readRunFile(path);
    assert.ok(r.error instanceof ProtocolError);
    assert.equal(r.error.code, 'bad-magic');
    assert.equal(r.error.offset, good, 'the offset is the byte in the file');
    assert.match(r.error.message, /at byte \d+/);
    assert.equal(r.store.stepCount, 5); // hello, tensors, 2 optimizers, step 0, detail, steps 1-4
    assert.equal(r.truncated, false);

    writeFileSync(join(dir, 'h.gsrun'), 'PK\u0003\u0004 certainly a zip file');
    const h = readRunFile(join(dir, 'h.gsrun'));
    assert.ok(h.error instanceof RunFileError);
    assert.equal(h.error.code, 'bad-header');
    assert.equal(h.store.stepCount, 0);

    writeFileSync(join(dir, 'v.gsrun'), 'GSRUN 9 {}\n');
    assert.equal((readRunFile(join(dir, 'v.gsrun')).error as RunFileError).code, 'bad-version');
    writeFileSync(join(dir, 'j.gsrun'), 'GSRUN 1 {"runId": \n');
    assert.equal((readRunFile(join(dir, 'j.gsrun')).error as RunFileError).code, 'bad-header');
    writeFileSync(join(dir, 'e.gsrun'), '');
    assert.equal((readRunFile(join(dir, 'e.gsrun')).error as RunFileError).code, 'bad-header');
    assert.equal((readRunFile(join(dir, 'missing.gsrun')).error as RunFileError).code, 'io');

    // A valid header followed by bytes that look like a frame with a broken payload.
    const bad = wire(stepMsg(0, 2, 0)).raw.slice();
    bad[16 + 4] = 99; // nTensors no longer matches the payload
    writeFileSync(join(dir, 's.gsrun'), Buffer.concat([readFileSync(path).subarray(0, readFileSync(path).indexOf(10) + 1), bad]));
    const s = readRunFile(join(dir, 's.gsrun'));
    assert.equal((s.error as ProtocolError).code, 'shape-mismatch');
  });

  it('lists runs newest first with their exit records', async () => {
    const dir = newDir();
    const { raws } = runFrames(3);
    await writeRun(dir, 'old', raws, { ...exitRecord, reason: 'completed', error: null }, meta('old', '2025-01-01T00:00:00.000Z'));
    await writeRun(dir, 'new', raws.slice(0, 4), undefined, meta('new', '2025-03-01T00:00:00.000Z'));
    await writeRun(dir, 'mid', raws, exitRecord, meta('mid', '2025-02-01T00:00:00.000Z'));
    writeFileSync(join(dir, 'junk.gsrun'), 'nonsense');
    writeFileSync(join(dir, 'notes.txt'), 'hello');
    const list = listRuns(dir);
    assert.deepEqual(
      list.map((r) => r.meta.runId),
      ['new', 'mid', 'old'],
    );
    assert.equal(list[0].exit, null);
    assert.deepEqual(list[1].exit, exitRecord);
    assert.equal(list[2].exit?.reason, 'completed');
    assert.deepEqual(listRuns(join(dir, 'absent')), []);
  });

  it('writes in the background, flushes on a timer and on close, and refuses unsafe ids', async () => {
    const dir = newDir();
    const w = RunFileWriter.create(dir, meta('bg'));
    const lineLen = statSync(w.path).size;
    const { raws } = runFrames(5);
    for (const r of raws) w.append(r);
    assert.equal(statSync(w.path).size, lineLen, 'append does not write synchronously');
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(statSync(w.path).size, w.size, 'flushed by the timer');
    // Past 1 MiB pending, a write starts at once.
    const big = wire(stepMsg(0, 4000, 0)).raw; // ~190 kB
    for (let i = 0; i < 30; i++) w.append(big); // 5.7 MB: frames span the reader's 4 MiB chunks
    await w.close();
    await w.close();
    w.append(big); // ignored after close
    const r = readRunFile(w.path);
    assert.equal(r.error, null);
    assert.equal(r.store.stepCount, 5 + 30);
    assert.equal(r.store.series(3999, 'norm').steps.length, 30);
    const a = await readRunFileAsync(w.path);
    assert.equal(a.store.stepCount, 5 + 30);
    assert.throws(() => RunFileWriter.create(dir, meta('bg')), /EEXIST/);
    assert.throws(() => RunFileWriter.create(dir, meta('../escape')), RunFileError);
    assert.match(makeRunId(new Date('2025-01-02T03:04:05.678Z')), /^2025-01-02T03-04-05-678Z-[0-9a-f]{4}$/);
  });
});
