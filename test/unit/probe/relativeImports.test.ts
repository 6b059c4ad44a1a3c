// The static imports the TF.js runner follows to find which local module of a script does not
// compile (an ES module graph fails to link before any of it runs, and Node's error names no file).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { relativeImports } from '../../../src/probe/tfjs/probe';

describe('relativeImports', () => {
  it('finds the relative specifiers of imports, re-exports and literal dynamic imports', () => {
    const src = [
      "import * as tf from '@tensorflow/tfjs';",
      "import { a,\n  b } from './lib/ab.js';",
      'import "./side-effect.mjs";',
      "export * from '../shared/all.mjs'; export { c } from './c';",
      "const later = await import('./later.mjs');",
      "// import './commented-out.js';",
      "const path = require('node:path');",
    ].join('\n');
    assert.deepEqual(relativeImports(src), ['./lib/ab.js', './side-effect.mjs', '../shared/all.mjs', './c', './later.mjs']);
  });

  it('finds none in a file without relative imports', () => {
    assert.deepEqual(relativeImports("import fs from 'node:fs';\nconsole.log('./not-an-import.js');\n"), []);
  });
});
