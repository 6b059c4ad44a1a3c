// The fix engine: (source text, finding, remedy) in, text edits out, computed on the TypeScript
// compiler's syntax tree (it parses JS and TS). Edits insert or replace the least text they can and
// never reformat: the user's formatting and comments stay as they were. Pure: no vscode, no Node.
// The editor's code actions, the panel's remedy buttons and `gradscope fix` all call computeFix.
import type { Finding, Remedy, RemedyId } from '../analysis/finding';
import { applyEdits, parse, styleOf, syntaxErrors, tfBindings } from './ast';
import { computeClip } from './clip';
import { computeGuardLoss } from './guardLoss';
import { computeInit, computeZeroBias } from './init';
import { computeLowerClip } from './lowerClip';
import { computeLr } from './lr';
import { computeNormalizeInputs } from './normalizeInputs';
import { computePythonFix, isPythonFile, loadPythonParser } from './python/index';
import { parsePython } from './python/parser';
import { errorCount } from './python/syntax';
import type { ComputeFix, FixContext, FixResult, TextEdit } from './types';

export { applyEdits };

/**
 * Loads what computing a fix for `file` needs: the Python parser (wasm, asynchronous) for .py
 * files, nothing for JS/TS. Await it once before calling computeFix on a Python script; until it
 * has resolved, computeFix answers ok:false ("still loading") for .py files.
 */
export async function prepareFixes(file?: string): Promise<void> {
  if (file === undefined || isPythonFile(file)) await loadPythonParser();
}

/** The remedies this engine can compute (others get ok:false). */
export const SUPPORTED_REMEDIES = [
  'clip-global-norm',
  'he-init',
  'glorot-init',
  'lower-lr',
  'raise-lr',
  'guard-loss',
  'zero-bias-init',
  'lower-clip-threshold',
  'normalize-inputs',
] as const satisfies readonly RemedyId[];

type Outcome = { ok: true; title: string; edits: TextEdit[] } | { ok: false; reason: string; alreadyApplied?: boolean };

/** Remedies that act on one layer: a finding of several layers (`locations`) gets them on each. */
const PER_LAYER: ReadonlySet<RemedyId> = new Set<RemedyId>(['he-init', 'glorot-init', 'zero-bias-init']);

export const computeFix: ComputeFix = (text: string, finding: Finding, remedy: RemedyId, ctx: FixContext): FixResult => {
  const one = computeOne(text, finding, remedy, ctx);
  const file = ctx.file || finding.source?.file || '';
  const others = (finding.locations ?? []).filter(
    (l) => (!file || samePath(l.file, file)) && !(finding.source && l.line === finding.source.line && l.column === finding.source.column && samePath(l.file, finding.source.file)),
  );
  if (!PER_LAYER.has(remedy) || others.length === 0) return one;
  return everyLayer(text, finding, remedy, ctx, one, others);
};

/**
 * A per-layer remedy on every affected layer of the finding: three dead ReLU layers need three
 * zero biases (one does not cure the run). Each layer's edit is computed on the same text as for a
 * finding of that layer alone; layers it refuses (or already has) are left as they are, and the
 * title says how many were edited. Edits that overlap (one statement building two layers) keep the
 * primary layer's.
 */
function everyLayer(text: string, finding: Finding, remedy: RemedyId, ctx: FixContext, primary: FixResult, others: NonNullable<Finding['locations']>): FixResult {
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
  // (each part parsed on its own; together they must parse too)
  const broken = isPythonFile(file) ? pythonErrorCount(after) > pythonErrorCount(text) : syntaxErrors(parse(after, file)).length > syntaxErrors(parse(text, file)).length;
  if (broken) return parts[0].result;
  const lines = used.map((u) => u.line).sort((a, b) => a - b);
  const head = used[0].result.title;
  const title = `${head}; the same in the ${used.length - 1} other affected layer${used.length > 2 ? 's' : ''} (line${lines.length > 2 ? 's' : ''} ${lines.filter((l) => l !== used[0].line).join(', ')})`;
  return { ok: true, remedy, title, edits: [...edits].sort((a, b) => a.start - b.start), after, ...(ctx.version !== undefined ? { version: ctx.version } : {}) };
}

function pythonErrorCount(text: string): number {
  return errorCount(parsePython(text).rootNode);
}

function computeOne(text: string, finding: Finding, remedy: RemedyId, ctx: FixContext): FixResult {
  const file = ctx.file || finding.source?.file || 'script.js';
  // A finding located in another file (a layer built in a helper module) does not apply to this text.
  if (finding.source && ctx.file && !samePath(finding.source.file, ctx.file)) {
    return { ok: false, remedy, reason: `the finding points at ${finding.source.file}, not at ${ctx.file}` };
  }
  // Python (PyTorch) scripts: the Tree-sitter engine in ./python.
  if (isPythonFile(file)) return computePythonFix(text, finding, remedy, ctx);
  let out: Outcome;
  let sfErrors = 0;
  try {
    const sf = parse(text, file);
    sfErrors = syntaxErrors(sf).length;
    const b = tfBindings(sf);
    const style = styleOf(sf);
    switch (remedy) {
      case 'clip-global-norm':
        out = computeClip(sf, b, style, finding, ctx);
        break;
      case 'he-init':
        out = computeInit(sf, b, style, finding, 'he');
        break;
      case 'glorot-init':
        out = computeInit(sf, b, style, finding, 'glorot');
        break;
      case 'lower-lr':
        out = computeLr(sf, b, style, finding, 'lower');
        break;
      case 'raise-lr':
        out = computeLr(sf, b, style, finding, 'raise');
        break;
      case 'guard-loss':
        out = computeGuardLoss(sf, b, finding);
        break;
      case 'zero-bias-init':
        out = computeZeroBias(sf, b, style, finding);
        break;
      case 'lower-clip-threshold':
        out = computeLowerClip(sf, finding, ctx);
        break;
      case 'normalize-inputs':
        out = computeNormalizeInputs(sf, b, finding);
        break;
      default:
        out = { ok: false, reason: `GradScope has no automatic edit for the remedy '${remedy}'` };
    }
  } catch (e) {
    return { ok: false, remedy, reason: `internal error computing the fix: ${(e as Error).message}` };
  }
  if (!out.ok) return { ok: false, remedy, reason: out.reason, ...(out.alreadyApplied ? { alreadyApplied: true } : {}) };
  const after = applyEdits(text, out.edits);
  // A fix must never break the file: the text after must parse with no more errors than before.
  const afterErrors = syntaxErrors(parse(after, file)).length;
  if (afterErrors > sfErrors) return { ok: false, remedy, reason: `internal error: the edit would not parse (${out.title})` };
  const edits = [...out.edits].sort((a, b) => a.start - b.start);
  return { ok: true, remedy, title: out.title, edits, after, ...(ctx.version !== undefined ? { version: ctx.version } : {}) };
}

export interface RemedyOption {
  remedy: Remedy;
  result: FixResult;
}

/**
 * Every ranked remedy of the finding, in rank order, with what applying it would do: `result.ok`
 * for the ones that can be applied to this text, `alreadyApplied` for the ones already there, a
 * reason for the rest. A code-action provider offers the `ok` ones, best first.
 */
export function availableRemedies(text: string, finding: Finding, ctx: FixContext = { file: finding.source?.file ?? '' }): RemedyOption[] {
  return finding.remedies.map((remedy) => ({ remedy, result: computeFix(text, finding, remedy.id, ctx) }));
}

function samePath(a: string, b: string): boolean {
  const norm = (p: string): string => p.replace(/\\/g, '/').replace(/^([a-z]):/, (_, d: string) => d.toUpperCase() + ':');
  return norm(a) === norm(b);
}
