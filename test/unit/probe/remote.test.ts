// The TF.js runner's remote mode over loopback, with real processes and sockets: `node
// dist/probe/tfjs/runner.js --connect HOST:PORT train.js` streaming to a real `gradscope listen`; a
// wrong token refused (nothing recorded, the script trains to its end); the listener stopped mid-run
// (the script keeps training, with a warning).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readRunFile } from '../../../src/core/store/runFile';
import { runFiles, startListen } from '../support/listen';
import { fixture } from '../support/paths';
import { RUNNER } from './runProbe';

const script = fixture('remote', 'train.js');
const TOKEN = 'remote-test-token-0123456789';

function train(port: number, token: string | null, args: string[], onOutput?: (out: string, child: ChildProcess) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.GRADSCOPE_TOKEN;
  delete env.GRADSCOPE_CHANNEL_FD;
  if (token !== null) env.GRADSCOPE_TOKEN = token;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUNNER, '--connect', `127.0.0.1:${port}`, script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onOutput?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('remote runs: the TF.js runner --connect to gradscope listen (real processes, loopback)', { timeout: 180_000 }, () => {
  it('the right token: the run shows its steps', async () => {
    const l = await startListen(['--once', '--json', '--token', TOKEN]);
    const t = await train(l.port, TOKEN, ['25']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /token seen by the script: undefined/);
    assert.match(t.stdout, /trained 25/);
    assert.equal(await l.exited, 0, l.stderr());
    assert.match(l.stderr(), /remote run \S+ from 127\.0\.0\.1:\d+ \(\S+\): .*train\.js \(tfjs, /);
    const doc = JSON.parse(l.stdout().trim()) as { exit: { reason: string }; steps: number; framework: string };
    assert.equal(doc.exit.reason, 'completed');
    assert.equal(doc.framework, 'tfjs');
    assert.equal(doc.steps, 25);
    const files = runFiles(l.runDir);
    assert.equal(files.length, 1);
    assert.equal(readRunFile(join(l.runDir, files[0])).store.stepCount, 25);
  });

  it('a wrong token: refused, nothing recorded, the script trains to its end', async () => {
    const l = await startListen(['--token', TOKEN]);
    const t = await train(l.port, 'wrong', ['15']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /trained 15/);
    assert.match(t.stderr, /refused the connection: wrong token; the script runs without inspection/);
    await l.waitFor(/refused a connection from 127\.0\.0\.1:\d+: wrong token \(nothing recorded\)/);
    l.child.kill('SIGINT');
    assert.equal(await l.exited, 0);
    assert.deepEqual(runFiles(l.runDir), []);
  });

  it('the listener stopped mid-run: the script keeps training, with a warning', async () => {
    const l = await startListen(['--token', TOKEN]);
    let interrupted = false;
    const t = await train(l.port, TOKEN, ['80', '40'], (out) => {
      if (!interrupted && /step 20/.test(out)) {
        interrupted = true;
        l.child.kill('SIGINT');
      }
    });
    assert.ok(interrupted);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /trained 80/);
    assert.match(t.stderr, /the connection to GradScope at 127\.0\.0\.1:\d+ was lost after \d+ step\(s\).*the script goes on training, unobserved/);
    assert.equal(await l.exited, 0);
    const files = runFiles(l.runDir);
    assert.equal(files.length, 1);
    const read = readRunFile(join(l.runDir, files[0]));
    assert.equal(read.exit?.reason, 'stopped');
    assert.ok(read.store.stepCount >= 15 && read.store.stepCount < 80, `${read.store.stepCount} steps`);
  });
});
