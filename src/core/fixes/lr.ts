// lower-lr (÷10 to ÷1000, from the run) and raise-lr (×10 to ×1000, from the run): the learning rate of the optimizer
// the script creates. A literal is rewritten; a named constant with a literal initializer is edited
// where it is declared; any other expression is divided/multiplied in place; a left-out learning
// rate (Adam's default) or a Keras-style string optimizer is written out explicitly.
import * as ts from 'typescript';
import type { Finding } from '../analysis/finding';
import { formatNumber, isPrimaryLike, lineOf, type Style, type TfBindings } from './ast';
import { DEFAULT_LR, STRING_OPTIMIZERS, describeSite, lrArgument, pickOptimizer } from './optimizer';
import type { TextEdit } from './types';

export type LrOutcome = { ok: true; title: string; edits: TextEdit[] } | { ok: false; reason: string };

/** The healthy update/weight ratio raise-lr aims at (mid-range of DeepDiagnosis's [1e-5, 1e-1]). */
export const RAISE_TARGET_RATIO = 1e-3;

/**
 * raise-lr's factor: the power of ten that brings the run's median update ratio (evidence
 * `medianRatio` of a low update-ratio finding) up to about 1e-3, between ×10 and ×1000; ×10 when
 * the run gave no ratio. lr-tiny (SGD 1e-6, ratio 7.5e-6): ×1000 → 1e-3, which trains normally
 * (×10 only leaves the detector's range; the loss still does not move).
 */
export function raiseFactor(finding: Finding): number {
  const r = finding.evidence.medianRatio;
  if (typeof r !== 'number' || !(r > 0) || !Number.isFinite(r)) return 10;
  const p = Math.ceil(Math.log10(RAISE_TARGET_RATIO / r) - 1e-9);
  return 10 ** Math.min(3, Math.max(1, p));
}

/** The update/weight ratio lower-lr aims at or below (the top of the healthy range; DeepDiagnosis's 1e-1 is where it flags). */
export const LOWER_TARGET_RATIO = 1e-2;

/**
 * lower-lr's factor: the power of ten that brings the run's measured update ratio (evidence
 * `firstUpdateRatio` of an exploding finding blamed on the learning rate, or `medianRatio` of a high
 * update-ratio finding) down to 1e-2 or below, between ÷10 and ÷1000; ÷10 when the run gave no ratio
 * or a small one. examples/torch/exploding_lr.py (SGD lr 0.9, first update 87% of the weights): ÷100
 * → 0.009, which trains; ÷10 (0.09, first update 17%) still explodes by step 3.
 */
export function lowerFactor(finding: Finding): number {
  const r = finding.kind === 'update-ratio' ? finding.evidence.medianRatio : finding.evidence.firstUpdateRatio;
  if (typeof r !== 'number' || !(r > 0) || !Number.isFinite(r)) return 10;
  const p = Math.ceil(Math.log10(r / LOWER_TARGET_RATIO) - 1e-9);
  return 10 ** Math.min(3, Math.max(1, p));
}

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

export function computeLr(sf: ts.SourceFile, b: TfBindings, style: Style, finding: Finding, direction: 'lower' | 'raise'): LrOutcome {
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
