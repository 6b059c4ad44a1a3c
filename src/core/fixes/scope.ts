// Which files a fix may edit without asking. A run file is data from elsewhere: a file copied from
// another machine or crafted by someone can name any path as its script and in its source map, and
// a fix must not follow it out of the user's project. The CLI (`gradscope fix`) and the editor's
// Apply Fix / Verify Fix both ask this one rule, then ask the person (or refuse) when it says no.
//
// Allowed without asking, both must hold:
//   1. the file belongs to the run: it is the run's script, or a file under the script's folder
//      that the run's own source map names (a layer built in a module next to the script);
//   2. the run's script is vouched for: the person named it (the CLI's <script>, the editor's
//      Train & Inspect of an open file), or the file lies inside a root the person works in (the
//      current folder, a workspace folder).
// Pure: paths are compared as given, so callers pass absolute paths with symbolic links resolved
// (a link inside the project to a file outside it must not pass as inside).

export interface FixScopeFacts {
  /** The file the edit would change. */
  file: string;
  /** The run's training script. */
  script: string;
  /** The person named the script (a command-line argument, the editor's own run), rather than only a run file. */
  scriptNamedByUser: boolean;
  /** The files the run's source map names (its tensors' `source.file`). */
  sourceFiles: readonly string[];
  /** Folders edits may go into without asking: the current folder, the workspace folders. */
  roots: readonly string[];
  /** Compare paths case-insensitively (Windows, default macOS volumes). */
  caseInsensitive?: boolean;
}

export type FixScopeReason = 'not-in-run' | 'outside-roots';

export type FixScope = { allowed: true } | { allowed: false; reason: FixScopeReason; message: string };

const SEP = /[\\/]+/g;

function norm(p: string, ci: boolean): string {
  const s = p.replace(SEP, '/').replace(/\/$/, '');
  return ci ? s.toLowerCase() : s;
}

/** `child` is `parent` or lies below it (both absolute; separators `/` or `\`). */
export function isInside(child: string, parent: string, caseInsensitive = false): boolean {
  const c = norm(child, caseInsensitive);
  const p = norm(parent, caseInsensitive);
  if (p === '') return c.startsWith('/'); // the root folder holds every absolute path
  return c === p || c.startsWith(p + '/');
}

function folderOf(p: string): string {
  const s = p.replace(SEP, '/');
  const i = s.lastIndexOf('/');
  return i <= 0 ? s.slice(0, i + 1) : s.slice(0, i);
}

export function fixScope(f: FixScopeFacts): FixScope {
  const ci = f.caseInsensitive ?? false;
  const same = (a: string, b: string): boolean => norm(a, ci) === norm(b, ci);
  const isScript = same(f.file, f.script);
  const mapped = f.sourceFiles.some((s) => same(s, f.file));
  if (!isScript && !(mapped && isInside(f.file, folderOf(f.script), ci))) {
    return {
      allowed: false,
      reason: 'not-in-run',
      message: mapped ? `${f.file} is not the run's script and lies outside its folder (${folderOf(f.script)})` : `${f.file} is neither the run's script nor a file its source map names`,
    };
  }
  if (!f.scriptNamedByUser && !f.roots.some((r) => isInside(f.file, r, ci))) {
    return {
      allowed: false,
      reason: 'outside-roots',
      message: `${f.file} lies outside ${f.roots.length === 1 ? f.roots[0] : f.roots.length ? 'the workspace folders' : 'any open folder'}, and only the run file names it`,
    };
  }
  return { allowed: true };
}
