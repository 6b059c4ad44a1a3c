// guard-loss for PyTorch: an epsilon in the argument of every unguarded torch log/sqrt, on the
// finding's line when there are some there, else in the whole file: `torch.log(p)` →
// `torch.log(p + 1e-7)`, `u.sqrt()` → `(u + 1e-12).sqrt()`. An argument already `x + <number or
// eps>`, a clamp or a maximum counts as guarded. Divisions are left alone (as in the TF.js engine).
//
// With a located cause (locate-nan: `finding.cause`), only the operation on the cause's line is
// guarded, with the guard that matches it: an epsilon inside the log, a clamp from below before the
// sqrt (`torch.sqrt(x.clamp(min=1e-12))`: the clamp's zero gradient below eps stops the infinite
// derivative), an epsilon in the denominator of a division (`a / (b + 1e-7)`; the run showed it is 0).
import type { Finding, FindingCause } from '../../analysis/finding';
import { guardKindOf } from '../../analysis/nanCause';
import type { Outcome, TextEdit } from '../types';
import { DIV_EPSILON, GUARD_EPSILON } from '../policy';
import { argumentsOf, calls, dotted, isPrimary, lineOf, resolve, walk, type Bindings, type SyntaxNode } from './syntax';

type Site = { op: 'log' | 'sqrt'; operand: SyntaxNode; form: 'function' | 'method'; line: number };

const SAFE_ARITH = new Set(['+', '-', '*', '/', '//', '%', '@', '**']);

function unparen(n: SyntaxNode): SyntaxNode {
  let x = n;
  while (x.type === 'parenthesized_expression' && x.namedChildCount === 1) x = x.namedChild(0)!;
  return x;
}

function isGuarded(e: SyntaxNode, b: Bindings): boolean {
  const x = unparen(e);
  if (x.type === 'integer' || x.type === 'float') return true;
  if (x.type === 'binary_operator' && x.childForFieldName('operator')?.text === '+') {
    const lit = (n: SyntaxNode | null): boolean =>
      !!n && (n.type === 'float' || n.type === 'integer' || (n.type === 'identifier' && /eps/i.test(n.text)) || (n.type === 'attribute' && /eps/i.test(n.text)));
    return lit(x.childForFieldName('right')) || lit(x.childForFieldName('left'));
  }
  if (x.type === 'call') {
    const f = x.childForFieldName('function');
    const last = f?.type === 'attribute' ? f.childForFieldName('attribute')!.text : (f?.text ?? '');
    // Clamped from below: clamp/clip/clamp_min(x, eps), maximum(x, eps), max(x, eps).
    return ['clamp', 'clip', 'clamp_min', 'maximum'].includes(last) || (last === 'max' && argumentsOf(x).positional.length + (f?.type === 'attribute' && !resolve(f, b) ? 1 : 0) === 2);
  }
  return false;
}

function findSites(root: SyntaxNode, b: Bindings): Site[] {
  const out: Site[] = [];
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    if (!f) continue;
    const q = resolve(f, b);
    const { positional, all } = argumentsOf(c);
    if (q === 'torch.log' || q === 'torch.sqrt') {
      if (positional[0]) out.push({ op: q === 'torch.log' ? 'log' : 'sqrt', operand: positional[0], form: 'function', line: lineOf(c) });
    } else if (f.type === 'attribute' && all.length === 0) {
      const name = f.childForFieldName('attribute')!.text;
      const recv = f.childForFieldName('object')!;
      const rd = dotted(recv);
      if (
        (name === 'log' || name === 'sqrt') &&
        !(rd && rd.length === 1 && ['math', 'np', 'numpy', 'logger', 'logging', 'torch'].includes(rd[0])) &&
        !(rd && resolve(recv, b)?.startsWith('torch'))
      ) {
        out.push({ op: name, operand: recv, form: 'method', line: lineOf(f.childForFieldName('attribute')!) });
      }
    }
  }
  return out;
}

/** Denominators of the divisions on `line`: `a / b`, `torch.div(a, b)`, `a.div(b)`, `torch.true_divide(a, b)`. */
function denominatorsOn(root: SyntaxNode, b: Bindings, line: number): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  walk(root, (n) => {
    if (n.endPosition.row + 1 < line || n.startPosition.row + 1 > line) return false;
    if (n.type === 'binary_operator' && n.childForFieldName('operator')?.text === '/' && lineOf(n.childForFieldName('operator')!) === line) {
      const r = n.childForFieldName('right');
      if (r) out.push(r);
    } else if (n.type === 'call') {
      const f = n.childForFieldName('function');
      const q = f ? resolve(f, b) : null;
      const { positional } = argumentsOf(n);
      if ((q === 'torch.div' || q === 'torch.true_divide') && positional[1]) out.push(positional[1]);
      else if (f?.type === 'attribute' && ['div', 'true_divide'].includes(f.childForFieldName('attribute')!.text) && !q && positional[0]) out.push(positional[0]);
    }
    return true;
  });
  return out;
}

function located(root: SyntaxNode, b: Bindings, cause: FindingCause): Outcome | null {
  const kind = guardKindOf(cause.op);
  const line = cause.line;
  const what = `${cause.op} on line ${line}`;
  if (kind === 'log' || kind === 'sqrt') {
    const sites = findSites(root, b).filter((s) => s.op === kind && s.line === line);
    if (sites.length === 0) return null;
    const todo = sites.filter((s) => !isGuarded(s.operand, b));
    if (todo.length === 0) return { ok: false, alreadyApplied: true, reason: `the ${kind} on line ${line} already has an epsilon or a clamp` };
    const edits: TextEdit[] = [];
    for (const s of todo) {
      const o = s.operand;
      const arith = o.type === 'binary_operator' && SAFE_ARITH.has(o.childForFieldName('operator')?.text ?? '');
      if (kind === 'log') {
        const eps = GUARD_EPSILON.log;
        if (s.form === 'function' && (isPrimary(o) || arith || o.type === 'unary_operator')) edits.push({ start: o.endIndex, end: o.endIndex, newText: ` + ${eps}` });
        else if (s.form === 'function') edits.push({ start: o.startIndex, end: o.endIndex, newText: `(${o.text}) + ${eps}` });
        else edits.push({ start: o.startIndex, end: o.endIndex, newText: `(${o.text} + ${eps})` });
      } else {
        const clamp = `.clamp(min=${GUARD_EPSILON.sqrt})`;
        if (isPrimary(o)) edits.push({ start: o.endIndex, end: o.endIndex, newText: clamp });
        else edits.push({ start: o.startIndex, end: o.endIndex, newText: `(${o.text})${clamp}` });
      }
    }
    const how = kind === 'log' ? `add ${GUARD_EPSILON.log} inside the log` : `clamp its argument to ≥ ${GUARD_EPSILON.sqrt} before the sqrt`;
    return { ok: true, title: `Guard the located ${what}: ${how}`, edits };
  }
  if (kind === 'div') {
    const dens = denominatorsOn(root, b, line);
    if (dens.length === 0) return null;
    const todo = dens.filter((d) => !isGuarded(d, b));
    if (todo.length === 0) return { ok: false, alreadyApplied: true, reason: `the denominator on line ${line} already has an epsilon or a clamp` };
    // A call's argument needs no parentheses; the right side of `/` does.
    const edits: TextEdit[] = todo.map((d) => ({
      start: d.startIndex,
      end: d.endIndex,
      newText: d.parent?.type === 'argument_list' ? `${d.text} + ${DIV_EPSILON}` : `(${d.text} + ${DIV_EPSILON})`,
    }));
    return { ok: true, title: `Guard the located ${what}: add ${DIV_EPSILON} to the denominator`, edits };
  }
  return null;
}

export function computeGuardLossPy(root: SyntaxNode, b: Bindings, finding: Finding): Outcome {
  // A located operation (locate-nan) is guarded on its own line; anything else falls back to the search below.
  const loc = finding.cause ? located(root, b, finding.cause) : null;
  if (loc) return loc;
  const all = findSites(root, b);
  if (all.length === 0)
    return { ok: false, reason: 'no torch log or sqrt in this file to guard (the NaN may come from a division, an op in another file, or log_softmax-free cross-entropy written by hand)' };
  const onLine = finding.source ? all.filter((s) => s.line === finding.source!.line) : [];
  const scope = onLine.length ? onLine : all;
  const todo = scope.filter((s) => !isGuarded(s.operand, b));
  if (todo.length === 0)
    return { ok: false, alreadyApplied: true, reason: `every log/sqrt ${onLine.length ? `on line ${finding.source!.line}` : 'in this file'} already has an epsilon or a clamp` };
  const edits: TextEdit[] = [];
  for (const s of todo) {
    const eps = GUARD_EPSILON[s.op];
    const o = s.operand;
    const arith = o.type === 'binary_operator' && SAFE_ARITH.has(o.childForFieldName('operator')?.text ?? '');
    if (s.form === 'function' && (isPrimary(o) || arith || o.type === 'unary_operator')) edits.push({ start: o.endIndex, end: o.endIndex, newText: ` + ${eps}` });
    else if (s.form === 'function') edits.push({ start: o.startIndex, end: o.endIndex, newText: `(${o.text}) + ${eps}` });
    else edits.push({ start: o.startIndex, end: o.endIndex, newText: `(${o.text} + ${eps})` });
  }
  const lines = [...new Set(todo.map((s) => s.line))];
  const ops = [...new Set(todo.map((s) => s.op))].join('/');
  return { ok: true, title: `Guard ${todo.length} ${ops} call${todo.length > 1 ? 's' : ''} with an epsilon (line${lines.length > 1 ? 's' : ''} ${lines.join(', ')})`, edits };
}
