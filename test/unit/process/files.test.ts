// The host's guarded file access (src/process/files.ts) on real files, FIFOs and /proc.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkWritableFile, ensureDir, HostFileError, readRegularText, scriptProblem, writeRegularFile } from '../../../src/process/files';

const dir = mkdtempSync(join(tmpdir(), 'gs-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function fifo(name: string): string | null {
  const p = join(dir, name);
  try {
    execFileSync('mkfifo', [p], { stdio: 'ignore' });
    return p;
  } catch {
    return null;
  }
}

describe('ensureDir', () => {
  it('creates missing levels one at a time and returns the absolute folder', () => {
    const d = ensureDir(join(dir, 'a', 'b', 'c'));
    assert.ok(statSync(d).isDirectory());
  });

  it('names a file in the way', () => {
    writeFileSync(join(dir, 'f'), 'x');
    assert.throws(
      () => ensureDir(join(dir, 'f')),
      (e: unknown) => e instanceof HostFileError && /f is a regular file, not a folder$/.test(e.message),
    );
    assert.throws(() => ensureDir(join(dir, 'f', 'sub', 'deeper')), /f \(in the path .*deeper\) is a regular file, not a folder/);
  });

  it('fails at once under /proc instead of spinning (Node recursive mkdir loops there)', { skip: process.platform !== 'linux' }, () => {
    const t0 = Date.now();
    assert.throws(() => ensureDir('/proc/gradscope-unit/x/y'), /cannot create the folder \/proc\/gradscope-unit: folders cannot be created there \(ENOENT\)/);
    assert.ok(Date.now() - t0 < 1000);
  });

  it('refuses a folder it cannot write into', { skip: process.getuid?.() === 0 && 'root writes anywhere' }, () => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    assert.throws(() => ensureDir(ro), /cannot write into the folder .*permission denied \(EACCES\)/);
  });
});

describe('regular files only', () => {
  it('readRegularText refuses a FIFO without blocking', (t) => {
    const p = fifo('in.fifo');
    if (!p) return t.skip('mkfifo not available');
    assert.throws(() => readRegularText(p), /in\.fifo is a named pipe \(FIFO\), not a regular file/);
    assert.throws(() => readRegularText(dir), /is a folder, not a regular file/);
  });

  it('writeRegularFile refuses a FIFO and a folder, unopened', (t) => {
    const p = fifo('out.fifo');
    if (!p) return t.skip('mkfifo not available');
    assert.throws(() => writeRegularFile(p, 'x'), /out\.fifo is a named pipe \(FIFO\), not a regular file/);
    assert.throws(() => checkWritableFile(p), /not a regular file/);
    assert.throws(() => writeRegularFile(dir, 'x'), /is a folder, not a regular file/);
  });

  it('writeRegularFile replaces the text whole, keeps the mode, leaves no temporary file', () => {
    const p = join(dir, 'w', 'script.py');
    mkdirSync(join(dir, 'w'));
    writeFileSync(p, 'old old old old\n');
    chmodSync(p, 0o640);
    writeRegularFile(p, 'new\n');
    assert.equal(readFileSync(p, 'utf8'), 'new\n');
    assert.equal(statSync(p).mode & 0o777, 0o640);
    assert.deepEqual(readdirSync(join(dir, 'w')), ['script.py']);
  });

  it('scriptProblem: missing, a folder named like a script, a FIFO; null for a file', (t) => {
    assert.match(scriptProblem(join(dir, 'nope.js')) ?? '', /^script not found: /);
    mkdirSync(join(dir, 'x.js'));
    assert.match(scriptProblem(join(dir, 'x.js')) ?? '', /x\.js is a folder, not a script$/);
    writeFileSync(join(dir, 'ok.js'), '');
    assert.equal(scriptProblem(join(dir, 'ok.js')), null);
    const p = fifo('s.js');
    if (!p) return t.skip('mkfifo not available');
    assert.match(scriptProblem(p) ?? '', /is a named pipe \(FIFO\), not a script file/);
  });
});
