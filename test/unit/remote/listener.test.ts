// The listener for remote runs over real TCP sockets on loopback: the token (right, wrong, missing,
// no AUTH at all), one run per connection with its own run file, a distributed job's ranks in one run
// with rank files, a connection lost (probe-lost) or let go (stopped). The probes here are sockets
// that write encoded frames; test/unit/torch/remote.test.ts runs the real probes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeMessage } from '../../../src/core/protocol/codec';
import { encodeAuth, readAuthReply, type AuthReplyMsg } from '../../../src/core/protocol/handshake';
import type { HelloMsg, Message } from '../../../src/core/protocol/messages';
import { readRunFile } from '../../../src/core/store/runFile';
import { tokenMatches } from '../../../src/process/rankListener';
import { RemoteListener, generateToken, isLoopback } from '../../../src/process/remoteListener';
import type { RemoteRun } from '../../../src/process/remoteRun';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'gs-remote-'));
  dirs.push(d);
  return d;
};

const hello = (rank = 0, worldSize?: number): HelloMsg => ({
  type: 'hello',
  probeVersion: '0.1.0',
  framework: 'torch',
  backend: 'cpu',
  device: 'CPU',
  backendReason: '',
  pid: 1000 + rank,
  rank,
  script: '/remote/home/u/train.py',
  detailEvery: 0,
  host: 'gpu-box',
  ...(worldSize ? { localRank: rank, worldSize } : {}),
});
const tensors: Message = { type: 'tensors', tensors: [{ id: 0, name: 'w', layer: 'fc', layerType: 'Linear', shape: [2], source: { file: '/remote/home/u/train.py', line: 3, column: 1 } }] };
const step = (i: number): Message => ({ type: 'step', step: i, optimizer: 0, loss: 1 / (i + 1), wallMs: i, stats: ['norm'], columns: [Float64Array.of(0.5 + i)], nTensors: 1 });
const end: Message = { type: 'end', reason: 'completed', steps: 3 };

/** A probe's side: connects, sends AUTH, reads the reply. */
async function dial(port: number, token: string | null): Promise<{ s: Socket; reply: AuthReplyMsg | null }> {
  const s = await new Promise<Socket>((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
  if (token === null) return { s, reply: null };
  s.write(encodeAuth({ token }));
  let buf = Buffer.alloc(0);
  const reply = await new Promise<AuthReplyMsg | null>((resolve) => {
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const r = readAuthReply(buf);
      if (r.kind === 'ok') resolve(r.msg);
    });
    s.once('close', () => resolve(null));
  });
  return { s, reply };
}

const send = (s: Socket, msgs: Message[]): void => void s.write(Buffer.concat(msgs.map((m, i) => encodeMessage(m, i))));
const closed = (s: Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));
const nextRun = (l: RemoteListener): Promise<RemoteRun> => new Promise((r) => l.onDidStartRun(r));

async function open(): Promise<{ l: RemoteListener; runDir: string; refused: string[] }> {
  const runDir = join(tmp(), 'runs');
  const l = await RemoteListener.open({ port: 0, token: 'right-token-0123456789', runDir });
  const refused: string[] = [];
  l.onDidRefuse(({ why }) => refused.push(why));
  return { l, runDir, refused };
}

describe('remote listener (TCP, token)', () => {
  it('records a run that gives the right token: its frames, its run file, its exit', async () => {
    const { l, runDir } = await open();
    const started = nextRun(l);
    const { s, reply } = await dial(l.port, 'right-token-0123456789');
    assert.deepEqual(reply, { ok: true, message: 'connected' });
    send(s, [hello(), tensors, step(0), step(1), step(2), end]);
    const run = await started;
    s.end();
    const exit = await run.done;
    assert.equal(exit.reason, 'completed');
    assert.equal(run.store.stepCount, 3);
    assert.equal(run.script, '/remote/home/u/train.py');
    assert.equal(run.host, 'gpu-box');
    const read = readRunFile(run.runFile);
    assert.equal(read.store.stepCount, 3);
    assert.equal(read.exit?.reason, 'completed');
    assert.deepEqual(readdirSync(runDir), [`${run.id}.gsrun`]);
    await l.close();
  });

  for (const [name, token, why] of [
    ['a wrong token', 'wrong-token', /wrong token/],
    ['an empty token', '', /no token/],
  ] as const) {
    it(`refuses ${name}: told so, closed, nothing recorded`, async () => {
      const { l, runDir, refused } = await open();
      const { s, reply } = await dial(l.port, token);
      assert.equal(reply?.ok, false);
      assert.match(reply?.message ?? '', why);
      await closed(s);
      assert.equal(refused.length, 1);
      assert.match(refused[0], why);
      assert.deepEqual(existsSync(runDir) ? readdirSync(runDir) : [], []);
      assert.equal(l.runs.length, 0);
      await l.close();
    });
  }

  it('refuses a probe that sends its HELLO without AUTH (no reply: it is not in the handshake)', async () => {
    const { l, refused } = await open();
    const { s } = await dial(l.port, null);
    send(s, [hello(), step(0)]);
    await closed(s);
    assert.match(refused[0], /no AUTH before its HELLO/);
    assert.equal(l.runs.length, 0);
    await l.close();
  });

  it('a connection lost mid-run is probe-lost, never completed; one let go is stopped', async () => {
    const { l } = await open();
    const started = nextRun(l);
    const a = await dial(l.port, 'right-token-0123456789');
    send(a.s, [hello(), tensors, step(0), step(1)]);
    const run = await started;
    await new Promise((r) => setTimeout(r, 50));
    a.s.destroy();
    const exit = await run.done;
    assert.equal(exit.reason, 'probe-lost');
    assert.match(exit.message, /closed without an END after step 1 \(2 steps seen\): the remote script may still be training/);

    const started2 = nextRun(l);
    const b = await dial(l.port, 'right-token-0123456789');
    send(b.s, [hello(), tensors, step(0)]);
    const run2 = await started2;
    const exit2 = await run2.stop();
    assert.equal(exit2.reason, 'stopped');
    assert.match(exit2.message, /remote script goes on training, unobserved/);
    await closed(b.s);
    await l.close();
  });

  it("a distributed job's ranks (one AUTH job) are one run: rank 0 its own file, rank 1 a rank file", async () => {
    const { l } = await open();
    const started = nextRun(l);
    const job = '10.0.0.5:29500/j';
    const dialJob = async (): Promise<Socket> => {
      const s = await new Promise<Socket>((resolve) => {
        const c = connect(l.port, '127.0.0.1', () => resolve(c));
      });
      s.write(encodeAuth({ token: 'right-token-0123456789', job }));
      await new Promise((r) => s.once('data', r));
      return s;
    };
    const r1 = await dialJob();
    send(r1, [hello(1, 2), tensors, step(0), end]);
    const run = await started;
    const r0 = await dialJob();
    send(r0, [hello(0, 2), tensors, step(0), end]);
    await new Promise((r) => setTimeout(r, 100));
    r1.end();
    r0.end();
    const exit = await run.done;
    assert.equal(l.runs.length, 1);
    assert.equal(exit.reason, 'completed');
    assert.match(exit.message, /2 ranks seen/);
    assert.deepEqual(
      run.ranks.map((r) => r.rank),
      [0, 1],
    );
    assert.equal(run.ranks[0].runFile, run.runFile);
    assert.match(run.ranks[1].runFile, /\.ranks[/\\]rank1\.gsrun$/);
    assert.equal(readRunFile(run.ranks[1].runFile).store.stepCount, 1);
    await l.close();
  });

  it('maps source paths for the views (mapPath), keeps the run file as it came, and lists the files not found', async () => {
    const runDir = join(tmp(), 'runs');
    const l = await RemoteListener.open({ port: 0, token: 'right-token-0123456789', runDir, mapPath: (p) => (p === '/remote/home/u/train.py' ? '/ws/train.py' : null) });
    const started = nextRun(l);
    const { s } = await dial(l.port, 'right-token-0123456789');
    const two: Message = {
      type: 'tensors',
      tensors: [{ id: 1, name: 'v', layer: 'lib', layerType: 'Linear', shape: [1], source: { file: '/remote/home/u/lib/net.py', line: 9, column: 1 } }],
    };
    send(s, [hello(), tensors, two, step(0), end]);
    const run = await started;
    s.end();
    await run.done;
    assert.equal(run.script, '/ws/train.py');
    assert.deepEqual(
      run.store.tensors.map((t) => t.source?.file),
      ['/ws/train.py', '/remote/home/u/lib/net.py'],
    );
    assert.deepEqual([...run.unmappedFiles], ['/remote/home/u/lib/net.py']);
    // The run file holds the frames byte for byte: the remote paths.
    assert.deepEqual(
      readRunFile(run.runFile).store.tensors.map((t) => t.source?.file),
      ['/remote/home/u/train.py', '/remote/home/u/lib/net.py'],
    );
    await l.close();
  });

  it('needs a long token off loopback; checks tokens whole', async () => {
    await assert.rejects(RemoteListener.open({ host: '0.0.0.0', port: 0, token: 'short', runDir: tmp() }), /at least 16 characters/);
    assert.ok(isLoopback('127.0.0.1') && isLoopback('localhost') && isLoopback('::1') && !isLoopback('0.0.0.0') && !isLoopback('10.0.0.1'));
    const t = generateToken();
    assert.equal(t.length, 32);
    assert.ok(tokenMatches(t, t));
    assert.ok(!tokenMatches(t.slice(0, -1), t));
    assert.ok(!tokenMatches(`${t}x`, t));
    assert.ok(!tokenMatches('', t));
  });

  it('says the port is taken', async () => {
    const { l } = await open();
    await assert.rejects(RemoteListener.open({ port: l.port, token: 'x', runDir: tmp() }), /already in use/);
    await l.close();
  });
});
