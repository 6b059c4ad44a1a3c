// Loading Tree-sitter (wasm) and its Python grammar, once per process. The runtime (tree-sitter.js)
// is bundled into our bundles, so it cannot find its wasm next to itself: `locateFile` points it at
// dist/tree-sitter/ (copied there by scripts/build.mjs), or at the package in node_modules when
// running from a checkout whose dist has no copy. Loading is asynchronous (wasm instantiation);
// parsing afterwards is synchronous, so `computeFix` stays synchronous once `loadPythonParser()`
// has resolved.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Language, Parser, type Tree } from '@vscode/tree-sitter-wasm';
import { findBuilt } from '../../util/distPaths';

const GRAMMAR = 'tree-sitter-python.wasm';
const PACKAGE_WASM = join('node_modules', '@vscode', 'tree-sitter-wasm', 'wasm');

/** The folder holding tree-sitter.wasm and tree-sitter-python.wasm. */
export function wasmDir(start: string = __dirname): string {
  try {
    return findBuilt('tree-sitter', GRAMMAR, start);
  } catch {
    for (let d = start; ; d = dirname(d)) {
      const cand = join(d, PACKAGE_WASM);
      if (existsSync(join(cand, GRAMMAR))) return cand;
      if (dirname(d) === d) break;
    }
  }
  throw new Error(`the Python grammar (${GRAMMAR}) was found neither in dist/tree-sitter/ nor in node_modules above ${start}: run \`npm run build\``);
}

let parser: Parser | null = null;
let loading: Promise<void> | null = null;
let loadError: Error | null = null;

/** Loads the runtime and the grammar (idempotent; concurrent calls share one load). */
export function loadPythonParser(): Promise<void> {
  if (parser) return Promise.resolve();
  loading ??= (async () => {
    try {
      const dir = wasmDir();
      await Parser.init({ locateFile: (file: string) => join(dir, file) });
      const language = await Language.load(readFileSync(join(dir, GRAMMAR)));
      const p = new Parser();
      p.setLanguage(language);
      parser = p;
      loadError = null;
    } catch (e) {
      loadError = e as Error;
      loading = null; // a later call may try again (e.g. after a build)
      throw e;
    }
  })();
  return loading;
}

export function pythonParserReady(): boolean {
  return parser !== null;
}

/** Why the parser is not available (null while loading or once loaded). */
export function pythonParserError(): Error | null {
  return loadError;
}

/** Parses Python source. The caller must `delete()` the tree. Throws if the parser is not loaded. */
export function parsePython(text: string): Tree {
  if (!parser) throw new Error('the Python parser is not loaded (await loadPythonParser() first)');
  const tree = parser.parse(text);
  if (!tree) throw new Error('Tree-sitter returned no tree');
  return tree;
}
