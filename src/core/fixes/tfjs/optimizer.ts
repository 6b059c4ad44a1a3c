// Finding the optimizer a script creates: `tf.train.sgd(0.1)` (any binding of tfjs, named imports
// too), `new tf.AdamOptimizer(…)`, and Keras-style strings, `model.compile({ optimizer: 'adam' })`.
import * as ts from 'typescript';
import type { Finding } from '../../analysis/finding';
import { calleeName, dottedName, isTfMember, isTfNamespace, lineOf, walk, type TfBindings } from './ast';

/** tf.train factory → its optimizer class. */
export const OPTIMIZER_FACTORIES: Record<string, string> = {
  sgd: 'SGDOptimizer',
  momentum: 'MomentumOptimizer',
  rmsprop: 'RMSPropOptimizer',
  adam: 'AdamOptimizer',
  adadelta: 'AdadeltaOptimizer',
  adamax: 'AdamaxOptimizer',
  adagrad: 'AdagradOptimizer',
};
const CLASS_TO_FACTORY = new Map(Object.entries(OPTIMIZER_FACTORIES).map(([f, c]) => [c, f]));

/** tf.train's defaults when the learning rate is left out (sgd, momentum, rmsprop, adagrad require one). */
export const DEFAULT_LR: Record<string, number | undefined> = { adam: 0.001, adadelta: 0.001, adamax: 0.002 };

/**
 * What `model.compile({ optimizer: 'name' })` builds in tfjs-layers (getOptimizer): the factory and
 * its learning rate. Written out explicitly when a remedy must construct the optimizer.
 */
export const STRING_OPTIMIZERS: Record<string, { factory: string; lr: number; extra?: string }> = {
  sgd: { factory: 'sgd', lr: 0.01 },
  adam: { factory: 'adam', lr: 0.001 },
  adagrad: { factory: 'adagrad', lr: 0.01 },
  adadelta: { factory: 'adadelta', lr: 1, extra: ', 0.95' },
  adamax: { factory: 'adamax', lr: 0.002 },
  rmsprop: { factory: 'rmsprop', lr: 0.001 },
};

export type OptimizerSite =
  | {
      kind: 'call';
      node: ts.CallExpression | ts.NewExpression;
      /** The tf.train factory name (sgd, adam, …). */
      factory: string;
      line: number;
    }
  | {
      kind: 'string';
      node: ts.StringLiteralLike;
      /** The string as written ('adam', 'SGD'). */
      name: string;
      line: number;
    };

export function describeSite(sf: ts.SourceFile, s: OptimizerSite): string {
  if (s.kind === 'string') return `optimizer '${s.name}' on line ${s.line}`;
  const callee = s.node.expression.getText(sf);
  return `${s.node.kind === ts.SyntaxKind.NewExpression ? 'new ' : ''}${callee} on line ${s.line}`;
}

export function findOptimizerSites(sf: ts.SourceFile, b: TfBindings): OptimizerSite[] {
  const out: OptimizerSite[] = [];
  walk(sf, (n) => {
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && ts.isIdentifier(n.expression.name)) {
      const f = n.expression.name.text;
      if (f in OPTIMIZER_FACTORIES && isTfMember(n.expression.expression, b, 'train')) {
        out.push({ kind: 'call', node: n, factory: f, line: lineOf(sf, n.expression.name.getStart(sf)) });
      }
    } else if (ts.isNewExpression(n)) {
      const d = dottedName(n.expression);
      const cls = d?.[d.length - 1];
      const factory = cls ? CLASS_TO_FACTORY.get(cls) : undefined;
      if (!factory || !d) return;
      const viaNamespace = d.length === 2 && isTfNamespace((n.expression as ts.PropertyAccessExpression).expression, b);
      const viaNamed = d.length === 1 && b.named.get(d[0]) === d[0];
      if (viaNamespace || viaNamed) out.push({ kind: 'call', node: n, factory, line: lineOf(sf, calleeName(n)!.getStart(sf)) });
    } else if (ts.isPropertyAssignment(n) && ts.isIdentifier(n.name) && n.name.text === 'optimizer' && ts.isStringLiteralLike(n.initializer)) {
      // Only inside compile({ … }) (or an object later passed to it: `const cfg = { optimizer: 'adam' }`).
      const name = n.initializer.text;
      if (name.toLowerCase() in STRING_OPTIMIZERS || name in { Adagrad: 1, Adadelta: 1, Adam: 1, Adamax: 1, RMSProp: 1, SGD: 1 }) {
        out.push({ kind: 'string', node: n.initializer, name, line: lineOf(sf, n.initializer.getStart(sf)) });
      }
    }
  });
  return out;
}

/**
 * The optimizer a remedy should edit: the one on the finding's line when there is one there, else
 * the only one in the file. Several and none on the finding's line: ambiguous, refused.
 */
export function pickOptimizer(sf: ts.SourceFile, b: TfBindings, finding: Finding): { site: OptimizerSite } | { reason: string } {
  const sites = findOptimizerSites(sf, b);
  if (sites.length === 0) {
    return { reason: "no optimizer is created in this file (looked for tf.train.<optimizer>(…), new tf.<Name>Optimizer(…) and compile({ optimizer: '<name>' }))" };
  }
  if (finding.source) {
    const here = sites.filter((s) => s.line === finding.source!.line);
    if (here.length === 1) return { site: here[0] };
  }
  if (sites.length === 1) return { site: sites[0] };
  return { reason: `${sites.length} optimizers are created in this file (${sites.map((s) => describeSite(sf, s)).join(', ')}): GradScope cannot tell which one trains the model` };
}

/** The learning-rate argument of an optimizer call (undefined when it is left out). */
export function lrArgument(site: Extract<OptimizerSite, { kind: 'call' }>): ts.Expression | undefined {
  const a = site.node.arguments?.[0];
  return a && !ts.isSpreadElement(a) ? a : undefined;
}
