// The run's socket that the processes of a distributed run join (src/process/rankListener.ts): a
// connection is accepted with a HELLO as its first frame, and refused otherwise; each connection has
// its own decoder; Unix socket, and TCP on loopback.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { encodeMessage } from '../../../src/core/protocol/codec';
import type { HelloMsg, Message } from '../../../src/core/protocol/messages';
import { RankListener, type RankConnection } from '../../../src/process/rankListener';

const hello = (rank: number, pid: number): HelloMsg => ({
  type: 'hello',
  probeVersion: '0.1.0',
  framework: 'torch',
  backend: 'cpu',
  device: 'CPU',
  backendReason: '',
  pid,
  rank,
  script: '/x/train.py',
  detailEvery: 0,
  localRank: rank,
  worldSize: 2,
  host: 'h',
});
const end: Message = { type: 'end', reason: 'completed', steps: 0 };

interface Seen {
  joined: RankConnection[];
  frames: Array<[number, string]>;
  closed: number[];
  refused: string[];
}

async function open(tcp = false): Promise<{ l: RankListener; seen: Seen }> {
  const seen: Seen = { joined: [], frames: [], closed: [], refused: [] };
  const l = await RankListener.open(
    {
      onJoin: (c) => seen.joined.push(c),
      onFrame: (c, f) => seen.frames.push([c.hello.rank, f.message.type]),
      onProtocolError: () => undefined,
      onClose: (c) => seen.closed.push(c.hello.rank),
      onRefused: (why) => seen.refused.push(why),
    },
    { tcp },
  );
  return { l, seen };
}

function dial(address: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = address.startsWith('unix:') ? connect(address.slice(5)) : connect(Number(address.split(':')[2]), '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

const closed = (s: Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));
const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'timed out');
};

describe('RankListener', () => {
  for (const tcp of [false, true]) {
    it(`${tcp ? 'TCP on loopback' : 'a Unix socket'}: two processes join, each with its own stream, announced by its HELLO`, async () => {
      const { l, seen } = await open(tcp);
      assert.match(l.address, tcp ? /^tcp:127\.0\.0\.1:\d+$/ : /^unix:\//);
      const a = await dial(l.address);
      const b = await dial(l.address);
      // Frames split across writes, interleaved between the two connections.
      const fa = Buffer.concat([encodeMessage(hello(0, 10), 0), encodeMessage(end, 1)]);
      const fb = Buffer.concat([encodeMessage(hello(1, 11), 0), encodeMessage(end, 1)]);
      a.write(fa.subarray(0, 7));
      b.write(fb.subarray(0, 30));
      a.write(fa.subarray(7));
      b.write(fb.subarray(30));
      await until(() => seen.frames.length === 4);
      assert.deepEqual(
        seen.joined.map((c) => [c.id, c.hello.rank, c.hello.pid, c.hello.worldSize]),
        [
          [0, 0, 10, 2],
          [1, 1, 11, 2],
        ],
      );
      assert.deepEqual(
        seen.frames.filter(([r]) => r === 1),
        [
          [1, 'hello'],
          [1, 'end'],
        ],
      );
      a.end();
      b.end();
      await until(() => seen.closed.length === 2);
      assert.deepEqual(seen.refused, []);
      l.close();
    });
  }

  it('refuses a connection whose first frame is not a HELLO, and one that sends no frame at all', async () => {
    const { l, seen } = await open();
    const a = await dial(l.address);
    a.write(encodeMessage(end, 0));
    await closed(a);
    const b = await dial(l.address);
    b.write('GET / HTTP/1.1\r\n\r\n');
    await closed(b);
    assert.equal(seen.joined.length, 0);
    assert.equal(seen.refused.length, 2);
    assert.match(seen.refused[0], /first frame was END, not HELLO/);
    assert.match(seen.refused[1], /not a GradScope probe/);
    l.close();
  });

  it('close() ends every connection (the probe sees end-of-file) and removes the socket', async () => {
    const { l, seen } = await open();
    const path = l.address.slice(5);
    const a = await dial(l.address);
    a.write(encodeMessage(hello(0, 10), 0));
    await until(() => seen.joined.length === 1);
    const eof = new Promise<void>((r) => a.once('end', () => r()));
    a.on('error', () => undefined);
    l.close();
    await eof;
    assert.equal(existsSync(path), false);
  });
});
