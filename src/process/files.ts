// The host's own file access outside the run file: folders it creates (--out, --report's folder),
// the script it runs, the files a fix reads and writes. Two rules, both from faults seen in the field:
//
// - Open only regular files. Opening a FIFO blocks until a writer appears (forever, with the event
//   loop stuck, so Ctrl-C never runs its handler); a device can stream without end. Every open here
//   is O_NONBLOCK, then fstat decides: anything but a regular file is refused with a clear message.
// - Never `mkdirSync(…, { recursive: true })` on a path we did not check: Node's recursive mkdir spins
//   at 100 % CPU under /proc (mkdir gives ENOENT for a parent that stat says exists, and it retries
//   forever). ensureDir walks up to the nearest existing folder itself and creates one level at a time.
import { accessSync, closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readSync, realpathSync, renameSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { describeFsError } from '../core/util/fsErrors';

let tmpCounter = 0;

/** A file or folder the host cannot use, with one line that says why (no stack needed). */
export class HostFileError extends Error {
  override readonly name = 'HostFileError';
  constructor(
    message: string,
    readonly path: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** What a non-regular file is, for messages. */
export function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return st.isFile() ? 'a regular file' : 'not a regular file';
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ENOTDIR: a file sits somewhere in the path; the walk up finds it and names it.
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new HostFileError(`cannot use ${path}: ${describeFsError(e)}`, path, code);
  }
}

/**
 * Makes sure `dir` is a folder the host can write into, creating it (and missing parents) one level
 * at a time. Throws HostFileError with a one-line reason: a file in the way, a read-only or full
 * file system, no permission, a place where folders cannot be made (/proc).
 */
export function ensureDir(dir: string): string {
  const target = resolve(dir);
  const missing: string[] = [];
  let at = target;
  for (;;) {
    const st = statOrNull(at);
    if (st) {
      if (!st.isDirectory()) {
        const what = at === target ? `${target} is ${kindOf(st)}, not a folder` : `${at} (in the path ${target}) is ${kindOf(st)}, not a folder`;
        throw new HostFileError(what, target, 'ENOTDIR');
      }
      break;
    }
    const up = dirname(at);
    if (up === at) break;
    missing.unshift(at);
    at = up;
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statOrNull(d)?.isDirectory()) continue; // made meanwhile
      // /proc and other virtual file systems answer ENOENT for a parent that exists.
      const why = code === 'ENOENT' ? 'folders cannot be created there (ENOENT)' : describeFsError(e);
      throw new HostFileError(`cannot create the folder ${d}: ${why}`, target, code);
    }
  }
  try {
    accessSync(target, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw new HostFileError(`cannot write into the folder ${target}: ${describeFsError(e)}`, target, (e as NodeJS.ErrnoException).code);
  }
  return target;
}

/**
 * Checks that `file` can be written as a regular file: its folder is made (ensureDir) and, if it
 * exists, it is a regular file (not a folder, a FIFO, a device). Throws HostFileError.
 */
export function checkWritableFile(file: string): string {
  const target = resolve(file);
  const st = statOrNull(target);
  if (st && !st.isFile()) throw new HostFileError(`${target} is ${kindOf(st)}, not a regular file`, target, st.isDirectory() ? 'EISDIR' : 'EINVAL');
  ensureDir(dirname(target));
  return target;
}

/** Opens `path` for reading only if it is a regular file (never blocks on a FIFO). Throws HostFileError. */
export function openRegularForRead(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw new HostFileError(`cannot open ${path}: ${describeFsError(e)}`, path, (e as NodeJS.ErrnoException).code);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new HostFileError(`${path} is ${kindOf(st)}, not a regular file`, path, 'EINVAL');
  }
  return fd;
}

/** Reads a regular file whole as UTF-8. Throws HostFileError (not a regular file, unreadable). */
export function readRegularText(path: string): string {
  const fd = openRegularForRead(path);
  try {
    const size = fstatSync(fd).size;
    const chunks: Buffer[] = [];
    let total = 0;
    // Read to EOF (the size is a hint: the file may grow while it is read).
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.max(64 * 1024, size - total + 1));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } catch (e) {
    if (e instanceof HostFileError) throw e;
    throw new HostFileError(`cannot read ${path}: ${describeFsError(e)}`, path, (e as NodeJS.ErrnoException).code);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `data` to `path` only if it is (or becomes) a regular file: an existing FIFO, device or
 * folder is refused without being opened. The text goes to a temporary file beside it first and is
 * renamed over it, so a full disk or a kill leaves the old file whole (its mode is kept). Throws
 * HostFileError.
 */
export function writeRegularFile(path: string, data: string | Uint8Array): void {
  const target = resolve(path);
  const st = statOrNull(target);
  if (st && !st.isFile()) throw new HostFileError(`${target} is ${kindOf(st)}, not a regular file`, target, 'EINVAL');
  const tmp = join(dirname(target), `.${basename(target)}.gradscope-${process.pid}-${tmpCounter++}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', st ? st.mode & 0o7777 : 0o666);
  } catch (e) {
    throw new HostFileError(`cannot write ${target}: ${describeFsError(e)}`, target, (e as NodeJS.ErrnoException).code);
  }
  let renamed = false;
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off, off);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, target);
    renamed = true;
  } catch (e) {
    throw new HostFileError(`cannot write ${target}: ${describeFsError(e)} (the file is unchanged)`, target, (e as NodeJS.ErrnoException).code);
  } finally {
    if (fd >= 0) closeSync(fd);
    if (!renamed) rmSync(tmp, { force: true });
  }
}

/** The path with symbolic links resolved, or the absolute path itself when it does not exist. */
export function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * Why `script` cannot be run, or null if it is a regular file: missing, a folder (a folder named
 * `x.js`), a FIFO, a device.
 */
export function scriptProblem(script: string): string | null {
  let st: Stats;
  try {
    st = statSync(script);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? `script not found: ${script}` : `cannot use the script ${script}: ${describeFsError(e)}`;
  }
  if (st.isDirectory()) return `${script} is a folder, not a script`;
  if (!st.isFile()) return `${script} is ${kindOf(st)}, not a script file`;
  return null;
}
