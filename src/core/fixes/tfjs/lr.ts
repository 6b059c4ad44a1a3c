// lower-lr (÷10 to ÷1000, from the run) and raise-lr (×10 to ×1000, from the run): the learning rate of the optimizer
// the script creates. A literal is rewritten; a named constant with a literal initializer is edited
// where it is declared; any other expression is divided/multiplied in place; a left-out learning
// rate (Adam's default) or a Keras-style string optimizer is written out explicitly.
import * as ts from 'typescript';
import type { Finding } from '../../analysis/finding';
import type { Outcome } from '../types';
import { lowerFactor, raiseFactor } from '../policy';
import { formatNumber } from '../text';
import { isPrimaryLike, lineOf, type Style, type TfBindings } from './ast';
import { DEFAULT_LR, STRING_OPTIMIZERS, describeSite, lrArgument, pickOptimizer } from './optimizer';

/** A text for the string optimizer's construction: `tf.train.adam(0.001)`. */
export function constructStringOptimizer(name: string, lr: number, trainExpr: string): string {
  const spec = STRING_OPTIMIZERS[name.toLowerCase()];
  return `${trainExpr}.${spec.factory}(${formatNumber(lr)}${spec.extra ?? ''})`;
}

/** How to write `tf.train` in this file (the namespace, a named import of train, or a new import). */
export function trainExpression(b: TfBindings): string | null {
  if (b.namespaces.length) return `${b.namespaces[0]}.train`;
  const t = b.named.get('train');
  return t ?? null;
}

/** The declaration of `name` visible from `from`: a const/let/var in an enclosing block or the file. */
export function findDeclaration(from: ts.Node, name: string): ts.VariableDeclaration | ts.ParameterDeclaration | null {
  for (let n: ts.Node | undefined = from.parent; n; n = n.parent) {
    if (ts.isFunctionLike(n)) {
      for (const p of n.parameters) if (ts.isIdentifier(p.name) && p.name.text === name) return p;
    }
    const stmts = ts.isBlock(n) || ts.isSourceFile(n) || ts.isModuleBlock(n) || ts.isCaseClause(n) || ts.isDefaultClause(n) ? n.statements : null;
    if (!stmts) continue;
    for (const s of stmts) {
      if (!ts.isVariableStatement(s)) continue;
      for (const d of s.declarationList.declarations) if (ts.isIdentifier(d.name) && d.name.text === name) return d;
    }
  }
  return null;
}

export function computeLr(sf: ts.SourceFile, b: TfBindings, style: Style, finding: Finding, direction: 'lower' | 'raise'): Outcome {
  const picked = pickOptimizer(sf, b, finding);
  if ('reason' in picked) return { ok: false, reason: picked.reason };
  const site = picked.site;
  const factor = direction === 'lower' ? lowerFactor(finding) : raiseFactor(finding);
  const op = direction === 'lower' ? '/' : '*';
  const scale = (x: number): number => (direction === 'lower' ? x / factor : x * factor);
  const verb = `${direction === 'lower' ? 'Lower' : 'Raise'} the learning rate ${direction === 'lower' ? '÷' : '×'}${factor}`;
  const where = describeSite(sf, site);

  if (site.kind === 'string') {
    const spec = STRING_OPTIMIZERS[site.name.toLowerCase()];
    const train = trainExpression(b);
    if (!spec || !train) return { ok: false, reason: `the optimizer is given as the string '${site.name}' and this file has no TensorFlow.js binding to construct it with` };
    const lr = scale(spec.lr);
    return {
      ok: true,
      title: `${verb}: ${formatNumber(spec.lr)} → ${formatNumber(lr)} (constructs ${train}.${spec.factory} for ${where})`,
      edits: [{ start: site.node.getStart(sf), end: site.node.end, newText: constructStringOptimizer(site.name, lr, train) }],
    };
  }

  const arg = lrArgument(site);
  if (!arg) {
    const def = DEFAULT_LR[site.factory];
    if (def === undefined) return { ok: false, reason: `${where} has no learning rate argument` };
    const lr = scale(def);
    const open = site.node.arguments ? site.node.arguments.pos : site.node.end;
    const edit = site.node.arguments ? { start: open, end: open, newText: formatNumber(lr) } : { start: site.node.end, end: site.node.end, newText: `(${formatNumber(lr)})` };
    return { ok: true, title: `${verb}: ${formatNumber(def)} (the default) → ${formatNumber(lr)} (${where})`, edits: [edit] };
  }

  const literal = numericValue(arg);
  if (literal !== null) {
    const lr = scale(literal.value);
    return {
      ok: true,
      title: `${verb}: ${arg.getText(sf)} → ${formatNumber(lr, literal.node.getText(sf))} (${where})`,
      edits: [{ start: arg.getStart(sf), end: arg.end, newText: formatNumber(lr, literal.node.getText(sf)) }],
    };
  }

  if (ts.isIdentifier(arg)) {
    const decl = findDeclaration(arg, arg.text);
    const init = decl && ts.isVariableDeclaration(decl) ? decl.initializer : undefined;
    const v = init ? numericValue(init) : null;
    if (init && v) {
      const lr = scale(v.value);
      const declLine = lineOf(sf, decl!.getStart(sf));
      return {
        ok: true,
        title: `${verb}: ${arg.text} = ${init.getText(sf)} → ${formatNumber(lr, v.node.getText(sf))} (declared on line ${declLine}, used by ${where})`,
        edits: [{ start: init.getStart(sf), end: init.end, newText: formatNumber(lr, v.node.getText(sf)) }],
      };
    }
  }

  // Any other expression: scale it where it is passed.
  const text = arg.getText(sf);
  const wrapped = isPrimaryLike(arg) ? text : `(${text})`;
  return {
    ok: true,
    title: `${verb}: ${text} → ${wrapped} ${op} ${factor} (${where})`,
    edits: [{ start: arg.getStart(sf), end: arg.end, newText: `${wrapped} ${op} ${factor}` }],
  };
}

/** The value of a numeric literal (or a parenthesized one); null otherwise. */
export function numericValue(e: ts.Expression): { value: number; node: ts.NumericLiteral } | null {
  let x = e;
  while (ts.isParenthesizedExpression(x)) x = x.expression;
  if (ts.isNumericLiteral(x)) return { value: Number(x.text), node: x };
  return null;
}
