// findMarkedProcesses against real processes (Linux /proc): a marked process outside the run's group
// is found with its command line; one inside the group, one with another mark and one that exited are not.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { RUN_MARK_ENV, findMarkedProcesses } from '../../../src/process/survivors';

const linux = process.platform === 'linux';
const children: ChildProcess[] = [];
after(() => {
  // Each leads its own group: the group goes, with the `sleep` a shell started.
  for (const c of children) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

/** `sleep` in its own process group (pgid === pid), with `env` added. */
function sleeper(env: Record<string, string>, seconds = '30'): Promise<ChildProcess> {
  const c = spawn('sleep', [seconds], { env: { ...process.env, ...env }, detached: true, stdio: 'ignore' });
  children.push(c);
  return new Promise((resolve, reject) => {
    c.once('spawn', () => resolve(c));
    c.once('error', reject);
  });
}

describe('findMarkedProcesses', { skip: !linux && 'Linux /proc' }, () => {
  it('finds the marked processes outside the excepted group, with their command line', async () => {
    const mark = randomBytes(6).toString('hex');
    const outside = await sleeper({ [RUN_MARK_ENV]: mark });
    const inGroup = await sleeper({ [RUN_MARK_ENV]: mark });
    await sleeper({ [RUN_MARK_ENV]: `${mark}x` }); // a longer value that starts with the mark
    await sleeper({});
    const found = await findMarkedProcesses(mark, inGroup.pid);
    assert.deepEqual(found, [{ pid: outside.pid, command: 'sleep 30' }]);
    const all = await findMarkedProcesses(mark);
    assert.deepEqual(
      all.map((s) => s.pid),
      [outside.pid, inGroup.pid].sort((a, b) => a! - b!),
    );
  });

  it('a process that has exited is not a survivor; an empty mark finds nothing', async () => {
    const mark = randomBytes(6).toString('hex');
    const c = await sleeper({ [RUN_MARK_ENV]: mark });
    assert.equal((await findMarkedProcesses(mark)).length, 1);
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
    assert.deepEqual(await findMarkedProcesses(mark), []);
    assert.deepEqual(await findMarkedProcesses(''), []);
  });

  it('a command line with control characters is shown on one line, escaped', async () => {
    const mark = randomBytes(6).toString('hex');
    const c = spawn('sh', ['-c', 'sleep 30; : "\u001b[2J\u202e"'], { env: { ...process.env, [RUN_MARK_ENV]: mark }, detached: true, stdio: 'ignore' });
    children.push(c);
    await new Promise((r) => c.once('spawn', r));
    // sh and the sleep it started both carry the mark; the shell is the one with the odd command line.
    const s = (await findMarkedProcesses(mark)).find((x) => x.pid === c.pid);
    assert.ok(s, 'the shell is found');
    assert.ok(![...s.command].some((ch) => ch.charCodeAt(0) < 0x20 || ch === '\u202e'), s.command);
    assert.match(s.command, /^sh -c sleep 30; : "\\u001B\[2J\\u202E"$/);
  });
});
