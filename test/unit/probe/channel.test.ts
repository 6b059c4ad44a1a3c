// The probe never blocks training on the pipe: with the host not reading, send() returns at once,
// frames beyond the bound are dropped and counted, the count is reported in `dropped` events once
// there is room, and the dropped frames leave gaps in the sequence numbers.
// The descriptor stays the script's: once it is closed, or closed and reused for a file, nothing more
// is written to it (the channel is lost, not the host).
// This file is also the child: with GS_CHANNEL_CHILD set it writes through a real Channel on fd 3.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FrameDecoder } from '../../../src/core/protocol/codec';
import type { StatName } from '../../../src/core/protocol/messages';
import { Channel } from '../../../src/probe/tfjs/channel';

const FRAMES = 4000;
const TENSORS = 50;
const BOUND = 256 * 1024;

function child(): void {
  const ch = new Channel(3, () => {}, BOUND);
  const stats: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
  const columns = stats.map(() => new Float64Array(TENSORS).fill(1));
  let worst = 0;
  let accepted = 0;
  for (let step = 0; step < FRAMES; step++) {
    const t0 = performance.now();
    if (ch.send({ type: 'step', step, optimizer: 0, loss: 1, wallMs: 0, stats, columns, nTensors: TENSORS })) accepted++;
    worst = Math.max(worst, performance.now() - t0);
  }
  process.stderr.write(JSON.stringify({ accepted, dropped: ch.droppedTotal, worstSendMs: worst }) + '\n');
  // Tell the host we are done sending, then let the queue drain as the host reads.
  ch.send({ type: 'end', reason: 'completed', steps: FRAMES });
  ch.flushSync(20_000);
  process.exit(0);
}

/**
 * The host's end is closed before this child looks: hostGoneNow(), asked at once (before the watch
 * timer could run), reports on stderr what it answered and what the channel does after.
 */
function hostGoneChild(): void {
  let callback = '';
  const ch = new Channel(3, (why) => (callback = why));
  // The host closes its end as soon as it has spawned us; wait (blocking: the timer must not run) for the end-of-file.
  const t0 = Date.now();
  let gone = false;
  while (!(gone = ch.hostGoneNow()) && Date.now() - t0 < 10_000) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  const sent = ch.send({ type: 'end', reason: 'completed', steps: 0 });
  process.stderr.write(JSON.stringify({ gone, open: ch.open, hostGone: ch.hostGone, sent, pending: ch.pendingBytes, callback }) + '\n');
  process.exit(0);
}

if (process.env.GS_CHANNEL_CHILD === 'host-gone') {
  hostGoneChild();
} else if (process.env.GS_CHANNEL_CHILD) {
  child();
} else {
  describe('probe channel (bounded queue)', () => {
    it('never blocks, drops over the bound, counts and reports drops, leaves seq gaps', async () => {
      const p = spawn(process.execPath, [__filename], { env: { ...process.env, GS_CHANNEL_CHILD: '1' }, stdio: ['ignore', 'inherit', 'pipe', 'pipe'] });
      let report = '';
      p.stderr!.on('data', (b: Buffer) => (report += b.toString()));
      const host = p.stdio[3] as import('node:net').Socket;
      host.pause(); // the host does not read while the child sends
      await new Promise<void>((resolve, reject) => {
        const t = setInterval(() => {
          if (report.includes('\n')) {
            clearInterval(t);
            resolve();
          }
        }, 20);
        p.once('exit', (code) => (code ? reject(new Error(`child exited ${code}: ${report}`)) : undefined));
      });
      const r = JSON.parse(report.split('\n')[0]) as { accepted: number; dropped: number; worstSendMs: number };
      const dec = new FrameDecoder();
      const seqs: number[] = [];
      let steps = 0;
      let droppedReported = 0;
      let ended = false;
      host.on('data', (chunk: Buffer) => {
        const err = dec.push(chunk, (f) => {
          seqs.push(f.seq);
          if (f.message.type === 'step') steps++;
          if (f.message.type === 'event' && f.message.kind === 'dropped') droppedReported += f.message.count ?? 0;
          if (f.message.type === 'end') ended = true;
        });
        assert.equal(err, null);
      });
      host.resume();
      await new Promise((r2) => p.once('exit', r2));
      await new Promise((r2) => setTimeout(r2, 100));
      assert.ok(ended, 'END arrived');
      assert.ok(r.dropped > 0, 'frames were dropped while the host did not read');
      assert.equal(r.accepted + r.dropped, FRAMES);
      assert.equal(steps, r.accepted, 'every accepted frame arrived');
      assert.equal(droppedReported, r.dropped, 'every drop was reported');
      // Sequence numbers: strictly increasing; the STEP frames' gaps add up to the drops.
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1]);
      const lastSeq = seqs[seqs.length - 1];
      assert.equal(lastSeq + 1 - seqs.length, r.dropped, 'gaps in seq = frames dropped');
      console.log(`sent ${FRAMES}: accepted ${r.accepted}, dropped ${r.dropped}, worst send() ${r.worstSendMs.toFixed(2)} ms`);
      assert.ok(r.worstSendMs < 1000, 'send() never waited for the host');
    });

    it("hostGoneNow() at the host's hang-up: true, and the channel closed at once (nothing more queued or written), the hang-up callback left to the caller", async () => {
      const p = spawn(process.execPath, [__filename], { env: { ...process.env, GS_CHANNEL_CHILD: 'host-gone' }, stdio: ['ignore', 'inherit', 'pipe', 'pipe'] });
      let report = '';
      p.stderr!.on('data', (b: Buffer) => (report += b.toString()));
      (p.stdio[3] as import('node:net').Socket).destroy(); // the host is gone
      const code = await new Promise((r2) => p.once('exit', r2));
      assert.equal(code, 0, report);
      assert.deepEqual(JSON.parse(report.split('\n')[0]), { gone: true, open: false, hostGone: true, sent: false, pending: 0, callback: '' });
    });

    it('cork() holds frames until uncork(), which writes them all at once, whole and in order', () => {
      const dir = mkdtempSync(join(tmpdir(), 'gs-channel-'));
      const file = join(dir, 'frames.bin');
      const fd = openSync(file, 'w');
      try {
        const ch = new Channel(fd, () => {}); // a file: writes work as on a pipe, nothing to read back
        const stats: StatName[] = ['norm'];
        ch.cork();
        ch.cork();
        for (let step = 0; step < 300; step++) ch.send({ type: 'step', step, optimizer: 0, loss: 1, wallMs: 0, stats, columns: [new Float64Array(3).fill(step)], nTensors: 3 });
        ch.uncork();
        assert.equal(statSync(file).size, 0, 'nothing written while corked');
        ch.uncork();
        assert.equal(ch.pendingBytes, 0);
        const steps: number[] = [];
        const seqs: number[] = [];
        const err = new FrameDecoder().push(readFileSync(file), (f) => {
          seqs.push(f.seq);
          if (f.message.type === 'step') steps.push(f.message.columns[0][2]);
        });
        assert.equal(err, null);
        assert.deepEqual(
          steps,
          Array.from({ length: 300 }, (_, i) => i),
        );
        assert.deepEqual(
          seqs,
          Array.from({ length: 300 }, (_, i) => i),
        );
      } finally {
        closeSync(fd);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("the descriptor closed and reused for the script's own file: nothing is written to that file, the channel is lost (not the host)", () => {
      const dir = mkdtempSync(join(tmpdir(), 'gs-channel-'));
      const fillers: number[] = [];
      let mine = -1;
      try {
        const fd = openSync(join(dir, 'channel.bin'), 'w');
        let gone = '';
        const ch = new Channel(fd, (why) => (gone = why));
        const stats: StatName[] = ['norm'];
        const step = (i: number): boolean => ch.send({ type: 'step', step: i, optimizer: 0, loss: 1, wallMs: 0, stats, columns: [new Float64Array(3).fill(i)], nTensors: 3 });
        assert.equal(step(0), true);
        const before = statSync(join(dir, 'channel.bin')).size;
        assert.ok(before > 0, 'the first frame went to the channel');
        // The script closes the descriptor and opens its own file under that very number.
        closeSync(fd);
        for (;;) {
          const f = openSync('/dev/null', 'r');
          if (f >= fd) {
            closeSync(f);
            break;
          }
          fillers.push(f);
        }
        mine = openSync(join(dir, 'mine.txt'), 'w');
        assert.equal(mine, fd, "the file got the channel's number");
        writeSync(mine, 'user data\n');
        step(1); // queued, then found not to be the channel at the write: dropped
        assert.equal(step(2), false, 'nothing more is accepted');
        ch.flushSync(100);
        assert.equal(readFileSync(join(dir, 'mine.txt'), 'utf8'), 'user data\n', 'the user file holds only what the script wrote');
        assert.equal(statSync(join(dir, 'channel.bin')).size, before);
        assert.match(ch.lost ?? '', new RegExp(`^the script closed the channel's descriptor \\(fd ${fd}\\) and opened something else under its number$`));
        assert.equal(ch.open, false);
        assert.equal(ch.hostGone, false, 'the host is not gone: only the channel');
        assert.equal(gone, '', 'the host-gone callback (which stops the run) is not called');
      } finally {
        for (const f of fillers) closeSync(f);
        if (mine >= 0) closeSync(mine);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('the descriptor closed (not reused): the channel is lost at the next write, with its number in the reason', () => {
      const dir = mkdtempSync(join(tmpdir(), 'gs-channel-'));
      try {
        // A descriptor far above what anything here opens meanwhile, as the host's is.
        const low = openSync(join(dir, 'channel.bin'), 'w');
        const fillers: number[] = [];
        let fd = low;
        while (fd < 40) fillers.push((fd = openSync('/dev/null', 'r')));
        const ch = new Channel(fd, () => assert.fail('not a host loss'));
        closeSync(fd);
        for (const f of fillers.slice(0, -1)) closeSync(f);
        closeSync(low);
        ch.send({ type: 'event', kind: 'warning', message: 'x' });
        assert.equal(ch.open, false);
        assert.equal(ch.lost, `the script closed the channel's descriptor (fd ${fd})`);
        assert.equal(ch.hostGoneNow(), false, 'a lost channel is not a gone host');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
