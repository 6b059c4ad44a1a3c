// normalize-inputs for PyTorch: standardise the model's input tensor once it is built, with one new
// line `x = (x - x.mean(0)) / (x.std(0) + 1e-8)` just before the statement that trains on it (in the
// block where x is built: a tensor built once is standardised once, before the loop; what the script
// derives from the raw x in between, such as targets, stays as written), or at the top of the loop
// whose target it is (`for xb, yb in loader:`).
//
// Why there and not a normalisation layer in the model: the line that builds the input is a plain
// assignment in every script style (a tensor built once, a batch built in the loop, a DataLoader's loop
// target), so one inserted statement fits them all, leaves the model's architecture and state_dict as
// they were (a checkpoint still loads), and standardises each feature on its own. A `BatchNorm1d`
// would need the feature count and a different module for sequences (B, T, F); a `LayerNorm` at the
// input normalises each sample across its features, which leaves one feature in the thousands
// dominating the others. Computed on a tensor built once, the statistics are the whole data set's;
// on a batch built in the loop, the batch's (the same thing a BatchNorm does in training).
//
// Which tensor: the first positional argument of a call of the model (a variable whose
// `.parameters()` the file reads, e.g. for its optimizer): `model(x)`, `model(x[idx])`,
// `model(x.to(device))`, and its last assignment before
// that call (or the loop whose target it is).
import type { Finding } from '../../analysis/finding';
import { NORMALIZE_EPSILON } from '../policy';
import type { Outcome } from '../types';
import { afterStatement, argumentsOf, calls, indentAt, lineOf, lineStartAt, named, sharesLine, statementOf, walk, type Layout, type SyntaxNode } from './syntax';

/** Variables the file treats as models: `m.parameters()` / `m.named_parameters()` appear. */
function modelNames(root: SyntaxNode): Set<string> {
  const out = new Set<string>();
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    if (f?.type !== 'attribute') continue;
    const attr = f.childForFieldName('attribute')?.text;
    const obj = f.childForFieldName('object');
    if ((attr === 'parameters' || attr === 'named_parameters') && obj?.type === 'identifier') out.add(obj.text);
  }
  return out;
}

/** Identifiers bound by an assignment's left side (`x`, `x, y`, `(x, y)`). */
function boundNames(left: SyntaxNode | null): string[] {
  if (!left) return [];
  if (left.type === 'identifier') return [left.text];
  if (['pattern_list', 'tuple_pattern', 'list_pattern', 'tuple', 'list'].includes(left.type)) return named(left).flatMap(boundNames);
  return [];
}

/**
 * The variable a model's argument reads: `x`, `x[idx]` (a minibatch of x), `x.to(device)`, `x.float()`:
 * standardising x standardises each of these. Null for anything else.
 */
function inputVariable(arg: SyntaxNode | undefined): string | null {
  let n: SyntaxNode | null = arg ?? null;
  for (let depth = 0; n && depth < 4; depth++) {
    if (n.type === 'identifier') return n.text;
    if (n.type === 'subscript') n = n.childForFieldName('value');
    else if (n.type === 'call' && n.childForFieldName('function')?.type === 'attribute') n = n.childForFieldName('function')!.childForFieldName('object');
    else return null;
  }
  return null;
}

interface Site {
  /** The statement after which the new line goes, or the loop whose body it opens. */
  after: SyntaxNode;
  loop: boolean;
}

/** The last assignment to `name` before `before`, or the loop that binds it around `before`. */
function definitionOf(root: SyntaxNode, name: string, before: SyntaxNode): Site | null {
  let best: Site | null = null;
  walk(root, (n) => {
    if (n.startIndex >= before.startIndex) return false;
    if (n.type === 'assignment' && boundNames(n.childForFieldName('left')).includes(name)) {
      const stmt = statementOf(n);
      if (stmt && (!best || stmt.startIndex >= best.after.startIndex)) best = { after: stmt, loop: false };
    } else if (n.type === 'for_statement' && n.endIndex > before.startIndex && boundNames(n.childForFieldName('left')).includes(name)) {
      if (!best || n.startIndex >= best.after.startIndex) best = { after: n, loop: true };
    }
    return true;
  });
  return best;
}

/** The normalisation already written for `name` (a `.std(` on it in an assignment to it). */
function alreadyNormalised(root: SyntaxNode, name: string): boolean {
  let found = false;
  walk(root, (n) => {
    if (found) return false;
    if (n.type === 'assignment' && boundNames(n.childForFieldName('left')).includes(name)) {
      const right = n.childForFieldName('right')?.text.replace(/\s+/g, '') ?? '';
      if (right.includes(`${name}.std(`) || right.includes(`${name}.mean(`) || /\bF\.normalize\(|\bnormalize\(/.test(right)) found = true;
    }
    return true;
  });
  return found;
}

export function computeNormalizeInputsPy(root: SyntaxNode, layout: Layout, _finding: Finding): Outcome {
  const models = modelNames(root);
  if (models.size === 0) return { ok: false, reason: 'no model found in this file (a variable whose .parameters() it reads)' };
  let call: SyntaxNode | null = null;
  let input = '';
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    const v = f?.type === 'identifier' && models.has(f.text) ? inputVariable(argumentsOf(c).positional[0]) : null;
    if (v) {
      call = c;
      input = v;
      break;
    }
  }
  if (!call) return { ok: false, reason: `no call of the model (${[...models].join(', ')}) with a named input tensor, e.g. model(x), in this file` };
  if (alreadyNormalised(root, input)) return { ok: false, alreadyApplied: true, reason: `${input} is already standardised in this file` };
  const site = definitionOf(root, input, call);
  if (!site) return { ok: false, reason: `${input} (the model's input, line ${lineOf(call)}) is not built in this file: standardise it where it is built` };
  const line = `${input} = (${input} - ${input}.mean(0)) / (${input}.std(0) + ${NORMALIZE_EPSILON})  # GradScope: standardise the inputs`;
  let pos: number;
  let prefix = '';
  let indent: string;
  let at: string;
  if (site.loop) {
    const body = site.after.childForFieldName('body');
    const first = body ? named(body)[0] : null;
    if (!body || !first || first.startPosition.row === site.after.startPosition.row)
      return { ok: false, reason: `the loop over ${input} (line ${lineOf(site.after)}) has its body on one line` };
    indent = indentAt(layout.text, first.startIndex);
    pos = lineStartAt(layout.text, first.startIndex);
    at = `at the start of the loop over ${input} (line ${lineOf(site.after)})`;
  } else {
    // Just before the statement (in the block where x is built) that trains on it: what is derived
    // from x in between (targets computed from the raw features) stays as written.
    // (Tree-sitter hands out a new object per access: nodes are compared by position.)
    const block = site.after.parent;
    const same = (p: SyntaxNode | null): boolean => !!p && !!block && p.startIndex === block.startIndex && p.endIndex === block.endIndex && p.type === block.type;
    let user: SyntaxNode | null = call;
    while (user && !same(user.parent)) user = user.parent;
    if (user && user.startIndex > site.after.endIndex && sharesLine(site.after) === null) {
      pos = lineStartAt(layout.text, user.startIndex);
      indent = indentAt(layout.text, user.startIndex);
      at = `before line ${lineOf(user)} (${input} is built on line ${lineOf(site.after)})`;
    } else {
      ({ pos, prefix } = afterStatement(layout, site.after));
      indent = indentAt(layout.text, site.after.startIndex);
      at = `after line ${lineOf(site.after)}, where ${input} is built`;
    }
  }
  return { ok: true, title: `Standardise the model's input ${input} ${at}: mean 0, std 1 per feature`, edits: [{ start: pos, end: pos, newText: `${prefix}${indent}${line}${layout.eol}` }] };
}
