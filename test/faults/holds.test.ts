// The fault matrix's cases that held when the suite was written (issue 13, "the ones that already
// hold"): garbage on the probe's channel, a crashing script, Ctrl-C with a child that ignores
// SIGTERM, a --report target that turns read-only during the run, and two runs of one script into one
// run folder at once. Each asserts the exit reason and code, the message, the files left (the script
// byte-identical, run files readable) and that no process of the run is left.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../src/core/report/runJson';
import { readRunFile } from '../../src/core/store/runFile';
import { PYTHON, torchSkip } from '../unit/torch/torchEnv';
import { caseDir, foreverScript, gradscope, hasStack, isAlive, leftRunning, mountTmpfs, runFilesIn, sha256, whenPrinted } from './support';

/** The one run file in `dir`, read back: it must read without an error. */
function theRunFile(dir: string): ReturnType<typeof readRunFile> {
  const files = runFilesIn(dir);
  assert.equal(files.length, 1, `one run file in ${dir}: ${files.join(', ')}`);
  const back = readRunFile(files[0]);
  assert.equal(back.error, null, `the run file reads whole: ${back.error?.message}`);
  return back;
}

describe('faults that hold: malformed frames, a crash, Ctrl-C, a read-only report, two runs at once', () => {
  it('garbage written to the probe channel: protocol-error, exit 3, the stream named corrupt, the steps before it kept', async () => {
    const dir = caseDir('garbage');
    const script = join(dir, 'garbage.js');
    // The script finds the channel as any code in the process could (a socket past stdio: wherever the
    // probe keeps it) and writes bytes that are no frame into it.
    writeFileSync(
      script,
      foreverScript(
        ["const fs = require('fs');"],
        [
          "for (const fd of fs.readdirSync('/proc/self/fd').map(Number)) {",
          "  let link = ''; try { link = fs.readlinkSync('/proc/self/fd/' + fd); } catch {}",
          "  if (fd > 2 && link.startsWith('socket:')) fs.writeSync(fd, Buffer.from('garbage!'.repeat(8)));",
          '}',
        ],
      ),
    );
    const sum = sha256(script);
    const r = await gradscope(['run', 'garbage.js', '--json', '--out', 'runs'], { cwd: dir, timeoutMs: 30_000 });
    assert.equal(r.signal, null, `not ended by the host: killed after ${r.ms} ms\n${r.stderr}`);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'protocol-error');
    assert.match(doc.exit.message ?? '', /^stopped: the probe's data stream is corrupt: protocol error \([a-z-]+\) at byte \d+: /);
    assert.ok(doc.steps >= 1 && doc.steps <= 5, `the steps before the garbage: ${doc.steps}`);
    const back = theRunFile(join(dir, 'runs'));
    assert.equal(back.exit?.reason, 'protocol-error');
    assert.equal(back.store.stepCount, doc.steps, 'the run file holds every decoded step and none of the garbage');
    assert.equal(sha256(script), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('a PyTorch script that raises: crashed at the raising line, exit 1, its traceback shown without probe frames', { skip: torchSkip() }, async () => {
    const dir = caseDir('crash');
    const script = join(dir, 'crash.py');
    writeFileSync(
      script,
      [
        'import torch',
        'model = torch.nn.Linear(8, 1)',
        'opt = torch.optim.SGD(model.parameters(), lr=0.01)',
        'x = torch.randn(16, 8)',
        '',
        '',
        'def train(steps):',
        '    for i in range(steps):',
        '        opt.zero_grad()',
        '        model(x).pow(2).mean().backward()',
        '        opt.step()',
        '        if i == 4:',
        '            raise ValueError("boom at step %d" % i)',
        '',
        '',
        'train(10)',
        '',
      ].join('\n'),
    );
    const sum = sha256(script);
    const r = await gradscope(['run', 'crash.py', '--out', 'runs'], { cwd: dir, env: { GRADSCOPE_PYTHON: PYTHON }, timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^run {7}crashed at .*crash\.py:13:\d+: ValueError: boom at step 4$/m);
    assert.match(r.stdout, /^steps {5}5$/m);
    assert.ok(r.stderr.includes('Traceback (most recent call last):'), r.stderr);
    const tb = r.stderr.slice(r.stderr.indexOf('Traceback (most recent call last):'));
    assert.match(tb, /File ".*crash\.py", line 16, in <module>\n\s+train\(10\)\n\s+File ".*crash\.py", line 13, in train\n\s+raise ValueError/);
    assert.match(tb, /\nValueError: boom at step 4\n/);
    assert.ok(!/gradscope_probe|runpy/.test(tb), `no probe frames in the traceback:\n${tb}`);
    const back = theRunFile(join(dir, 'runs'));
    assert.equal(back.exit?.reason, 'crashed');
    assert.equal(back.exit?.code, 1, "the script's own exit code");
    assert.equal(back.store.stepCount, 5);
    assert.equal(sha256(script), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('Ctrl-C while a child of the script ignores SIGTERM: stopped, exit 0, the child gone too within seconds', async () => {
    const dir = caseDir('sigint-child');
    const script = join(dir, 'stubborn.js');
    const termLog = join(dir, 'term.log');
    // The child says when it ignores SIGTERM, and logs each SIGTERM it gets (it gets one: the run's group is signalled).
    const child = `process.on('SIGTERM', () => require('fs').appendFileSync(${JSON.stringify(termLog)}, 'TERM\\n')); console.log('child ready ' + process.pid); setInterval(() => {}, 1000);`;
    writeFileSync(script, foreverScript([`require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(child)}], { stdio: ['ignore', 'inherit', 'inherit'] });`]));
    const sum = sha256(script);
    let sentAt = 0;
    let childPid = 0;
    const r = await gradscope(['run', 'stubborn.js', '--out', 'runs'], {
      cwd: dir,
      timeoutMs: 30_000,
      onStart: (cli) =>
        whenPrinted(cli, [/child ready \d+/, /^training$/m], (text) => {
          childPid = Number(/child ready (\d+)/.exec(text)![1]);
          sentAt = Date.now();
          cli.kill('SIGINT');
        }),
    });
    const stoppedIn = Date.now() - sentAt;
    assert.ok(sentAt > 0, `the script never got going:\n${r.stdout}\n${r.stderr}`);
    assert.equal(r.signal, null, `Ctrl-C did not end it; killed after ${r.ms} ms`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^run {7}stopped by the user after \d+ steps/m);
    assert.ok(stoppedIn < 8000, `the run took ${stoppedIn} ms to stop`);
    assert.ok(existsSync(termLog) && readFileSync(termLog, 'utf8').includes('TERM'), 'the child got SIGTERM and ignored it');
    assert.deepEqual(await leftRunning(r.mark, 1000), [], 'nothing of the run is left, the child included');
    assert.equal(isAlive(childPid), false);
    assert.equal(theRunFile(join(dir, 'runs')).exit?.reason, 'stopped');
    assert.equal(sha256(script), sum);
  });

  it('--report on a file system that turns read-only during the run: exit 4, one line, the old report and the run file intact', async (t) => {
    const mnt = mountTmpfs(1024);
    if (!mnt) {
      t.skip('needs a tmpfs mount (root)');
      return;
    }
    t.after(() => mnt.unmount());
    const dir = caseDir('report-ro');
    const report = join(mnt.dir, 'report.html');
    writeFileSync(report, '<p>an older report</p>\n');
    const reportSum = sha256(report);
    const go = join(dir, 'go');
    const script = join(dir, 'wait.js');
    // Trains until told to finish (the file `go` appears), so the disk turns read-only mid-run.
    writeFileSync(script, foreverScript([], [`const t = setInterval(() => { if (require('fs').existsSync(${JSON.stringify(go)})) { clearInterval(t); process.exit(0); } }, 20);`]));
    const sum = sha256(script);
    const r = await gradscope(['run', 'wait.js', '--out', 'runs', '--report', report], {
      cwd: dir,
      timeoutMs: 30_000,
      onStart: (cli) =>
        whenPrinted(cli, [/^training$/m], () => {
          mnt.remountReadOnly();
          writeFileSync(go, '');
        }),
    });
    assert.equal(r.code, 4, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    const said = r.stderr.split('\n').filter((l) => l.startsWith('gradscope:'));
    assert.deepEqual(said.length, 1, r.stderr);
    assert.equal(said[0], `gradscope: could not write the report: cannot write into the folder ${mnt.dir}: read-only file system (EROFS)`);
    assert.match(r.stdout, /^run {7}completed, \d+ steps$/m, 'the summary is still printed');
    assert.equal(sha256(report), reportSum, 'the older report is untouched');
    assert.equal(theRunFile(join(dir, 'runs')).exit?.reason, 'completed');
    assert.equal(sha256(script), sum);
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it('two runs of one script into one --out folder at once: both complete, two distinct readable run files', async () => {
    const dir = caseDir('twice');
    const script = join(dir, 'train.js');
    writeFileSync(script, foreverScript());
    const sum = sha256(script);
    const args = ['run', 'train.js', '--steps', '40', '--json', '--out', 'runs'];
    const [a, b] = await Promise.all([gradscope(args, { cwd: dir, timeoutMs: 30_000 }), gradscope(args, { cwd: dir, timeoutMs: 30_000 })]);
    const docs = [a, b].map((r) => {
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as RunJson;
      assert.equal(doc.exit.reason, 'step-limit');
      assert.equal(doc.steps, 40);
      return doc;
    });
    const files = runFilesIn(join(dir, 'runs'));
    assert.equal(files.length, 2, files.join(', '));
    assert.deepEqual([...new Set(docs.map((d) => d.runFile))].sort(), files, 'each run names its own file');
    const ids = new Set<string>();
    for (const f of files) {
      const back = readRunFile(f);
      assert.equal(back.error, null, `${f}: ${back.error?.message}`);
      assert.equal(back.exit?.reason, 'step-limit');
      assert.equal(back.store.stepCount, 40);
      ids.add(back.meta.runId);
    }
    assert.equal(ids.size, 2);
    assert.equal(sha256(script), sum);
    assert.deepEqual(await leftRunning(a.mark), []);
    assert.deepEqual(await leftRunning(b.mark), []);
  });
});
