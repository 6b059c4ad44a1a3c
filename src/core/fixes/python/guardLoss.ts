// guard-loss for PyTorch: an epsilon in the argument of every unguarded torch log/sqrt, on the
// finding's line when there are some there, else in the whole file: `torch.log(p)` →
// `torch.log(p + 1e-7)`, `u.sqrt()` → `(u + 1e-12).sqrt()`. An argument already `x + <number or
// eps>`, a clamp or a maximum counts as guarded. Divisions are left alone (as in the TF.js engine).
import type { Finding } from '../../analysis/finding';
import { GUARD_EPSILON } from '../guardLoss';
import type { TextEdit } from '../types';
import { argumentsOf, calls, dotted, isPrimary, lineOf, resolve, type Bindings, type SyntaxNode } from './syntax';
import type { Outcome } from './types';

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

export function computeGuardLossPy(root: SyntaxNode, b: Bindings, finding: Finding): Outcome {
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
