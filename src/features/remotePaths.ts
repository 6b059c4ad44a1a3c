// A remote run's source paths are the remote machine's (`/home/u/proj/models/net.py`): the editor's
// views need the workspace's copy of the same file. The longest tail of the remote path that exists
// under a workspace folder wins (`proj/models/net.py` before `models/net.py`); a bare file name alone
// is not enough (too many `train.py`s) unless its folder has the workspace folder's name; none: the
// file is not here, and the views say so. No `vscode` import: the folders are handed in (testable with node --test).
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

/** A mapper from remote paths to files under `folders`, with its answers cached (each path is looked up once). */
export function workspacePathMapper(folders: readonly string[]): (remote: string) => string | null {
  const cache = new Map<string, string | null>();
  return (remote) => {
    let hit = cache.get(remote);
    if (hit === undefined) {
      hit = findLocal(remote, folders);
      cache.set(remote, hit);
    }
    return hit;
  };
}

/**
 * The local file for `remote`: itself when it exists in a folder (same layout on both machines), else
 * the longest tail of at least two parts found under a folder, or under the folder that has the
 * tail's first part as its name (a workspace opened on the project itself).
 */
export function findLocal(remote: string, folders: readonly string[]): string | null {
  if (isFile(remote) && folders.some((f) => remote.startsWith(f.endsWith('/') ? f : `${f}/`))) return remote;
  const parts = remote.split(/[\\/]+/).filter(Boolean);
  for (let i = 0; i <= parts.length - 2; i++) {
    const tail = parts.slice(i);
    for (const f of folders) {
      // `proj/train.py` under the folder, or under the folder that is itself `proj`.
      const candidates = [join(f, ...tail), ...(tail[0] === basename(f) ? [join(f, ...tail.slice(1))] : [])];
      const hit = candidates.find(isFile);
      if (hit) return hit;
    }
  }
  return null;
}

function isFile(p: string): boolean {
  try {
    return existsSync(p) && statSync(p).isFile();
  } catch {
    return false;
  }
}
