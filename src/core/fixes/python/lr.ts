// lower-lr (÷10 to ÷1000) / raise-lr (×10 to ×1000, from the run) for PyTorch: the `lr` of the optimizer's
// constructor (keyword or second positional argument). A literal is rewritten; a name bound to a
// literal (`LR = 0.5`, at module level or in the enclosing function) is edited where it is bound;
// any other expression is divided/multiplied in place; a left-out lr gets `lr=<default ÷ 10>`.
import type { Finding } from '../../analysis/finding';
import { formatNumber } from '../ast';
import { lowerFactor, raiseFactor } from '../lr';
import { DEFAULT_LR, describeOptimizer, pickOptimizer } from './optimizer';
import { argumentsOf, enclosingFunction, isPrimary, lineOf, named, statementsOf, type Bindings, type SyntaxNode } from './syntax';
import type { Outcome } from './types';

/** The numeric value of a literal (`0.5`, `1e-3`, `(0.1)`), or null. */
export function literalValue(n: SyntaxNode): { value: number; node: SyntaxNode } | null {
  let x = n;
  while (x.type === 'parenthesized_expression' && x.namedChildCount === 1) x = x.namedChild(0)!;
  if (x.type !== 'integer' && x.type !== 'float') return null;
  const v = Number(x.text.replace(/_/g, ''));
  return Number.isFinite(v) && !/[jJ]$/.test(x.text) ? { value: v, node: x } : null;
}

/** The single `name = <literal>` binding visible from `from` (its function, then the module). */
function bindingOf(root: SyntaxNode, from: SyntaxNode, name: string): SyntaxNode | 'several' | null {
  const scopes: SyntaxNode[] = [];
  const fn = enclosingFunction(from);
  if (fn?.childForFieldName('body')) scopes.push(fn.childForFieldName('body')!);
  scopes.push(root);
  for (const scope of scopes) {
    const found: SyntaxNode[] = [];
    const visit = (block: SyntaxNode): void => {
      for (const s of statementsOf(block)) {
        if (s.type === 'expression_statement') {
          const a = s.firstNamedChild;
          if (a?.type === 'assignment' && a.childForFieldName('left')?.type === 'identifier' && a.childForFieldName('left')!.text === name) found.push(a);
          if (a?.type === 'augmented_assignment' && a.childForFieldName('left')?.text === name) found.push(a);
        } else if (s.type === 'if_statement' || s.type === 'with_statement' || s.type === 'try_statement') {
          // `if __name__ == "__main__":` blocks hold most scripts' constants.
          for (const c of named(s)) if (c.type === 'block') visit(c);
          for (const c of named(s)) for (const d of named(c)) if (d.type === 'block') visit(d);
        }
      }
    };
    visit(scope);
    if (found.length > 1) return 'several';
    if (found.length === 1) return found[0].type === 'assignment' ? found[0] : 'several';
    // A parameter of the function shadows the module's binding.
    if (scope !== root && fn) {
      const params = fn.childForFieldName('parameters');
      if (params && named(params).some((p) => (p.type === 'identifier' ? p.text : p.childForFieldName('name')?.text ?? p.namedChild(0)?.text) === name)) return null;
    }
  }
  return null;
}

export function computeLrPy(root: SyntaxNode, b: Bindings, finding: Finding, direction: 'lower' | 'raise'): Outcome {
  const picked = pickOptimizer(root, b, finding);
  if ('reason' in picked) return { ok: false, reason: picked.reason };
  const site = picked.site;
  const factor = direction === 'lower' ? lowerFactor(finding) : raiseFactor(finding);
  const scale = (x: number): number => (direction === 'lower' ? x / factor : x * factor);
  const op = direction === 'lower' ? '/' : '*';
  const verb = `${direction === 'lower' ? 'Lower' : 'Raise'} the learning rate ${direction === 'lower' ? '÷' : '×'}${factor}`;
  const where = describeOptimizer(site);
  const lr = site.lr;

  if (!lr) {
    const def = DEFAULT_LR[site.cls];
    if (def === undefined) return { ok: false, reason: `${where} has no lr argument and GradScope does not know torch.optim.${site.cls}'s default` };
    const v = formatNumber(scale(def));
    const { all, list } = argumentsOf(site.call);
    const lastArg = all[all.length - 1];
    const edit = lastArg ? { start: lastArg.endIndex, end: lastArg.endIndex, newText: `, lr=${v}` } : { start: list!.startIndex + 1, end: list!.startIndex + 1, newText: `lr=${v}` };
    if (lastArg && (lastArg.type === 'dictionary_splat' || lastArg.type === 'list_splat')) return { ok: false, reason: `${where} takes its arguments from ${lastArg.text}: the learning rate may be in there` };
    return { ok: true, title: `${verb}: ${formatNumber(def)} (torch.optim.${site.cls}'s default) → ${v} (${where})`, edits: [edit] };
  }

  const lit = literalValue(lr);
  if (lit) {
    const v = formatNumber(scale(lit.value), lit.node.text);
    return { ok: true, title: `${verb}: ${lr.text} → ${v} (${where})`, edits: [{ start: lr.startIndex, end: lr.endIndex, newText: v }] };
  }

  if (lr.type === 'identifier') {
    const bound = bindingOf(root, site.call, lr.text);
    const right = bound && bound !== 'several' ? bound.childForFieldName('right') : null;
    const v = right ? literalValue(right) : null;
    if (bound && bound !== 'several' && right && v) {
      const nv = formatNumber(scale(v.value), v.node.text);
      return {
        ok: true,
        title: `${verb}: ${lr.text} = ${right.text} → ${nv} (bound on line ${lineOf(bound)}, used by ${where})`,
        edits: [{ start: right.startIndex, end: right.endIndex, newText: nv }],
      };
    }
  }

  const wrapped = isPrimary(lr) ? lr.text : `(${lr.text})`;
  return { ok: true, title: `${verb}: ${lr.text} → ${wrapped} ${op} ${factor} (${where})`, edits: [{ start: lr.startIndex, end: lr.endIndex, newText: `${wrapped} ${op} ${factor}` }] };
}
