// he-init / glorot-init / zero-bias-init: the initialiser of the layer built on the finding's line.
// A tf.layers call gets `kernelInitializer: 'heNormal' | 'glorotUniform'` (or `biasInitializer:
// 'zeros'`), replacing whatever was there. A raw `tf.variable(tf.randomNormal([a, b], mean, std))`
// gets He/Glorot's scale written from its visible shape.
import * as ts from 'typescript';
import type { Finding } from '../../analysis/finding';
import type { Outcome, TextEdit } from '../types';
import { callsOnLine, calleeName, columnOf, findProperty, isPrimaryLike, isTfMember, isTfNamespace, lineOf, quoted, setPropertyEdits, walk, type Style, type TfBindings } from './ast';

/** The weight initialiser properties of each tf.layers factory (kernel-like weights only). */
const KERNEL_KEYS: Record<string, string[]> = {
  dense: ['kernelInitializer'],
  conv1d: ['kernelInitializer'],
  conv2d: ['kernelInitializer'],
  conv3d: ['kernelInitializer'],
  conv2dTranspose: ['kernelInitializer'],
  conv3dTranspose: ['kernelInitializer'],
  separableConv2d: ['depthwiseInitializer', 'pointwiseInitializer'],
  depthwiseConv2d: ['depthwiseInitializer'],
  simpleRNN: ['kernelInitializer'],
  lstm: ['kernelInitializer'],
  gru: ['kernelInitializer'],
  simpleRNNCell: ['kernelInitializer'],
  lstmCell: ['kernelInitializer'],
  gruCell: ['kernelInitializer'],
  convLstm2d: ['kernelInitializer'],
  embedding: ['embeddingsInitializer'],
};
const NO_BIAS = new Set(['embedding', 'depthwiseConv2d_']);
const RANDOM_INITS = new Set(['randomNormal', 'truncatedNormal', 'randomUniform']);

type LayerCall = { kind: 'layer'; call: ts.CallExpression | ts.NewExpression; factory: string; obj: ts.ObjectLiteralExpression | null; arg: ts.Expression | undefined };
type VariableCall = { kind: 'variable'; call: ts.CallExpression };

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** A call that builds a tf.layers layer or a raw tf.variable, or null. */
export function classifyCall(b: TfBindings, c: ts.CallExpression | ts.NewExpression): LayerCall | VariableCall | null {
  const name = calleeName(c);
  if (!name || !ts.isIdentifier(name)) return null;
  const e = c.expression;
  if (ts.isCallExpression(c) && name.text === 'variable' && ts.isPropertyAccessExpression(e) && isTfNamespace(e.expression, b)) return { kind: 'variable', call: c };
  if (ts.isCallExpression(c) && name.text === 'variable' && ts.isIdentifier(e) && b.named.get('variable') === e.text) return { kind: 'variable', call: c };
  const factory = name.text in KERNEL_KEYS ? name.text : lowerFirst(name.text) in KERNEL_KEYS && ts.isNewExpression(c) ? lowerFirst(name.text) : null;
  const viaLayers = ts.isPropertyAccessExpression(e) ? isTfMember(e.expression, b, 'layers') : b.named.get(name.text) === name.text;
  if (!factory && !(ts.isNewExpression(c) && /Layer|Dense|Conv|RNN|LSTM|GRU/.test(name.text))) return null;
  if (!viaLayers && !ts.isNewExpression(c)) return null;
  const arg = c.arguments?.[0];
  return { kind: 'layer', call: c, factory: factory ?? 'dense', obj: arg && ts.isObjectLiteralExpression(arg) ? arg : null, arg };
}

/** The layer construction (or raw variable) at the finding's line; the one at its column when several. */
export function findLayerCall(sf: ts.SourceFile, b: TfBindings, line: number, column: number): LayerCall | VariableCall | null {
  const found = callsOnLine(sf, line)
    .map((c) => ({ c, k: classifyCall(b, c) }))
    .filter((x) => x.k !== null);
  if (found.length === 0) return null;
  const exact = found.find((x) => columnOf(sf, calleeName(x.c)!.getStart(sf)) === column);
  return (exact ?? found[0]).k;
}

/** Other layer calls whose `key` is the same shared initializer variable (`kernelInitializer: badInit`). */
function sharingLayers(sf: ts.SourceFile, b: TfBindings, target: LayerCall, key: string): LayerCall[] {
  const p = target.obj ? findProperty(target.obj, key) : undefined;
  const shared = p && ts.isPropertyAssignment(p) && ts.isIdentifier(p.initializer) ? p.initializer.text : p && ts.isShorthandPropertyAssignment(p) ? p.name.text : null;
  if (!shared) return [];
  const out: LayerCall[] = [];
  walk(sf, (n) => {
    if ((!ts.isCallExpression(n) && !ts.isNewExpression(n)) || n === target.call) return;
    const k = classifyCall(b, n);
    if (!k || k.kind !== 'layer' || !k.obj) return;
    const q = findProperty(k.obj, key);
    const v = q && ts.isPropertyAssignment(q) && ts.isIdentifier(q.initializer) ? q.initializer.text : q && ts.isShorthandPropertyAssignment(q) ? q.name.text : null;
    if (v === shared) out.push(k);
  });
  return out;
}

function describeCall(sf: ts.SourceFile, c: ts.CallExpression | ts.NewExpression): string {
  return `${ts.isNewExpression(c) ? 'new ' : ''}${c.expression.getText(sf)} on line ${lineOf(sf, calleeName(c)!.getStart(sf))}`;
}

function locate(sf: ts.SourceFile, b: TfBindings, finding: Finding): LayerCall | VariableCall | { reason: string } {
  if (!finding.source) return { reason: 'this finding is global (no layer): there is no layer to re-initialise' };
  const call = findLayerCall(sf, b, finding.source.line, finding.source.column);
  if (!call) return { reason: `line ${finding.source.line} does not build a layer (no tf.layers.<layer>({…}) or tf.variable(…) call there)` };
  return call;
}

/** Edits that give a tf.layers call's config `key: value` (a config given as a variable becomes `{ ...cfg, key: value }`). */
function configEdits(sf: ts.SourceFile, lc: LayerCall, entries: [string, string][]): TextEdit[] | { reason: string } {
  if (lc.obj) {
    const out: TextEdit[] = [];
    for (const [k, v] of entries) out.push(...setPropertyEdits(sf, lc.obj, k, v));
    return out;
  }
  const props = entries.map(([k, v]) => `${k}: ${v}`).join(', ');
  if (!lc.arg) {
    const args = lc.call.arguments;
    if (!args) return [{ start: lc.call.end, end: lc.call.end, newText: `({ ${props} })` }];
    return [{ start: args.pos, end: args.pos, newText: `{ ${props} }` }];
  }
  if (ts.isSpreadElement(lc.arg)) return { reason: `the layer's configuration at ${describeCall(sf, lc.call)} is spread from an array` };
  return [{ start: lc.arg.getStart(sf), end: lc.arg.end, newText: `{ ...${lc.arg.getText(sf)}, ${props} }` }];
}

function stringValue(obj: ts.ObjectLiteralExpression | null, key: string): string | null {
  const p = obj ? findProperty(obj, key) : undefined;
  return p && ts.isPropertyAssignment(p) && ts.isStringLiteralLike(p.initializer) ? p.initializer.text : null;
}

/**
 * A `new X(…)` of a layer class declared in this file (a tf.layers.Layer subclass): its weights come
 * from its own `addWeight(name, shape, dtype, initializer)` calls, and a config key such as
 * kernelInitializer given to its constructor is ignored unless the class reads it. The addWeight
 * call whose name contains `part` ('kernel', 'bias'), or a refusal saying why there is none.
 */
function customLayerWeight(
  sf: ts.SourceFile,
  call: ts.CallExpression | ts.NewExpression,
  part: 'kernel' | 'bias',
): { cls: string; add: ts.CallExpression } | { cls: string; reason: string } | null {
  if (!ts.isNewExpression(call) || !ts.isIdentifier(call.expression)) return null;
  const name = call.expression.text;
  let cls: ts.ClassDeclaration | null = null;
  walk(sf, (n) => {
    if (!cls && ts.isClassDeclaration(n) && n.name?.text === name && n.heritageClauses?.length) cls = n;
  });
  if (!cls) return null;
  let add: ts.CallExpression | null = null;
  walk(cls, (n) => {
    if (add || !ts.isCallExpression(n) || !ts.isPropertyAccessExpression(n.expression) || n.expression.name.text !== 'addWeight') return;
    const w = n.arguments[0];
    const alsoNamed = part === 'kernel' ? /kernel|weight|^w$/i : /bias|^b$/i;
    if (w && ts.isStringLiteralLike(w) && alsoNamed.test(w.text)) add = n;
  });
  const found = add as ts.CallExpression | null;
  if (!found) return { cls: name, reason: `${name} (line ${lineOf(sf, call.getStart(sf))}) is a custom layer class with no addWeight('${part}', …) call GradScope can see` };
  return { cls: name, add: found };
}

/** Edits that make a custom layer's addWeight call draw from `<ns>.initializers.<init>()`. */
function customInitEdits(sf: ts.SourceFile, add: ts.CallExpression, init: string): { edits: TextEdit[]; was: string } | { reason: string } {
  const where = `addWeight('${(add.arguments[0] as ts.StringLiteral).text}', …) on line ${lineOf(sf, add.getStart(sf))}`;
  const cur = add.arguments[3];
  // The tfjs namespace as the call already spells it (`tf.initializers.constant(…)`), else `tf`.
  let ns = 'tf';
  if (cur) {
    const m = /^([A-Za-z_$][\w$]*)\.initializers\.(\w+)/.exec(cur.getText(sf));
    if (!m) return { reason: `the initialiser of ${where} is not a <tf>.initializers.<name>(…) call GradScope can replace` };
    ns = m[1];
    if (m[2] === init) return { reason: `already applied: ${where} already uses ${init}` };
  } else if (add.arguments.length < 3) {
    return { reason: `${where} gives no dtype and initialiser: GradScope cannot add one in place` };
  }
  const text = `${ns}.initializers.${init}(${init === 'zeros' ? '' : '{}'})`;
  const edits: TextEdit[] = cur ? [{ start: cur.getStart(sf), end: cur.end, newText: text }] : [{ start: add.arguments[2].end, end: add.arguments[2].end, newText: `, ${text}` }];
  return { edits, was: cur ? ellipsis(cur.getText(sf)) : 'the default' };
}

function customOutcome(r: { edits: TextEdit[]; was: string } | { reason: string }, title: (was: string) => string): Outcome {
  if ('reason' in r) {
    const already = r.reason.startsWith('already applied: ');
    return { ok: false, alreadyApplied: already || undefined, reason: already ? r.reason.slice('already applied: '.length) : r.reason };
  }
  return { ok: true, title: title(r.was), edits: r.edits };
}

export function computeInit(sf: ts.SourceFile, b: TfBindings, style: Style, finding: Finding, scheme: 'he' | 'glorot'): Outcome {
  const target = locate(sf, b, finding);
  if ('reason' in target) return { ok: false, reason: target.reason };
  const initName = scheme === 'he' ? 'heNormal' : 'glorotUniform';
  if (target.kind === 'variable') return rawVariableInit(sf, b, target.call, scheme);
  const custom = customLayerWeight(sf, target.call, 'kernel');
  if (custom) {
    if ('reason' in custom) return { ok: false, reason: custom.reason };
    return customOutcome(
      customInitEdits(sf, custom.add, initName),
      (was) => `Use ${scheme === 'he' ? 'He' : 'Glorot'} initialisation: ${initName} (was ${was}) in ${custom.cls}'s addWeight('${(custom.add.arguments[0] as ts.StringLiteral).text}', …)`,
    );
  }
  const keys = KERNEL_KEYS[target.factory] ?? ['kernelInitializer'];
  if (keys.every((k) => stringValue(target.obj, k) === initName)) {
    return { ok: false, alreadyApplied: true, reason: `${describeCall(sf, target.call)} already uses ${keys.join(' and ')} '${initName}'` };
  }
  const edits = configEdits(
    sf,
    target,
    keys.map((k) => [k, quoted(initName, style)]),
  );
  if ('reason' in edits) return { ok: false, reason: edits.reason };
  const replaced = keys.map((k) => (target.obj ? findProperty(target.obj, k) : undefined)).find(Boolean);
  const was = replaced && ts.isPropertyAssignment(replaced) ? ` (was ${ellipsis(replaced.initializer.getText(sf))})` : '';
  // Layers that take the same initializer variable share the problem: they get the same edit.
  const sharing = sharingLayers(sf, b, target, keys[0]);
  for (const other of sharing) {
    const more = configEdits(
      sf,
      other,
      keys.map((k) => [k, quoted(initName, style)]),
    );
    if (!('reason' in more)) edits.push(...more);
  }
  const also = sharing.length
    ? `, and in the ${sharing.length} other layer${sharing.length > 1 ? 's' : ''} that share${sharing.length > 1 ? '' : 's'} it (line${sharing.length > 1 ? 's' : ''} ${sharing.map((o) => lineOf(sf, calleeName(o.call)!.getStart(sf))).join(', ')})`
    : '';
  const rnn = /rnn|lstm|gru/i.test(target.factory) ? '; the recurrent kernel keeps its initializer' : '';
  return { ok: true, title: `Use ${scheme === 'he' ? 'He' : 'Glorot'} initialisation: ${keys.join(', ')} '${initName}'${was} in ${describeCall(sf, target.call)}${also}${rnn}`, edits };
}

function ellipsis(s: string): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > 48 ? one.slice(0, 45) + '…' : one;
}

/** He/Glorot scale for a raw variable drawn from tf.randomNormal/truncatedNormal/randomUniform with a visible shape. */
function rawVariableInit(sf: ts.SourceFile, b: TfBindings, call: ts.CallExpression, scheme: 'he' | 'glorot'): Outcome {
  const init = call.arguments[0];
  const where = `tf.variable on line ${lineOf(sf, call.getStart(sf))}`;
  if (
    !init ||
    !ts.isCallExpression(init) ||
    !ts.isPropertyAccessExpression(init.expression) ||
    !ts.isIdentifier(init.expression.name) ||
    !RANDOM_INITS.has(init.expression.name.text) ||
    !isTfNamespace(init.expression.expression, b)
  ) {
    return { ok: false, reason: `the initial value of ${where} is not drawn by tf.randomNormal/truncatedNormal/randomUniform in place, so GradScope cannot rescale it` };
  }
  const fn = init.expression.name.text;
  const shape = init.arguments[0];
  if (!shape || !ts.isArrayLiteralExpression(shape) || (shape.elements.length !== 2 && shape.elements.length !== 4) || shape.elements.some((e) => ts.isSpreadElement(e))) {
    return { ok: false, reason: `the shape of ${where} is not visible as a 2-D [in, out] or 4-D [h, w, in, out] array, so its fan-in is unknown` };
  }
  const el = shape.elements.map((e) => (isPrimaryLike(e) ? e.getText(sf) : `(${e.getText(sf)})`));
  const [fanIn, fanOut] = el.length === 2 ? [el[0], el[1]] : [`${el[0]} * ${el[1]} * ${el[2]}`, `${el[0]} * ${el[1]} * ${el[3]}`];
  const denom = scheme === 'he' ? fanIn : `(${fanIn} + ${fanOut})`;
  const args = init.arguments;
  const uniform = fn === 'randomUniform';
  const scale = uniform ? `Math.sqrt(6 / ${denom})` : `Math.sqrt(2 / ${denom})`;
  const flat = (t: string): string => t.replace(/\s+/g, '');
  const scheme_ = scheme === 'he' ? 'He' : 'Glorot';
  if (args.length > 2 && flat(args[2].getText(sf)) === flat(scale)) {
    return { ok: false, alreadyApplied: true, reason: `${where} already uses the ${scheme_} scale` };
  }
  const after = (i: number, t: string): TextEdit => ({ start: args[i].end, end: args[i].end, newText: t });
  const replace = (i: number, t: string): TextEdit => ({ start: args[i].getStart(sf), end: args[i].end, newText: t });
  let edits: TextEdit[];
  if (uniform) {
    // randomUniform(shape, minval = 0, maxval = 1): bounds ±sqrt(6 / fan).
    edits = args.length === 1 ? [after(0, `, -${scale}, ${scale}`)] : args.length === 2 ? [replace(1, `-${scale}`), after(1, `, ${scale}`)] : [replace(1, `-${scale}`), replace(2, scale)];
  } else {
    // randomNormal/truncatedNormal(shape, mean = 0, stdDev = 1): stdDev sqrt(2 / fan).
    edits = args.length === 1 ? [after(0, `, 0, ${scale}`)] : args.length === 2 ? [after(1, `, ${scale}`)] : [replace(2, scale)];
  }
  const title = `Use ${scheme_} initialisation: ${fn} ${uniform ? `bounds ±${scale}` : `stddev ${scale}`} (was ${uniform ? `[${args[1]?.getText(sf) ?? 0}, ${args[2]?.getText(sf) ?? 1}]` : (args[2]?.getText(sf) ?? 1)}) in ${where}`;
  return { ok: true, title, edits };
}

export function computeZeroBias(sf: ts.SourceFile, b: TfBindings, style: Style, finding: Finding): Outcome {
  const target = locate(sf, b, finding);
  if ('reason' in target) return { ok: false, reason: target.reason };
  if (target.kind === 'variable') return rawBiasZeros(sf, b, finding);
  const custom = customLayerWeight(sf, target.call, 'bias');
  if (custom) {
    if ('reason' in custom) return { ok: false, reason: custom.reason };
    return customOutcome(
      customInitEdits(sf, custom.add, 'zeros'),
      (was) => `Initialise the bias to zeros (was ${was}) in ${custom.cls}'s addWeight('${(custom.add.arguments[0] as ts.StringLiteral).text}', …)`,
    );
  }
  if (NO_BIAS.has(target.factory)) return { ok: false, reason: `${describeCall(sf, target.call)} has no bias` };
  const useBias = target.obj ? findProperty(target.obj, 'useBias') : undefined;
  if (useBias && ts.isPropertyAssignment(useBias) && useBias.initializer.kind === ts.SyntaxKind.FalseKeyword) {
    return { ok: false, reason: `${describeCall(sf, target.call)} has no bias (useBias: false)` };
  }
  const existing = target.obj ? findProperty(target.obj, 'biasInitializer') : undefined;
  if (!existing || stringValue(target.obj, 'biasInitializer') === 'zeros') {
    return { ok: false, alreadyApplied: true, reason: `${describeCall(sf, target.call)} already initialises its bias to zeros${existing ? '' : ' (the tf.layers default)'}` };
  }
  const edits = configEdits(sf, target, [['biasInitializer', quoted('zeros', style)]]);
  if ('reason' in edits) return { ok: false, reason: edits.reason };
  const was = ts.isPropertyAssignment(existing) ? ` (was ${ellipsis(existing.initializer.getText(sf))})` : '';
  return { ok: true, title: `Initialise the bias to zeros: biasInitializer 'zeros'${was} in ${describeCall(sf, target.call)}`, edits };
}

/** A raw layer's bias: the tf.variable named '<layer>/b' or '<layer>/bias', re-initialised as tf.zeros(shape). */
function rawBiasZeros(sf: ts.SourceFile, b: TfBindings, finding: Finding): Outcome {
  const layer = finding.layer;
  let found: ts.CallExpression | null = null;
  walk(sf, (n) => {
    if (found || !ts.isCallExpression(n) || !ts.isPropertyAccessExpression(n.expression) || n.expression.name.text !== 'variable' || !isTfNamespace(n.expression.expression, b)) return;
    const name = n.arguments[2];
    if (name && ts.isStringLiteralLike(name) && layer && (name.text === `${layer}/b` || name.text === `${layer}/bias`)) found = n;
  });
  const call = found as ts.CallExpression | null;
  if (!call) return { ok: false, reason: `no tf.variable named '${layer}/b' or '${layer}/bias' in this file: the bias of layer ${layer} was not found` };
  const init = call.arguments[0];
  const where = `tf.variable '${(call.arguments[2] as ts.StringLiteral).text}' on line ${lineOf(sf, call.getStart(sf))}`;
  if (init && ts.isCallExpression(init) && ts.isPropertyAccessExpression(init.expression) && init.expression.name.text === 'zeros') {
    return { ok: false, alreadyApplied: true, reason: `${where} already starts at zeros` };
  }
  const shape = init && ts.isCallExpression(init) ? init.arguments[0] : undefined;
  if (!shape || !ts.isArrayLiteralExpression(shape)) return { ok: false, reason: `the shape of ${where} is not visible` };
  const tf = b.namespaces[0] ?? 'tf';
  return { ok: true, title: `Initialise the bias to zeros: ${where}`, edits: [{ start: init.getStart(sf), end: init.end, newText: `${tf}.zeros(${shape.getText(sf)})` }] };
}
