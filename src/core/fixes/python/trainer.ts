// clip-global-norm in the framework's idiom. PyTorch Lightning clips inside its optimizer step when
// the Trainer is given `gradient_clip_val` (by global norm unless `gradient_clip_algorithm="value"`);
// the Hugging Face Trainer clips at `TrainingArguments(max_grad_norm=…)`, 1.0 when not set. The
// threshold is the one the plain loop gets (2 × the median early global norm of the run: GradScope's
// norms are those before the framework clips). An existing threshold at or below it is left alone
// (already applied); a higher one is lowered where its value is written (value.ts: a literal, an
// argparse default, …).
import type { Finding } from '../../analysis/finding';
import type { FixContext, Outcome, TextEdit } from '../types';
import { maxNormFromRun } from '../policy';
import { formatNumber } from '../text';
import type { Framework } from './framework';
import { afterStatement, argumentsOf, calls, dotted, indentAt, lineOf, named, nextLineStart, statementOf, walk, type Layout, type SyntaxNode } from './syntax';
import { changePhrase, formatWritten, keyInSplat, originWhere, resolveValue, stringValue, type Written } from './value';

/** TrainingArguments' max_grad_norm when it is not given. */
export const HF_DEFAULT_MAX_GRAD_NORM = 1.0;

/**
 * The edits that add keyword argument `kw` (`name=value`) to a call, in the call's layout: after the
 * last argument on its line; on a line of its own when the arguments are one per line (with a
 * trailing comma when the call has one).
 */
export function addKeyword(layout: Layout, call: SyntaxNode, kw: string): TextEdit[] {
  const { all, list } = argumentsOf(call);
  const text = layout.text;
  if (!list) throw new Error(`${call.text.slice(0, 40)} has no argument list`);
  const last = all[all.length - 1];
  if (!last) return [{ start: list.startIndex + 1, end: list.startIndex + 1, newText: kw }];
  const comma = list.children.find((c) => c !== null && c.type === ',' && c.startIndex >= last.endIndex) ?? null;
  const prevEnd = all.length > 1 ? all[all.length - 2].endPosition.row : list.startPosition.row;
  const ownLine = last.startPosition.row > prevEnd && list.endPosition.row > last.endPosition.row;
  if (!ownLine) return [{ start: last.endIndex, end: last.endIndex, newText: `, ${kw}` }];
  const indent = indentAt(text, last.startIndex);
  const lineEnd = nextLineStart(text, (comma ?? last).endIndex);
  const newline = lineEnd === text.length && !text.endsWith('\n') ? layout.eol : '';
  if (comma) return [{ start: lineEnd, end: lineEnd, newText: `${newline}${indent}${kw},${layout.eol}` }];
  return [
    { start: last.endIndex, end: last.endIndex, newText: ',' },
    { start: lineEnd, end: lineEnd, newText: `${newline}${indent}${kw}${layout.eol}` },
  ];
}

function thresholdOf(ctx: FixContext, finding: Finding): { value: number; text: string; how: string } {
  const max = maxNormFromRun(ctx.globalNorms, finding);
  const text = formatNumber(max.value);
  const how = max.derived
    ? `2 × the median early global norm ${formatNumber(Number(max.median!.toPrecision(3)))} of the run, measured before the framework clips`
    : `default ${text}: the run gave no gradient norms`;
  return { value: max.value, text, how };
}

const CLIP_CALLS = new Set(['clip_grad_norm_', 'clip_grad_norm', 'clip_grad_value_', 'clip_gradients']);

/** A method a class defines (null when it does not). */
function methodOf(cls: SyntaxNode, name: string): SyntaxNode | null {
  for (const s of named(cls.childForFieldName('body')!)) {
    const def = s.type === 'decorated_definition' ? s.childForFieldName('definition') : s;
    if (def?.type === 'function_definition' && def.childForFieldName('name')?.text === name) return def;
  }
  return null;
}

/** `self.automatic_optimization = False` in the class. */
function manualOptimization(cls: SyntaxNode): SyntaxNode | null {
  let found: SyntaxNode | null = null;
  walk(cls, (n) => {
    if (found) return false;
    if (n.type === 'assignment' && n.childForFieldName('left')?.text === 'self.automatic_optimization' && n.childForFieldName('right')?.type === 'false') found = n;
    return true;
  });
  return found;
}

/**
 * A keyword argument of a call, also when it is given through a `**dict` GradScope can read;
 * `unknown`: a splat that may hold it (the splat's text).
 */
export function keywordOf(root: SyntaxNode, call: SyntaxNode, key: string): { node: SyntaxNode | null; via: string | null } | { unknown: string } {
  const { keywords, all } = argumentsOf(call);
  const direct = keywords.get(key);
  if (direct) return { node: direct, via: null };
  for (const a of all) {
    if (a.type !== 'dictionary_splat') continue;
    const v = keyInSplat(root, a, key);
    if (v === null) return { unknown: a.text };
    if (v !== 'absent') return { node: v, via: a.text };
  }
  return { node: null, via: null };
}

/** `Trainer(gradient_clip_val=10 → 2) on line 5`, or for a value given through a dict, `"gradient_clip_val": 10 → 2 in **cfg (line 3), passed to Trainer(…) on line 5`. */
function atCall(callee: string, key: string, old: string, nu: string, line: number, via: string | null, node: SyntaxNode): string {
  return via ? `set "${key}": ${old} → ${nu} in ${via} (line ${lineOf(node)}), passed to ${callee}(…) on line ${line}` : `set ${callee}(${key}=${old} → ${nu}) on line ${line}`;
}

/** Where an existing threshold is written, or why it cannot be read. */
function existing(root: SyntaxNode, value: SyntaxNode): { written: Written } | { reason: string } {
  const r = resolveValue(root, value);
  if (!r) return { reason: `${value.text} cannot be traced to a number in this file` };
  if (!r.ok) return { reason: r.reason };
  return { written: r.written };
}

export function computeLightningClip(root: SyntaxNode, layout: Layout, fw: Extract<Framework, { kind: 'lightning' }>, finding: Finding, ctx: FixContext): Outcome {
  const t = thresholdOf(ctx, finding);
  for (const cls of fw.modules) {
    const name = cls.childForFieldName('name')!.text;
    const manual = manualOptimization(cls);
    if (manual) return computeManualClip(layout, cls, manual, t);
    const custom = methodOf(cls, 'configure_gradient_clipping');
    if (custom)
      return {
        ok: false,
        reason: `${name} overrides configure_gradient_clipping (line ${lineOf(custom)}): it decides how Trainer(gradient_clip_val=…) is applied; set the threshold there (${t.text}: ${t.how})`,
      };
    for (const c of calls(cls)) {
      const d = dotted(c.childForFieldName('function'));
      if (d && CLIP_CALLS.has(d[d.length - 1])) return { ok: false, alreadyApplied: true, reason: `${name} already clips its gradients (${c.text.split('(')[0]}(…) on line ${lineOf(c)})` };
    }
  }
  if (fw.trainers.length === 0 && fw.clis.length) {
    return {
      ok: false,
      reason: `the Trainer is built by LightningCLI (line ${lineOf(fw.clis[0])}) from the command line or its config: pass --trainer.gradient_clip_val ${t.text} (${t.how}), or set trainer.gradient_clip_val in the config or in trainer_defaults`,
    };
  }
  if (fw.trainers.length === 0) {
    const mod = fw.modules[0];
    return {
      ok: false,
      reason: `no Trainer(…) in this file: the LightningModule ${mod ? `${mod.childForFieldName('name')!.text} (line ${lineOf(mod)}) ` : ''}is trained by a Trainer created elsewhere; set Trainer(gradient_clip_val=${t.text}) there (${t.how})`,
    };
  }
  if (fw.trainers.length > 1)
    return { ok: false, reason: `${fw.trainers.length} Trainer(…) calls in this file (lines ${fw.trainers.map(lineOf).join(', ')}): GradScope cannot tell which one trained the run` };
  const call = fw.trainers[0];
  const callee = call.childForFieldName('function')!.text;
  const line = lineOf(call);
  const valArg = keywordOf(root, call, 'gradient_clip_val');
  const algArg = keywordOf(root, call, 'gradient_clip_algorithm');
  const unknown = 'unknown' in valArg ? valArg.unknown : 'unknown' in algArg ? algArg.unknown : null;
  if (unknown) return { ok: false, reason: `${callee}(…) on line ${line} takes its arguments from ${unknown}: gradient_clip_val may be in there` };
  const val = 'node' in valArg ? valArg.node : null;
  const alg = 'node' in algArg ? algArg.node : null;
  const edits: TextEdit[] = [];
  const notes: string[] = [];
  let byValue = false;
  if (alg && alg.type !== 'none') {
    const a = stringValue(alg);
    if (a === 'value') {
      byValue = true;
      edits.push({ start: alg.startIndex, end: alg.endIndex, newText: alg.text.replace('value', 'norm') });
      notes.push(`gradient_clip_algorithm="value" → "norm": it clipped each gradient element, not the global norm`);
    } else if (a !== 'norm') {
      return { ok: false, reason: `${callee}(gradient_clip_algorithm=${alg.text}) on line ${line}: GradScope cannot tell whether it clips by "norm" or by "value"` };
    }
  }
  if (val && val.type !== 'none') {
    const e = existing(root, val);
    if ('reason' in e) return { ok: false, reason: `${callee}(gradient_clip_val=${val.text}) on line ${line}: ${e.reason}` };
    const w = e.written;
    if (!byValue && w.value !== null && w.value > 0 && w.value <= t.value) {
      return {
        ok: false,
        alreadyApplied: true,
        reason: `${callee}(gradient_clip_val=${val.text}) on line ${line} already clips the global norm at ${formatNumber(w.value)}, at or below ${t.text} (${t.how})`,
      };
    }
    const nv = formatWritten(w, t.value);
    edits.push({ start: w.node.startIndex, end: w.node.endIndex, newText: nv });
    const at = originWhere(w);
    const what =
      w.origin.kind === 'literal'
        ? atCall(callee, 'gradient_clip_val', w.node.text, nv, line, 'via' in valArg ? valArg.via : null, w.node)
        : `${changePhrase(w, nv, w.value !== null && w.value > t.value ? 'lower' : 'set')} (${at}), used by ${callee}(gradient_clip_val=…) on line ${line}`;
    return { ok: true, title: `Clip gradients by global norm ${t.text}: ${what} (${[t.how, ...w.notes, ...notes].join('; ')})`, edits };
  }
  if (!val) edits.push(...addKeyword(layout, call, `gradient_clip_val=${t.text}`));
  else edits.push({ start: val.startIndex, end: val.endIndex, newText: t.text });
  return {
    ok: true,
    title: `Clip gradients by global norm ${t.text}: set ${callee}(gradient_clip_val=${t.text}) on line ${line} (${[t.how, 'Lightning clips inside its optimizer step', ...notes].join('; ')})`,
    edits,
  };
}

/**
 * Manual optimization (`self.automatic_optimization = False`): Lightning does not clip, and
 * Trainer(gradient_clip_val=…) is refused; `self.clip_gradients(opt, gradient_clip_val=…,
 * gradient_clip_algorithm="norm")` goes after each `self.manual_backward(…)` that precedes an
 * `opt.step()` in training_step.
 */
function computeManualClip(layout: Layout, cls: SyntaxNode, manual: SyntaxNode, t: { value: number; text: string; how: string }): Outcome {
  const name = cls.childForFieldName('name')!.text;
  const why = `${name} uses manual optimization (self.automatic_optimization = False on line ${lineOf(manual)}), where Lightning clips only when training_step asks`;
  const step = methodOf(cls, 'training_step');
  if (!step)
    return {
      ok: false,
      reason: `${why}, and its training_step is not in this class: call self.clip_gradients(opt, gradient_clip_val=${t.text}, gradient_clip_algorithm="norm") before each opt.step()`,
    };
  const edits: TextEdit[] = [];
  const done: string[] = [];
  const refused: string[] = [];
  const clipped: string[] = [];
  for (const c of calls(step)) {
    const f = c.childForFieldName('function');
    const opt = f?.type === 'attribute' && f.childForFieldName('attribute')?.text === 'step' ? f.childForFieldName('object') : null;
    if (!opt || opt.type !== 'identifier' || /sched/i.test(opt.text) || argumentsOf(c).all.length > 0) continue;
    const stmt = statementOf(c);
    if (!stmt) continue;
    const desc = `${c.text} on line ${lineOf(c)}`;
    let back: SyntaxNode | null = null;
    for (let s = stmt.previousNamedSibling; s && !back; s = s.previousNamedSibling) {
      if (calls(s).some((x) => /(^|\.)manual_backward$/.test(x.childForFieldName('function')?.text ?? ''))) back = s;
    }
    if (!back) {
      refused.push(`no self.manual_backward(…) before ${desc} in its block`);
      continue;
    }
    const between = calls(stmt.parent!).filter((x) => x.startIndex >= back.startIndex && x.startIndex < c.startIndex);
    if (between.some((x) => CLIP_CALLS.has(dotted(x.childForFieldName('function'))?.pop() ?? ''))) {
      done.push(desc);
      continue;
    }
    if (back.endPosition.row === stmt.startPosition.row) {
      refused.push(`the backward and ${desc} share a line`);
      continue;
    }
    const at = afterStatement(layout, back);
    const indent = indentAt(layout.text, stmt.startIndex);
    edits.push({
      start: at.pos,
      end: at.pos,
      newText: `${at.prefix}${indent}self.clip_gradients(${opt.text}, gradient_clip_val=${t.text}, gradient_clip_algorithm=${layout.quote}norm${layout.quote})${layout.eol}`,
    });
    clipped.push(`${opt.text}.step() on line ${lineOf(c)}`);
  }
  if (edits.length === 0) {
    if (done.length && refused.length === 0) return { ok: false, alreadyApplied: true, reason: `${name}'s training_step already clips before ${done.join(', ')}` };
    return { ok: false, reason: `${why}: ${refused.join('; ') || 'no opt.step() in its training_step'}` };
  }
  const skipped = refused.length ? `; not before: ${refused.join('; ')}` : '';
  return {
    ok: true,
    title: `Clip gradients by global norm ${t.text}: self.clip_gradients(…, gradient_clip_val=${t.text}, gradient_clip_algorithm="norm") before ${clipped.join(', ')} (${why}; ${t.how})${skipped}`,
    edits,
  };
}

export function computeHfClip(root: SyntaxNode, layout: Layout, fw: Extract<Framework, { kind: 'hf' }>, finding: Finding, ctx: FixContext): Outcome {
  const t = thresholdOf(ctx, finding);
  if (fw.args.length === 0) {
    if (fw.parsers.length)
      return {
        ok: false,
        reason: `the TrainingArguments are parsed from the command line (HfArgumentParser on line ${lineOf(fw.parsers[0])}): pass --max_grad_norm ${t.text} (${t.how}; the default is 1.0)`,
      };
    return {
      ok: false,
      reason: `no TrainingArguments(…) in this file: the Trainer${fw.trainers.length ? ` on line ${lineOf(fw.trainers[0])}` : ''} takes its arguments from elsewhere (set max_grad_norm=${t.text} there)`,
    };
  }
  if (fw.args.length > 1)
    return { ok: false, reason: `${fw.args.length} TrainingArguments(…) calls in this file (lines ${fw.args.map(lineOf).join(', ')}): GradScope cannot tell which one the run used` };
  const call = fw.args[0];
  const callee = call.childForFieldName('function')!.text;
  const line = lineOf(call);
  const valArg = keywordOf(root, call, 'max_grad_norm');
  if ('unknown' in valArg) return { ok: false, reason: `${callee}(…) on line ${line} takes its arguments from ${valArg.unknown}: max_grad_norm may be in there` };
  const val = valArg.node;
  if (val) {
    const e = existing(root, val);
    if ('reason' in e) return { ok: false, reason: `${callee}(max_grad_norm=${val.text}) on line ${line}: ${e.reason}` };
    const w = e.written;
    if (w.value !== null && w.value > 0 && w.value <= t.value) {
      return {
        ok: false,
        alreadyApplied: true,
        reason: `${callee}(max_grad_norm=${val.text}) on line ${line} already clips the global norm at ${formatNumber(w.value)}, at or below ${t.text} (${t.how})`,
      };
    }
    const nv = formatWritten(w, t.value);
    const at = originWhere(w);
    const off = w.value === null || w.value <= 0 ? `, which turned clipping off` : '';
    const what =
      w.origin.kind === 'literal'
        ? `${atCall(callee, 'max_grad_norm', w.node.text, nv, line, valArg.via, w.node)}${off}`
        : `${changePhrase(w, nv, w.value !== null && w.value > t.value ? 'lower' : 'set')} (${at}), used by ${callee}(max_grad_norm=…) on line ${line}`;
    return {
      ok: true,
      title: `Clip gradients by global norm ${t.text}: ${what} (${[t.how, ...w.notes].join('; ')})`,
      edits: [{ start: w.node.startIndex, end: w.node.endIndex, newText: nv }],
    };
  }
  if (t.value >= HF_DEFAULT_MAX_GRAD_NORM) {
    return {
      ok: false,
      alreadyApplied: true,
      reason: `${callee}(…) on line ${line} does not set max_grad_norm, so the Hugging Face Trainer already clips the global norm at 1.0 (its default), at or below ${t.text} (${t.how})`,
    };
  }
  return {
    ok: true,
    title: `Clip gradients by global norm ${t.text}: set ${callee}(max_grad_norm=${t.text}) on line ${line} (not set there, so the Hugging Face Trainer clipped at 1.0, its default; ${t.text} is ${t.how})`,
    edits: addKeyword(layout, call, `max_grad_norm=${t.text}`),
  };
}
