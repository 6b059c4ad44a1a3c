// The Python parser as the tests use it: the shell's (src/process/pythonParser.ts), loaded by a
// `before()` that awaits prepareFixes / loadPythonParser.
import { pythonParserNow } from '../../../src/process/pythonParser';
import { errorCount } from '../../../src/core/fixes/python/syntax';

/** Tree-sitter's ERROR and MISSING nodes in `text` (the parser must be loaded). */
export function pythonErrorCount(text: string): number {
  const p = pythonParserNow();
  if (p === null || p instanceof Error) throw new Error(`the Python parser is not loaded${p ? `: ${p.message}` : ''}`);
  const tree = p.parse(text);
  try {
    return errorCount(tree.rootNode);
  } finally {
    tree.delete();
  }
}
