// Loading Tree-sitter (wasm) and its Python grammar, once per process, for the Python fix language
// (src/core/fixes/python parses with the parser this hands it: the core reads no file). The runtime (tree-sitter.js)
// is bundled into our bundles, so it cannot find its wasm next to itself: `locateFile` points it at
// dist/tree-sitter/ (copied there by scripts/build.mjs), or at the package in node_modules when
// running from a checkout whose dist has no copy. Loading is asynchronous (wasm instantiation);
// parsing afterwards is synchronous, so `computeFix` stays synchronous once `loadPythonParser()`
// has resolved (src/process/fixEngine.ts hands the engine `pythonParserNow`).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Language, Parser, type Tree } from '@vscode/tree-sitter-wasm';
import type { PythonParser } from '../core/fixes/python/index';
import { findBuilt } from './distPaths';

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

let parser: PythonParser | null = null;
let loading: Promise<PythonParser> | null = null;
let loadError: Error | null = null;

/** Loads the runtime and the grammar (idempotent; concurrent calls share one load). */
export function loadPythonParser(): Promise<PythonParser> {
  if (parser) return Promise.resolve(parser);
  loading ??= (async () => {
    try {
      const dir = wasmDir();
      await Parser.init({ locateFile: (file: string) => join(dir, file) });
      const language = await Language.load(readFileSync(join(dir, GRAMMAR)));
      const p = new Parser();
      p.setLanguage(language);
      parser = { parse: (text) => parsed(p, text) };
      loadError = null;
      return parser;
    } catch (e) {
      loadError = e as Error;
      loading = null; // a later call may try again (e.g. after a build)
      throw e;
    }
  })();
  return loading;
}

/**
 * The parser if it is loaded; otherwise it starts loading (a failed load is tried again) and answers
 * null while it loads, or the Error of the last load that failed.
 */
export function pythonParserNow(): PythonParser | Error | null {
  if (parser) return parser;
  const err = loadError;
  loadPythonParser().catch(() => undefined);
  return err;
}

function parsed(p: Parser, text: string): Tree {
  const tree = p.parse(text);
  if (!tree) throw new Error('Tree-sitter returned no tree');
  return tree;
}
