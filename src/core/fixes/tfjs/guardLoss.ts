// guard-loss: NaN that appears at once comes from log(0), sqrt(0) (whose derivative is infinite) or
// 0/0 in the loss or a custom op. The fix adds a small epsilon to the argument of every unguarded
// tfjs log and sqrt: `tf.log(p)` → `tf.log(p.add(1e-7))`, `u.sqrt()` → `u.add(1e-12).sqrt()`. The
// calls on the finding's line when there are any there (the line of the op), otherwise every one in
// the file (a global finding, or one that points at the layer whose gradient went NaN first).
// Divisions are left alone: adding an epsilon to a denominator of either sign is not a safe edit.
//
// With a located cause (locate-nan: `finding.cause`), only the operation on the cause's line is
// guarded, with the guard that matches it: an epsilon inside the log, a floor before the sqrt
// (`x.maximum(1e-12).sqrt()`: the floor's zero gradient below eps stops the infinite derivative), an
// epsilon in the denominator of the division the re-run showed was 0 (`a.div(b.add(1e-7))`).
import * as ts from 'typescript';
import type { Finding, FindingCause } from '../../analysis/finding';
import { guardKindOf } from '../../analysis/nanCause';
import type { Outcome, TextEdit } from '../types';
import { DIV_EPSILON, GUARD_EPSILON } from '../policy';
import { isPrimaryLike, isTfNamespace, lineOf, type TfBindings } from './ast';

type Site = { op: 'log' | 'sqrt'; operand: ts.Expression; form: 'function' | 'method'; line: number };

function isGuarded(e: ts.Expression, b: TfBindings): boolean {
  let x = e;
  while (ts.isParenthesizedExpression(x)) x = x.expression;
  if (ts.isNumericLiteral(x)) return true;
  if (!ts.isCallExpression(x) || !ts.isPropertyAccessExpression(x.expression)) return false;
  const m = x.expression.name.text;
  // Clipped from below, or an epsilon already added (sigmoid/exp are not guards: they reach 0 in float32).
  if (m === 'clipByValue' || m === 'maximum') return true;
  if (m === 'add') {
    const args = x.arguments;
    const lit = (a: ts.Expression | undefined): boolean => !!a && (ts.isNumericLiteral(a) || (ts.isIdentifier(a) && /eps/i.test(a.text)));
    return isTfNamespace(x.expression.expression, b) ? lit(args[1]) || lit(args[0]) : lit(args[0]);
  }
  return false;
}

function findSites(sf: ts.SourceFile, b: TfBindings): Site[] {
  const out: Site[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression)) {
      const name = n.expression.name.text;
      if (name === 'log' || name === 'sqrt') {
        const recv = n.expression.expression;
        const line = lineOf(sf, n.expression.name.getStart(sf));
        if (isTfNamespace(recv, b) && n.arguments.length >= 1 && !ts.isSpreadElement(n.arguments[0])) out.push({ op: name, operand: n.arguments[0], form: 'function', line });
        else if (!isTfNamespace(recv, b) && n.arguments.length === 0 && !(ts.isIdentifier(recv) && ['console', 'Math', 'logger'].includes(recv.text)))
          out.push({ op: name, operand: recv, form: 'method', line });
      }
    } else if (
      ts.isCallExpression(n) &&
      ts.isIdentifier(n.expression) &&
      (b.named.get('log') === n.expression.text || b.named.get('sqrt') === n.expression.text) &&
      n.arguments.length >= 1
    ) {
      const op = b.named.get('log') === n.expression.text ? 'log' : 'sqrt';
      out.push({ op, operand: n.arguments[0], form: 'function', line: lineOf(sf, n.getStart(sf)) });
    }
    ts.forEachChild(n, visit);
  };
  ts.forEachChild(sf, visit);
  return out;
}

/** `.add(eps)` / `.maximum(eps)` after an operand, parenthesised when it is not a primary expression. */
function suffixEdits(sf: ts.SourceFile, e: ts.Expression, suffix: string): TextEdit[] {
  if (isPrimaryLike(e)) return [{ start: e.end, end: e.end, newText: suffix }];
  const start = e.getStart(sf);
  return [
    { start, end: start, newText: '(' },
    { start: e.end, end: e.end, newText: `)${suffix}` },
  ];
}

/** Denominators of the tfjs divisions on `line`: `tf.div(a, b)`, `a.div(b)` (and realDiv/divNoNan are left alone: they are guarded or rare). */
function denominatorsOn(sf: ts.SourceFile, b: TfBindings, line: number): ts.Expression[] {
  const out: ts.Expression[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && n.expression.name.text === 'div' && lineOf(sf, n.expression.name.getStart(sf)) === line) {
      const ns = isTfNamespace(n.expression.expression, b);
      const den = ns ? n.arguments[1] : n.arguments[0];
      if (den && !ts.isSpreadElement(den)) out.push(den);
    } else if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && b.named.get('div') === n.expression.text && lineOf(sf, n.getStart(sf)) === line && n.arguments[1]) {
      out.push(n.arguments[1]);
    }
    ts.forEachChild(n, visit);
  };
  ts.forEachChild(sf, visit);
  return out;
}

function located(sf: ts.SourceFile, b: TfBindings, cause: FindingCause): Outcome | null {
  const kind = guardKindOf(cause.op);
  const line = cause.line;
  const what = `${cause.op} on line ${line}`;
  if (kind === 'log' || kind === 'sqrt') {
    const sites = findSites(sf, b).filter((s) => s.op === kind && s.line === line);
    if (sites.length === 0) return null;
    const todo = sites.filter((s) => !isGuarded(s.operand, b));
    if (todo.length === 0) return { ok: false, alreadyApplied: true, reason: `the ${kind} on line ${line} already has an epsilon or a clip` };
    const suffix = kind === 'log' ? `.add(${GUARD_EPSILON.log})` : `.maximum(${GUARD_EPSILON.sqrt})`;
    const how = kind === 'log' ? `add ${GUARD_EPSILON.log} inside the log` : `floor its argument at ${GUARD_EPSILON.sqrt} before the sqrt`;
    return { ok: true, title: `Guard the located ${what}: ${how}`, edits: todo.flatMap((s) => suffixEdits(sf, s.operand, suffix)) };
  }
  if (kind === 'div') {
    const dens = denominatorsOn(sf, b, line);
    if (dens.length === 0) return null;
    const todo = dens.filter((d) => !isGuarded(d, b));
    if (todo.length === 0) return { ok: false, alreadyApplied: true, reason: `the denominator on line ${line} already has an epsilon or a clip` };
    return { ok: true, title: `Guard the located ${what}: add ${DIV_EPSILON} to the denominator`, edits: todo.flatMap((d) => suffixEdits(sf, d, `.add(${DIV_EPSILON})`)) };
  }
  return null;
}

export function computeGuardLoss(sf: ts.SourceFile, b: TfBindings, finding: Finding): Outcome {
  // A located operation (locate-nan) is guarded on its own line; anything else falls back to the search below.
  const loc = finding.cause ? located(sf, b, finding.cause) : null;
  if (loc) return loc;
  const all = findSites(sf, b);
  if (all.length === 0) return { ok: false, reason: 'no tfjs log or sqrt in this file to guard (the NaN may come from a division or an op in another file)' };
  const onLine = finding.source ? all.filter((s) => s.line === finding.source!.line) : [];
  const scope = onLine.length ? onLine : all;
  const todo = scope.filter((s) => !isGuarded(s.operand, b));
  if (todo.length === 0)
    return { ok: false, alreadyApplied: true, reason: `every log/sqrt ${onLine.length ? `on line ${finding.source!.line}` : 'in this file'} already has an epsilon or a clip` };
  const edits: TextEdit[] = [];
  for (const s of todo) {
    const eps = GUARD_EPSILON[s.op];
    const start = s.operand.getStart(sf);
    if (isPrimaryLike(s.operand)) edits.push({ start: s.operand.end, end: s.operand.end, newText: `.add(${eps})` });
    else {
      edits.push({ start, end: start, newText: '(' });
      edits.push({ start: s.operand.end, end: s.operand.end, newText: `).add(${eps})` });
    }
  }
  const lines = [...new Set(todo.map((s) => s.line))];
  const ops = [...new Set(todo.map((s) => s.op))].join('/');
  return { ok: true, title: `Guard ${todo.length} ${ops} call${todo.length > 1 ? 's' : ''} with an epsilon (line${lines.length > 1 ? 's' : ''} ${lines.join(', ')})`, edits };
}
