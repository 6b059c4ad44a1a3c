// Fault row 3: a full disk under the run folder. The run goes on, but its recording ends: the CLI
// says so (summary, JSON warning `recording-failed`, the run line), exits 8, and the run file keeps
// its first steps readable (cut back to its last whole frame, no exit record).
//
// The disk is real where the machine allows it: a 48 KiB tmpfs mounted for the case (root with
// CAP_SYS_ADMIN, as in CI containers here). Elsewhere the same failure is injected at the writer's
// boundary: a --require preload makes fs.write fail with ENOSPC once the run file passes 48 KiB
// (the run file is the only file the CLI writes with fs.write). The case's name says which ran.
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../src/core/report/runJson';
import { describeRunRead, readRunFile } from '../../src/core/store/runFile';
import { caseDir, copyExample, gradscope, hasStack, leftRunning, mountTmpfs, runFilesIn, sha256 } from './support';

const LIMIT_KIB = 48;

/** fs.write fails with ENOSPC past LIMIT bytes of any *.gsrun file (the injected disk). */
const PRELOAD = `
const fs = require('node:fs');
const limit = ${LIMIT_KIB * 1024};
const runFds = new Set();
const open = fs.openSync;
fs.openSync = function (p, ...rest) { const fd = open.call(this, p, ...rest); if (String(p).endsWith('.gsrun')) runFds.add(fd); return fd; };
const write = fs.write;
fs.write = function (fd, buf, off, len, pos, cb) {
  if (runFds.has(fd) && typeof pos === 'number' && pos + len > limit) {
    const room = Math.max(0, limit - pos);
    if (room > 0) return write.call(this, fd, buf, off, room, pos, cb);
    const e = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    return process.nextTick(cb, e);
  }
  return write.apply(this, arguments);
};
`;

describe('fault 3: a full disk ends the recording, loudly', () => {
  const mount = mountTmpfs(LIMIT_KIB);
  const how = mount ? `a real ${LIMIT_KIB} KiB tmpfs` : `ENOSPC injected at the writer's boundary past ${LIMIT_KIB} KiB`;

  it(`run on a full disk (${how}): exit 8, warned in the summary and the JSON, the run file keeps its first steps readable`, async (t) => {
    const dir = caseDir('fulldisk');
    const script = copyExample('exploding-mlp.js', dir, 'train.js');
    const sum = sha256(script);
    const outDir = mount ? mount.dir : join(dir, 'runs');
    const nodeArgs: string[] = [];
    if (!mount) {
      const preload = join(dir, 'enospc.cjs');
      writeFileSync(preload, PRELOAD);
      nodeArgs.push('--require', preload);
    }
    t.after(() => mount?.unmount());

    const r = await gradscope(['run', 'train.js', '--out', outDir, '--json'], { cwd: dir, nodeArgs });
    assert.equal(r.code, 8, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    // Live, on stderr, when it happens:
    assert.match(r.stderr, /warning: the run file could not be written \(no space left on device \(ENOSPC\)\): recording stopped after \d+ step\(s\); the run goes on/);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.steps, 80, 'the run itself went on to its end, observed in memory');
    const w = doc.warnings.find((x) => x.code === 'recording-failed');
    assert.ok(w, JSON.stringify(doc.warnings));
    assert.equal(w.level, 'warning');
    const kept = w.count ?? -1;
    assert.ok(kept > 0 && kept < 80, `steps kept: ${kept}`);
    assert.match(doc.exit.message ?? '', new RegExp(`the run file holds only ${kept} of 80 steps \\(no space left on device \\(ENOSPC\\)\\)`));

    // What was written stays readable: the first `kept` steps, cut at a frame boundary, no exit record.
    const [file] = runFilesIn(outDir);
    assert.ok(file, 'the run file is there');
    assert.ok(statSync(file).size <= LIMIT_KIB * 1024);
    const back = readRunFile(file);
    assert.equal(back.error, null, String(back.error));
    assert.equal(back.truncated, false, 'cut back to the last whole frame');
    assert.equal(back.exit, null, 'no exit record after a write error');
    assert.equal(back.store.stepCount, kept, 'exactly the steps the warning says');
    assert.match(describeRunRead(back).notRead.join('\n'), /no exit record/);
    assert.equal(sha256(script), sum, "the user's script is untouched");
    assert.deepEqual(await leftRunning(r.mark), []);
  });

  it(`the readable summary says it on the run line and as a warning (${how})`, async (t) => {
    const dir = caseDir('fulldisk-summary');
    copyExample('exploding-mlp.js', dir, 'train.js');
    const m = mountTmpfs(LIMIT_KIB);
    t.after(() => m?.unmount());
    const nodeArgs: string[] = [];
    if (!m) {
      writeFileSync(join(dir, 'enospc.cjs'), PRELOAD);
      nodeArgs.push('--require', join(dir, 'enospc.cjs'));
    }
    const r = await gradscope(['run', 'train.js', '--out', m ? m.dir : join(dir, 'runs')], { cwd: dir, nodeArgs });
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stdout, /^run {7}completed, 80 steps; the run file holds only \d+ of 80 steps/m);
    assert.match(r.stdout, /^warning {3}the run file could not be written \(no space left on device \(ENOSPC\)\): recording stopped after \d+ step\(s\)/m);
    assert.deepEqual(await leftRunning(r.mark), []);
  });
});
