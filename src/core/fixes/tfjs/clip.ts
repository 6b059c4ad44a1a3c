// clip-global-norm: TF.js optimizers have no clipnorm option, so the fix inserts a small wrapper
// function once (after the imports) that overrides the optimizer's applyGradients to scale every
// gradient by maxNorm / globalNorm when the global norm is above maxNorm, and wraps the optimizer
// the script creates in it. model.fit and minimize both go through applyGradients, so one wrapper
// covers model.fit, minimize and applyGradients scripts.
import * as ts from 'typescript';
import type { Finding } from '../../analysis/finding';
import type { FixContext, Outcome, TextEdit } from '../types';
import { maxNormFromRun } from '../policy';
import { formatNumber } from '../text';
import { declaredNames, isTsFile, restyle, walk, type Style, type TfBindings } from './ast';
import { describeSite, pickOptimizer, type OptimizerSite } from './optimizer';
import { constructStringOptimizer, trainExpression } from './lr';
import { STRING_OPTIMIZERS } from './optimizer';

export const CLIP_FUNCTION = 'gradscopeClipByGlobalNorm';
/** The wrapper's source, in the file's style, using `tf` for the tfjs namespace. */
export function clipFunctionText(tf: string, typed: boolean, style: Style): string {
  const T = typed;
  const code = [
    `// GradScope (clip-global-norm): TF.js optimizers have no clipnorm option, so this wraps the`,
    `// optimizer's applyGradients (used by model.fit, minimize and direct calls) to scale all gradients`,
    `// by maxNorm / globalNorm whenever their global L2 norm is above maxNorm (as tf.clip_by_global_norm).`,
    `function ${CLIP_FUNCTION}${T ? `<O extends ${tf}.Optimizer>(optimizer: O, maxNorm: number): O` : '(optimizer, maxNorm)'} {`,
    `  const applyGradients = optimizer.applyGradients.bind(optimizer);`,
    `  optimizer.applyGradients = (grads${T ? `: ${tf}.NamedTensorMap | { name: string; tensor: ${tf}.Tensor }[]` : ''}) => {`,
    `    const list = Array.isArray(grads) ? grads : Object.keys(grads).map((name) => ({ name, tensor: grads[name] }));`,
    `    if (list.length === 0) return applyGradients(grads);`,
    `    const clipped = ${tf}.tidy(() => {`,
    `      // Divide by the largest |g| before squaring, so the norm cannot overflow float32.`,
    `      const top = ${tf}.maximum(${tf}.max(${tf}.stack(list.map((g) => ${tf}.max(${tf}.abs(g.tensor))))), 1e-30);`,
    `      const norm = ${tf}.mul(top, ${tf}.sqrt(${tf}.addN(list.map((g) => ${tf}.sum(${tf}.square(${tf}.div(g.tensor, top)))))));`,
    `      const scale = ${tf}.minimum(1, ${tf}.div(maxNorm, norm));`,
    `      return list.map((g) => ({ name: g.name, tensor: ${tf}.mul(g.tensor, scale) }));`,
    `    });`,
    `    try {`,
    `      if (Array.isArray(grads)) return applyGradients(clipped);`,
    `      const map${T ? `: ${tf}.NamedTensorMap` : ''} = {};`,
    `      for (const g of clipped) map[g.name] = g.tensor;`,
    `      return applyGradients(map);`,
    `    } finally {`,
    `      for (const g of clipped) g.tensor.dispose();`,
    `    }`,
    `  };`,
    `  return optimizer;`,
    `}`,
  ].join('\n');
  return restyle(code, style);
}

/** Where the wrapper goes: after the leading imports/requires (and 'use strict', a shebang, the header comment). */
function insertionLine(sf: ts.SourceFile): { pos: number; needsBlankAfter: boolean; needsBlankBefore: boolean } {
  const text = sf.text;
  let after: ts.Statement | null = null;
  for (const s of sf.statements) {
    const isImport = ts.isImportDeclaration(s) || ts.isImportEqualsDeclaration(s);
    const isRequire = ts.isVariableStatement(s) && s.declarationList.declarations.every((d) => !!d.initializer && /^\s*(await\s+)?(require|import)\s*\(/.test(d.initializer.getText(sf)));
    const isDirective = ts.isExpressionStatement(s) && ts.isStringLiteral(s.expression);
    if (isImport || isRequire || isDirective) after = s;
    else break;
  }
  let pos: number;
  if (after) {
    const nl = text.indexOf('\n', after.end);
    pos = nl < 0 ? text.length : nl + 1;
  } else {
    // Before the first statement, after its leading comments (the file's header).
    const first = sf.statements[0];
    pos = first ? text.lastIndexOf('\n', first.getStart(sf)) + 1 : text.length;
  }
  const nextLine = text.slice(pos, text.indexOf('\n', pos) < 0 ? text.length : text.indexOf('\n', pos));
  const prevLine = text.slice(text.lastIndexOf('\n', pos - 2) + 1, pos).trim();
  return { pos, needsBlankAfter: nextLine.trim() !== '', needsBlankBefore: pos > 0 && prevLine !== '' };
}

function isInsideClipCall(node: ts.Node): boolean {
  const p = node.parent;
  return !!p && ts.isCallExpression(p) && ts.isIdentifier(p.expression) && p.expression.text === CLIP_FUNCTION && p.arguments[0] === node;
}

export function computeClip(sf: ts.SourceFile, b: TfBindings, style: Style, finding: Finding, ctx: FixContext): Outcome {
  const picked = pickOptimizer(sf, b, finding);
  if ('reason' in picked) return { ok: false, reason: picked.reason };
  const site: OptimizerSite = picked.site;
  if (isInsideClipCall(site.node)) {
    return { ok: false, alreadyApplied: true, reason: `the optimizer (${describeSite(sf, site)}) is already wrapped in ${CLIP_FUNCTION}` };
  }
  const text = sf.text;
  const edits: TextEdit[] = [];
  const eol = style.eol;

  let hasFunction = false;
  walk(sf, (n) => {
    if ((ts.isFunctionDeclaration(n) || ts.isVariableDeclaration(n)) && n.name && ts.isIdentifier(n.name) && n.name.text === CLIP_FUNCTION) hasFunction = true;
  });

  // The tfjs namespace the wrapper (and a constructed string optimizer) calls: the script's own, or
  // a namespace import added next to the wrapper when the script only has named imports.
  let tf = b.namespaces[0];
  let importText = '';
  if (!tf) {
    if (!b.module) return { ok: false, reason: 'this file does not import TensorFlow.js (no require/import of @tensorflow/tfjs), so the clipping wrapper has nothing to call' };
    tf = declaredNames(sf).has('tf') ? 'gradscopeTf' : 'tf';
    const semi = style.semi ? ';' : '';
    importText = b.esm ? `import * as ${tf} from ${style.quote}${b.module}${style.quote}${semi}` : `const ${tf} = require(${style.quote}${b.module}${style.quote})${semi}`;
  }
  if (!hasFunction || importText) {
    const at = insertionLine(sf);
    const body = hasFunction ? '' : clipFunctionText(tf, isTsFile(sf.fileName), style) + eol;
    const block = (importText ? importText + eol : '') + (at.needsBlankBefore && body ? eol : '') + body + (at.needsBlankAfter && body ? eol : '');
    edits.push({ start: at.pos, end: at.pos, newText: at.pos === text.length && !text.endsWith('\n') ? eol + block : block });
  }

  const max = maxNormFromRun(ctx.globalNorms, finding);
  const maxText = formatNumber(max.value);
  const where = describeSite(sf, site);
  if (site.kind === 'string') {
    const spec = STRING_OPTIMIZERS[site.name.toLowerCase()];
    if (!spec) return { ok: false, reason: `unknown optimizer string '${site.name}'` };
    const train = trainExpression(b) ?? `${tf}.train`;
    edits.push({ start: site.node.getStart(sf), end: site.node.end, newText: `${CLIP_FUNCTION}(${constructStringOptimizer(site.name, spec.lr, train)}, ${maxText})` });
  } else {
    edits.push({ start: site.node.getStart(sf), end: site.node.getStart(sf), newText: `${CLIP_FUNCTION}(` });
    edits.push({ start: site.node.end, end: site.node.end, newText: `, ${maxText})` });
  }
  const how = max.derived ? `2 × the median early global norm ${formatNumber(Number(max.median!.toPrecision(3)))} of the run` : `default ${maxText}: the run gave no gradient norms`;
  return { ok: true, title: `Clip gradients by global norm ${maxText} (${how}; wraps ${where})`, edits };
}
