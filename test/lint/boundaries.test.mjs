// The layer boundaries in eslint.config.mjs, checked on snippets linted as if they lived at the
// given paths (type information off: these rules need none). Run by `npm run lint`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';

const root = fileURLToPath(new URL('../../', import.meta.url));
const eslint = new ESLint({
  cwd: root,
  overrideConfig: [{ files: ['**/*.ts'], ...tseslint.configs.disableTypeChecked, languageOptions: { parserOptions: { projectService: false, project: null } } }],
});

/** [path, code, blocked?] */
const CASES = [
  // src/core: pure
  ['src/core/a.ts', "import * as vscode from 'vscode'; export const x = vscode;", true],
  ['src/core/a.ts', "import type * as vscode from 'vscode'; export type X = vscode.Uri;", false],
  ['src/core/a.ts', "import { type Uri } from 'vscode'; export type X = Uri;", false],
  ['src/core/a.ts', "export const x = import('vscode');", true],
  ['src/core/a.ts', "import { x } from '../process/program'; export { x };", true],
  ['src/core/a.ts', "import { x } from '../extension'; export { x };", true],
  ['src/core/a.ts', "import { x } from './analysis/finding'; export { x };", false],
  ['src/core/a/b.ts', "import { x } from '../../features/hover'; export { x };", true],
  ['src/core/a/b.ts', "import { x } from '../../core/analysis/finding'; export { x };", false],
  ['src/core/a/b.ts', "import { x } from '../../../test/x'; export { x };", true],
  ['src/core/a/b.ts', "import { x } from '../store/runStore'; export { x };", false],
  ['src/core/a/b/c.ts', "import { x } from '../../../panel/inspectionPanel'; export { x };", true],
  ['src/core/a/b/c.ts', "import { x } from '../../../process/distPaths'; export { x };", true],
  ['src/core/a/b/c.ts', "import { x } from '../../util/emitter'; export { x };", false],
  ['src/core/a.ts', "import { readFileSync } from 'node:fs'; export { readFileSync };", true],
  ['src/core/a.ts', "import { readFileSync } from 'fs'; export { readFileSync };", true],
  ['src/core/a.ts', "import { join } from 'path/posix'; export { join };", true],
  ['src/core/a.ts', "import * as ts from 'typescript'; export { ts };", false],
  ['src/core/store/runFile.ts', "import { readFileSync } from 'node:fs'; export { readFileSync };", false],
  ['src/core/store/runFile.ts', "import { x } from '../../process/x'; export { x };", true],
  ['src/core/store/runFile.ts', "import * as v from 'vscode'; export { v };", true],
  // src/core/fixes: no file I/O, nothing of src/process; the shell loads the parser and hands it in
  ['src/core/fixes/python/parser.ts', "import { readFileSync } from 'node:fs'; export { readFileSync };", true],
  ['src/core/fixes/python/a.ts', "import { x } from '../../../process/pythonParser'; export { x };", true],
  ['src/core/fixes/driver.ts', "import { x } from '../../process/pythonParser'; export { x };", true],
  ['src/core/fixes/python/a.ts', "import { Parser } from '@vscode/tree-sitter-wasm'; export { Parser };", true],
  ['src/core/fixes/python/a.ts', "import type { Node } from '@vscode/tree-sitter-wasm'; export type X = Node;", false],
  ['src/core/store/runFile.ts', "import { Parser } from '@vscode/tree-sitter-wasm'; export { Parser };", true],
  ['src/process/pythonParser.ts', "import { Parser } from '@vscode/tree-sitter-wasm'; export { Parser };", false],
  // src/process: no VS Code, nothing of the shells above it
  ['src/process/a.ts', "import * as vscode from 'vscode'; export { vscode };", true],
  ['src/process/a.ts', "import type * as vscode from 'vscode'; export type X = vscode.Uri;", true],
  ['src/process/a.ts', "import { x } from '../features/hover'; export { x };", true],
  ['src/process/a.ts', "import { x } from '../panel/inspectionPanel'; export { x };", true],
  ['src/process/a.ts', "import { x } from '../core/analysis/finding'; export { x };", false],
  ['src/process/a.ts', "import { x } from 'node:fs'; export { x };", false],
  // the probe
  ['src/probe/tfjs/a.ts', "import { x } from '../../process/program'; export { x };", true],
  ['src/probe/tfjs/a.ts', "const v = require('vscode'); export { v };", true],
  ['src/probe/tfjs/a.ts', "import { x } from '../../core/protocol/codec'; export { x };", false],
  // the CLI and the panel modules it shares
  ['src/cli/a.ts', "import * as vscode from 'vscode'; export { vscode };", true],
  ['src/cli/a.ts', "import { x } from '../features/hover'; export { x };", true],
  ['src/cli/a.ts', "import { x } from '../core/view/report'; import { y } from '../process/runSession'; export { x, y };", false],
  ['src/core/view/report.ts', "import * as vscode from 'vscode'; export { vscode };", true],
  ['src/core/view/report.ts', "import type * as vscode from 'vscode'; export type X = vscode.Uri;", false],
  ['src/core/view/snapshot.ts', "import { readFileSync } from 'node:fs'; export { readFileSync };", true],
  ['src/panel/inspectionPanel.ts', "import * as vscode from 'vscode'; export { vscode };", false],
  // the VS Code layer may use everything
  ['src/features/a.ts', "import * as vscode from 'vscode'; import { x } from '../process/program'; export { vscode, x };", false],
  // the webview: itself, chart.js, its css, the shared modules
  ['webview/a.ts', "import { x } from '../src/core/view/messages'; export { x };", false],
  ['webview/a.ts', "import { x } from '../src/panel/inspectionPanel'; export { x };", true],
  ['webview/a.ts', "import { x } from '../src/core/analysis/finding'; export { x };", false],
  ['webview/a.ts', "import { x } from '../src/core/protocol/float'; export { x };", false],
  ['webview/a.ts', "import '../media/panel.css';", false],
  ['webview/a.ts', "import { x } from './charts/theme'; export { x };", false],
  ['webview/a.ts', "import { Chart } from 'chart.js'; export { Chart };", false],
  ['webview/a.ts', "import { Chart } from 'chart.js/auto'; export { Chart };", false],
  ['webview/charts/a.ts', "import { x } from '../model'; export { x };", false],
  ['webview/charts/a.ts', "import { x } from '../../src/core/view/messages'; export { x };", false],
  ['webview/a.ts', "import { x } from '../src/core/store/runStore'; export { x };", true],
  ['webview/a.ts', "import { x } from '../src/core/view/snapshot'; export { x };", true],
  ['webview/a.ts', "import { x } from '../src/core/view/messagesX'; export { x };", true],
  ['webview/charts/a.ts', "import { x } from '../../src/process/program'; export { x };", true],
  ['webview/a.ts', "import * as vscode from 'vscode'; export { vscode };", true],
  ['webview/a.ts', "import { x } from 'node:fs'; export { x };", true],
  ['webview/a.ts', "import { x } from 'lodash'; export { x };", true],
];

describe('import boundaries (eslint.config.mjs)', () => {
  for (const [path, code, blocked] of CASES) {
    it(`${path}: ${code} is ${blocked ? 'refused' : 'allowed'}`, async () => {
      const [r] = await eslint.lintText(code, { filePath: root + path });
      const fatal = r.messages.filter((m) => m.fatal);
      assert.deepEqual(fatal, [], 'the snippet parses');
      const hits = r.messages.filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax');
      assert.equal(hits.length > 0, blocked, JSON.stringify(r.messages.map((m) => `${m.ruleId}: ${m.message}`)));
    });
  }
});
