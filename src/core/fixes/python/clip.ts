// clip-global-norm for PyTorch: `torch.nn.utils.clip_grad_norm_(<params>, max_norm=<from the run>)`
// on its own line between `loss.backward()` and `<opt>.step()`, for every step of the finding's
// optimizer. With a GradScaler (`scaler.step(opt)`), `scaler.unscale_(opt)` goes first so the norm
// is measured on the true gradients (GradScaler.step then does not unscale a second time).
import type { Finding } from '../../analysis/finding';
import type { FixContext, Outcome, TextEdit } from '../types';
import { maxNormFromRun } from '../policy';
import { formatNumber } from '../text';
import { describeOptimizer, pickOptimizer, type OptimizerSite } from './optimizer';
import {
  afterStatement,
  argumentsOf,
  calls,
  dotted,
  enclosingClass,
  enclosingFunction,
  flat,
  indentAt,
  lineOf,
  lineStartAt,
  spell,
  statementOf,
  walk,
  type Bindings,
  type Layout,
  type SyntaxNode,
} from './syntax';

const CLIP_NAMES = new Set(['clip_grad_norm_', 'clip_grad_norm', 'clip_grad_value_', 'clip_grads_with_norm_']);

interface StepSite {
  call: SyntaxNode;
  stmt: SyntaxNode;
  /** The text of the optimizer at this call (`opt`, or a function's parameter name). */
  receiver: string;
  /** `scaler.step(opt)`: the scaler's text. */
  scaler: string | null;
  /** The step runs inside this function (`@torch.compile def fn(): opt.step()`), and `call` is a call of it. */
  via?: { name: string; step: SyntaxNode };
}

/**
 * A step inside a small function with no backward of its own (PyTorch's "compiling the optimizer"
 * recipe: `@torch.compile def fn(): opt.step()`, then `loss.backward(); fn()`): the calls of that
 * function that follow a backward, where the clip goes instead. Null when the step is not in such a function.
 */
function wrapperCalls(root: SyntaxNode, st: StepSite): StepSite[] | null {
  const fn = enclosingFunction(st.call);
  const name = fn?.childForFieldName('name')?.text;
  if (!fn || !name || enclosingClass(fn) || hasCall(fn.childForFieldName('body')!, isBackward)) return null;
  const out: StepSite[] = [];
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    if (f?.type !== 'identifier' || f.text !== name || argumentsOf(c).all.length > 0) continue;
    const stmt = statementOf(c);
    if (!stmt || !(precedingBackward(stmt) || backwardBefore(stmt))) continue;
    out.push({ ...st, call: c, stmt, via: { name, step: st.call } });
  }
  return out.length ? out : null;
}

function isBackward(c: SyntaxNode): boolean {
  const f = c.childForFieldName('function');
  return f?.type === 'attribute' && f.childForFieldName('attribute')?.text === 'backward';
}

function hasCall(n: SyntaxNode, pred: (c: SyntaxNode) => boolean): boolean {
  let found = false;
  walk(n, (x) => {
    if (found || x.type === 'function_definition' || x.type === 'lambda') return false;
    if (x.type === 'call' && pred(x)) found = true;
    return !found;
  });
  return found;
}

/** `opt.step()` / `scaler.step(opt)` calls of the optimizer. */
function stepCalls(root: SyntaxNode, site: OptimizerSite, single: boolean): StepSite[] {
  const out: StepSite[] = [];
  for (const c of calls(root)) {
    const f = c.childForFieldName('function');
    if (f?.type !== 'attribute' || f.childForFieldName('attribute')?.text !== 'step') continue;
    const obj = f.childForFieldName('object')!;
    const stmt = statementOf(c);
    if (!stmt || !dotted(obj)) continue;
    const { positional } = argumentsOf(c);
    const isScaler = positional.length === 1 && dotted(positional[0]) !== null && /scaler/i.test(obj.text);
    const receiver = isScaler ? positional[0].text : obj.text;
    if (!isScaler && /sched/i.test(receiver)) continue;
    // The optimizer by its name; in a file with one optimizer, also a step preceded by a backward in
    // its function (a training function that takes the optimizer as a parameter).
    const byName = receiver === site.target;
    const local = single && !byName && precedingBackward(stmt) !== null && !isAssignedNonOptimizer(root, receiver);
    if (byName || local) out.push({ call: c, stmt, receiver, scaler: isScaler ? obj.text : null });
  }
  return out;
}

/** Whether `name` is assigned something other than an optimizer (a scheduler, a model) somewhere. */
function isAssignedNonOptimizer(root: SyntaxNode, name: string): boolean {
  let other = false;
  walk(root, (n) => {
    if (n.type === 'assignment' && n.childForFieldName('left')?.text === name) {
      const r = n.childForFieldName('right');
      if (!r || !/optim/i.test(r.text)) other = true;
    }
    return !other;
  });
  return other;
}

/** The nearest statement before `stmt` in its block whose code calls `.backward()` (not inside a def). */
function precedingBackward(stmt: SyntaxNode): SyntaxNode | null {
  for (let s = stmt.previousNamedSibling; s; s = s.previousNamedSibling) {
    if (s.type === 'comment' || s.type === 'function_definition' || s.type === 'class_definition' || s.type === 'decorated_definition') continue;
    if (hasCall(s, isBackward)) return s;
  }
  return null;
}

/** Whether a backward call comes before `stmt` in its function (or module), in an enclosing block. */
function backwardBefore(stmt: SyntaxNode): boolean {
  const fn = enclosingFunction(stmt);
  const scope = fn ?? stmt.tree.rootNode;
  let found = false;
  walk(scope, (n) => {
    if (found || n.startIndex >= stmt.startIndex) return false;
    if (n !== scope && (n.type === 'function_definition' || n.type === 'lambda')) return false;
    if (n.type === 'call' && isBackward(n)) found = true;
    return !found;
  });
  return found;
}

/** Names bound in a function: its parameters and assignment/for targets. */
function boundIn(fn: SyntaxNode, name: string): boolean {
  let bound = false;
  const params = fn.childForFieldName('parameters');
  if (params)
    walk(params, (n) => {
      if (n.type === 'identifier' && n.text === name) bound = true;
      return !bound;
    });
  walk(fn.childForFieldName('body') ?? fn, (n) => {
    if (bound || n.type === 'function_definition' || n.type === 'class_definition') return false;
    if ((n.type === 'assignment' || n.type === 'for_statement' || n.type === 'with_item') && (n.childForFieldName('left') ?? n.childForFieldName('value'))) {
      const left = n.childForFieldName('left');
      if (left)
        walk(left, (x) => {
          if (x.type === 'identifier' && x.text === name && x.parent?.type !== 'attribute') bound = true;
          return !bound;
        });
    }
    return !bound;
  });
  return bound;
}

/**
 * The parameters to clip, as text valid at the step: the optimizer's own params expression when it
 * can be evaluated again there (`model.parameters()`, in the same scope, or from the module level
 * into a function that does not rebind its name), else the optimizer's param groups.
 */
function paramsText(site: OptimizerSite, step: StepSite, quote: string): string {
  const groups = `[p for g in ${step.receiver}.param_groups for p in g[${quote}params${quote}]]`;
  let p = site.params;
  if (!p) return groups;
  // list(model.parameters()) → model.parameters()
  if (p.type === 'call' && p.childForFieldName('function')?.text === 'list') {
    const inner = argumentsOf(p).positional;
    if (inner.length === 1) p = inner[0];
  }
  const f = p.type === 'call' ? p.childForFieldName('function') : null;
  const owner = f?.type === 'attribute' && f.childForFieldName('attribute')?.text === 'parameters' && argumentsOf(p).all.length === 0 ? f.childForFieldName('object') : null;
  const parts = dotted(owner);
  if (!owner || !parts) return groups;
  const optFn = enclosingFunction(site.call);
  const stepFn = enclosingFunction(step.call);
  const sameScope = optFn === null ? stepFn === null : stepFn !== null && optFn.equals(stepFn);
  if (step.receiver !== site.target) return groups;
  if (sameScope) return p.text;
  if (parts[0] === 'self') {
    const a = enclosingClass(site.call);
    const b = enclosingClass(step.call);
    return a && b && a.equals(b) ? p.text : groups;
  }
  if (optFn === null && stepFn !== null && !boundIn(stepFn, parts[0])) return p.text;
  return groups;
}

export function computeClipPy(root: SyntaxNode, b: Bindings, layout: Layout, finding: Finding, ctx: FixContext, allSites: number): Outcome {
  const picked = pickOptimizer(root, b, finding);
  if ('reason' in picked) return { ok: false, reason: picked.reason };
  const site = picked.site;
  const where = describeOptimizer(site);
  const steps = stepCalls(root, site, allSites === 1).flatMap((st) => (precedingBackward(st.stmt) || backwardBefore(st.stmt) ? [st] : (wrapperCalls(root, st) ?? [st])));
  if (steps.length === 0) {
    return {
      ok: false,
      reason: site.target
        ? `no ${site.target}.step() call for ${where} in this file (the training loop may be in another file or a library)`
        : `the optimizer (${where}) is not assigned to a name, so its step() call cannot be found`,
    };
  }
  const clipQ = 'torch.nn.utils.clip_grad_norm_';
  const clipName = spell(clipQ, b);
  if (!clipName) return { ok: false, reason: 'this file does not import torch in a form clip_grad_norm_ can be written with' };
  const max = maxNormFromRun(ctx.globalNorms, finding);
  const maxText = formatNumber(max.value);
  const text = layout.text;
  const edits: TextEdit[] = [];
  const done: string[] = [];
  const refused: string[] = [];
  const lines: string[] = [];
  const allCalls = calls(root);
  for (const st of steps) {
    const stepLine = lineOf(st.call);
    const stepDesc = `${st.call.text.replace(/\s+/g, ' ')} on line ${stepLine}`;
    if (argumentsOf(st.call).positional.length > 0 && !st.scaler) {
      refused.push(`${stepDesc} takes a closure: clip inside the closure, after its backward()`);
      continue;
    }
    const back = precedingBackward(st.stmt);
    // Already clipped: a clip call between the backward (or the start of the block) and the step.
    const from = back ? back.startIndex : (st.stmt.parent ?? st.stmt).startIndex;
    let clipped = false;
    let unscaled = false;
    for (const n of allCalls) {
      if (n.startIndex < from || n.startIndex >= st.call.startIndex) continue;
      const d = dotted(n.childForFieldName('function'));
      const last = d?.[d.length - 1];
      if (last && CLIP_NAMES.has(last)) clipped = true;
      if (last === 'unscale_' && st.scaler && flat(argumentsOf(n).positional[0]?.text ?? '') === flat(st.receiver)) unscaled = true;
    }
    // A clip call on the backward's own line counts too (`loss.backward(); clip_grad_norm_(…)`).
    if (clipped) {
      done.push(stepDesc);
      continue;
    }
    if (back && back.endPosition.row === st.stmt.startPosition.row) {
      refused.push(`the backward and ${stepDesc} share a line: put ${st.call.text} on its own line so the clip can go between them`);
      continue;
    }
    const block = st.stmt.parent;
    if (block && block.type === 'block' && block.parent && block.parent.startPosition.row === st.stmt.startPosition.row) {
      refused.push(`${stepDesc} is on the same line as its \`${block.parent.text.split(/[:\n]/)[0]}:\`: put it on its own line first`);
      continue;
    }
    if (!back && !backwardBefore(st.stmt)) {
      refused.push(`no backward() call before ${stepDesc} in its function`);
      continue;
    }
    const indent = indentAt(text, st.stmt.startIndex);
    const at = back ? afterStatement(layout, back) : { pos: lineStartAt(text, st.stmt.startIndex), prefix: '' };
    const params = paramsText(site, st, layout.quote);
    let block_ = '';
    if (st.scaler && !unscaled) block_ += `${indent}${st.scaler}.unscale_(${st.receiver})${layout.eol}`;
    block_ += `${indent}${clipName}(${params}, max_norm=${maxText})${layout.eol}`;
    edits.push({ start: at.pos, end: at.pos, newText: at.prefix + block_ });
    lines.push(st.via ? `${stepLine} (the call of ${st.via.name}(), which runs ${st.via.step.text} on line ${lineOf(st.via.step)})` : `${stepLine}`);
  }
  if (edits.length === 0) {
    if (done.length && refused.length === 0) return { ok: false, alreadyApplied: true, reason: `the gradients are already clipped before ${done.join(', ')}` };
    return { ok: false, reason: refused.join('; ') || 'no step to clip before' };
  }
  const how = max.derived ? `2 × the median early global norm ${formatNumber(Number(max.median!.toPrecision(3)))} of the run` : `default ${maxText}: the run gave no gradient norms`;
  const scaler = steps.some((s) => s.scaler) ? ", unscaling the GradScaler's gradients first" : '';
  const skipped = refused.length ? `; not before: ${refused.join('; ')}` : '';
  return {
    ok: true,
    title: `Clip gradients by global norm ${maxText} (${how}; before the step${lines.length > 1 ? 's' : ''} on line${lines.length > 1 ? 's' : ''} ${lines.join(', ')} of ${where}${scaler})${skipped}`,
    edits,
  };
}
