// Program and killTree against real processes: nothing is mocked. Fixture children live in
// test/fixtures/processes; group membership is checked by scanning /proc (Linux).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Program, STDERR_TAIL_BYTES, liveProgramCount, type ProgramOptions } from '../../../src/process/program';
import { killProcessGroup, listProcessGroup, processGroupAlive } from '../../../src/process/killTree';

// The bundle runs from dist/test/unit/process, the source from test/unit/process: walk up to the
// repository root rather than count levels.
function findRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'test', 'fixtures', 'processes', 'watchdog.js'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found from ' + __dirname);
    dir = up;
  }
  return dir;
}
const ROOT = findRoot();
const FIXTURES = join(ROOT, 'test', 'fixtures', 'processes');
const tmp = mkdtempSync(join(tmpdir(), 'gradscope-program-'));
const started: number[] = [];

after(() => {
  // Belt and braces: never leave a fixture tree behind, whatever failed.
  for (const pgid of started) killProcessGroup(pgid, 'SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

function startFixture(fixture: string, args: string[] = [], extra: Partial<ProgramOptions> = {}): Program {
  const p = Program.start({
    command: process.execPath,
    args: [join(FIXTURES, fixture), ...args],
    cwd: FIXTURES,
    env: { ...process.env, FIXTURE_LOG: join(tmp, 'log.txt') },
    ...extra,
  });
  if (p.pid !== undefined) started.push(p.pid);
  return p;
}

function collect(p: Program): { stdout: () => string; stderr: () => string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.onStdout((c) => out.push(c));
  p.onStderr((c) => err.push(c));
  return { stdout: () => Buffer.concat(out).toString(), stderr: () => Buffer.concat(err).toString() };
}

function waitForStdout(p: Program, pattern: RegExp, timeoutMs = 5000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      sub.dispose();
      reject(new Error(`timed out waiting for ${pattern} on stdout; got ${JSON.stringify(buf.slice(-200))}`));
    }, timeoutMs);
    const sub = p.onStdout((c) => {
      buf += c.toString();
      const m = buf.match(pattern);
      if (m) {
        clearTimeout(timer);
        sub.dispose();
        resolve(m);
      }
    });
    void p.exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`exited before ${pattern}: ${JSON.stringify(e)}`));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until group `pgid` has no live (non-zombie) member; returns the ms it took. */
async function waitGroupGone(pgid: number, withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (processGroupAlive(pgid)) {
    if (Date.now() - t0 > withinMs) {
      const left = listProcessGroup(pgid, false).map((m) => `${m.pid}(${m.comm},${m.state})`);
      assert.fail(`group ${pgid} still has live members after ${withinMs} ms: ${left.join(' ')}`);
    }
    await sleep(20);
  }
  return Date.now() - t0;
}

function liveMembers(pgid: number): number {
  return listProcessGroup(pgid, false).length;
}

describe('killTree', () => {
  it('ignores groups that do not exist and refuses pgid 0/1', () => {
    assert.equal(killProcessGroup(undefined, 'SIGTERM'), false);
    assert.equal(killProcessGroup(0, 'SIGKILL'), false);
    assert.equal(killProcessGroup(1, 'SIGKILL'), false);
    // pid_max is at most 2^22; this group cannot exist.
    assert.equal(killProcessGroup(2 ** 22 + 7, 'SIGKILL'), false);
    assert.equal(processGroupAlive(2 ** 22 + 7), false);
  });

  it('lists the members of a real group', async () => {
    const p = startFixture('looper.js', ['--grandchild']);
    await waitForStdout(p, /ready \d+/);
    const members = listProcessGroup(p.pid!, false);
    assert.equal(members.length, 2, JSON.stringify(members));
    assert.ok(members.some((m) => m.pid === p.pid && m.pgrp === p.pid));
    assert.ok(members.some((m) => m.ppid === p.pid));
    assert.equal(processGroupAlive(p.pid), true);
    p.kill();
    await p.exited;
    await waitGroupGone(p.pid!, 1000);
  });
});

describe('Program', () => {
  it('reports a clean exit with its output', async () => {
    const p = startFixture('exit0.js');
    const io = collect(p);
    assert.equal(typeof p.pid, 'number');
    assert.ok(p.channel);
    const e = await p.exited;
    assert.deepEqual({ code: e.code, signal: e.signal, stopRequested: e.stopRequested }, { code: 0, signal: null, stopRequested: false });
    assert.equal(e.spawnError, undefined);
    assert.equal(io.stdout(), 'hello from exit0\n');
    // Writing to the channel of a dead child must not raise an unhandled 'error' (EPIPE).
    p.channel.write('too late');
    p.channel.end();
    await sleep(50);
  });

  it('reports a crash with exit code 1 and the stack in the stderr tail', async () => {
    const e = await startFixture('crash.js').exited;
    assert.equal(e.code, 1);
    assert.equal(e.signal, null);
    assert.equal(e.stopRequested, false);
    assert.match(e.stderrTail, /Error: fixture crash: boom/);
    assert.match(e.stderrTail, /at deepInsideTheFixture .*crash\.js:\d+/);
  });

  it('keeps only the last 64 KiB of stderr', async () => {
    const p = Program.start({
      command: process.execPath,
      args: ['-e', "process.stderr.write('x'.repeat(200 * 1024)); process.stderr.write('THE END')"],
      cwd: tmp,
      env: process.env,
    });
    const e = await p.exited;
    assert.equal(e.code, 0);
    assert.ok(e.stderrTail.length <= STDERR_TAIL_BYTES, `tail is ${e.stderrTail.length} chars`);
    assert.ok(e.stderrTail.length > STDERR_TAIL_BYTES - 100);
    assert.ok(e.stderrTail.endsWith('THE END'));
  });

  it('reports a missing executable through exited, without throwing', async () => {
    const command = join(tmp, 'no-such-trainer');
    const p = Program.start({ command, args: [], cwd: tmp, env: process.env });
    assert.equal(p.pid, undefined);
    assert.equal(p.channel, null);
    const e = await p.exited;
    assert.ok(e.spawnError);
    assert.match(e.spawnError.message, /no-such-trainer/);
    assert.match(e.spawnError.message, /executable not found/);
    assert.equal((e.spawnError as NodeJS.ErrnoException).code, 'ENOENT');
    assert.equal(e.code, null);
    assert.equal(await p.stop(), e); // stop() on a program that never ran is harmless
    p.kill();
  });

  it('names a missing working directory instead of blaming the executable', async () => {
    const p = Program.start({ command: process.execPath, args: [], cwd: join(tmp, 'gone'), env: process.env });
    const e = await p.exited;
    assert.ok(e.spawnError);
    assert.match(e.spawnError.message, /working directory .*gone.* does not exist/);
  });

  it('reports invalid arguments (spawn throws synchronously) through exited', async () => {
    const p = Program.start({ command: process.execPath, args: ['a\0b'], cwd: tmp, env: process.env });
    const e = await p.exited;
    assert.ok(e.spawnError);
    assert.match(e.spawnError.message, /Cannot start/);
  });

  it('carries bytes both ways over the fd-3 channel', async () => {
    const p = startFixture('channel.js');
    const io = collect(p);
    const ch = p.channel!;
    const got: Buffer[] = [];
    ch.on('data', (d: Buffer) => {
      got.push(d);
      if (Buffer.concat(got).toString() === 'hello from child') ch.end('ping from host');
    });
    const e = await p.exited;
    assert.equal(e.code, 0);
    assert.equal(Buffer.concat(got).toString(), 'hello from child');
    assert.equal(io.stdout(), 'child received: ping from host (EOF)\n');
  });

  it('stop() ends a running child and its grandchild with SIGTERM, within the grace period', async () => {
    const p = startFixture('looper.js', ['--grandchild']);
    const pgid = p.pid!;
    let channelBytes = 0;
    p.channel!.on('data', (d: Buffer) => (channelBytes += d.length));
    await waitForStdout(p, /tick 5\n/);
    assert.ok(channelBytes > 0, 'the child writes to fd 3');
    assert.equal(liveMembers(pgid), 2);

    const t0 = Date.now();
    const e = await p.stop(3000);
    const ms = Date.now() - t0;
    assert.equal(e.signal, 'SIGTERM');
    assert.equal(e.stopRequested, true);
    assert.ok(ms < 3000, `took ${ms} ms`);
    await waitGroupGone(pgid, 500);
  });

  it('stop(500) SIGKILLs a tree that ignores SIGTERM after about 500 ms', async () => {
    const p = startFixture('stubborn.js');
    const pgid = p.pid!;
    await waitForStdout(p, /ready \d+/);
    assert.equal(liveMembers(pgid), 2);

    const t0 = Date.now();
    const e = await p.stop(500);
    const ms = Date.now() - t0;
    assert.equal(e.signal, 'SIGKILL');
    assert.equal(e.stopRequested, true);
    assert.ok(ms >= 450 && ms < 2000, `took ${ms} ms`);
    await waitGroupGone(pgid, 500);
    // Both really did ignore the SIGTERM first.
    const log = readFileSync(join(tmp, 'log.txt'), 'utf8');
    assert.match(log, /child-ignored-sigterm/);
    assert.match(log, /grandchild-ignored-sigterm/);
  });

  it('stop() is idempotent and exited resolves once', async () => {
    const p = startFixture('looper.js');
    await waitForStdout(p, /ready/);
    let resolutions = 0;
    void p.exited.then(() => resolutions++);
    const a = p.stop();
    const b = p.stop(10); // a second stop while the first is under way changes nothing
    assert.equal(a, b);
    assert.equal(a, p.exited);
    const [ea, eb] = await Promise.all([a, b]);
    assert.equal(ea, eb);
    assert.equal(ea.signal, 'SIGTERM');
    assert.equal(await p.stop(), ea); // after the end: same result
    p.kill();
    await sleep(20);
    assert.equal(resolutions, 1);

    // stop() after a natural exit reports that exit, with stopRequested false.
    const q = startFixture('exit0.js');
    const eq = await q.exited;
    assert.equal(await q.stop(), eq);
    assert.equal(eq.stopRequested, false);
  });

  it('does not hang when a grandchild keeps stdout open after the child exits', async () => {
    // The child exits at once; a `sleep` it left behind holds stdout and stderr. exited must still
    // resolve (after the drain timeout) and the straggler must be gone.
    const p = Program.start({
      command: '/bin/sh',
      args: ['-c', 'sleep 30 & echo started'],
      cwd: tmp,
      env: process.env,
      drainMs: 300,
    });
    const pgid = p.pid!;
    const t0 = Date.now();
    const e = await p.exited;
    assert.equal(e.code, 0);
    assert.ok(Date.now() - t0 < 2000);
    await waitGroupGone(pgid, 500);
  });

  it('leaves no program registered once every run has ended', () => {
    assert.equal(liveProgramCount(), 0);
  });
});

describe('host death', () => {
  async function runHost(mode: 'hang' | 'exit', channel: boolean, fixtureArgs: string[]) {
    const host = spawn(process.execPath, [join(FIXTURES, 'host.js'), ROOT, mode, channel ? 'channel' : 'no-channel', ...fixtureArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FIXTURE_LOG: join(tmp, `host-${mode}.txt`) },
    });
    let out = '';
    let err = '';
    host.stderr.on('data', (d) => (err += d));
    const pgid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`host did not announce a pgid; stderr: ${err}`)), 10000);
      host.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/\{"pgid":(\d+)\}/);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      host.on('exit', (code) => {
        if (!/pgid/.test(out)) {
          clearTimeout(timer);
          reject(new Error(`host exited (${code}) early; stderr: ${err}`));
        }
      });
    });
    started.push(pgid);
    const hostExit = new Promise<void>((r) => host.on('exit', () => r()));
    return { host, pgid, hostExit };
  }

  it('a SIGKILLed host: the child sees its channel close and takes the grandchild with it', async () => {
    const { host, pgid, hostExit } = await runHost('hang', true, ['looper.js', '--grandchild', '--quiet']);
    assert.equal(liveMembers(pgid), 2);
    host.kill('SIGKILL');
    await hostExit;
    await waitGroupGone(pgid, 2000);
    const log = readFileSync(join(tmp, 'host-hang.txt'), 'utf8');
    assert.match(log, /channel-(end|close|error)/, log);
    assert.match(log, /stdin-end/, log);
  });

  it('a host that exits normally kills the group from its exit hook (child without a watchdog)', async () => {
    const { pgid, hostExit } = await runHost('exit', false, ['stubborn.js', '--no-watchdog']);
    await hostExit;
    await waitGroupGone(pgid, 2000);
  });
});
