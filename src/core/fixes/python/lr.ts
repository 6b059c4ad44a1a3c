// lower-lr (÷10 to ÷1000) / raise-lr (×10 to ×1000, from the run) for PyTorch: the `lr` of the optimizer's
// constructor (keyword or second positional argument), changed where its value is written (value.ts):
// a literal is rewritten; `LR = 0.5` where it is bound; `args.lr` at the default of `--lr` in its
// add_argument (dividing at the use site would also divide whatever the user passes); a
// LightningModule's `self.hparams.lr` / `self.lr` at its `__init__` default or at the argument its
// instantiation passes. Any other expression is divided/multiplied in place; a left-out lr gets
// `lr=<default ÷ 10>`. Under the Hugging Face Trainer the learning rate is
// `TrainingArguments(learning_rate=…)` (5e-5 when left out), unless the Trainer is given its own optimizer.
import type { Finding } from '../../analysis/finding';
import { lowerFactor, raiseFactor } from '../policy';
import { formatNumber } from '../text';
import type { Outcome } from '../types';
import { hfOwnOptimizer, type Framework } from './framework';
import { DEFAULT_LR, describeOptimizer, findOptimizers, pickOptimizer } from './optimizer';
import { addKeyword, keywordOf } from './trainer';
import { argumentsOf, enclosingFunction, isPrimary, lineOf, type Bindings, type Layout, type SyntaxNode } from './syntax';
import { changePhrase, formatWritten, originWhere, resolveValue } from './value';

/** Hugging Face TrainingArguments' learning_rate when it is not given. */
export const HF_DEFAULT_LR = 5e-5;

/** The numeric value of a literal (`0.5`, `1e-3`, `(0.1)`), or null. */
export function literalValue(n: SyntaxNode): { value: number; node: SyntaxNode } | null {
  let x = n;
  while (x.type === 'parenthesized_expression' && x.namedChildCount === 1) x = x.namedChild(0)!;
  if (x.type !== 'integer' && x.type !== 'float') return null;
  const v = Number(x.text.replace(/_/g, ''));
  return Number.isFinite(v) && !/[jJ]$/.test(x.text) ? { value: v, node: x } : null;
}

interface Direction {
  direction: 'lower' | 'raise';
  factor: number;
  scale(x: number): number;
  op: '/' | '*';
  /** `Lower the learning rate ÷10` */
  verb: string;
}

function directionOf(finding: Finding, direction: 'lower' | 'raise'): Direction {
  const factor = direction === 'lower' ? lowerFactor(finding) : raiseFactor(finding);
  return {
    direction,
    factor,
    scale: (x: number): number => (direction === 'lower' ? x / factor : x * factor),
    op: direction === 'lower' ? '/' : '*',
    verb: `${direction === 'lower' ? 'Lower' : 'Raise'} the learning rate ${direction === 'lower' ? '÷' : '×'}${factor}`,
  };
}

/**
 * Changes the learning rate given by expression `lr` (used by `usedBy`) where its value is written.
 * `atUse`: how a change of a literal at the use site is said (`TrainingArguments(learning_rate=2e-4 → 2e-5) on line 4`).
 */
function changeLr(root: SyntaxNode, lr: SyntaxNode, usedBy: string, d: Direction, atUse?: (old: string, nu: string) => string): Outcome {
  const r = resolveValue(root, lr);
  if (r && !r.ok) {
    return {
      ok: false,
      reason: `the learning rate ${lr.text} (${usedBy}): ${r.reason}; ${d.direction === 'lower' ? 'lower' : 'raise'} it by hand (${d.direction === 'lower' ? '÷' : '×'}${d.factor})`,
    };
  }
  if (r && r.ok && r.written.value !== null && r.written.value > 0) {
    const w = r.written;
    const nv = formatWritten(w, d.scale(w.value!));
    const phrase = changePhrase(w, nv, d.direction);
    const at = originWhere(w);
    const tail = [at ? `${at}, used by ${usedBy}` : usedBy, ...w.notes].join('; ');
    const title = w.origin.kind === 'literal' && atUse ? `${d.verb}: ${atUse(w.node.text, nv)}` : `${d.verb}: ${phrase} (${tail})`;
    return { ok: true, title, edits: [{ start: w.node.startIndex, end: w.node.endIndex, newText: nv }] };
  }
  const wrapped = isPrimary(lr) ? lr.text : `(${lr.text})`;
  return {
    ok: true,
    title: `${d.verb}: ${lr.text} → ${wrapped} ${d.op} ${d.factor} (${usedBy}; this scales whatever value ${lr.text} has when the script runs)`,
    edits: [{ start: lr.startIndex, end: lr.endIndex, newText: `${wrapped} ${d.op} ${d.factor}` }],
  };
}

export function computeLrPy(root: SyntaxNode, b: Bindings, layout: Layout, finding: Finding, direction: 'lower' | 'raise', fw: Framework): Outcome {
  const d = directionOf(finding, direction);
  if (fw.kind === 'hf' && !hfOwnOptimizer(fw)) {
    const out = computeHfLr(root, layout, fw, d);
    if (out.ok || fw.args.length > 0 || fw.trainers.length > 0) return out;
    // HfArgumentParser feeding a loop of the script's own (no Trainer here): its optimizer's lr.
    const plain = computeTorchLr(root, b, finding, d, fw);
    return plain.ok ? plain : out;
  }
  return computeTorchLr(root, b, finding, d, fw);
}

/** The lr of the script's torch.optim optimizer. */
function computeTorchLr(root: SyntaxNode, b: Bindings, finding: Finding, d: Direction, fw: Framework): Outcome {
  const picked = pickOptimizer(root, b, finding);
  if ('reason' in picked) {
    if (fw.kind === 'lightning' && findOptimizers(root, b).length === 0)
      return { ok: false, reason: `${picked.reason}: a LightningModule creates it in configure_optimizers, which is not in this file (another file, or LightningCLI's --optimizer)` };
    return { ok: false, reason: picked.reason };
  }
  const site = picked.site;
  const fn = enclosingFunction(site.call)?.childForFieldName('name')?.text;
  const where = `${describeOptimizer(site)}${fn === 'configure_optimizers' ? ' in configure_optimizers' : ''}`;
  const lr = site.lr;

  if (!lr) {
    const def = DEFAULT_LR[site.cls];
    if (def === undefined) return { ok: false, reason: `${where} has no lr argument and GradScope does not know torch.optim.${site.cls}'s default` };
    const v = formatNumber(d.scale(def));
    const { all, list } = argumentsOf(site.call);
    const lastArg = all[all.length - 1];
    const edit = lastArg ? { start: lastArg.endIndex, end: lastArg.endIndex, newText: `, lr=${v}` } : { start: list!.startIndex + 1, end: list!.startIndex + 1, newText: `lr=${v}` };
    if (lastArg && (lastArg.type === 'dictionary_splat' || lastArg.type === 'list_splat'))
      return { ok: false, reason: `${where} takes its arguments from ${lastArg.text}: the learning rate may be in there` };
    return { ok: true, title: `${d.verb}: ${formatNumber(def)} (torch.optim.${site.cls}'s default) → ${v} (${where})`, edits: [edit] };
  }
  return changeLr(root, lr, where, d);
}

/** `TrainingArguments(learning_rate=…)`. */
function computeHfLr(root: SyntaxNode, layout: Layout, fw: Extract<Framework, { kind: 'hf' }>, d: Direction): Outcome {
  if (fw.args.length === 0) {
    if (fw.parsers.length)
      return {
        ok: false,
        reason: `the TrainingArguments are parsed from the command line (HfArgumentParser on line ${lineOf(fw.parsers[0])}): pass --learning_rate with a ${d.direction === 'lower' ? 'lower' : 'higher'} value (${d.direction === 'lower' ? '÷' : '×'}${d.factor}; the default is ${formatNumber(HF_DEFAULT_LR, '5e-5')})`,
      };
    return { ok: false, reason: `no TrainingArguments(…) in this file: the Trainer${fw.trainers.length ? ` on line ${lineOf(fw.trainers[0])}` : ''} takes its arguments from elsewhere` };
  }
  if (fw.args.length > 1)
    return { ok: false, reason: `${fw.args.length} TrainingArguments(…) calls in this file (lines ${fw.args.map(lineOf).join(', ')}): GradScope cannot tell which one the run used` };
  const call = fw.args[0];
  const name = call.childForFieldName('function')!.text;
  const where = `${name}(…) on line ${lineOf(call)}`;
  const kw = keywordOf(root, call, 'learning_rate');
  if ('unknown' in kw) return { ok: false, reason: `${where} takes its arguments from ${kw.unknown}: learning_rate may be in there` };
  const lr = kw.node;
  if (lr) {
    const via = kw.via;
    return changeLr(root, lr, where, d, (o, n) =>
      via ? `"learning_rate": ${o} → ${n} in ${via} (line ${lineOf(lr)}), passed to ${where}` : `${name}(learning_rate=${o} → ${n}) on line ${lineOf(call)}`,
    );
  }
  const v = formatNumber(d.scale(HF_DEFAULT_LR), '5e-5');
  return {
    ok: true,
    title: `${d.verb}: set ${name}(learning_rate=${v}) (not set on line ${lineOf(call)}, so the Trainer used its default ${formatNumber(HF_DEFAULT_LR, '5e-5')})`,
    edits: addKeyword(layout, call, `learning_rate=${v}`),
  };
}
