// lower-clip-threshold for TF.js: the script already clips (its optimizer wrapped in
// gradscopeClipByGlobalNorm(optimizer, maxNorm), what clip-global-norm writes, or a wrapper of its
// own named clip…Norm(optimizer, maxNorm): TF.js optimizers have no clipnorm option), but at a
// threshold above every norm of the run. The threshold — the wrapper's second argument, a literal or
// a const/let/var with a literal initializer — is lowered to the clip rule's (2 × the median early
// global norm of the run), when that is below it.
import * as ts from 'typescript';
import type { Finding } from '../../analysis/finding';
import type { FixContext, Outcome } from '../types';
import { clipSitesOfRun, lowerClipCheck, lowerClipTarget } from '../policy';
import { formatNumber } from '../text';
import { calleeName, lineOf, walk } from './ast';
import { findDeclaration, numericValue } from './lr';

/** The callee names taken for clipping wrappers: gradscopeClipByGlobalNorm, clipByGlobalNorm, withClipNorm … */
const CLIP_WRAPPER = /clip\w*norm/i;

interface Site {
  call: ts.CallExpression;
  name: string;
  threshold: { kind: 'literal'; node: ts.NumericLiteral; value: number; declared: ts.VariableDeclaration | null } | { kind: 'unreadable'; reason: string };
}

function thresholdOf(sf: ts.SourceFile, arg: ts.Expression): Site['threshold'] {
  const lit = numericValue(arg);
  if (lit) return { kind: 'literal', node: lit.node, value: lit.value, declared: null };
  if (ts.isIdentifier(arg)) {
    const decl = findDeclaration(arg, arg.text);
    if (decl && ts.isVariableDeclaration(decl) && decl.initializer) {
      const v = numericValue(decl.initializer);
      if (v) return { kind: 'literal', node: v.node, value: v.value, declared: decl };
      return { kind: 'unreadable', reason: `${arg.text} = ${decl.initializer.getText(sf)} (line ${lineOf(sf, decl.getStart(sf))}) is not a number literal` };
    }
    if (decl) return { kind: 'unreadable', reason: `${arg.text} is a parameter of the function on line ${lineOf(sf, decl.getStart(sf))}: its value comes from the caller` };
  }
  return { kind: 'unreadable', reason: `${arg.getText(sf)} cannot be traced to a number literal in this file` };
}

function clipSites(sf: ts.SourceFile): Site[] {
  const out: Site[] = [];
  walk(sf, (n) => {
    if (!ts.isCallExpression(n)) return;
    const name = calleeName(n)?.text;
    const arg = n.arguments[1];
    if (!name || !CLIP_WRAPPER.test(name) || !arg || ts.isSpreadElement(arg)) return;
    out.push({ call: n, name, threshold: thresholdOf(sf, arg) });
  });
  return out;
}

export function computeLowerClip(sf: ts.SourceFile, finding: Finding, ctx: FixContext): Outcome {
  const all = clipSites(sf);
  const describe = (s: Site): string => `${s.name}(…) on line ${lineOf(sf, s.call.getStart(sf))}`;
  if (all.length === 0) {
    return {
      ok: false,
      reason:
        'no clipping wrapper with a threshold in this file (looked for gradscopeClipByGlobalNorm(optimizer, maxNorm) and other clip…Norm(optimizer, maxNorm) calls; TF.js optimizers have no clipnorm option): the remedy clip-global-norm adds one',
    };
  }
  const target = lowerClipTarget(ctx.globalNorms, finding);
  const valueOf = (s: Site): number | null => (s.threshold.kind === 'literal' ? s.threshold.value : null);
  const currentText = (s: Site): string => `the clip threshold of ${describe(s)} (${s.threshold.kind === 'literal' ? formatNumber(s.threshold.value, s.threshold.node.getText(sf)) : ''})`;
  // The threshold the run reported picks the wrapper when there are several.
  const picked = clipSitesOfRun(all, finding.evidence.clipMaxNorm ?? finding.evidence.clipValue, target, valueOf, (s) => s.threshold.kind === 'unreadable', currentText);
  if (!picked.ok) return picked;
  let sites = picked.sites;
  // Wrappers sharing one constant are one edit.
  const node = (s: Site): ts.Node | null => (s.threshold.kind === 'literal' ? s.threshold.node : null);
  sites = sites.filter((s, i) => node(s) === null || sites.findIndex((o) => node(o) === node(s)) === i);
  if (sites.length > 1) return { ok: false, reason: `${sites.length} clip thresholds in this file (${sites.map(describe).join(', ')}): GradScope cannot tell which one to lower` };
  const site = sites[0];
  const th = site.threshold;
  if (th.kind === 'unreadable') return { ok: false, reason: `the threshold of ${describe(site)}: ${th.reason}` };
  if (!(th.value > 0)) return { ok: false, reason: `${describe(site)} has the threshold ${th.node.getText(sf)}, which does not clip` };
  const lower = lowerClipCheck(target, th.value, currentText(site));
  if (!lower.ok) return lower;
  const nv = formatNumber(lower.value, th.node.getText(sf));
  const line = lineOf(sf, site.call.getStart(sf));
  const where = th.declared
    ? `${th.declared.name.getText(sf)} = ${th.node.getText(sf)} → ${nv}, declared on line ${lineOf(sf, th.declared.getStart(sf))}, used on line ${line}`
    : `line ${line}`;
  return {
    ok: true,
    title: `Lower the clip threshold of ${site.name} from ${formatNumber(th.value, th.node.getText(sf))} to ${nv} (${where}; ${lower.how})`,
    edits: [{ start: th.node.getStart(sf), end: th.node.end, newText: nv }],
  };
}
