// Fault row 7: run-folder and script errors end with one clear line and a documented exit code
// (never a stack trace and exit 70): --out that is a file, under a file, on a read-only file
// system (a real read-only tmpfs where the machine can mount one); a missing script and a folder
// named like a script are usage errors (2). Nothing runs: no run file, no process left.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { caseDir, copyExample, gradscope, hasStack, leftRunning, mountTmpfs, type CliResult } from './support';

const dir = caseDir('runfolder');
copyExample('exploding-mlp.js', dir, 'train.js');

async function refused(r: CliResult, code: number, message: RegExp): Promise<void> {
  assert.equal(r.code, code, r.stderr);
  assert.ok(!hasStack(r.stderr), `no stack trace:\n${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line:\n${r.stderr}`);
  assert.match(r.stderr.trim(), message);
  assert.equal(r.stdout, '', 'no summary: nothing ran');
  assert.deepEqual(await leftRunning(r.mark), []);
}

describe('fault 7: run-folder and script errors are one line with a documented exit code', () => {
  it('--out names a file: exit 4, the file untouched', async () => {
    writeFileSync(join(dir, 'afile'), 'mine\n');
    const r = await gradscope(['run', 'train.js', '--out', 'afile'], { cwd: dir });
    await refused(r, 4, /^gradscope: cannot use the run folder \(--out\): .*afile is a regular file, not a folder; nothing was run$/);
  });

  it('--out lies under a file: exit 4, the file named', async () => {
    writeFileSync(join(dir, 'bfile'), 'mine\n');
    const r = await gradscope(['run', 'train.js', '--out', 'bfile/runs/deep'], { cwd: dir });
    await refused(r, 4, /bfile \(in the path .*bfile\/runs\/deep\) is a regular file, not a folder; nothing was run$/);
  });

  it('--out on a read-only file system: exit 4, no run file', async (t) => {
    const ro = mountTmpfs(64, { readOnly: true });
    let out: string;
    if (ro) {
      t.after(() => ro.unmount());
      out = join(ro.dir, 'runs');
    } else if (process.getuid?.() !== 0) {
      // Not root: a folder without write permission is read-only for us.
      out = join(dir, 'locked', 'runs');
      mkdirSync(join(dir, 'locked'));
      chmodSync(join(dir, 'locked'), 0o555);
    } else {
      t.skip('root cannot be kept out by permissions and this machine does not allow a read-only mount');
      return;
    }
    const r = await gradscope(['run', 'train.js', '--out', out], { cwd: dir });
    await refused(r, 4, /cannot use the run folder \(--out\): cannot create the folder .*runs: (read-only file system \(EROFS\)|permission denied \(EACCES\)); nothing was run$/);
    assert.equal(existsSync(out), false);
  });

  it('a read-only --report folder is refused before the run starts (exit 4, no run file)', async (t) => {
    const ro = mountTmpfs(64, { readOnly: true });
    if (!ro) {
      t.skip('needs a read-only mount');
      return;
    }
    t.after(() => ro.unmount());
    const out = join(dir, 'report-runs');
    const r = await gradscope(['run', 'train.js', '--out', out, '--report', join(ro.dir, 'r.html')], { cwd: dir });
    await refused(r, 4, /cannot write the report \(--report\): cannot write into the folder .*: read-only file system \(EROFS\); nothing was run$/);
    assert.deepEqual(existsSync(out) ? readdirSync(out) : [], []);
  });

  it('a missing script is a usage error (exit 2)', async () => {
    const r = await gradscope(['run', 'nope.js', '--out', 'runs-missing'], { cwd: dir });
    await refused(r, 2, /^gradscope: script not found: .*nope\.js$/);
    assert.equal(existsSync(join(dir, 'runs-missing')), false, 'no run folder made for a run that cannot start');
  });

  it('a folder named x.js is refused as a script (exit 2), for run and for fix', async () => {
    mkdirSync(join(dir, 'x.js'));
    const r = await gradscope(['run', 'x.js', '--out', 'runs-x'], { cwd: dir });
    await refused(r, 2, /^gradscope: .*x\.js is a folder, not a script$/);
    const f = await gradscope(['fix', 'x.js', '--dry-run'], { cwd: dir });
    await refused(f, 2, /^gradscope: .*x\.js is a folder, not a script$/);
  });

  it('a script type GradScope cannot run is a usage error (exit 2)', async () => {
    writeFileSync(join(dir, 'notes.txt'), 'hello\n');
    const r = await gradscope(['run', 'notes.txt', '--out', 'runs-txt'], { cwd: dir });
    await refused(r, 2, /^gradscope: don't know how to run .*notes\.txt/);
  });
});
