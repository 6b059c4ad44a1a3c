// Remote runs with real sockets and real processes (issue 17 item 5): `gradscope listen` and
// `python -m gradscope_probe --connect` (real torch: GRADSCOPE_TEST_PYTHON, default /usr/bin/python3
// with torch 1.13; the suite runs again with .venv-torch2's torch 2) over loopback: the right token
// shows the run's steps, a wrong or missing one is refused (nothing recorded, the script still trains to
// its end), and the listener stopped mid-run leaves the script training. The TF.js runner's --connect
// over loopback is in test/unit/probe/remote.test.ts.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { readRunFile } from '../../../src/core/store/runFile';
import { runFiles, startListen } from '../support/listen';
import { fixture, repoRoot } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

const script = fixture('remote', 'train.py');
const probeParent = join(repoRoot, 'src', 'probe', 'torch');
const TOKEN = 'remote-test-token-0123456789';

interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

function train(port: number, token: string | null, args: string[] = [], onOutput?: (text: string, child: ChildProcess) => void): Promise<Done> {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: probeParent, PYTHONDONTWRITEBYTECODE: '1' };
  delete env.GRADSCOPE_TOKEN;
  delete env.GRADSCOPE_CHANNEL_FD;
  if (token !== null) env.GRADSCOPE_TOKEN = token;
  return new Promise((resolve) => {
    const child = spawn(PYTHON, ['-m', 'gradscope_probe', '--connect', `localhost:${port}`, script, ...args], { cwd: dirname(script), env, stdio: ['ignore', 'pipe', 'pipe'] });
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

/**
 * Debian's torch 1.13 on Python 3.11 cannot start torch.distributed.run at all (with or without
 * GradScope: see launcherSkip in ./distributed.test.ts): the torchrun test skips there, saying why.
 */
function launcherSkip(): false | string {
  if (torchSkip()) return false;
  const r = spawnSync(PYTHON, ['-c', 'from torch.distributed.elastic.multiprocessing.api import Std, to_map; to_map(Std.from_str("0"), 2)'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? false : `skipped: torch.distributed.run does not start with ${PYTHON} (${(r.stderr || '').trim().split('\n').pop()})`;
}
const noLauncher = launcherSkip();

describe('remote runs: gradscope listen + python -m gradscope_probe --connect (real torch, real sockets)', { skip: torchSkip(), timeout: 300_000 }, () => {
  it('the right token: the run shows its steps, live and in its run file and JSON', async () => {
    const l = await startListen(['--once', '--json', '--token', TOKEN]);
    const t = await train(l.port, TOKEN, ['30']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /token seen by the script: None/);
    assert.match(t.stdout, /trained 30/);
    assert.match(t.stderr, /connected to GradScope at localhost:\d+/);
    assert.equal(await l.exited, 0, l.stderr());
    assert.match(l.stderr(), /a probe connected from 127\.0\.0\.1:\d+/);
    assert.match(l.stderr(), /remote run \S+ from 127\.0\.0\.1:\d+ \(\S+\): .*train\.py \(torch, /);
    const doc = JSON.parse(l.stdout().trim()) as { exit: { reason: string }; steps: number; runFile: string; remote: { host: string } };
    assert.equal(doc.exit.reason, 'completed');
    assert.equal(doc.steps, 30);
    assert.equal(doc.runFile, join(l.runDir, runFiles(l.runDir)[0]));
    assert.ok(doc.remote.host);
    const files = runFiles(l.runDir);
    assert.equal(files.length, 1);
    const read = readRunFile(join(l.runDir, files[0]));
    assert.equal(read.store.stepCount, 30);
    assert.equal(read.meta.script, script);
    assert.equal(read.exit?.reason, 'completed');
  });

  for (const [name, token, why] of [
    ['a wrong token', 'not-the-token', /wrong token/],
    ['no token', null, /no token/],
  ] as const) {
    it(`${name}: refused, nothing recorded, the script still trains to its end`, async () => {
      const l = await startListen(['--token', TOKEN]);
      const t = await train(l.port, token, ['20']);
      assert.equal(t.code, 0, t.stderr);
      assert.match(t.stdout, /trained 20/);
      assert.match(t.stderr, /refused the connection/);
      assert.match(t.stderr, why);
      assert.match(t.stderr, /the script runs without inspection/);
      if (token === null) assert.match(t.stderr, /GRADSCOPE_TOKEN is not set/);
      await l.waitFor(/refused a connection from 127\.0\.0\.1:\d+: .*\(nothing recorded\)/);
      assert.match(l.stderr(), why);
      l.child.kill('SIGINT');
      assert.equal(await l.exited, 0);
      assert.match(l.stderr(), /0 runs received/);
      assert.deepEqual(runFiles(l.runDir), []);
    });
  }

  it('the listener stopped mid-run: the script keeps training to its end, with a warning; the run is recorded as stopped', async () => {
    const l = await startListen(['--token', TOKEN]);
    let interrupted = false;
    const t = await train(l.port, TOKEN, ['60', '0.05'], (out) => {
      // A few steps in (the listener has the run), stop listening.
      if (!interrupted && /step 20/.test(out)) {
        interrupted = true;
        l.child.kill('SIGINT');
      }
    });
    assert.ok(interrupted);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /trained 60/);
    assert.match(t.stderr, /the connection to GradScope at localhost:\d+ was lost after \d+ step\(s\).*the script goes on training, unobserved/);
    assert.equal(await l.exited, 0);
    assert.match(l.stdout(), /run\s+stopped watching after \d+ steps: the remote script goes on training, unobserved/);
    const files = runFiles(l.runDir);
    assert.equal(files.length, 1);
    const read = readRunFile(join(l.runDir, files[0]));
    assert.equal(read.exit?.reason, 'stopped');
    assert.ok(read.store.stepCount >= 15 && read.store.stepCount < 60, `${read.store.stepCount} steps`);
  });

  it('a torchrun job (-m gradscope_probe --connect in every rank): one run, rank 0 its own file, rank 1 a rank file', { skip: noLauncher }, async () => {
    const l = await startListen(['--once', '--json', '--token', TOKEN]);
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: probeParent, PYTHONDONTWRITEBYTECODE: '1', GRADSCOPE_TOKEN: TOKEN, STEPS: '5' };
    delete env.GRADSCOPE_CHANNEL_FD;
    const ddp = fixture('distributed', 'ddp.py');
    let stderr = '';
    // --nproc_per_node: the spelling torch 1.13's launcher knows too.
    const code = await new Promise<number | null>((resolve) => {
      const c = spawn(PYTHON, ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'gradscope_probe', '--connect', `localhost:${l.port}`, ddp], {
        cwd: dirname(ddp),
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      c.once('exit', resolve);
    });
    if (code !== 0) l.child.kill('SIGKILL');
    assert.equal(code, 0, stderr);
    assert.equal(await l.exited, 0, l.stderr());
    const doc = JSON.parse(l.stdout().trim()) as {
      exit: { reason: string; message: string };
      steps: number;
      ranks: Array<{ rank: number; steps: number; runFile: string }>;
      expectedRanks: number;
    };
    assert.equal(doc.exit.reason, 'completed');
    assert.match(doc.exit.message, /2 ranks seen \(rank 0: 5 steps, rank 1: 5 steps\)/);
    assert.deepEqual(
      doc.ranks.map((r) => [r.rank, r.steps]),
      [
        [0, 5],
        [1, 5],
      ],
    );
    assert.equal(doc.expectedRanks, 2);
    assert.equal(runFiles(l.runDir).length, 1);
    assert.equal(readRunFile(doc.ranks[1].runFile).store.stepCount, 5);
  });
});
