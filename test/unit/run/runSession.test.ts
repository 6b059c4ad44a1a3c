// RunSession with real child processes and fake probes that misbehave on the wire: the run must
// end with a clear reason, the host must not throw, and no process of the run may survive.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readRunFile } from '../../../src/core/store/runFile';
import { RunSession } from '../../../src/process/runSession';
import { fixture } from '../support/paths';

const runDir = mkdtempSync(join(tmpdir(), 'gs-runs-'));
const script = join(mkdtempSync(join(tmpdir(), 'gs-script-')), 'train.js');
writeFileSync(script, '// not run: the fake probe stands in for the runner\n');

function groupAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function fake(name: string, extra: Partial<Parameters<typeof RunSession.start>[0]> = {}): RunSession {
  return RunSession.start({ script, runDir, probeDir: fixture('fakeProbes', name), graceMs: 300, ...extra });
}

describe('RunSession', () => {
  it('ends a run whose probe sends a bad magic with protocol-error, keeps the frames before it, kills the group', async () => {
    const s = fake('garbage');
    const exit = await s.done;
    assert.equal(exit.reason, 'protocol-error');
    assert.match(exit.message, /bad-magic/);
    assert.equal(s.store.hello?.probeVersion, 'fake');
    assert.equal(groupAlive(s.pid), false);
    const back = readRunFile(s.runFile);
    assert.equal(back.exit?.reason, 'protocol-error');
    assert.equal(back.store.hello?.probeVersion, 'fake');
  });

  it('rejects an oversize frame by its header alone', async () => {
    const exit = await fake('oversize').done;
    assert.equal(exit.reason, 'protocol-error');
    assert.match(exit.message, /oversize/);
  });

  it('reports a stream cut inside a frame as truncated', async () => {
    const exit = await fake('truncated').done;
    assert.equal(exit.reason, 'protocol-error');
    assert.match(exit.message, /truncated/);
  });

  it('stop() ends the run as stopped, once, and is idempotent', async () => {
    const s = fake('sleeper');
    const out: string[] = [];
    s.onOutput((o) => out.push(o.text));
    let ends = 0;
    s.onDidEnd(() => ends++);
    await new Promise((r) => setTimeout(r, 400));
    const [a, b] = await Promise.all([s.stop(), s.stop()]);
    assert.equal(a, b);
    assert.equal(a.reason, 'stopped');
    assert.equal(ends, 1);
    assert.ok(out.join('').includes('tick'));
    assert.equal(groupAlive(s.pid), false);
  });

  it('enforces the time limit', async () => {
    const t0 = Date.now();
    const exit = await fake('sleeper', { timeoutSec: 0.5 }).done;
    assert.equal(exit.reason, 'time-limit');
    assert.ok(Date.now() - t0 < 5000);
  });

  it('a missing script or interpreter ends the run with a clear error instead of throwing', async () => {
    const a = await RunSession.start({ script: '/nonexistent/train.js', runDir }).done;
    assert.equal(a.reason, 'crashed');
    assert.match(a.message, /script not found: \/nonexistent\/train\.js/);
    const b = await RunSession.start({ script, runDir, probeDir: fixture('fakeProbes', 'sleeper'), nodePath: '/no/such/node' }).done;
    assert.equal(b.reason, 'crashed');
    assert.match(b.message, /\/no\/such\/node/);
    const c = await RunSession.start({ script: fixture('protocol', 'expected.json'), runDir }).done;
    assert.match(c.message, /expected a TensorFlow\.js script/);
  });

  it('writes the run file as it goes', async () => {
    const s = fake('sleeper');
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(existsSync(s.runFile));
    await s.stop();
    assert.equal(readRunFile(s.runFile).exit?.reason, 'stopped');
  });
});
