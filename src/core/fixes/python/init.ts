// he-init / glorot-init / zero-bias-init for PyTorch: an `nn.init` call for the layer's weight (or
// bias) right after the statement that builds it (`self.fc1 = nn.Linear(784, 256)` →
// `nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")`), or replacing the init call that
// sets it there already (the bad init). A layer built inside `nn.Sequential(…)` assigned to a name
// is reached by its index: `self.net[2].weight`. When the layer's weights are set last by a loop over
// the layers (`for m in (self.fc1, self.fc2): nn.init.normal_(m.weight, std=0.4)`, or over
// `self.modules()` behind `isinstance(m, nn.Linear)`), the call in the loop is replaced: the shared
// scheme is the bad one, and fixing one layer of it leaves the others exploding.
import type { Finding } from '../../analysis/finding';
import type { Outcome, TextEdit } from '../types';
import {
  afterStatement,
  argumentsOf,
  calls,
  dotted,
  flat,
  indentAt,
  lineOf,
  named,
  resolve,
  sharesLine,
  spell,
  statementOf,
  walk,
  type Bindings,
  type Layout,
  type SyntaxNode,
} from './syntax';

/** torch.nn modules with a `weight` an init scheme applies to (and a `bias` unless bias=False). */
const WEIGHTED = new Set(['Linear', 'Bilinear', 'Conv1d', 'Conv2d', 'Conv3d', 'ConvTranspose1d', 'ConvTranspose2d', 'ConvTranspose3d', 'Embedding', 'EmbeddingBag']);
const NO_BIAS = new Set(['Embedding', 'EmbeddingBag']);
const RECURRENT = new Set(['RNN', 'LSTM', 'GRU', 'RNNCell', 'LSTMCell', 'GRUCell']);

export type Scheme = 'he' | 'glorot' | 'zero-bias';

interface Layer {
  call: SyntaxNode;
  cls: string;
  /** The statement that builds it (an assignment). */
  stmt: SyntaxNode;
  /** `self.fc1` or `self.net[2]`. */
  ref: string;
  line: number;
  /** A module class of this file (an nn.Module subclass): its nn.Parameter attributes, in order. */
  custom?: string[];
}

function layerClass(c: SyntaxNode, b: Bindings): string | null {
  const q = resolve(c.childForFieldName('function'), b);
  const m = q ? /^torch\.nn\.([A-Z]\w*)$/.exec(q) : null;
  return m ? m[1] : null;
}

/** nn.Module methods that return the module itself (`nn.Linear(2, 2).to(device)` is still the layer). */
const RETURNS_SELF = new Set(['to', 'cuda', 'cpu', 'float', 'double', 'half', 'bfloat16', 'train', 'eval', 'requires_grad_', 'to_empty']);

function assignedName(n0: SyntaxNode): { name: string; stmt: SyntaxNode } | null {
  let n = n0;
  for (;;) {
    const attr = n.parent;
    const call = attr?.parent;
    if (attr?.type === 'attribute' && attr.childForFieldName('object')?.equals(n) && RETURNS_SELF.has(attr.childForFieldName('attribute')?.text ?? '') && call?.type === 'call') n = call;
    else break;
  }
  const p = n.parent;
  if (!p || p.type !== 'assignment' || !p.childForFieldName('right')?.equals(n)) return null;
  const left = p.childForFieldName('left');
  if (!left || !dotted(left)) return null;
  const stmt = statementOf(p);
  return stmt && stmt.type === 'expression_statement' && stmt.firstNamedChild?.equals(p) ? { name: left.text, stmt } : null;
}

function locate(root: SyntaxNode, b: Bindings, finding: Finding): Layer | { reason: string } {
  if (!finding.source) return { reason: 'this finding is global (no layer): there is no layer to re-initialise' };
  const row = finding.source.line - 1;
  const onLine = calls(root).filter((c) => c.startPosition.row <= row && c.endPosition.row >= row && layerClass(c, b) !== null && layerClass(c, b) !== 'Sequential');
  if (onLine.length === 0) {
    const custom = customModule(root, b, row);
    if (custom) return custom;
    return { reason: `line ${finding.source.line} does not build a torch.nn layer (no nn.<Layer>(…) call there)` };
  }
  // Innermost first; then the one starting on the line, at the column, or at the layer's index in a Sequential.
  const starting = onLine.filter((c) => c.startPosition.row === row);
  const pool = starting.length ? starting : onLine;
  const innermost = pool.filter((c) => !pool.some((o) => !o.equals(c) && c.startIndex <= o.startIndex && c.endIndex >= o.endIndex));
  const idx = finding.layer ? /(?:^|\.)(\d+)$/.exec(finding.layer)?.[1] : undefined;
  const col = finding.source.column - 1;
  const pick =
    innermost.find((c) => c.childForFieldName('function')!.startPosition.column === col || c.startPosition.column === col) ??
    (idx !== undefined ? innermost.find((c) => sequentialIndex(c, b) === Number(idx)) : undefined) ??
    innermost[0];
  const cls = layerClass(pick, b)!;
  const at = `${pick.childForFieldName('function')!.text}(…) on line ${lineOf(pick)}`;
  if (RECURRENT.has(cls))
    return { reason: `${at} is a recurrent layer: its weights are weight_ih_l<k>/weight_hh_l<k> (one per layer and gate group), which GradScope does not re-initialise automatically` };
  if (cls.startsWith('Lazy')) return { reason: `${at} is a lazy module: its weight does not exist until the first forward pass, so it cannot be initialised after its construction` };
  if (!WEIGHTED.has(cls)) return { reason: `${at} has no weight matrix GradScope knows how to initialise (Linear, Bilinear, Conv*, ConvTranspose*, Embedding)` };
  const direct = assignedName(pick);
  if (direct) return { call: pick, cls, stmt: direct.stmt, ref: direct.name, line: lineOf(pick) };
  const i = sequentialIndex(pick, b);
  if (i !== null) {
    const seq = pick.parent!.parent!;
    const named = assignedName(seq);
    if (named) return { call: pick, cls, stmt: named.stmt, ref: `${named.name}[${i}]`, line: lineOf(pick) };
    return {
      reason: `${at} is inside an nn.Sequential(…) that is not assigned to a name (returned or passed on directly): assign the Sequential to a name, or initialise the layer where the model is used`,
    };
  }
  return { reason: `${at} is not assigned to a name (e.g. built in a list or passed to another call): GradScope cannot refer to its weight` };
}

/**
 * A module of a class defined in this file (`self.sparse = SparseDense(10, 32)`, class SparseDense
 * an nn.Module subclass) built on `row`: its parameters are the `self.<name> = nn.Parameter(…)`
 * of its class, initialised by name after the construction (`nn.init.zeros_(self.sparse.bias)`).
 * Null, or a reason, otherwise.
 */
function customModule(root: SyntaxNode, b: Bindings, row: number): Layer | { reason: string } | null {
  const classes = new Map<string, SyntaxNode>();
  walk(root, (n) => {
    if (n.type === 'class_definition') {
      const sup = n.childForFieldName('superclasses');
      const name = n.childForFieldName('name')?.text;
      if (name && sup && sup.namedChildren.some((s) => /^torch\.nn\.(?:modules\.module\.)?Module$/.test(resolve(s, b) ?? ''))) classes.set(name, n);
    }
    return true;
  });
  const call = calls(root).find((c) => c.startPosition.row === row && c.childForFieldName('function')?.type === 'identifier' && classes.has(c.childForFieldName('function')!.text));
  if (!call) return null;
  const cls = call.childForFieldName('function')!.text;
  const params: string[] = [];
  walk(classes.get(cls)!, (n) => {
    if (n.type === 'assignment') {
      const left = n.childForFieldName('left');
      const right = n.childForFieldName('right');
      const attr = left?.type === 'attribute' && left.childForFieldName('object')?.text === 'self' ? left.childForFieldName('attribute')?.text : null;
      if (attr && right?.type === 'call' && /^torch\.nn\.(?:parameter\.)?Parameter$/.test(resolve(right.childForFieldName('function'), b) ?? '')) params.push(attr);
    }
    return true;
  });
  const at = `${cls}(…) on line ${row + 1}`;
  if (!params.length) return { reason: `${at} builds a module of this file whose parameters are not nn.Parameter attributes GradScope can see` };
  const direct = assignedName(call);
  if (!direct) return { reason: `${at} is not assigned to a name: GradScope cannot refer to its parameters` };
  return { call, cls, stmt: direct.stmt, ref: direct.name, line: row + 1, custom: params };
}

/** The layer's index among the positional arguments of an `nn.Sequential(…)` call, or null. */
function sequentialIndex(c: SyntaxNode, b: Bindings): number | null {
  const list = c.parent;
  const seq = list?.parent;
  if (!list || list.type !== 'argument_list' || !seq || seq.type !== 'call' || layerClass(seq, b) !== 'Sequential') return null;
  const { positional, all } = argumentsOf(seq);
  if (all.some((a) => a.type === 'list_splat')) return null;
  const i = positional.findIndex((p) => p.equals(c));
  return i < 0 ? null : i;
}

interface Writer {
  stmt: SyntaxNode;
  /** The init call, when its statement is only that call (replaceable). */
  call: SyntaxNode | null;
  fn: string;
  /** How the writer names the tensor: `self.fc1.weight`, or `m.weight` inside a loop over the layers. */
  tensor: string;
  /** For a loop over the layers: what it iterates over (`(self.fc1, self.fc2)`, `self.modules()`). */
  loop?: string;
}

/** Layer-iterating methods of nn.Module whose items are the modules themselves. */
const MODULE_ITERATORS = new Set(['modules', 'children']);

/**
 * Whether `for v in <iter>` visits the layer: a literal tuple/list naming it, or `<owner>.modules()` /
 * `.children()` of the object that holds it (`self` for `self.fc1`).
 */
function loopCovers(iter: SyntaxNode, layer: Layer): boolean {
  let it = iter;
  while (it.type === 'parenthesized_expression' && it.firstNamedChild) it = it.firstNamedChild;
  if (it.type === 'tuple' || it.type === 'list' || it.type === 'expression_list') return named(it).some((e) => flat(e.text) === flat(layer.ref));
  if (it.type === 'call') {
    const f = it.childForFieldName('function');
    if (f?.type !== 'attribute' || !MODULE_ITERATORS.has(f.childForFieldName('attribute')?.text ?? '') || argumentsOf(it).all.length > 0) return false;
    const owner = flat(f.childForFieldName('object')!.text);
    return flat(layer.ref).startsWith(owner + '.') || flat(layer.ref).startsWith(owner + '[');
  }
  return false;
}

/**
 * Whether every `if` between a loop's body and the call lets the layer through: `isinstance(v, nn.Linear)`
 * (or a tuple of classes) naming the layer's class. Any other condition: unknown (null).
 */
function guardAdmits(call: SyntaxNode, loop: SyntaxNode, v: string, layer: Layer, b: Bindings): boolean | null {
  // Walking up: in an `elif` its own condition guards the call (the `if`'s was false, so it is skipped);
  // in an `else` the guard is a negation GradScope does not reason about.
  let skipIf = false;
  for (let x = call.parent; x && !x.equals(loop); x = x.parent) {
    if (x.type === 'else_clause') return null;
    let cond: SyntaxNode | null = null;
    if (x.type === 'elif_clause') {
      cond = x.childForFieldName('condition');
      skipIf = true;
    } else if (x.type === 'if_statement') {
      if (skipIf) {
        skipIf = false;
        continue;
      }
      cond = x.childForFieldName('condition');
    } else continue;
    if (!cond || cond.type !== 'call' || cond.childForFieldName('function')?.text !== 'isinstance') return null;
    const [obj, classes] = argumentsOf(cond).positional;
    if (!obj || !classes || obj.text !== v) return null;
    const list = classes.type === 'tuple' ? named(classes) : [classes];
    const names = list.map((c) => resolve(c, b));
    if (names.some((q) => q === null)) return null;
    if (!names.includes(`torch.nn.${layer.cls}`)) return false;
  }
  return true;
}

/** The init call (or in-place tensor method) in `n` that sets one of `targets`, with its function name. */
function initCallOn(n: SyntaxNode, targets: Set<string>, b: Bindings): string | null {
  if (n.type !== 'call') return null;
  const f = n.childForFieldName('function');
  const q = resolve(f, b);
  const first = argumentsOf(n).positional[0];
  if (q && q.startsWith('torch.nn.init.') && first && targets.has(flat(first.text))) return q.slice('torch.nn.init.'.length);
  if (f?.type === 'attribute' && targets.has(flat(f.childForFieldName('object')!.text)) && f.childForFieldName('attribute')!.text.endsWith('_'))
    return `.${f.childForFieldName('attribute')!.text}`;
  return null;
}

/** Whether the call is its statement (`nn.init.normal_(…)` alone on its line): it can be replaced. */
function isWholeStatement(call: SyntaxNode): boolean {
  const st = statementOf(call);
  return !!st && st.type === 'expression_statement' && st.firstNamedChild?.equals(call) === true;
}

/** Statements after the construction, in its block, that set the tensor (`ref.weight`). */
function writersOf(layer: Layer, tensor: string, b: Bindings): Writer[] {
  const out: Writer[] = [];
  const targets = new Set([flat(tensor), flat(tensor) + '.data']);
  const suffix = tensor.slice(layer.ref.length); // '.weight' or '.bias'
  for (let s = layer.stmt.nextNamedSibling; s; s = s.nextNamedSibling) {
    if (s.type === 'comment' || s.type === 'function_definition' || s.type === 'class_definition' || s.type === 'decorated_definition') continue;
    let hit: Writer | null = null;
    walk(s, (n) => {
      if (hit && hit.call === null) return false;
      const fn = initCallOn(n, targets, b);
      if (fn) hit = { stmt: s, call: s.type === 'expression_statement' && s.firstNamedChild?.equals(n) === true ? n : null, fn, tensor };
      if ((n.type === 'assignment' || n.type === 'augmented_assignment') && targets.has(flat(n.childForFieldName('left')?.text ?? ''))) hit = { stmt: s, call: null, fn: '=', tensor };
      return true;
    });
    // A loop over the layers that initialises each (`for m in (self.fc1, self.fc2): nn.init.normal_(m.weight, …)`,
    // `for m in self.modules(): if isinstance(m, nn.Linear): …`): the call in the loop is the writer, and
    // replacing it fixes every layer the loop touches (the shared scheme is what is wrong).
    if (!hit && s.type === 'for_statement') {
      const v = s.childForFieldName('left');
      const iter = s.childForFieldName('right');
      if (v?.type === 'identifier' && iter && loopCovers(iter, layer)) {
        const vt = `${v.text}${suffix}`;
        const vTargets = new Set([flat(vt), flat(vt) + '.data']);
        let found: Writer | null = null;
        let unknown = false;
        walk(s.childForFieldName('body') ?? s, (n) => {
          const fn = initCallOn(n, vTargets, b);
          if (fn) {
            const admits = guardAdmits(n, s, v.text, layer, b);
            if (admits === null) unknown = true;
            else if (admits) found = { stmt: s, call: isWholeStatement(n) ? n : null, fn, tensor: vt, loop: iter.text.replace(/\s+/g, ' ') };
          }
          return true;
        });
        if (found && !unknown) hit = found;
      }
    }
    // Any other loop over the modules or an .apply(init_fn) later in the block re-initialises every layer.
    if (!hit && (s.type === 'for_statement' || s.type === 'expression_statement')) {
      let generic = false;
      walk(s, (n) => {
        if (n.type === 'call') {
          const f = n.childForFieldName('function');
          const q = resolve(f, b) ?? '';
          if (
            (s.type === 'for_statement' && (q.startsWith('torch.nn.init.') || /\.(normal|uniform|fill|zero)_$/.test(f?.text ?? ''))) ||
            (s.type === 'expression_statement' && f?.type === 'attribute' && f.childForFieldName('attribute')?.text === 'apply')
          )
            generic = true;
        }
        return !generic;
      });
      if (generic) hit = { stmt: s, call: null, fn: 'loop', tensor };
    }
    if (hit) out.push(hit);
  }
  return out;
}

function isWanted(w: Writer, scheme: Scheme): boolean {
  if (!w.call) return false;
  const { positional, keywords } = argumentsOf(w.call);
  const str = (n: SyntaxNode | undefined): string | null => (n && n.type === 'string' ? n.text.replace(/^['"]|['"]$/g, '') : null);
  switch (scheme) {
    case 'he': {
      if (w.fn !== 'kaiming_normal_') return false;
      const nl = keywords.get('nonlinearity') ?? positional[3];
      const mode = keywords.get('mode') ?? positional[2];
      const a = keywords.get('a') ?? positional[1];
      return (!nl || str(nl) === 'relu' || (str(nl) === 'leaky_relu' && !a)) && (!mode || str(mode) === 'fan_in') && (!a || /^0(\.0*)?$/.test(a.text));
    }
    case 'glorot':
      return w.fn === 'xavier_uniform_' && positional.length === 1 && !keywords.has('gain');
    case 'zero-bias':
      return w.fn === 'zeros_' || w.fn === '.zero_' || ((w.fn === '.fill_' || w.fn === 'constant_') && /^0(\.0*)?$/.test((w.fn === '.fill_' ? positional[0] : positional[1])?.text ?? ''));
  }
}

export function computeInitPy(root: SyntaxNode, b: Bindings, layout: Layout, finding: Finding, scheme: Scheme): Outcome {
  const layer = locate(root, b, finding);
  if ('reason' in layer) return { ok: false, reason: layer.reason };
  const at = `${layer.ref} (${layer.call.childForFieldName('function')!.text}(…) on line ${layer.line})`;
  let tensor: string;
  let fnQ: string;
  let extra = '';
  if (layer.custom) {
    const want = scheme === 'zero-bias' ? /bias|^b$/i : /weight|kernel|^w$/i;
    const attr = layer.custom.find((p) => want.test(p));
    if (!attr) return { ok: false, reason: `${at} has no nn.Parameter named like a ${scheme === 'zero-bias' ? 'bias' : 'weight'} (it has ${layer.custom.join(', ')})` };
    tensor = `${layer.ref}.${attr}`;
    fnQ = scheme === 'zero-bias' ? 'torch.nn.init.zeros_' : scheme === 'he' ? 'torch.nn.init.kaiming_normal_' : 'torch.nn.init.xavier_uniform_';
    if (scheme === 'he') extra = `, nonlinearity=${layout.quote}relu${layout.quote}`;
  } else if (scheme === 'zero-bias') {
    if (NO_BIAS.has(layer.cls)) return { ok: false, reason: `${at} has no bias` };
    const bias = argumentsOf(layer.call).keywords.get('bias');
    if (bias && bias.type === 'false') return { ok: false, reason: `${at} has no bias (bias=False)` };
    tensor = `${layer.ref}.bias`;
    fnQ = 'torch.nn.init.zeros_';
  } else {
    tensor = `${layer.ref}.weight`;
    fnQ = scheme === 'he' ? 'torch.nn.init.kaiming_normal_' : 'torch.nn.init.xavier_uniform_';
    if (scheme === 'he') extra = `, nonlinearity=${layout.quote}relu${layout.quote}`;
  }
  const fn = spell(fnQ, b);
  if (!fn) return { ok: false, reason: `this file does not import torch (or torch.nn) under a name ${fnQ.split('.').pop()} can be written with` };
  const callFor = (t: string): string => `${fn}(${t}${extra})`;
  const callText = callFor(tensor);
  const what = scheme === 'he' ? 'Use He initialisation' : scheme === 'glorot' ? 'Use Glorot initialisation' : 'Initialise the bias to zeros';
  const writers = writersOf(layer, tensor, b);
  const last = writers[writers.length - 1];
  if (last && isWanted(last, scheme))
    return { ok: false, alreadyApplied: true, reason: `${tensor} is already initialised by ${last.call!.text.replace(/\s+/g, ' ')} (line ${lineOf(last.call!)})` };
  let edit: TextEdit;
  let how: string;
  if (last && last.call) {
    const text = callFor(last.tensor);
    edit = { start: last.call.startIndex, end: last.call.endIndex, newText: text };
    how = last.loop
      ? `replaces ${last.call.text.replace(/\s+/g, ' ')} on line ${lineOf(last.call)}, for every layer of the loop over ${last.loop}`
      : `replaces ${last.call.text.replace(/\s+/g, ' ')} on line ${lineOf(last.stmt)}`;
    return { ok: true, title: `${what}: ${text} (${how})`, edits: [edit] };
  } else {
    const after = last ? last.stmt : layer.stmt;
    const shared = sharesLine(after);
    if (shared)
      return {
        ok: false,
        reason: `line ${after.endPosition.row + 1} holds another statement too (${shared}): put ${after === layer.stmt ? "the layer's construction" : 'that statement'} on its own line first`,
      };
    const pos = afterStatement(layout, after);
    edit = { start: pos.pos, end: pos.pos, newText: `${pos.prefix}${indentAt(layout.text, layer.stmt.startIndex)}${callText}${layout.eol}` };
    how = last ? `after line ${after.endPosition.row + 1}, which re-initialises the weights after ${at}` : `after ${at}`;
  }
  return { ok: true, title: `${what}: ${callText} (${how})`, edits: [edit] };
}
