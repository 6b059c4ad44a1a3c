// stopOwnGroup (the TF.js probe's last act when the host is gone): a group leader stops every other
// member of its group, one that ignores SIGTERM included (SIGKILL after the grace); a process that
// does not lead its group stops nothing.
// This file is also the child: with GS_GROUP_CHILD set it starts two children of its own (one that
// ignores SIGTERM), calls stopOwnGroup and prints what it signalled.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { leadsOwnGroup, stopOwnGroup } from '../../../src/probe/tfjs/group';

const GRACE_MS = 400;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (its parent has not reaped it yet) counts as gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return process.platform !== 'linux';
  }
}

async function child(): Promise<void> {
  const kids = [
    spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); console.log('stubborn'); setInterval(() => {}, 1000);"], { stdio: ['ignore', 'pipe', 'inherit'] }),
    spawn(process.execPath, ['-e', "console.log('plain'); setInterval(() => {}, 1000);"], { stdio: ['ignore', 'pipe', 'inherit'] }),
  ];
  // Both up (and the stubborn one's SIGTERM handler installed) before the stop.
  await Promise.all(kids.map((k) => new Promise((r) => k.stdout.once('data', r))));
  const t0 = Date.now();
  const signalled = stopOwnGroup(GRACE_MS);
  process.stdout.write(JSON.stringify({ leads: leadsOwnGroup(), kids: kids.map((k) => k.pid), signalled, ms: Date.now() - t0 }) + '\n');
  process.exit(0);
}

interface Report {
  leads: boolean;
  kids: number[];
  signalled: number[];
  ms: number;
}

function runChild(detached: boolean): Promise<Report> {
  return new Promise((resolve, reject) => {
    const p: ChildProcess = spawn(process.execPath, [__filename], { env: { ...process.env, GS_GROUP_CHILD: '1' }, stdio: ['ignore', 'pipe', 'inherit'], detached });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    p.once('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`child exited ${code}: ${out}`);
        resolve(JSON.parse(out.trim().split('\n').pop()!) as Report);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

if (process.env.GS_GROUP_CHILD) {
  void child();
} else {
  describe('stopOwnGroup (the probe stops its group when the host is gone)', { skip: process.platform === 'win32' ? 'no process groups' : false }, () => {
    it('as the group leader: SIGTERM to each other member, SIGKILL after the grace to the one that ignores it; nothing left', async () => {
      const r = await runChild(true);
      assert.equal(r.leads, true);
      assert.deepEqual([...r.signalled].sort(), [...r.kids].sort(), 'both children were signalled, and only they');
      assert.ok(r.ms >= GRACE_MS - 50, `the stubborn child had its grace (${r.ms} ms)`);
      assert.ok(r.ms < GRACE_MS + 2000, `then it was killed (${r.ms} ms)`);
      // Reparented to init once their parent exited: give the reaper a moment.
      const deadline = Date.now() + 2000;
      while (r.kids.some(alive) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      assert.deepEqual(r.kids.filter(alive), [], 'no child left');
    });

    it('not the group leader (run under another tool): stops nothing', async () => {
      const r = await runChild(false);
      try {
        assert.equal(r.leads, false);
        assert.deepEqual(r.signalled, []);
        assert.ok(r.kids.every(alive), 'its children are left alone');
      } finally {
        for (const pid of r.kids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
    });
  });
}
