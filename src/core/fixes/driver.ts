// The fix driver: (source text, finding, remedy) in, text edits out, the same for every language.
// A language (tfjs/, python/) parses, counts syntax errors and rewrites; the driver picks the
// language by the file's name and the rewrite by the remedy, applies it, refuses an edit that would
// not parse, sorts the edits and echoes the document version. Pure: no vscode, no file I/O; the
// parsers that need loading (Tree-sitter's wasm) are loaded by the shell and handed in.
// The editor's code actions, the panel's remedy buttons and `gradscope fix` all call computeFix.
import { isRemedyId, type Finding, type Remedy, type RemedyId } from '../analysis/finding';
import { isPythonFile, pythonLanguage, pythonUnavailable, type PythonParser } from './python/index';
import { applyEdits } from './text';
import { tfjsLanguage } from './tfjs/index';
import type { ComputeFix, FixContext, FixLanguage, FixResult, Outcome, TextEdit } from './types';

/** The parsers the shell has loaded (those the core cannot load itself: it reads no file). */
export interface FixParsers {
  /** The Python parser once loaded; null while it loads; the Error when it could not be loaded. */
  python(): PythonParser | Error | null;
}

export interface RemedyOption {
  remedy: Remedy;
  result: FixResult;
}

export interface FixEngine {
  computeFix: ComputeFix;
  /**
   * Every ranked remedy of the finding, in rank order, with what applying it would do: `result.ok`
   * for the ones that can be applied to this text, `alreadyApplied` for the ones already there, a
   * reason for the rest. A code-action provider offers the `ok` ones, best first.
   */
  availableRemedies: (text: string, finding: Finding, ctx?: FixContext) => RemedyOption[];
}

/** One language behind the driver, its tree types hidden: what the engine calls. */
interface Fixer {
  fix(text: string, file: string, finding: Finding, remedy: RemedyId, ctx: FixContext): FixResult;
  /** Whether `after` has more syntax errors than `before`. */
  breaks(before: string, after: string, file: string): boolean;
}

/** The driver over one language: parse → count errors → rewrite → apply → re-parse → sort → echo the version. */
export function fixer<T, S>(lang: FixLanguage<T, S>): Fixer {
  const errorsOf = (text: string, file: string): number => {
    const tree = lang.parse(text, file);
    try {
      return lang.errorCount(tree);
    } finally {
      lang.release?.(tree);
    }
  };
  return {
    fix(text, file, finding, remedy, ctx) {
      let out: Outcome;
      let before: number;
      let tree: T | undefined;
      try {
        tree = lang.parse(text, file);
        before = lang.errorCount(tree);
        out = lang.rewrites[remedy](lang.read(tree, text), finding, ctx);
      } catch (e) {
        return { ok: false, remedy, reason: `internal error computing the fix: ${(e as Error).message}` };
      } finally {
        if (tree !== undefined) lang.release?.(tree);
      }
      if (!out.ok) return { ok: false, remedy, reason: out.reason, ...(out.alreadyApplied ? { alreadyApplied: true } : {}) };
      const after = applyEdits(text, out.edits);
      // A fix must never break the file: the text after must parse with no more errors than before.
      if (errorsOf(after, file) > before) return { ok: false, remedy, reason: `internal error: the edit would not parse (${out.title})` };
      const edits = [...out.edits].sort((a, b) => a.start - b.start);
      return { ok: true, remedy, title: out.title, edits, after, ...versionOf(ctx) };
    },
    breaks: (before, after, file) => errorsOf(after, file) > errorsOf(before, file),
  };
}

/** Remedies that act on one layer: a finding of several layers (`locations`) gets them on each. */
const PER_LAYER: ReadonlySet<RemedyId> = new Set<RemedyId>(['he-init', 'glorot-init', 'zero-bias-init']);

const TFJS = fixer(tfjsLanguage);

export function createFixEngine(parsers: FixParsers): FixEngine {
  let python: { parser: PythonParser; fixer: Fixer } | null = null;

  /** The language of `file` (by its name), or why its fixes cannot be computed now. */
  const fixerFor = (file: string): Fixer | string => {
    if (!isPythonFile(file)) return TFJS;
    const p = parsers.python();
    if (p === null || p instanceof Error) return pythonUnavailable(p);
    if (python?.parser !== p) python = { parser: p, fixer: fixer(pythonLanguage(p)) };
    return python.fixer;
  };

  const computeOne = (text: string, finding: Finding, remedy: string, ctx: FixContext): FixResult => {
    const file = ctx.file || finding.source?.file || 'script.js';
    // A finding located in another file (a layer built in a helper module) does not apply to this text.
    if (finding.source && ctx.file && !samePath(finding.source.file, ctx.file)) {
      return { ok: false, remedy, reason: `the finding points at ${finding.source.file}, not at ${ctx.file}` };
    }
    const lang = fixerFor(file);
    if (typeof lang === 'string') return { ok: false, remedy, reason: lang };
    if (!isRemedyId(remedy)) return { ok: false, remedy, reason: `GradScope has no automatic edit for the remedy '${remedy}'` };
    return lang.fix(text, file, finding, remedy, ctx);
  };

  /**
   * A per-layer remedy on every affected layer of the finding: three dead ReLU layers need three
   * zero biases (one does not cure the run). Each layer's edit is computed on the same text as for a
   * finding of that layer alone; layers it refuses (or already has) are left as they are, and the
   * title says how many were edited. Edits that overlap (one statement building two layers) keep the
   * primary layer's.
   */
  const everyLayer = (text: string, finding: Finding, remedy: RemedyId, ctx: FixContext, primary: FixResult, others: NonNullable<Finding['locations']>): FixResult => {
    const parts: { line: number; result: Extract<FixResult, { ok: true }> }[] = [];
    if (primary.ok) parts.push({ line: finding.source?.line ?? 0, result: primary });
    for (const l of others) {
      const sub: Finding = { ...finding, source: { file: l.file, line: l.line, column: l.column }, layer: l.layer, tensors: l.tensors, locations: undefined };
      const r = computeOne(text, sub, remedy, ctx);
      if (r.ok) parts.push({ line: l.line, result: r });
    }
    if (parts.length === 0) return primary;
    const edits: TextEdit[] = [];
    const used: typeof parts = [];
    const same = (a: TextEdit, b: TextEdit): boolean => a.start === b.start && a.end === b.end && a.newText === b.newText;
    for (const p of parts) {
      // (an edit another layer already makes, e.g. the init loop they share rewritten once, counts as made)
      const fresh = p.result.edits.filter((e) => !edits.some((o) => same(e, o)));
      // (insertions at one point are all kept, in order: each adds its own statement there)
      if (fresh.some((e) => edits.some((o) => (e.start < o.end && o.start < e.end) || (e.start === e.end && o.start < e.start && e.start < o.end)))) continue;
      edits.push(...fresh);
      used.push(p);
    }
    if (used.length === 1) return parts[0].result;
    const file = ctx.file || finding.source?.file || 'script.js';
    const after = applyEdits(text, edits);
    // (each part parsed on its own; together they must parse too; a part is ok, so the language is loaded)
    const lang = fixerFor(file);
    if (typeof lang === 'string' || lang.breaks(text, after, file)) return parts[0].result;
    const lines = used.map((u) => u.line).sort((a, b) => a - b);
    const head = used[0].result.title;
    const title = `${head}; the same in the ${used.length - 1} other affected layer${used.length > 2 ? 's' : ''} (line${lines.length > 2 ? 's' : ''} ${lines.filter((l) => l !== used[0].line).join(', ')})`;
    return { ok: true, remedy, title, edits: [...edits].sort((a, b) => a.start - b.start), after, ...versionOf(ctx) };
  };

  const computeFix: ComputeFix = (text, finding, remedy, ctx) => {
    const one = computeOne(text, finding, remedy, ctx);
    const file = ctx.file || finding.source?.file || '';
    const others = (finding.locations ?? []).filter(
      (l) => (!file || samePath(l.file, file)) && !(finding.source && l.line === finding.source.line && l.column === finding.source.column && samePath(l.file, finding.source.file)),
    );
    if (!isRemedyId(remedy) || !PER_LAYER.has(remedy) || others.length === 0) return one;
    return everyLayer(text, finding, remedy, ctx, one, others);
  };

  return {
    computeFix,
    availableRemedies: (text, finding, ctx = { file: finding.source?.file ?? '' }) => finding.remedies.map((remedy) => ({ remedy, result: computeFix(text, finding, remedy.id, ctx) })),
  };
}

/** `ctx.version`, echoed in a result: the document version its offsets belong to. */
function versionOf(ctx: FixContext): { version?: number } {
  return ctx.version !== undefined ? { version: ctx.version } : {};
}

function samePath(a: string, b: string): boolean {
  const norm = (p: string): string => p.replace(/\\/g, '/').replace(/^([a-z]):/, (_, d: string) => d.toUpperCase() + ':');
  return norm(a) === norm(b);
}
