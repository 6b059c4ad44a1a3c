// Helpers over the Tree-sitter Python tree: walking, statements and blocks, lines and indentation,
// and how the script names torch (its imports), so new code is spelled the way the file spells it.
import type { Node } from '@vscode/tree-sitter-wasm';

export type SyntaxNode = Node;

export function walk(n: SyntaxNode, visit: (n: SyntaxNode) => boolean | void): void {
  if (visit(n) === false) return;
  for (const c of n.namedChildren) if (c) walk(c, visit);
}

export function named(n: SyntaxNode): SyntaxNode[] {
  return n.namedChildren.filter((c): c is SyntaxNode => c !== null && c.type !== 'comment');
}

/** 1-based line of a node's start. */
export function lineOf(n: SyntaxNode): number {
  return n.startPosition.row + 1;
}

/** The error and missing nodes of a tree (0 for a file that parses). */
export function errorCount(root: SyntaxNode): number {
  if (!root.hasError) return 0;
  let count = 0;
  const visit = (n: SyntaxNode): void => {
    if (n.isError || n.isMissing) count++;
    for (const c of n.children) if (c && (c.hasError || c.isMissing)) visit(c);
  };
  visit(root);
  return count;
}

/** Whether a node is a statement directly inside a module or block. */
export function isStatement(n: SyntaxNode): boolean {
  const p = n.parent;
  return !!p && (p.type === 'module' || p.type === 'block') && n.type !== 'comment';
}

/** The statement (directly in a block or the module) containing the node. */
export function statementOf(n: SyntaxNode): SyntaxNode | null {
  for (let x: SyntaxNode | null = n; x; x = x.parent) if (isStatement(x)) return x;
  return null;
}

/** The statements of a block or module (comments left out). */
export function statementsOf(block: SyntaxNode): SyntaxNode[] {
  return named(block);
}

/** The nearest enclosing function definition (null: module level). */
export function enclosingFunction(n: SyntaxNode): SyntaxNode | null {
  for (let x = n.parent; x; x = x.parent) if (x.type === 'function_definition') return x;
  return null;
}

export function enclosingClass(n: SyntaxNode): SyntaxNode | null {
  for (let x = n.parent; x; x = x.parent) if (x.type === 'class_definition') return x;
  return null;
}

/** The callee's dotted parts (`torch.nn.Linear` → ['torch', 'nn', 'Linear']), or null. */
export function dotted(n: SyntaxNode | null): string[] | null {
  if (!n) return null;
  if (n.type === 'identifier') return [n.text];
  if (n.type === 'attribute') {
    const obj = dotted(n.childForFieldName('object'));
    const attr = n.childForFieldName('attribute');
    return obj && attr ? [...obj, attr.text] : null;
  }
  return null;
}

export function calls(root: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  walk(root, (n) => {
    if (n.type === 'call') out.push(n);
  });
  return out;
}

/** A call's positional arguments and keyword arguments. */
export function argumentsOf(call: SyntaxNode): { positional: SyntaxNode[]; keywords: Map<string, SyntaxNode>; list: SyntaxNode | null; all: SyntaxNode[] } {
  const list = call.childForFieldName('arguments');
  const positional: SyntaxNode[] = [];
  const keywords = new Map<string, SyntaxNode>();
  const all: SyntaxNode[] = [];
  if (list && list.type === 'argument_list') {
    for (const a of named(list)) {
      all.push(a);
      if (a.type === 'keyword_argument') {
        const k = a.childForFieldName('name');
        const v = a.childForFieldName('value');
        if (k && v) keywords.set(k.text, v);
      } else if (a.type !== 'list_splat' && a.type !== 'dictionary_splat') positional.push(a);
    }
  }
  return { positional, keywords, list, all };
}

/** Text without whitespace (for comparing expressions). */
export function flat(s: string): string {
  return s.replace(/\s+/g, '');
}

/** An expression that takes `.attr`, `[i]` or `/ 10` without parentheses. */
export function isPrimary(n: SyntaxNode): boolean {
  return ['identifier', 'attribute', 'call', 'subscript', 'parenthesized_expression', 'integer', 'float', 'string', 'list', 'tuple', 'dictionary'].includes(n.type);
}

// --- Text layout ----------------------------------------------------------------------------------

export interface Layout {
  text: string;
  eol: string;
  quote: string;
}

export function layoutOf(text: string, root: SyntaxNode): Layout {
  const eol = /\r\n/.test(text) ? '\r\n' : '\n';
  let single = 0;
  let double = 0;
  walk(root, (n) => {
    if (n.type === 'string') {
      const t = n.text.replace(/^[rbfuRBFU]+/, '');
      if (t.startsWith('"""') || t.startsWith("'''")) return false;
      if (t.startsWith('"')) double++;
      else if (t.startsWith("'")) single++;
      return false;
    }
    return true;
  });
  return { text, eol, quote: single > double ? "'" : '"' };
}

export function lineStartAt(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** The leading whitespace of the line holding `offset`. */
export function indentAt(text: string, offset: number): string {
  const start = lineStartAt(text, offset);
  return /^[ \t]*/.exec(text.slice(start))![0];
}

/** The offset just after the end of the line holding `offset` (after its newline), or the text's end. */
export function nextLineStart(text: string, offset: number): number {
  const nl = text.indexOf('\n', offset);
  return nl < 0 ? text.length : nl + 1;
}

/**
 * The offset where a new line goes after `stmt` (after a comment sharing its last line), and the
 * newline to put before the text when the statement ends the file without one.
 */
export function afterStatement(layout: Layout, stmt: SyntaxNode): { pos: number; prefix: string } {
  const nl = layout.text.indexOf('\n', stmt.endIndex);
  if (nl < 0) return { pos: layout.text.length, prefix: layout.eol };
  return { pos: nl + 1, prefix: '' };
}

/** Another statement starting on the row where `stmt` ends, or the header `stmt` shares its row with (`if x: a()`); null when neither. */
export function sharesLine(stmt: SyntaxNode): string | null {
  const next = stmt.nextNamedSibling;
  if (next && next.type !== 'comment' && next.startPosition.row === stmt.endPosition.row) return next.text.split('\n')[0];
  const block = stmt.parent;
  if (block && block.type === 'block' && block.parent && block.parent.startPosition.row === stmt.startPosition.row) return block.parent.text.split('\n')[0];
  return null;
}

// --- torch bindings --------------------------------------------------------------------------------

/** Local name → what it is bound to (`nn` → `torch.nn`, `clip_grad_norm_` → `torch.nn.utils.clip_grad_norm_`). */
export type Bindings = Map<string, string>;

export function torchBindings(root: SyntaxNode): Bindings {
  return importBindings(root, ['torch']);
}

/**
 * The file's names for the top-level packages `roots` (torch; lightning, pytorch_lightning and
 * transformers for the framework idioms), read from its imports anywhere in the file.
 */
export function importBindings(root: SyntaxNode, roots: readonly string[]): Bindings {
  const b: Bindings = new Map();
  const ours = (dottedText: string): boolean => roots.includes(dottedText.split('.')[0].trim());
  walk(root, (n) => {
    if (n.type === 'import_statement') {
      for (const c of named(n)) {
        if (c.type === 'dotted_name' && ours(c.text)) {
          const top = c.text.split('.')[0].trim();
          b.set(top, top);
        } else if (c.type === 'aliased_import') {
          const name = c.childForFieldName('name');
          const alias = c.childForFieldName('alias');
          if (name && alias && ours(name.text)) b.set(alias.text, flat(name.text));
        }
      }
      return false;
    }
    if (n.type === 'import_from_statement') {
      const mod = n.childForFieldName('module_name');
      if (!mod || mod.type !== 'dotted_name' || !ours(mod.text)) return false;
      const base = flat(mod.text);
      for (const c of n.childrenForFieldName('name')) {
        if (!c) continue;
        if (c.type === 'dotted_name') b.set(c.text, `${base}.${c.text}`);
        else if (c.type === 'aliased_import') {
          const name = c.childForFieldName('name');
          const alias = c.childForFieldName('alias');
          if (name && alias) b.set(alias.text, `${base}.${flat(name.text)}`);
        }
      }
      return false;
    }
    return true;
  });
  return b;
}

/** The qualified name an expression refers to through the bindings (`nn.Linear` → `torch.nn.Linear`), or null. */
export function resolve(n: SyntaxNode | null, b: Bindings): string | null {
  const d = dotted(n);
  if (!d) return null;
  const root = b.get(d[0]);
  return root ? [root, ...d.slice(1)].join('.') : null;
}

/**
 * How to write a qualified torch name in this file: through the binding that covers most of it
 * (`torch.nn.init.zeros_` → `nn.init.zeros_` with `import torch.nn as nn`, `init.zeros_` with
 * `from torch.nn import init`). Null when no binding covers it.
 */
export function spell(qualified: string, b: Bindings): string | null {
  let best: { local: string; len: number } | null = null;
  for (const [local, q] of b) {
    if (qualified === q || qualified.startsWith(q + '.')) {
      if (!best || q.length > best.len) best = { local, len: q.length };
    }
  }
  if (!best) return null;
  return best.local + qualified.slice(best.len);
}
