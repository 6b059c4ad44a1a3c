// File-system errors in a few words, for one-line messages (the host's folders, the run file's
// writer). Pure: it reads only the error's `code` and `message`.

const FS_REASONS: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder',
  ENOENT: 'no such file or folder',
  EEXIST: 'it already exists',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the name is too long',
  EIO: 'input/output error',
  ENXIO: 'no reader at the other end (not a regular file)',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
};

/** "read-only file system (EROFS)"; for an error without a known code, its message without Node's syscall and path. */
export function describeFsError(e: unknown): string {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string' && FS_REASONS[code]) return `${FS_REASONS[code]} (${code})`;
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '') || 'unknown error';
}
