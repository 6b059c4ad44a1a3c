// Fault row 9: nothing of a run is left running. The host (`gradscope run`) killed with SIGKILL runs
// no code at all: the probe sees its channel hang up and stops its own process group (SIGTERM, then
// SIGKILL after a grace), a child that ignores SIGTERM included. A `setsid` daemon leaves the group
// on purpose and no group signal reaches it: the run lists it at the end (warning `survivors`, found
// by the run's GS_RUN_MARK environment marker) and leaves it running.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../src/core/report/runJson';
import { readRunFile } from '../../src/core/store/runFile';
import { PYTHON, torchSkip } from '../unit/torch/torchEnv';
import { caseDir, describeProcesses, foreverScript, gradscope, isAlive, leftRunning, markedProcesses, runFilesIn, sha256, whenPrinted } from './support';

/**
 * Kills the host (`gradscope run`) with SIGKILL once the script's child and training are under way,
 * then waits up to 5 s for every process of the run to go; asserts none is left and that what was
 * recorded reads back.
 */
async function hostKilled(dir: string, script: string, opts: { env?: Record<string, string> } = {}): Promise<void> {
  const sum = sha256(join(dir, script));
  let killedAt = 0;
  let before = 0;
  const r = await gradscope(['run', script, '--out', 'runs'], {
    cwd: dir,
    env: opts.env,
    timeoutMs: 60_000,
    onStart: (cli, mark) =>
      whenPrinted(cli, [/^child ready/m, /^training$/m], () =>
        // A moment for the host to put the first steps in its run file.
        setTimeout(() => {
          before = markedProcesses(mark).length;
          killedAt = Date.now();
          cli.kill('SIGKILL');
        }, 300),
      ),
  });
  assert.ok(killedAt > 0, `the script never got going:\n${r.stdout}\n${r.stderr}`);
  assert.equal(r.signal, 'SIGKILL');
  // The probe and the child (and nothing else of the run) should be alive when the host dies.
  assert.ok(before >= 2, `the probe and the child were running when the host was killed (${before} marked processes)`);
  let alive = markedProcesses(r.mark).filter(isAlive);
  while (alive.length > 0 && Date.now() - killedAt < 5000) {
    await new Promise((res) => setTimeout(res, 100));
    alive = markedProcesses(r.mark).filter(isAlive);
  }
  const seen = describeProcesses(alive);
  assert.deepEqual(await leftRunning(r.mark, 0), [], `alive ${Date.now() - killedAt} ms after the host was killed: ${seen}`);
  // What was recorded up to the host's death reads back (no exit record: the host never wrote one).
  const [file] = runFilesIn(join(dir, 'runs'));
  assert.ok(file, 'the run file is there');
  const back = readRunFile(file);
  assert.equal(back.exit, null);
  assert.ok(back.store.stepCount >= 1, `steps recorded: ${back.store.stepCount}`);
  assert.ok(back.error === null || back.truncated, `read whole or cut at the last frame: ${back.error?.message}`);
  assert.equal(sha256(join(dir, script)), sum);
}

/** A Node child that ignores SIGTERM, says "child ready" and sleeps. */
const STUBBORN_CHILD = `process.on('SIGTERM', () => {}); console.log('child ready ' + process.pid); setInterval(() => {}, 1000);`;
const SPAWN_STUBBORN = `require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(STUBBORN_CHILD)}], { stdio: ['ignore', 'inherit', 'inherit'] });`;

describe('fault 9: no orphans', () => {
  it('the host SIGKILLed while a PyTorch script runs with a child that ignores SIGTERM: within 5 s nothing of the run is left', { skip: torchSkip() }, async () => {
    const dir = caseDir('hostkill');
    const script = join(dir, 'stubborn.py');
    writeFileSync(
      script,
      [
        'import itertools, subprocess, sys, time',
        'import torch',
        'child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\'child ready\', flush=True); time.sleep(300)"])',
        'model = torch.nn.Linear(8, 1)',
        'opt = torch.optim.SGD(model.parameters(), lr=0.01)',
        'x = torch.randn(16, 8)',
        'for i in itertools.count():',
        '    opt.zero_grad()',
        '    model(x).pow(2).mean().backward()',
        '    opt.step()',
        '    if i == 100:',
        '        print("training", flush=True)',
        '    time.sleep(0.01)',
        '',
      ].join('\n'),
    );
    await hostKilled(dir, 'stubborn.py', { env: { GRADSCOPE_PYTHON: PYTHON } });
  });

  it('the host SIGKILLed while a TF.js script runs with a child that ignores SIGTERM: within 5 s nothing of the run is left', async () => {
    const dir = caseDir('hostkill-tfjs');
    writeFileSync(join(dir, 'stubborn.js'), foreverScript([SPAWN_STUBBORN]));
    await hostKilled(dir, 'stubborn.js');
  });

  it('the same when the TF.js script exits on its own right after the host died, before the probe saw the hang-up', async () => {
    const dir = caseDir('hostkill-tfjs-exit');
    // Trains, then waits without yielding (so the probe's watchdog never runs) until it is orphaned,
    // and exits 0: only the probe's exit path is left to notice that the host is gone.
    writeFileSync(
      join(dir, 'quits.js'),
      [
        SPAWN_STUBBORN,
        "const tf = require('@tensorflow/tfjs');",
        "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
        "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
        'const opt = tf.train.sgd(0.01);',
        'let i = 0;',
        '(function step() {',
        '  opt.minimize(() => x.matMul(w).square().mean());',
        '  if (++i < 5) return void setTimeout(step, 5);',
        // The child's "ready" first, so the host is killed only once both are printed.
        "  setTimeout(() => { console.log('training'); const host = process.ppid; const t0 = Date.now(); while (process.ppid === host && Date.now() - t0 < 30000); process.exit(0); }, 300);",
        '})();',
        '',
      ].join('\n'),
    );
    await hostKilled(dir, 'quits.js');
  });

  it('the same when the PyTorch script exits on its own right after the host died, before the watchdog saw the hang-up', { skip: torchSkip() }, async () => {
    const dir = caseDir('hostkill-torch-exit');
    // Trains, then waits without sleeping (the watchdog thread gets the GIL only between the
    // interpreter's switches) until it is orphaned, and exits 0 at once.
    writeFileSync(
      join(dir, 'quits.py'),
      [
        'import os, subprocess, sys, time',
        'import torch',
        'child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\'child ready\', flush=True); time.sleep(300)"])',
        'model = torch.nn.Linear(8, 1)',
        'opt = torch.optim.SGD(model.parameters(), lr=0.01)',
        'x = torch.randn(16, 8)',
        'for i in range(5):',
        '    opt.zero_grad()',
        '    model(x).pow(2).mean().backward()',
        '    opt.step()',
        'time.sleep(0.3)',
        'host = os.getppid()',
        'print("training", flush=True)',
        't0 = time.monotonic()',
        'while os.getppid() == host and time.monotonic() - t0 < 30:',
        '    pass',
        '',
      ].join('\n'),
    );
    await hostKilled(dir, 'quits.py', { env: { GRADSCOPE_PYTHON: PYTHON } });
  });

  it('a setsid daemon started by the script is listed as a survivor (pid, command, how to find it) and left running', async (t) => {
    const dir = caseDir('daemon');
    const script = join(dir, 'daemon.js');
    // Node's `detached: true` is setsid(): the daemon leads a session and group of its own.
    writeFileSync(
      script,
      [
        "const { spawn } = require('child_process');",
        "const d = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });",
        'd.unref();',
        "console.log('daemon ' + d.pid);",
        "const tf = require('@tensorflow/tfjs');",
        "const w = tf.variable(tf.randomNormal([8, 1], 0, 0.1, 'float32', 1));",
        "const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);",
        'const opt = tf.train.sgd(0.01);',
        'for (let i = 0; i < 5; i++) opt.minimize(() => x.matMul(w).square().mean());',
        '',
      ].join('\n'),
    );
    const sum = sha256(script);
    const r = await gradscope(['run', 'daemon.js', '--json', '--out', 'runs'], { cwd: dir, timeoutMs: 30_000 });
    const daemon = Number(/^daemon (\d+)$/m.exec(r.stderr)?.[1]);
    t.after(() => {
      try {
        process.kill(daemon, 'SIGKILL');
      } catch {
        // gone already
      }
    });
    assert.ok(daemon > 0, r.stderr);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'completed');
    assert.equal(doc.steps, 5);
    const found = doc.warnings.filter((w) => w.code === 'survivors');
    assert.equal(found.length, 1, JSON.stringify(doc.warnings));
    const [w] = found;
    assert.equal(w.level, 'warning');
    assert.equal(w.count, 1);
    assert.match(w.message, new RegExp(`^1 process started by the script is still running after the run ended: pid ${daemon} \\(sleep 300\\)\\. `));
    assert.match(w.message, /left the run's process group \(setsid/);
    assert.match(w.message, new RegExp(`stop it with \`kill ${daemon}\`\\.$`));
    // It is left alone, and the marker the message names is in its environment.
    assert.ok(isAlive(daemon), 'the daemon is not killed by GradScope');
    const marker = /grep -ls (GS_RUN_MARK=\S+) /.exec(w.message)?.[1];
    assert.ok(marker, w.message);
    assert.ok(readFileSync(`/proc/${daemon}/environ`).includes(Buffer.from(`${marker}\0`)), 'the daemon carries the marker the message names');
    assert.match(marker, new RegExp(`^GS_RUN_MARK=${readRunFile(runFilesIn(join(dir, 'runs'))[0]).meta.runId}$`), 'the marker is the run id');
    assert.equal(sha256(script), sum);
    // The daemon is the only process of the case left; the census kills it.
    assert.deepEqual(await leftRunning(r.mark, 0), [daemon]);
  });
});
