// clip-global-norm: TF.js optimizers have no clipnorm option, so the fix inserts a small wrapper
// function once (after the imports) that overrides the optimizer's applyGradients to scale every
// gradient by maxNorm / globalNorm when the global norm is above maxNorm, and wraps the optimizer
// the script creates in it. model.fit and minimize both go through applyGradients, so one wrapper
// covers model.fit, minimize and applyGradients scripts.
import * as ts from 'typescript';
import type { Finding } from '../analysis/finding';
import { declaredNames, formatNumber, isTsFile, restyle, walk, type Style, type TfBindings } from './ast';
import { describeSite, pickOptimizer, type OptimizerSite } from './optimizer';
import { constructStringOptimizer, trainExpression } from './lr';
import { STRING_OPTIMIZERS } from './optimizer';
import type { FixContext, TextEdit } from './types';

export const CLIP_FUNCTION = 'gradscopeClipByGlobalNorm';
/** Used when the run gave no norms (Keras/PyTorch users' usual clipnorm). */
export const DEFAULT_MAX_NORM = 1;
/** How many early finite norms the threshold looks at. */
export const EARLY_STEPS = 5;
/** Early norms more than this many times the smallest of them are outliers (a blow-up already under way). */
export const OUTLIER_RATIO = 10;
export const NORM_MULTIPLE = 2;

/**
 * The clip threshold from the run: 2 × the median of the early, healthy global norms.
 * - "Early": the finite norms before the finding's onset (its step, or the step its growth started /
 *   was flagged at, whichever is first), when there are at least 3 of them; otherwise the run's first
 *   5 finite norms. At most 5.
 * - "Healthy": norms more than 10× the smallest of them are dropped (a blow-up already under way).
 * - The lower median; rounded to 3 significant digits. No norms: 1, with a note in the title.
 * Examples: explode-lr-mlp (18.8, 351, 1.3e8, … flagged at step 1) → 2 × 18.8 = 37.6; a first bad
 * batch (3750, 3.3e5, 5e4, 1070, 2.34) → 2 × 2.34 = 4.68; a healthy-looking start (1.0, 1.2, 0.9,
 * 1.1, 1.0) → 2.
 */
export function maxNormFromRun(norms: readonly number[] | undefined, finding: Finding | null): { value: number; derived: boolean; median: number | null; from: number[] } {
  const finite = (xs: readonly number[]): number[] => xs.filter((x) => Number.isFinite(x) && x > 0);
  const all = norms ?? [];
  const ev = finding?.evidence ?? {};
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : Infinity);
  const onset = finding ? Math.min(finding.step, num(ev.explodingFlaggedAt), num(ev.startStep) + 1) : Infinity;
  const before = Number.isFinite(onset) ? finite(all.slice(0, onset)) : [];
  let early = (before.length >= 3 ? before : finite(all)).slice(0, EARLY_STEPS);
  if (early.length === 0) return { value: DEFAULT_MAX_NORM, derived: false, median: null, from: [] };
  const min = Math.min(...early);
  early = early.filter((x) => x <= OUTLIER_RATIO * min);
  const s = [...early].sort((a, b) => a - b);
  const m = s[(s.length - 1) >> 1];
  return { value: Number((NORM_MULTIPLE * m).toPrecision(3)), derived: true, median: m, from: early };
}

/** lower-clip-threshold's new threshold: the clip rule's, and how it was derived. */
export interface LowerClipTarget {
  value: number;
  how: string;
}

/**
 * lower-clip-threshold's new threshold: the clip rule's (maxNormFromRun), but only from the run's
 * norms: a script that already clips is not moved to the no-norms default. Null without norms.
 */
export function lowerClipTarget(norms: readonly number[] | undefined, finding: Finding): LowerClipTarget | null {
  const max = maxNormFromRun(norms, finding);
  if (!max.derived) return null;
  return { value: max.value, how: `2 × the median early global norm ${formatNumber(Number(max.median!.toPrecision(3)))} of the run, measured before clipping` };
}

/**
 * Whether the threshold the script has (`current`, described as `currentText` in the reasons) can be
 * lowered to the target: only to a value strictly below it.
 */
export function lowerClipCheck(
  target: LowerClipTarget | null,
  current: number,
  currentText: string,
): { ok: true; value: number; how: string } | { ok: false; reason: string; alreadyApplied?: boolean } {
  if (!target) return { ok: false, reason: `the run gave no gradient norms, so GradScope cannot derive a threshold below ${currentText}` };
  if (target.value >= current) {
    return { ok: false, alreadyApplied: true, reason: `${currentText} is already at or below ${formatNumber(target.value)} (${target.how}): the run gives no lower threshold` };
  }
  return { ok: true, value: target.value, how: target.how };
}

/** The same threshold as the probe reported (rounded to 4 significant digits in the evidence). */
function sameThreshold(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-3 * Math.max(Math.abs(a), Math.abs(b));
}

/**
 * Which of a file's clip sites (both engines) the lower-clip-threshold fix is about, given the
 * threshold the run reported (`seen`, from the finding's evidence): the sites written with that
 * value; none, and one is already at or below the target: the fix is applied (the edit came after
 * the run); else the sites whose threshold GradScope cannot read (a readable one written with
 * another value did not clip the run). Without a reported threshold: all of them.
 */
export function clipSitesOfRun<S>(
  all: readonly S[],
  seen: unknown,
  target: LowerClipTarget | null,
  valueOf: (s: S) => number | null,
  unreadable: (s: S) => boolean,
  currentText: (s: S) => string,
): { ok: true; sites: readonly S[] } | { ok: false; reason: string; alreadyApplied?: boolean } {
  if (typeof seen !== 'number') return { ok: true, sites: all };
  const matching = all.filter((s) => {
    const v = valueOf(s);
    return v !== null && sameThreshold(v, seen);
  });
  if (matching.length) return { ok: true, sites: matching };
  const lowered = target
    ? all.find((s) => {
        const v = valueOf(s);
        return v !== null && v > 0 && v <= target.value;
      })
    : undefined;
  if (lowered !== undefined) {
    const r = lowerClipCheck(target, valueOf(lowered)!, currentText(lowered));
    if (!r.ok) return r;
  }
  const unread = all.filter(unreadable);
  return { ok: true, sites: lowered === undefined && unread.length ? unread : all };
}

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

export type ClipOutcome = { ok: true; title: string; edits: TextEdit[] } | { ok: false; reason: string; alreadyApplied?: boolean };

export function computeClip(sf: ts.SourceFile, b: TfBindings, style: Style, finding: Finding, ctx: FixContext): ClipOutcome {
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
