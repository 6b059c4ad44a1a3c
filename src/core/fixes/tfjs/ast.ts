// Syntax-tree helpers shared by the remedies: parsing (JS and TS through the TypeScript compiler
// API), the names a script binds TensorFlow.js to, calls on a line, the file's own style (indent,
// quotes, semicolons), and minimal insertions into object literals. Pure: no Node, no vscode.
import * as ts from 'typescript';
import type { TextEdit } from '../types';

export function scriptKindOf(file: string): ts.ScriptKind {
  const f = file.toLowerCase();
  if (f.endsWith('.tsx')) return ts.ScriptKind.TSX;
  if (f.endsWith('.ts') || f.endsWith('.mts') || f.endsWith('.cts')) return ts.ScriptKind.TS;
  if (f.endsWith('.jsx')) return ts.ScriptKind.JSX;
  return ts.ScriptKind.JS;
}

export function isTsFile(file: string): boolean {
  const k = scriptKindOf(file);
  return k === ts.ScriptKind.TS || k === ts.ScriptKind.TSX;
}

export function parse(text: string, file: string): ts.SourceFile {
  return ts.createSourceFile(file || 'script.js', text, ts.ScriptTarget.Latest, true, scriptKindOf(file));
}

/** The parser's syntax errors (an internal field of SourceFile, stable across TypeScript 4–5). */
export function syntaxErrors(sf: ts.SourceFile): readonly ts.Diagnostic[] {
  return (sf as unknown as { parseDiagnostics?: readonly ts.Diagnostic[] }).parseDiagnostics ?? [];
}

/** Calls `f` for every node below `root`, depth first, in source order. */
export function walk(root: ts.Node, f: (n: ts.Node) => void): void {
  const visit = (n: ts.Node): void => {
    f(n);
    ts.forEachChild(n, visit);
  };
  ts.forEachChild(root, visit);
}

export function lineOf(sf: ts.SourceFile, pos: number): number {
  return sf.getLineAndCharacterOfPosition(pos).line + 1;
}

/** Start offset of the 1-based line, or -1 when the file has no such line. */
export function lineStart(sf: ts.SourceFile, line: number): number {
  const starts = sf.getLineStarts();
  return line >= 1 && line <= starts.length ? starts[line - 1] : -1;
}

export function lineEnd(text: string, pos: number): number {
  const i = text.indexOf('\n', pos);
  return i < 0 ? text.length : i > 0 && text[i - 1] === '\r' ? i - 1 : i;
}

export function indentAt(text: string, pos: number): string {
  const start = text.lastIndexOf('\n', pos - 1) + 1;
  return /^[ \t]*/.exec(text.slice(start))![0];
}

/** The identifier naming the callee of a call/new: `dense` in `tf.layers.dense(…)`. */
export function calleeName(call: ts.CallExpression | ts.NewExpression): ts.Identifier | ts.PrivateIdentifier | null {
  const e = call.expression;
  if (ts.isIdentifier(e)) return e;
  if (ts.isPropertyAccessExpression(e)) return e.name;
  return null;
}

/** `a.b.c` → ['a', 'b', 'c']; null for anything that is not a plain dotted name. */
export function dottedName(e: ts.Expression): string[] | null {
  if (ts.isIdentifier(e)) return [e.text];
  if (ts.isPropertyAccessExpression(e) && ts.isIdentifier(e.name)) {
    const left = dottedName(e.expression);
    return left ? [...left, e.name.text] : null;
  }
  if (ts.isParenthesizedExpression(e)) return dottedName(e.expression);
  return null;
}

// --- How the script names TensorFlow.js -------------------------------------------------------

export interface TfBindings {
  /** Local names bound to the whole module (`const tf = require(…)`, `import * as tf`, default imports). */
  namespaces: string[];
  /** Named imports/destructured requires: exported name → local name (`{ train: t }` → train → t). */
  named: Map<string, string>;
  /** The module specifier the script imports ('@tensorflow/tfjs', '@tensorflow/tfjs-node', …). */
  module: string | null;
  /** Whether that import is ESM (`import`) rather than `require`. */
  esm: boolean;
  /** End of the statement that imports tfjs (where a namespace import can be added). */
  importEnd: number;
}

const TF_MODULE = /^@tensorflow\/tfjs(-node(-gpu)?|-core|-layers)?$/;

function requiredModule(e: ts.Expression | undefined): string | null {
  let x = e;
  while (x && (ts.isAwaitExpression(x) || ts.isParenthesizedExpression(x))) x = x.expression;
  if (!x || !ts.isCallExpression(x)) return null;
  const isRequire = ts.isIdentifier(x.expression) && x.expression.text === 'require';
  const isImport = x.expression.kind === ts.SyntaxKind.ImportKeyword;
  if (!isRequire && !isImport) return null;
  const a = x.arguments[0];
  return a && ts.isStringLiteralLike(a) ? a.text : null;
}

export function tfBindings(sf: ts.SourceFile): TfBindings {
  const out: TfBindings = { namespaces: [], named: new Map(), module: null, esm: false, importEnd: -1 };
  const note = (mod: string, esm: boolean, end: number): void => {
    if (out.module === null || (out.module !== '@tensorflow/tfjs' && mod === '@tensorflow/tfjs')) out.module = mod;
    out.esm ||= esm;
    if (out.importEnd < 0) out.importEnd = end;
  };
  walk(sf, (n) => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier) && TF_MODULE.test(n.moduleSpecifier.text)) {
      const c = n.importClause;
      if (!c || c.isTypeOnly) return;
      if (c.name) out.namespaces.push(c.name.text);
      const b = c.namedBindings;
      if (b && ts.isNamespaceImport(b)) out.namespaces.push(b.name.text);
      if (b && ts.isNamedImports(b)) for (const s of b.elements) if (!s.isTypeOnly) out.named.set((s.propertyName ?? s.name).text, s.name.text);
      note(n.moduleSpecifier.text, true, n.end);
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) {
      const m = n.moduleReference.expression;
      if (ts.isStringLiteral(m) && TF_MODULE.test(m.text)) {
        out.namespaces.push(n.name.text);
        note(m.text, false, n.end);
      }
    } else if (ts.isVariableDeclaration(n)) {
      const mod = requiredModule(n.initializer);
      if (!mod || !TF_MODULE.test(mod)) return;
      const stmt = n.parent?.parent;
      const end = stmt && ts.isVariableStatement(stmt) ? stmt.end : n.end;
      if (ts.isIdentifier(n.name)) out.namespaces.push(n.name.text);
      else if (ts.isObjectBindingPattern(n.name)) {
        for (const el of n.name.elements) {
          if (el.dotDotDotToken || !ts.isIdentifier(el.name)) continue;
          const prop = el.propertyName && ts.isIdentifier(el.propertyName) ? el.propertyName.text : el.name.text;
          out.named.set(prop, el.name.text);
        }
      }
      const isDynamicImport = (() => {
        let x = n.initializer;
        while (x && (ts.isAwaitExpression(x) || ts.isParenthesizedExpression(x))) x = x.expression;
        return !!x && ts.isCallExpression(x) && x.expression.kind === ts.SyntaxKind.ImportKeyword;
      })();
      note(mod, isDynamicImport, end);
    }
  });
  return out;
}

/** Whether `e` names something of tfjs: `tf.train` (with tf a namespace), or a named import `train`. */
export function isTfMember(e: ts.Expression, b: TfBindings, member: string): boolean {
  const d = dottedName(e);
  if (!d) return false;
  if (d.length === 2 && d[1] === member && (b.namespaces.includes(d[0]) || b.namespaces.length === 0)) return true;
  if (d.length === 1 && (b.named.get(member) === d[0] || (b.named.size === 0 && b.namespaces.length === 0 && d[0] === member))) return true;
  return false;
}

/** Whether `e` is the tfjs namespace itself (or, in a script with no visible import, the global `tf`). */
export function isTfNamespace(e: ts.Expression, b: TfBindings): boolean {
  return ts.isIdentifier(e) && (b.namespaces.includes(e.text) || (b.namespaces.length === 0 && b.named.size === 0 && e.text === 'tf'));
}

/** Names declared anywhere in the file (to pick a fresh one). */
export function declaredNames(sf: ts.SourceFile): Set<string> {
  const names = new Set<string>();
  walk(sf, (n) => {
    if (
      (ts.isVariableDeclaration(n) ||
        ts.isFunctionDeclaration(n) ||
        ts.isClassDeclaration(n) ||
        ts.isParameter(n) ||
        ts.isImportSpecifier(n) ||
        ts.isNamespaceImport(n) ||
        ts.isImportClause(n)) &&
      n.name &&
      ts.isIdentifier(n.name)
    )
      names.add(n.name.text);
    if (ts.isBindingElement(n) && ts.isIdentifier(n.name)) names.add(n.name.text);
  });
  return names;
}

// --- The file's style ---------------------------------------------------------------------------

export interface Style {
  indent: string;
  quote: "'" | '"';
  semi: boolean;
  eol: string;
}

export function styleOf(sf: ts.SourceFile): Style {
  const text = sf.text;
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  let indent = '  ';
  let best = Infinity;
  for (const m of text.matchAll(/\n([ \t]+)\S/g)) {
    if (m[1].startsWith('\t')) {
      indent = '\t';
      break;
    }
    if (m[1].length < best && m[1].length >= 2) {
      best = m[1].length;
      indent = ' '.repeat(Math.min(best, 8));
    }
  }
  let single = 0;
  let double = 0;
  let withSemi = 0;
  let withoutSemi = 0;
  walk(sf, (n) => {
    if (ts.isStringLiteral(n)) {
      const q = text[n.getStart(sf)];
      if (q === "'") single++;
      else if (q === '"') double++;
    }
    if (ts.isExpressionStatement(n) || ts.isVariableStatement(n) || ts.isReturnStatement(n) || ts.isImportDeclaration(n)) {
      if (text[n.end - 1] === ';') withSemi++;
      else withoutSemi++;
    }
  });
  return { indent, quote: double > single ? '"' : "'", semi: withSemi >= withoutSemi, eol };
}

export function quoted(s: string, style: Style): string {
  return `${style.quote}${s}${style.quote}`;
}

/** Rewrites a block of code written with two-space indents, `;` and '\n' into the file's style. */
export function restyle(code: string, style: Style): string {
  return code
    .split('\n')
    .map((l) => {
      const m = /^( *)(.*)$/.exec(l)!;
      let body = m[2];
      if (!style.semi && body.endsWith(';') && !body.startsWith('//')) body = body.slice(0, -1);
      return style.indent.repeat(m[1].length / 2) + body;
    })
    .join(style.eol);
}

// --- Object literals ------------------------------------------------------------------------------

export function findProperty(obj: ts.ObjectLiteralExpression, name: string): ts.ObjectLiteralElementLike | undefined {
  return obj.properties.find((p) => {
    const n = p.name;
    return !!n && (ts.isIdentifier(n) || ts.isStringLiteral(n)) && n.text === name && (ts.isPropertyAssignment(p) || ts.isShorthandPropertyAssignment(p));
  });
}

/**
 * Edits that set `name: valueText` in an object literal: replaces the value of an existing property
 * (a shorthand `{ name }` becomes `name: value`), otherwise adds the property after the last one,
 * on the same line for a one-line literal and on a new line with the same indent for a multi-line
 * one (after any comment that ends the last property's line).
 */
export function setPropertyEdits(sf: ts.SourceFile, obj: ts.ObjectLiteralExpression, name: string, valueText: string): TextEdit[] {
  const text = sf.text;
  const existing = findProperty(obj, name);
  if (existing && ts.isPropertyAssignment(existing)) {
    return [{ start: existing.initializer.getStart(sf), end: existing.initializer.end, newText: valueText }];
  }
  if (existing) return [{ start: existing.getStart(sf), end: existing.end, newText: `${name}: ${valueText}` }];
  const props = obj.properties;
  const open = obj.getStart(sf);
  const close = obj.end - 1;
  if (props.length === 0) return [{ start: open + 1, end: close, newText: ` ${name}: ${valueText} ` }];
  const last = props[props.length - 1];
  const multiLine = lineOf(sf, last.getStart(sf)) !== lineOf(sf, open) || lineOf(sf, close) !== lineOf(sf, last.end);
  if (!multiLine) return [{ start: last.end, end: last.end, newText: `, ${name}: ${valueText}` }];
  const indent = indentAt(text, last.getStart(sf));
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  if (props.hasTrailingComma) {
    // `a: 1, // note` + newline: the new property goes on the next line, with its own trailing comma.
    const comma = text.indexOf(',', last.end);
    const at = lineOf(sf, close) === lineOf(sf, comma) ? comma + 1 : lineEnd(text, comma);
    return [{ start: at, end: at, newText: `${eol}${indent}${name}: ${valueText},` }];
  }
  const at = lineOf(sf, close) === lineOf(sf, last.end) ? last.end : lineEnd(text, last.end);
  if (at === last.end) return [{ start: at, end: at, newText: `,${eol}${indent}${name}: ${valueText}` }];
  return [
    { start: last.end, end: last.end, newText: ',' },
    { start: at, end: at, newText: `${eol}${indent}${name}: ${valueText}` },
  ];
}

// --- Calls on a line ----------------------------------------------------------------------------

/** Calls and `new`s whose callee name starts on the 1-based line, in source order. */
export function callsOnLine(sf: ts.SourceFile, line: number): (ts.CallExpression | ts.NewExpression)[] {
  const out: (ts.CallExpression | ts.NewExpression)[] = [];
  walk(sf, (n) => {
    if (!ts.isCallExpression(n) && !ts.isNewExpression(n)) return;
    const name = calleeName(n);
    if (name && lineOf(sf, name.getStart(sf)) === line) out.push(n);
  });
  return out;
}

export function columnOf(sf: ts.SourceFile, pos: number): number {
  return sf.getLineAndCharacterOfPosition(pos).character + 1;
}

/** Whether an expression can take `.method()` or `/ 10` without parentheses. */
export function isPrimaryLike(e: ts.Expression): boolean {
  return (
    ts.isIdentifier(e) ||
    ts.isPropertyAccessExpression(e) ||
    ts.isElementAccessExpression(e) ||
    ts.isCallExpression(e) ||
    ts.isParenthesizedExpression(e) ||
    ts.isNumericLiteral(e) ||
    e.kind === ts.SyntaxKind.ThisKeyword
  );
}
