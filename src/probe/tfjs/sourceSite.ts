// Finding "the user's own code" in a V8 stack: the first frame that is not Node's, not a package's
// (node_modules) and not the probe's. Stacks are captured as Error objects and formatted lazily:
// V8 records the frames when the Error is built (cheap); formatting, which applies source maps under
// --enable-source-maps (so a .ts script shows its .ts line), happens only for tensors that show up
// in a gradient.
import { existsSync } from 'node:fs';
import { findSourceMap } from 'node:module';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SourceLocation } from '../../core/protocol/messages';

// The probe's own frames: the bundle's folder (dist/probe/tfjs) and, once source maps are applied,
// the TypeScript sources it was built from.
const PROBE_DIRS = [dirname(__filename), join(dirname(__filename), '..', '..', '..', 'src', 'probe', 'tfjs')];

export interface StackFrame {
  fn: string;
  file: string;
  line: number;
  column: number;
}

// "    at fn (file:line:col)", "    at file:line:col", "    at async fn (file:line:col)",
// "    at new Foo (file:line:col)"; file may be a file:// URL.
const FRAME_RE = /^\s*at (?:(.*?) \()?(.+?):(\d+):(\d+)\)?$/;

export function parseStack(stack: string | undefined): StackFrame[] {
  if (!stack) return [];
  const out: StackFrame[] = [];
  for (const line of stack.split('\n')) {
    const m = FRAME_RE.exec(line);
    if (!m) continue;
    let file = m[2];
    if (file.startsWith('file://')) {
      try {
        file = fileURLToPath(file);
      } catch {
        continue;
      }
    }
    out.push({ fn: m[1] ?? '', file, line: Number(m[3]), column: Number(m[4]) });
  }
  return out;
}

const existsCache = new Map<string, boolean>();
function exists(file: string): boolean {
  let v = existsCache.get(file);
  if (v === undefined) {
    v = existsSync(file);
    if (existsCache.size < 10000) existsCache.set(file, v);
  }
  return v;
}

/**
 * A file that belongs to the user: absolute, on disk, not Node's, not in node_modules, not the
 * probe's. "On disk" matters for source-mapped stacks: tfjs ships source maps whose sources
 * (…/tfjs-layers/src/…) do not exist, and they would otherwise look like user files.
 */
export function isUserFile(file: string): boolean {
  if (!isAbsolute(file)) return false; // node:internal/…, native, eval, <anonymous>
  if (file.includes(`${sep}node_modules${sep}`)) return false;
  for (const d of PROBE_DIRS) if (file.startsWith(d + sep)) return false;
  return exists(file);
}

/**
 * The first user frame of a formatted stack (an error's, already source-mapped by Node).
 * `skipCtors` names constructors whose `new X` frames are skipped.
 */
export function firstUserFrame(stack: string | undefined, skipCtors?: ReadonlySet<string>): SourceLocation | null {
  for (const f of parseStack(stack)) {
    if (!isUserFile(f.file)) continue;
    if (skipCtors && f.fn.startsWith('new ') && skipCtors.has(f.fn.slice(4))) continue;
    return { file: f.file, line: f.line, column: f.column };
  }
  return null;
}

/**
 * Where a SyntaxError that Node raised compiling a file points, from the head of its stack: Node
 * writes `<file>:<line>`, the source line and a caret under the error, then the message (the stack
 * has no frame of that file: it never ran). Null for any other error, or a file not the user's.
 */
export function compileErrorSite(err: { name?: unknown; stack?: unknown }): SourceLocation | null {
  if (err.name !== 'SyntaxError' || typeof err.stack !== 'string') return null;
  const [head, , caret] = err.stack.split('\n');
  const m = /^(.+):(\d+)$/.exec(head ?? '');
  if (!m) return null;
  let file = m[1];
  if (file.startsWith('file://')) {
    try {
      file = fileURLToPath(file);
    } catch {
      return null;
    }
  }
  if (!isUserFile(file)) return null;
  const at = caret && /^\s*\^+\s*$/.test(caret) ? caret.indexOf('^') + 1 : 1;
  return { file, line: Number(m[2]), column: at };
}

/** A captured construction site: raw (generated-code) frames, mapped to sources only when needed. */
export type Site = StackFrame[];

interface CallSiteLike {
  getFileName(): string | undefined | null;
  getLineNumber(): number | null;
  getColumnNumber(): number | null;
  getFunctionName(): string | null;
  getTypeName(): string | null;
  isConstructor(): boolean;
}

/**
 * Captures the current stack as raw frames (file names of the code that actually ran, so a frame
 * of tfjs is recognisably in node_modules even when tfjs' source maps point elsewhere).
 */
export function captureSite(): Site {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be put back, never called here
  const prevPrepare = Error.prepareStackTrace;
  const prevLimit = Error.stackTraceLimit;
  const holder: { stack?: unknown } = {};
  try {
    Error.stackTraceLimit = 50;
    Error.prepareStackTrace = (_e, sites) => sites;
    Error.captureStackTrace(holder, captureSite);
    const sites = holder.stack as CallSiteLike[];
    const out: Site = [];
    for (const cs of sites) {
      let file = cs.getFileName() ?? '';
      if (file.startsWith('file://')) {
        try {
          file = fileURLToPath(file);
        } catch {
          continue;
        }
      }
      const line = cs.getLineNumber();
      const column = cs.getColumnNumber();
      if (!file || line === null || column === null) continue;
      const fn = cs.getFunctionName() ?? '';
      out.push({ fn: cs.isConstructor() ? `new ${fn}` : fn, file, line, column });
    }
    return out;
  } finally {
    Error.prepareStackTrace = prevPrepare;
    Error.stackTraceLimit = prevLimit;
  }
}

/** The first user frame of a captured site, mapped through the file's source map (a .ts line). */
export function firstUserFrameOfSite(site: Site, skipCtors?: ReadonlySet<string>): SourceLocation | null {
  for (const f of site) {
    if (!isUserFile(f.file)) continue;
    if (skipCtors && f.fn.startsWith('new ') && skipCtors.has(f.fn.slice(4))) continue;
    return mapFrame(f);
  }
  return null;
}

function mapFrame(f: StackFrame): SourceLocation {
  try {
    const sm = findSourceMap(f.file);
    const e = sm?.findEntry(f.line - 1, f.column - 1); // {} where nothing maps
    if (e && 'originalSource' in e && e.originalSource && typeof e.originalLine === 'number' && typeof e.originalColumn === 'number') {
      let file = e.originalSource;
      if (file.startsWith('file://')) file = fileURLToPath(file);
      else if (!isAbsolute(file)) file = resolve(dirname(f.file), file);
      return { file, line: e.originalLine + 1, column: e.originalColumn + 1 };
    }
  } catch {
    /* unmapped */
  }
  return { file: f.file, line: f.line, column: f.column };
}
