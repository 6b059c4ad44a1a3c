// The fix engine as the shells (the CLI, the extension, the tests) use it: the core's driver
// (src/core/fixes/driver.ts) with the Python parser this process loads (pythonParser.ts).
import { createFixEngine } from '../core/fixes/driver';
import { isPythonFile } from '../core/fixes/python/index';
import { loadPythonParser, pythonParserNow } from './pythonParser';

export const { computeFix, availableRemedies } = createFixEngine({ python: pythonParserNow });

/**
 * Loads what computing a fix for `file` needs: the Python parser (wasm, asynchronous) for .py
 * files, nothing for JS/TS. Await it once before calling computeFix on a Python script; until it
 * has resolved, computeFix answers ok:false ("still loading") for .py files.
 */
export async function prepareFixes(file?: string): Promise<void> {
  if (file === undefined || isPythonFile(file)) await loadPythonParser();
}
