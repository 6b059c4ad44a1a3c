// lower-clip-threshold for PyTorch: the script clips its gradients, but at a threshold above every
// norm of the run (the analyzer offers this instead of clip-global-norm, analysis/clipping.ts). The
// threshold is lowered where it is written: the `max_norm` of `clip_grad_norm_(params, 5.0)` (or
// `clip_value` of `clip_grad_value_`, a value clip), Lightning's `Trainer(gradient_clip_val=…)` and
// `self.clip_gradients(…, gradient_clip_val=…)`, HF's `TrainingArguments(max_grad_norm=…)` (1.0 when
// not set) — at the literal, or where a name, an argparse default, a dict … resolves to (value.ts).
// The new threshold is the clip rule's (2 × the median early global norm of the run) and must be
// below the current one.
import type { Finding } from '../../analysis/finding';
import type { FixContext, Outcome, TextEdit } from '../types';
import { clipSitesOfRun, lowerClipCheck, lowerClipTarget } from '../policy';
import { formatNumber } from '../text';
import type { Framework } from './framework';
import { argumentsOf, calls, dotted, lineOf, type Layout, type SyntaxNode } from './syntax';
import { addKeyword, HF_DEFAULT_MAX_GRAD_NORM, keywordOf } from './trainer';
import { changePhrase, formatWritten, originWhere, resolveValue, stringValue, type Written } from './value';

const NORM_CALLS = new Set(['clip_grad_norm_', 'clip_grad_norm']);
const VALUE_CALLS = new Set(['clip_grad_value_']);

/** Where a threshold is given, and what it resolved to. */
interface Site {
  /** What the title names: `clip_grad_norm_`, `pl.Trainer(gradient_clip_val=…)`. */
  what: string;
  call: SyntaxNode;
  /** It clips each element (`clip_grad_value_`, `gradient_clip_algorithm="value"`), not the global norm. */
  valueClip: boolean;
  /** The threshold, or the framework's default when the keyword is not given (then `addKeyword` adds it). */
  threshold:
    | { kind: 'written'; written: Written; argText: string; via: string | null; key: string | null }
    | { kind: 'default'; value: number; addKeyword: string }
    | { kind: 'unreadable'; reason: string };
}

/** The value the site clips at (null when it cannot be read). */
function valueOf(s: Site): number | null {
  if (s.threshold.kind === 'written') return s.threshold.written.value;
  return s.threshold.kind === 'default' ? s.threshold.value : null;
}

/** A threshold for the title, in the style it is written in (`1e30`, not `1e+30`). */
function shown(s: Site, v: number): string {
  return formatNumber(v, s.threshold.kind === 'written' ? s.threshold.written.node.text : undefined);
}

function describe(s: Site): string {
  return `${s.what} on line ${lineOf(s.call)}`;
}

/** A threshold argument, resolved to where its value is written. */
function thresholdAt(root: SyntaxNode, arg: SyntaxNode, via: string | null, key: string | null): Site['threshold'] {
  const r = resolveValue(root, arg);
  if (!r) return { kind: 'unreadable', reason: `its threshold ${arg.text} cannot be traced to a number in this file` };
  if (!r.ok) return { kind: 'unreadable', reason: `its threshold ${arg.text}: ${r.reason}` };
  return { kind: 'written', written: r.written, argText: arg.text, via, key };
}

/** `clip_grad_norm_(params, max_norm)`, `clip_grad_value_(params, clip_value)`, `self.clip_gradients(opt, gradient_clip_val=…)`. */
function clipCallSites(root: SyntaxNode): Site[] {
  const out: Site[] = [];
  for (const c of calls(root)) {
    const d = dotted(c.childForFieldName('function'));
    const name = d?.[d.length - 1] ?? '';
    const { positional, keywords, all } = argumentsOf(c);
    const splat = all.find((a) => a.type === 'list_splat' || a.type === 'dictionary_splat');
    let arg: SyntaxNode | undefined;
    let valueClip = false;
    if (NORM_CALLS.has(name)) {
      // FSDP's `model.clip_grad_norm_(max_norm)` takes the threshold first.
      const method = d!.length >= 2 && !/^(utils|clip_grad)$/.test(d![d!.length - 2]) && positional.length === 1 && !keywords.has('parameters');
      arg = keywords.get('max_norm') ?? (method ? positional[0] : positional[1]);
    } else if (VALUE_CALLS.has(name)) {
      arg = keywords.get('clip_value') ?? positional[1];
      valueClip = true;
    } else if (name === 'clip_gradients' && d![0] === 'self') {
      // Without gradient_clip_val it clips at the Trainer's (a site of its own).
      arg = keywords.get('gradient_clip_val') ?? positional[1];
      if (!arg || arg.type === 'none') continue;
      valueClip = stringValue(keywords.get('gradient_clip_algorithm') ?? positional[2]) === 'value';
    } else continue;
    const threshold: Site['threshold'] = arg
      ? thresholdAt(root, arg, null, null)
      : { kind: 'unreadable', reason: splat ? `its threshold is passed through ${splat.text}` : 'it is given no threshold' };
    out.push({ what: name, call: c, valueClip, threshold });
  }
  return out;
}

/** Lightning's `Trainer(gradient_clip_val=…)` (not given or None: the Trainer does not clip). */
function lightningSites(root: SyntaxNode, fw: Extract<Framework, { kind: 'lightning' }>): Site[] {
  const out: Site[] = [];
  for (const call of fw.trainers) {
    const callee = call.childForFieldName('function')!.text;
    const what = `${callee}(gradient_clip_val=…)`;
    const val = keywordOf(root, call, 'gradient_clip_val');
    if ('unknown' in val) {
      out.push({ what, call, valueClip: false, threshold: { kind: 'unreadable', reason: `it takes its arguments from ${val.unknown}, where gradient_clip_val may be` } });
      continue;
    }
    if (!val.node || val.node.type === 'none') continue;
    const alg = keywordOf(root, call, 'gradient_clip_algorithm');
    const valueClip = 'node' in alg && stringValue(alg.node) === 'value';
    out.push({ what, call, valueClip, threshold: thresholdAt(root, val.node, val.via, 'gradient_clip_val') });
  }
  return out;
}

/** HF's `TrainingArguments(max_grad_norm=…)`, 1.0 when not given. */
function hfSites(root: SyntaxNode, fw: Extract<Framework, { kind: 'hf' }>): Site[] {
  const out: Site[] = [];
  for (const call of fw.args) {
    const callee = call.childForFieldName('function')!.text;
    const what = `${callee}(max_grad_norm=…)`;
    const val = keywordOf(root, call, 'max_grad_norm');
    if ('unknown' in val) {
      out.push({ what, call, valueClip: false, threshold: { kind: 'unreadable', reason: `it takes its arguments from ${val.unknown}, where max_grad_norm may be` } });
    } else if (!val.node) {
      out.push({ what, call, valueClip: false, threshold: { kind: 'default', value: HF_DEFAULT_MAX_GRAD_NORM, addKeyword: 'max_grad_norm' } });
    } else {
      out.push({ what, call, valueClip: false, threshold: thresholdAt(root, val.node, val.via, 'max_grad_norm') });
    }
  }
  return out;
}

/** Why no threshold was found: the framework's command-line idiom when the file has one. */
function noSiteReason(fw: Framework): string {
  if (fw.kind === 'lightning' && fw.trainers.length === 0 && fw.clis.length) {
    return `the Trainer is built by LightningCLI (line ${lineOf(fw.clis[0])}) from the command line or its config: lower --trainer.gradient_clip_val there`;
  }
  if (fw.kind === 'hf' && fw.args.length === 0 && fw.parsers.length) {
    return `the TrainingArguments are parsed from the command line (HfArgumentParser on line ${lineOf(fw.parsers[0])}): lower --max_grad_norm there`;
  }
  const looked = [
    'clip_grad_norm_/clip_grad_value_ calls',
    ...(fw.kind === 'lightning' ? ['Trainer(gradient_clip_val=…)'] : []),
    ...(fw.kind === 'hf' ? ['TrainingArguments(max_grad_norm=…)'] : []),
  ];
  return `no clip threshold in this file (looked for ${looked.join(', ')}): the script may clip in another file or a library`;
}

/** The new value written where the threshold is, described for the title. */
function whereWritten(w: Written, nv: string, via: string | null, key: string | null, line: number): string {
  const o = w.origin;
  const old = w.node.text;
  switch (o.kind) {
    case 'literal':
      return via ? `"${key}": ${old} → ${nv} in ${via} (line ${lineOf(w.node)}), passed on line ${line}` : `line ${lineOf(w.node)}`;
    case 'argparse':
      return `the default of ${o.flag}: ${old} → ${nv} (${o.via} on line ${o.line}), used on line ${line}`;
    case 'parameter-default':
      return `the default of ${o.callee}(${o.param}=…): ${old} → ${nv} (line ${o.line}), used on line ${line}`;
    case 'assignment':
    case 'call-argument':
    case 'dict':
      return `${changePhrase(w, nv, 'lower')} (${originWhere(w)}), used on line ${line}`;
  }
}

export function computeLowerClipPy(root: SyntaxNode, layout: Layout, finding: Finding, ctx: FixContext, fw: Framework): Outcome {
  const all = [...clipCallSites(root), ...(fw.kind === 'lightning' ? lightningSites(root, fw) : []), ...(fw.kind === 'hf' ? hfSites(root, fw) : [])];
  if (all.length === 0) return { ok: false, reason: noSiteReason(fw) };
  const target = lowerClipTarget(ctx.globalNorms, finding);
  const currentText = (s: Site): string => `the clip threshold of ${describe(s)} (${shown(s, valueOf(s)!)})`;
  // The threshold the probe saw picks the site when the file has several (clipValue: a clip_grad_value_'s).
  const seen = finding.evidence.clipMaxNorm ?? finding.evidence.clipValue;
  const picked = clipSitesOfRun(all, seen, target, valueOf, (s) => s.threshold.kind === 'unreadable', currentText);
  if (!picked.ok) return picked;
  let sites = picked.sites;
  // Several calls using one written value (`MAX_NORM`, one `--clip`) are one edit.
  const node = (s: Site): SyntaxNode | null => (s.threshold.kind === 'written' ? s.threshold.written.node : null);
  sites = sites.filter((s, i) => {
    const n = node(s);
    return !n || sites.findIndex((o) => node(o)?.equals(n)) === i;
  });
  if (sites.length > 1) {
    const at = typeof seen === 'number' ? `, and the run clipped at ${formatNumber(seen)}` : '';
    return { ok: false, reason: `${sites.length} clip thresholds in this file (${sites.map(describe).join(', ')})${at}: GradScope cannot tell which one to lower` };
  }
  const site = sites[0];
  const th = site.threshold;
  if (th.kind === 'unreadable') return { ok: false, reason: `${describe(site)}: ${th.reason}` };
  const current = valueOf(site);
  if (th.kind === 'written' && (current === null || current <= 0)) {
    const w = th.written;
    // `gradient_clip_val=args.clip` with `--clip` defaulting to None: the run's threshold came from the command line.
    if (w.origin.kind === 'argparse') {
      return {
        ok: false,
        reason: `${describe(site)} takes its threshold from ${w.origin.flag}, whose default is ${w.node.text} (${w.origin.via} on line ${w.origin.line}): the run's threshold came from the command line; pass a lower ${w.origin.flag} there`,
      };
    }
    const off = th.argText !== w.node.text ? `${th.argText} = ${w.node.text}` : w.node.text;
    return { ok: false, reason: `${describe(site)} has the threshold ${off}, which turns clipping off there: add clipping with the remedy clip-global-norm` };
  }
  if (current === null) return { ok: false, reason: `${describe(site)}: its threshold cannot be read` };
  const lower = lowerClipCheck(target, current, currentText(site));
  if (!lower.ok) return lower;
  const line = lineOf(site.call);
  const notes: string[] = [lower.how];
  if (site.valueClip) notes.push('a value clip: it bounds each gradient element, not the global norm');
  let where: string;
  let edits: TextEdit[];
  if (th.kind === 'default') {
    edits = addKeyword(layout, site.call, `${th.addKeyword}=${formatNumber(lower.value)}`);
    where = `line ${line}: ${th.addKeyword} was not set, so the Hugging Face Trainer clipped at ${shown(site, current)}, its default`;
  } else {
    const w = th.written;
    const nv = formatWritten(w, lower.value);
    edits = [{ start: w.node.startIndex, end: w.node.endIndex, newText: nv }];
    where = whereWritten(w, nv, th.via, th.key, line);
    notes.push(...w.notes);
  }
  return { ok: true, title: `Lower the clip threshold of ${site.what} from ${shown(site, current)} to ${shown(site, lower.value)} (${where}; ${notes.join('; ')})`, edits };
}
