// Where a number a remedy changes is written. `lr=args.lr` is written as the default of `--lr` in
// an `add_argument` (dividing at the use site would also divide whatever the user passes);
// `lr=self.hparams.lr` as the default of the LightningModule's `__init__` parameter (or the argument
// its one instantiation passes); `lr=LR` where `LR = 0.5` is bound. The resolver follows names,
// `self.<x>` assignments, `save_hyperparameters()`, function parameters (their default, or the
// argument of the one call that passes them), argparse declarations and dict literals, until it
// reaches a literal: that literal is what the remedy edits.

import { formatNumber } from '../text';
import { argumentsOf, calls, dotted, enclosingClass, enclosingFunction, lineOf, named, statementsOf, walk, type SyntaxNode } from './syntax';

/** How the resolved literal is reached, for the remedy's title. */
export type Origin =
  | { kind: 'literal' }
  /** `LR = 0.5`, `self.lr = 1e-3`. */
  | { kind: 'assignment'; name: string; line: number }
  /** `parser.add_argument('--lr', default=0.1)` or `parser.set_defaults(lr=0.1)`. */
  | { kind: 'argparse'; flag: string; line: number; via: 'add_argument' | 'set_defaults' }
  /** `def __init__(self, lr=1e-3)`: `callee` is what the user calls (`LitModel`, `main`). */
  | { kind: 'parameter-default'; callee: string; param: string; line: number }
  /** `LitModel(lr=0.02)`: the argument of the one call that passes it. */
  | { kind: 'call-argument'; callee: string; param: string; line: number }
  /** `config = {"lr": 0.1}`. */
  | { kind: 'dict'; name: string; key: string; line: number };

export interface Written {
  /** The node to replace: a number, a numeric string (argparse converts it with `type=float`), or None. */
  node: SyntaxNode;
  /** The value written there (null: None). */
  value: number | null;
  origin: Origin;
  /** Notes for the title (`a --lr given on the command line still wins`). */
  notes: string[];
}

/** ok:false: the value is known to come from somewhere a file edit cannot change (a required flag, several call sites). */
export type Resolution = { ok: true; written: Written } | { ok: false; reason: string } | null;

const MAX_DEPTH = 8;

/** The new text for the node of `w` holding `v`: `1e-3` style and a string's quotes are kept. */
export function formatWritten(w: Written, v: number): string {
  const t = w.node.text;
  if (w.node.type === 'string') {
    const m = /^(['"])(.*)\1$/.exec(t);
    return m ? `${m[1]}${formatNumber(v, m[2])}${m[1]}` : formatNumber(v);
  }
  return formatNumber(v, w.node.type === 'none' ? undefined : t);
}

/** `lower the default of --lr from 0.1 to 0.001`, `LR = 0.5 → 0.05`, `0.5 → 0.05`. */
export function changePhrase(w: Written, newText: string, verb: string): string {
  const o = w.origin;
  const old = w.node.text;
  switch (o.kind) {
    case 'literal':
      return `${old} → ${newText}`;
    case 'assignment':
      return `${o.name} = ${old} → ${newText}`;
    case 'argparse':
      return `${verb} the default of ${o.flag} from ${old} to ${newText}`;
    case 'parameter-default':
      return `${verb} the default of ${o.callee}(${o.param}=…) from ${old} to ${newText}`;
    case 'call-argument':
      return `${o.callee}(${o.param}=${old} → ${newText})`;
    case 'dict':
      return `${o.name}[${JSON.stringify(o.key)}] = ${old} → ${newText}`;
  }
}

/** Where the origin is, for the title (null: at the use site). */
export function originWhere(w: Written): string | null {
  const o = w.origin;
  switch (o.kind) {
    case 'literal':
      return null;
    case 'assignment':
      return `bound on line ${o.line}`;
    case 'argparse':
      return `${o.via} on line ${o.line}`;
    case 'parameter-default':
      return `line ${o.line}`;
    case 'call-argument':
      return `line ${o.line}`;
    case 'dict':
      return `line ${o.line}`;
  }
}

function unwrap(n: SyntaxNode): SyntaxNode {
  let x = n;
  while (x.type === 'parenthesized_expression' && x.namedChildCount === 1) x = x.namedChild(0)!;
  return x;
}

/** The number a literal node holds: `0.5`, `1e-3`, `"0.1"` (a numeric string), `None` (null); undefined when it is none of those. */
function literalNumber(n: SyntaxNode): number | null | undefined {
  if (n.type === 'none') return null;
  if (n.type === 'integer' || n.type === 'float') {
    if (/[jJ]$/.test(n.text)) return undefined;
    const v = Number(n.text.replace(/_/g, ''));
    return Number.isFinite(v) ? v : undefined;
  }
  if (n.type === 'string') {
    const m = /^(['"])\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\1$/.exec(n.text);
    return m ? Number(m[2]) : undefined;
  }
  return undefined;
}

/** The text of a plain string literal (`'--lr'` → --lr), or null. */
export function stringValue(n: SyntaxNode | null | undefined): string | null {
  if (!n || n.type !== 'string') return null;
  const m = /^(['"])([^'"\\{}]*)\1$/.exec(n.text);
  return m ? m[2] : null;
}

/** The binding of `name` visible from `from`: an assignment in its function (or the module), the function's parameter, several, or none. */
type Binding = { kind: 'assignment'; node: SyntaxNode } | { kind: 'parameter'; fn: SyntaxNode; param: SyntaxNode } | { kind: 'several' } | null;

function assignmentsIn(block: SyntaxNode, matches: (left: SyntaxNode) => boolean): SyntaxNode[] {
  const found: SyntaxNode[] = [];
  const visit = (b: SyntaxNode): void => {
    for (const s of statementsOf(b)) {
      if (s.type === 'expression_statement') {
        const a = s.firstNamedChild;
        const left = a?.childForFieldName('left');
        if ((a?.type === 'assignment' || a?.type === 'augmented_assignment') && left && matches(left)) found.push(a);
      } else if (s.type === 'if_statement' || s.type === 'with_statement' || s.type === 'try_statement') {
        // `if __name__ == "__main__":` blocks hold most scripts' constants.
        for (const c of named(s)) if (c.type === 'block') visit(c);
        for (const c of named(s)) for (const d of named(c)) if (d.type === 'block') visit(d);
      }
    }
  };
  visit(block);
  return found;
}

function parameterNamed(fn: SyntaxNode, name: string): SyntaxNode | null {
  const params = fn.childForFieldName('parameters');
  if (!params) return null;
  for (const p of named(params)) if (parameterName(p) === name) return p;
  return null;
}

function parameterName(p: SyntaxNode): string | null {
  if (p.type === 'identifier') return p.text;
  if (p.type === 'default_parameter' || p.type === 'typed_default_parameter') return p.childForFieldName('name')?.text ?? null;
  if (p.type === 'typed_parameter') return p.namedChild(0)?.type === 'identifier' ? p.namedChild(0)!.text : null;
  return null;
}

function bindingOf(root: SyntaxNode, from: SyntaxNode, name: string): Binding {
  const fn = enclosingFunction(from);
  const scopes: (SyntaxNode | null)[] = [fn?.childForFieldName('body') ?? null, root];
  for (const scope of scopes) {
    if (!scope) continue;
    const found = assignmentsIn(scope, (l) => l.type === 'identifier' && l.text === name);
    if (found.length > 1) return { kind: 'several' };
    if (found.length === 1) return found[0].type === 'assignment' ? { kind: 'assignment', node: found[0] } : { kind: 'several' };
    if (scope !== root && fn) {
      const p = parameterNamed(fn, name);
      if (p) return { kind: 'parameter', fn, param: p };
    }
  }
  return null;
}

function ok(node: SyntaxNode, origin: Origin, notes: string[] = []): Resolution {
  const value = literalNumber(node);
  if (value === undefined) return null;
  return { ok: true, written: { node, value, origin, notes } };
}

/** Adds to a resolution reached through a name: a literal at the end becomes that name's origin. */
function through(r: Resolution, origin: Origin, note?: string): Resolution {
  if (!r || !r.ok) return r;
  const w = r.written;
  return { ok: true, written: { ...w, origin: w.origin.kind === 'literal' ? origin : w.origin, notes: note && !w.notes.includes(note) ? [...w.notes, note] : w.notes } };
}

/** Where the value of expression `e` is written, following names back to a literal. */
export function resolveValue(root: SyntaxNode, e: SyntaxNode, depth = 0): Resolution {
  if (depth > MAX_DEPTH) return null;
  const x = unwrap(e);
  if (literalNumber(x) !== undefined) return ok(x, { kind: 'literal' });
  if (x.type === 'identifier') {
    const b = bindingOf(root, x, x.text);
    if (!b || b.kind === 'several') return null;
    if (b.kind === 'assignment') {
      const right = b.node.childForFieldName('right');
      if (!right) return null;
      return through(resolveValue(root, right, depth + 1), { kind: 'assignment', name: x.text, line: lineOf(b.node) });
    }
    return resolveParameter(root, b.fn, b.param, depth + 1);
  }
  if (x.type === 'attribute') {
    const obj = x.childForFieldName('object');
    const attr = x.childForFieldName('attribute');
    if (!obj || !attr) return null;
    return resolveMember(root, obj, attr.text, depth + 1);
  }
  if (x.type === 'subscript') {
    const obj = x.childForFieldName('value');
    const key = stringValue(x.childForFieldName('subscript'));
    if (!obj || key === null) return null;
    return resolveMember(root, obj, key, depth + 1);
  }
  if (x.type === 'call') {
    // `float(x)`: the value of x.
    const f = x.childForFieldName('function');
    const { positional, all } = argumentsOf(x);
    if (f?.text === 'float' && positional.length === 1 && all.length === 1) return resolveValue(root, positional[0], depth + 1);
  }
  return null;
}

/** `obj.key` / `obj["key"]`: self attributes and hparams, parsed command-line arguments, dict literals. */
function resolveMember(root: SyntaxNode, obj: SyntaxNode, key: string, depth: number): Resolution {
  if (depth > MAX_DEPTH) return null;
  const o = unwrap(obj);
  const parts = dotted(o);
  if (parts && parts[0] === 'self' && parts.length <= 2) {
    const cls = enclosingClass(o);
    if (!cls) return null;
    if (parts.length === 1) return resolveSelfAttribute(root, cls, key, false, depth);
    if (parts[1] === 'hparams') return resolveSelfAttribute(root, cls, key, true, depth);
    return null;
  }
  if (isParseArgs(o)) return resolveArgparse(root, key, depth);
  // `vars(args)["lr"]`
  if (o.type === 'call' && o.childForFieldName('function')?.text === 'vars') {
    const { positional } = argumentsOf(o);
    return positional.length === 1 ? resolveMember(root, positional[0], key, depth + 1) : null;
  }
  // `args = parse()` where the file's `def parse(): … return parser.parse_args()`.
  if (o.type === 'call') {
    const f = o.childForFieldName('function');
    return f?.type === 'identifier' && returnsParsedArgs(root, f.text) ? resolveArgparse(root, key, depth) : null;
  }
  if (o.type !== 'identifier') return null;
  const b = bindingOf(root, o, o.text);
  if (b?.kind === 'assignment') {
    const right = b.node.childForFieldName('right');
    const r = right ? unwrap(right) : null;
    if (r?.type === 'dictionary') {
      for (const p of named(r)) {
        if (p.type === 'pair' && stringValue(p.childForFieldName('key')) === key) {
          return through(resolveValue(root, p.childForFieldName('value')!, depth + 1), { kind: 'dict', name: o.text, key, line: lineOf(p) });
        }
      }
      return null;
    }
    // `args = parser.parse_args()`, `args = vars(parser.parse_args())`; anything else is not argparse's.
    return r?.type === 'call' ? resolveMember(root, r, key, depth + 1) : null;
  }
  if (b?.kind === 'parameter') {
    // A namespace handed to a function or a module (`LitModel(args)`, `main(args)`): what its one call passes.
    const passed = passedArgument(root, b.fn, b.param);
    if (passed && passed !== 'several' && 'node' in passed) {
      const r = resolveMember(root, passed.node, key, depth + 1);
      if (r) return r;
    }
  }
  // `args.lr` with `args` bound some other way (a tuple target `args, _ = parser.parse_known_args()`,
  // a parameter of main(args)): the argparse declaration of that destination, when the file has one.
  return resolveArgparse(root, key, depth);
}

/** Whether the file's function `name` returns `parser.parse_args()` (directly or through a local name). */
function returnsParsedArgs(root: SyntaxNode, name: string): boolean {
  let found = false;
  walk(root, (n) => {
    if (found) return false;
    if (n.type !== 'function_definition' || n.childForFieldName('name')?.text !== name) return true;
    walk(n.childForFieldName('body')!, (r) => {
      if (found || r.type === 'function_definition' || r.type === 'class_definition') return false;
      if (r.type !== 'return_statement') return true;
      const e = r.firstNamedChild ? unwrap(r.firstNamedChild) : null;
      if (e && isParseArgs(e)) found = true;
      else if (e?.type === 'identifier') {
        const b = bindingOf(root, e, e.text);
        const right = b?.kind === 'assignment' ? b.node.childForFieldName('right') : null;
        if (right && isParseArgs(unwrap(right))) found = true;
      }
      return false;
    });
    return false;
  });
  return found;
}

function isParseArgs(n: SyntaxNode): boolean {
  if (n.type !== 'call') return false;
  const f = n.childForFieldName('function');
  return f?.type === 'attribute' && /^(parse_args|parse_known_args|parse_intermixed_args)$/.test(f.childForFieldName('attribute')?.text ?? '');
}

/** `self.key` (or `self.hparams.key`) inside class `cls`: its assignment in a method, or `save_hyperparameters()`. */
function resolveSelfAttribute(root: SyntaxNode, cls: SyntaxNode, key: string, hparams: boolean, depth: number): Resolution {
  const body = cls.childForFieldName('body');
  if (!body) return null;
  const matches = (l: SyntaxNode): boolean => {
    const d = dotted(l);
    if (hparams) {
      if (d && d.length === 3 && d[0] === 'self' && d[1] === 'hparams' && d[2] === key) return true;
      return l.type === 'subscript' && l.childForFieldName('value')?.text === 'self.hparams' && stringValue(l.childForFieldName('subscript')) === key;
    }
    return !!d && d.length === 2 && d[0] === 'self' && d[1] === key;
  };
  const found: SyntaxNode[] = [];
  for (const m of methodsOf(cls)) found.push(...assignmentsIn(m.childForFieldName('body')!, matches));
  if (found.length > 1 || found.some((a) => a.type !== 'assignment')) return null;
  if (found.length === 1) {
    const right = found[0].childForFieldName('right');
    if (!right) return null;
    return through(resolveValue(root, right, depth + 1), { kind: 'assignment', name: found[0].childForFieldName('left')!.text, line: lineOf(found[0]) });
  }
  if (!hparams) return null;
  // `self.save_hyperparameters()` in __init__ stores its arguments as hparams.
  const init = methodsOf(cls).find((m) => m.childForFieldName('name')?.text === '__init__');
  if (!init) return null;
  for (const c of calls(init)) {
    if (c.childForFieldName('function')?.text !== 'self.save_hyperparameters') continue;
    const { positional, keywords } = argumentsOf(c);
    const names = positional.map(stringValue);
    if (positional.length === 1 && names[0] === null && positional[0].type === 'identifier') {
      // save_hyperparameters(hparams): a dict / Namespace given to __init__.
      const p = parameterNamed(init, positional[0].text);
      if (!p) return null;
      const passed = passedArgument(root, init, p);
      return passed && passed !== 'several' && 'node' in passed ? resolveMember(root, passed.node, key, depth + 1) : null;
    }
    // save_hyperparameters(ignore=["lr"]) stores no hparams.lr.
    const ignored = keywords.get('ignore');
    if (ignored && (stringValue(ignored) === key || named(ignored).some((x) => stringValue(x) === key))) return null;
    if (names.some((n) => n === null)) return null;
    if (names.length > 0 && !names.includes(key)) continue;
    const p = parameterNamed(init, key);
    return p ? resolveParameter(root, init, p, depth + 1) : null;
  }
  return null;
}

function methodsOf(cls: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (const s of named(cls.childForFieldName('body')!)) {
    const def = s.type === 'decorated_definition' ? s.childForFieldName('definition') : s;
    if (def?.type === 'function_definition' && def.childForFieldName('body')) out.push(def);
  }
  return out;
}

/** What callers pass for a parameter: `{node}` (the one argument passed), `{none}` (no call passes it), 'several' (calls disagree), or null (unknown). */
type Passed = { node: SyntaxNode; call: SyntaxNode; callee: string } | { none: true; callee: string; calls: number } | 'several' | null;

function passedArgument(root: SyntaxNode, fn: SyntaxNode, param: SyntaxNode): Passed {
  const name = parameterName(param);
  const fnName = fn.childForFieldName('name')?.text;
  if (!name || !fnName) return null;
  const cls = enclosingClass(fn);
  let callee: string;
  let offset = 0;
  let kind: 'function' | 'class' | 'method' = 'function';
  if (cls && enclosingFunction(fn) === null) {
    const decorators = fn.parent?.type === 'decorated_definition' ? fn.parent.text : '';
    if (/@(staticmethod|classmethod|property)\b/.test(decorators)) return null;
    kind = fnName === '__init__' ? 'class' : 'method';
    callee = kind === 'class' ? cls.childForFieldName('name')!.text : fnName;
    offset = 1; // self
  } else callee = fnName;
  const params = named(fn.childForFieldName('parameters')!);
  const index = params.findIndex((p) => p.equals(param)) - offset;
  const positionalOk = params.slice(0, index + offset + 1).every((p) => p.type !== 'list_splat_pattern' && p.type !== 'keyword_separator' && p.type !== 'dictionary_splat_pattern');
  // A function by its bare name (`trainer.fit(…)` is not the script's `fit`); a class also through a
  // module (`models.Net(…)`); a method through an instance (`model.configure_optimizers(…)`, nanoGPT).
  const sites = calls(root).filter((c) => {
    const d = dotted(c.childForFieldName('function'));
    if (!d || d[d.length - 1] !== callee) return false;
    if (kind === 'method') return d.length >= 2;
    return d.length === 1 || (kind === 'class' && d[0] !== 'self');
  });
  let passed: { node: SyntaxNode; call: SyntaxNode } | null = null;
  let notPassing = 0;
  for (const c of sites) {
    const { positional, keywords, all } = argumentsOf(c);
    if (all.some((a) => a.type === 'list_splat' || a.type === 'dictionary_splat')) return null;
    const arg = keywords.get(name) ?? (positionalOk ? positional[index] : undefined);
    if (!arg) {
      notPassing++;
      continue;
    }
    if (passed && passed.node.text !== arg.text) return 'several';
    passed ??= { node: arg, call: c };
  }
  if (passed && notPassing > 0) return 'several';
  if (passed) return { ...passed, callee };
  return { none: true, callee, calls: sites.length };
}

/** A function parameter: the argument its one call passes, else its default. */
function resolveParameter(root: SyntaxNode, fn: SyntaxNode, param: SyntaxNode, depth: number): Resolution {
  if (depth > MAX_DEPTH) return null;
  const name = parameterName(param)!;
  const passed = passedArgument(root, fn, param);
  if (passed === 'several') {
    const callee = enclosingClass(fn) && fn.childForFieldName('name')?.text === '__init__' ? enclosingClass(fn)!.childForFieldName('name')!.text : fn.childForFieldName('name')!.text;
    return { ok: false, reason: `${callee}(…) is called more than once in this file with different values of ${name} (or without it): GradScope cannot tell which one the run used` };
  }
  if (!passed) return null;
  if ('node' in passed) {
    const kw = passed.node.parent?.type === 'keyword_argument' ? passed.node.parent : null;
    const origin: Origin = { kind: 'call-argument', callee: passed.callee, param: name, line: lineOf(kw ?? passed.node) };
    return through(resolveValue(root, passed.node, depth + 1), origin);
  }
  const def = param.childForFieldName('value');
  if (!def) return null;
  return through(resolveValue(root, def, depth + 1), { kind: 'parameter-default', callee: passed.callee, param: name, line: lineOf(def) });
}

interface ArgDecl {
  call: SyntaxNode;
  flag: string;
  dest: string;
}

function argparseDeclarations(root: SyntaxNode): ArgDecl[] {
  const out: ArgDecl[] = [];
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    if (f?.type !== 'attribute' || f.childForFieldName('attribute')?.text !== 'add_argument') continue;
    const { positional, keywords } = argumentsOf(c);
    const flags = positional.map(stringValue).filter((s): s is string => s !== null);
    if (flags.length === 0) continue;
    const long = flags.find((s) => s.startsWith('--'));
    const flag = long ?? flags[0];
    const dest = stringValue(keywords.get('dest')) ?? (long ? long.slice(2) : flags[0].replace(/^-+/, '')).replace(/-/g, '_');
    out.push({ call: c, flag, dest });
  }
  return out;
}

/** The default of the command-line argument whose destination is `dest`. */
function resolveArgparse(root: SyntaxNode, dest: string, depth: number): Resolution {
  const decls = argparseDeclarations(root).filter((d) => d.dest === dest);
  if (decls.length === 0) return null;
  if (decls.length > 1)
    return {
      ok: false,
      reason: `${decls.length} command-line arguments store into ${dest} (add_argument on lines ${decls.map((d) => lineOf(d.call)).join(', ')}): GradScope cannot tell which parser the run used`,
    };
  const d = decls[0];
  const note = `a ${d.flag} given on the command line still wins`;
  // parser.set_defaults(lr=…) overrides add_argument's default.
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    if (f?.type !== 'attribute' || f.childForFieldName('attribute')?.text !== 'set_defaults') continue;
    const v = argumentsOf(c).keywords.get(dest);
    if (v) return through(resolveValue(root, v, depth + 1), { kind: 'argparse', flag: d.flag, line: lineOf(v), via: 'set_defaults' }, note);
  }
  const def = argumentsOf(d.call).keywords.get('default');
  if (!def) return { ok: false, reason: `${d.flag} has no default (add_argument on line ${lineOf(d.call)}): its value comes from the command line` };
  const r = through(resolveValue(root, def, depth + 1), { kind: 'argparse', flag: d.flag, line: lineOf(def), via: 'add_argument' }, note);
  return r ?? { ok: false, reason: `the default of ${d.flag} (add_argument on line ${lineOf(d.call)}) is ${def.text}, which GradScope cannot trace to a number` };
}

/**
 * A keyword's value in a `**splat` of a call: the value node when the splat is a dict literal (or a
 * name bound once to one, never changed in place) holding the key, 'absent' when it does not hold
 * it, null when GradScope cannot see what the splat holds.
 */
export function keyInSplat(root: SyntaxNode, splat: SyntaxNode, key: string): SyntaxNode | 'absent' | null {
  let d = splat.namedChild(0) ? unwrap(splat.namedChild(0)!) : null;
  if (d?.type === 'identifier') {
    const name = d.text;
    const b = bindingOf(root, d, name);
    if (b?.kind !== 'assignment') return null;
    let mutated = false;
    walk(root, (n) => {
      if (mutated) return false;
      const left = n.type === 'assignment' || n.type === 'augmented_assignment' ? n.childForFieldName('left') : null;
      if (left?.type === 'subscript' && left.childForFieldName('value')?.text === name) mutated = true;
      if (
        n.type === 'call' &&
        /^(update|setdefault|pop|__setitem__)$/.test(n.childForFieldName('function')?.childForFieldName('attribute')?.text ?? '') &&
        n.childForFieldName('function')?.childForFieldName('object')?.text === name
      )
        mutated = true;
      return !mutated;
    });
    if (mutated) return null;
    d = unwrap(b.node.childForFieldName('right')!);
  }
  if (d?.type !== 'dictionary') return null;
  for (const p of named(d)) {
    if (p.type === 'dictionary_splat') return null;
    if (p.type === 'pair' && stringValue(p.childForFieldName('key')) === key) return p.childForFieldName('value');
  }
  return 'absent';
}
