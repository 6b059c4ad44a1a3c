// The optimizers a PyTorch script creates (`opt = torch.optim.SGD(model.parameters(), lr=0.1)`,
// through any binding of torch.optim) and which one a finding is about.
import type { Finding } from '../../analysis/finding';
import { argumentsOf, calls, dotted, enclosingClass, lineOf, resolve, statementOf, walk, type Bindings, type SyntaxNode } from './syntax';

/** torch.optim's defaults when `lr` is left out (SGD's since torch 2.2; before, it was required). */
export const DEFAULT_LR: Record<string, number> = {
  SGD: 1e-3,
  Adam: 1e-3,
  AdamW: 1e-3,
  RAdam: 1e-3,
  NAdam: 2e-3,
  Adamax: 2e-3,
  RMSprop: 1e-2,
  Adagrad: 1e-2,
  ASGD: 1e-2,
  Rprop: 1e-2,
  Adadelta: 1.0,
  LBFGS: 1,
  SparseAdam: 1e-3,
};

export interface OptimizerSite {
  call: SyntaxNode;
  /** SGD, Adam, … */
  cls: string;
  /** The name it is assigned to (`opt`, `self.optimizer`), or null. */
  target: string | null;
  /** The assignment statement (or the statement holding the call). */
  stmt: SyntaxNode;
  line: number;
  params: SyntaxNode | null;
  lr: SyntaxNode | null;
}

export function describeOptimizer(s: OptimizerSite): string {
  return `${s.target ? `${s.target} = ` : ''}${s.call.childForFieldName('function')!.text}(…) on line ${s.line}`;
}

export function findOptimizers(root: SyntaxNode, b: Bindings): OptimizerSite[] {
  const out: OptimizerSite[] = [];
  for (const c of calls(root)) {
    const q = resolve(c.childForFieldName('function'), b);
    const m = q ? /^torch\.optim\.([A-Z]\w*)$/.exec(q) : null;
    if (!m) continue;
    const stmt = statementOf(c);
    if (!stmt) continue;
    let target: string | null = null;
    const p = c.parent;
    if (p && p.type === 'assignment' && p.childForFieldName('right')?.equals(c)) {
      const left = p.childForFieldName('left');
      if (left && (left.type === 'identifier' || left.type === 'attribute') && dotted(left)) target = left.text;
    }
    const { positional, keywords } = argumentsOf(c);
    out.push({ call: c, cls: m[1], target, stmt, line: lineOf(c), params: keywords.get('params') ?? positional[0] ?? null, lr: keywords.get('lr') ?? positional[1] ?? null });
  }
  return out;
}

/** The root name of a parameters expression (`G.parameters()` → G, `list(self.net.parameters())` → self.net). */
function paramsOwner(params: SyntaxNode | null): string | null {
  if (!params) return null;
  let owner: string | null = null;
  walk(params, (n) => {
    if (owner) return false;
    if (n.type === 'call') {
      const f = n.childForFieldName('function');
      if (f && f.type === 'attribute' && f.childForFieldName('attribute')?.text === 'parameters') {
        const obj = f.childForFieldName('object');
        if (obj && dotted(obj)) owner = obj.text;
        return false;
      }
    }
    return true;
  });
  return owner;
}

/** Names assigned an instance of `cls` (`G = Generator(…)`, `self.g = Generator()`). */
function instancesOf(root: SyntaxNode, cls: string): string[] {
  const out: string[] = [];
  walk(root, (n) => {
    if (n.type === 'assignment') {
      const right = n.childForFieldName('right');
      const left = n.childForFieldName('left');
      const callee = right?.type === 'call' ? dotted(right.childForFieldName('function')) : null;
      if (left && callee && callee[callee.length - 1] === cls && dotted(left)) out.push(left.text);
      // `model = Net().to(device)`
      if (left && right?.type === 'call' && dotted(left)) {
        let x: SyntaxNode | null = right;
        while (x && x.type === 'call') {
          const f: SyntaxNode | null = x.childForFieldName('function');
          if (f?.type === 'attribute') x = f.childForFieldName('object');
          else {
            const d = dotted(f);
            if (d && d[d.length - 1] === cls && x !== right) out.push(left.text);
            break;
          }
        }
      }
    }
    return true;
  });
  return out;
}

/**
 * The optimizer a remedy should edit: the one built on the finding's line; the only one in the
 * file; or, with several, the one whose parameters come from the finding's model (the layer's
 * first name, `G.fc1` → `G.parameters()`, or an instance of the class that builds the layer).
 */
export function pickOptimizer(root: SyntaxNode, b: Bindings, finding: Finding): { site: OptimizerSite } | { reason: string } {
  const sites = findOptimizers(root, b);
  if (sites.length === 0) return { reason: "no optimizer is created in this file (looked for torch.optim.<Optimizer>(…) through the file's torch imports)" };
  if (finding.source) {
    const here = sites.filter((s) => s.line === finding.source!.line || (s.stmt.startPosition.row < finding.source!.line && s.stmt.endPosition.row >= finding.source!.line - 1));
    if (here.length === 1) return { site: here[0] };
  }
  if (sites.length === 1) return { site: sites[0] };
  const owners = new Set<string>();
  if (finding.layer) {
    const parts = finding.layer.split('.');
    // `G.fc1` → G; a LightningModule's `discriminator` → self.discriminator.parameters().
    for (let i = 1; i <= parts.length; i++) owners.add(parts.slice(0, i).join('.'));
  }
  if (finding.source) {
    const node = root.descendantForPosition({ row: finding.source.line - 1, column: Math.max(0, finding.source.column - 1) });
    const cls = node ? enclosingClass(node) : null;
    const name = cls?.childForFieldName('name')?.text;
    if (name) for (const inst of instancesOf(root, name)) owners.add(inst);
  }
  const matching = sites.filter((s) => {
    const o = paramsOwner(s.params);
    return o !== null && (owners.has(o) || owners.has(o.replace(/^self\./, '')));
  });
  if (matching.length === 1) return { site: matching[0] };
  const list = sites.map(describeOptimizer).join(', ');
  if (!finding.source && !finding.layer)
    return { reason: `${sites.length} optimizers are created in this file (${list}) and the finding is global: GradScope cannot tell which one it is about` };
  return { reason: `${sites.length} optimizers are created in this file (${list}): GradScope cannot tell which one trains ${finding.layer ? `layer ${finding.layer}` : 'the model'}` };
}
