// ESLint flat config (`npm run lint`): typescript-eslint with type information for the TypeScript
// (src, webview, tests, bench: both tsconfigs, through the project service), the recommended rules
// for the Node scripts (.mjs/.js), and the layer boundaries of the architecture:
//   src/core      pure: imports only src/core and packages; `vscode` as `import type` only; Node
//                 built-ins only where it touches the disk (CORE_NODE_FILES); Tree-sitter as
//                 `import type` only (the shells load its wasm and hand the fix engine the parser)
//   src/process   Node only: no `vscode`, nothing of features/panel/cli
//   src/probe     runs inside the user's child process: no `vscode`, nothing of the host's layers
//   src/cli       the headless command: no run-time `vscode`, nothing of features/extension (the
//                 panel's view code it shares lives in src/core/view)
//   webview/      the browser: itself, chart.js, its css, and the shared message/format modules
// Relative specifiers are matched by how many `../` leave the file's folder, one override per depth,
// so `../../process/x` is caught from src/core/a/b.ts and `../process` from src/core/a.ts.
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const root = fileURLToPath(new URL('.', import.meta.url));

/** src/core files that read or write files (run files on disk), or hash (the report's CSP). */
const CORE_NODE_FILES = ['src/core/store/runFile.ts', 'src/core/view/report.ts'];
/** What the webview may import from outside webview/ (all type-only or plain data on the host side). */
const WEBVIEW_SHARED = ['src/core/analysis/finding', 'src/core/protocol/float', 'src/core/protocol/messages', 'src/core/report/warnings', 'src/core/text', 'src/core/view/messages'];
const WEBVIEW_PACKAGES = ['chart.js'];
/** src/panel files that run only in the extension host (the view code they share with the CLI is in src/core/view). */
const PANEL_HOST_FILES = ['src/panel/inspectionPanel.ts'];
const MAX_DEPTH = 5;
const CORE_MESSAGE = 'src/core is pure: it imports only src/core (process, features, panel, cli, probe and extension build on it).';

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const up = (n) => `^(\\.\\./){${n}}`;
const builtinNames = builtinModules.filter((m) => !m.startsWith('_'));
const nodeBuiltins = {
  regex: `^(node:.*|(${builtinNames.map(esc).join('|')})(/.*)?)$`,
  message: 'src/core stays pure: Node built-ins only in the files that touch the disk (CORE_NODE_FILES in eslint.config.mjs).',
};
/** Loading a parser reads its wasm from disk: the shells do it (src/process/pythonParser.ts); the core takes the types. */
const noTreeSitterRuntime = {
  name: '@vscode/tree-sitter-wasm',
  allowTypeImports: true,
  message: 'src/core parses with the parser the shell loads and hands in (src/process/pythonParser.ts): `import type` only.',
};
const noVscode = (allowTypeImports, who) => ({
  name: 'vscode',
  allowTypeImports,
  message: `${who} must run without VS Code${allowTypeImports ? ' (`import type` is fine)' : ''}.`,
});

/** `files` for the sources exactly `depth` folders below `dir` (depth 0: directly in it). */
const atDepth = (dir, depth, ext = 'ts') => [`${dir}/${'*/'.repeat(depth)}*.${ext}`];

/**
 * One override per folder depth under `dir` (a folder of src/): relative imports may not reach the
 * sibling folders `siblings` (or anything outside `dir` when `siblings` is '*'), plus the fixed
 * `paths`/`patterns`.
 */
function boundary(dir, siblings, { paths = [], patterns = [], message }) {
  const own = dir.split('/').at(-1);
  const out = [];
  for (let d = 0; d < MAX_DEPTH; d++) {
    const leave = d + 1; // the `../` count that reaches src/
    const rel =
      siblings === '*'
        ? [
            { regex: `${up(leave)}(?!${esc(own)}(/|$))`, message },
            { regex: `${up(leave + 1)}`, message },
          ]
        : [{ regex: `${up(leave)}(${siblings.map(esc).join('|')})(/|\\.|$)`, message }];
    out.push({
      files: atDepth(dir, d),
      rules: { 'no-restricted-imports': ['error', { paths, patterns: [...rel, ...patterns] }] },
    });
  }
  return out;
}

export default tseslint.config(
  {
    ignores: ['dist/**', 'out/**', '**/node_modules/**', 'test/host/.cache/**', 'test/fixtures/**', 'examples/**', 'bench/out/**', '.gradscope/**', '.venv-*/**', 'screenshots/**'],
  },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: root } },
    rules: {
      // `_name` marks a binding kept for its position (a parameter an interface requires) or
      // dropped from a rest copy (`const { type: _t, ...body } = msg`).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true }],
      // A wrapper installed as a method keeps the wrapped object's `this`; `self` is its owner.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }],
        },
      ],
    },
  },
  {
    files: ['**/*.{js,mjs,cjs}'],
    languageOptions: { globals: { ...globals.node } },
    rules: { 'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }] },
  },
  // Benchmarks and browser tests hand functions to page.evaluate(): they run in the page.
  { files: ['bench/**/*.mjs', 'test/e2e/**/*.mjs'], languageOptions: { globals: { ...globals.browser } } },
  { files: ['webview/**/*.ts'], languageOptions: { globals: { ...globals.browser } } },

  // ---- layer boundaries ----
  ...boundary('src/core', '*', {
    paths: [noVscode(true, 'src/core'), noTreeSitterRuntime],
    patterns: [nodeBuiltins],
    message: CORE_MESSAGE,
  }),
  ...CORE_NODE_FILES.map((f) => {
    const depth = f.split('/').length - 3; // folders below src/core
    return {
      files: [f],
      rules: {
        'no-restricted-imports': [
          'error',
          {
            paths: [noVscode(true, 'src/core'), noTreeSitterRuntime],
            patterns: [
              { regex: `${up(depth + 1)}(?!core(/|$))`, message: CORE_MESSAGE },
              { regex: up(depth + 2), message: CORE_MESSAGE },
            ],
          },
        ],
      },
    };
  }),
  ...boundary('src/process', ['features', 'panel', 'cli', 'extension'], {
    paths: [noVscode(false, 'src/process (shared with the CLI)')],
    message: 'src/process sits under the VS Code and CLI shells: it may import src/core, not features/panel/cli.',
  }),
  ...boundary('src/probe', ['features', 'panel', 'cli', 'process', 'extension'], {
    paths: [noVscode(false, 'the probe (it runs inside the training process)')],
    message: 'The probe runs inside the training process: it may import src/core, not the host layers.',
  }),
  ...boundary('src/cli', ['features', 'extension'], {
    paths: [noVscode(true, 'the CLI')],
    message: 'The CLI is headless: it may import src/core, src/process and the shared panel modules, not the VS Code layers.',
  }),
  {
    files: ['src/panel/**/*.ts'],
    ignores: PANEL_HOST_FILES,
    rules: { 'no-restricted-imports': ['error', { paths: [noVscode(true, 'this panel module (the CLI report uses it)')] }] },
  },
  ...Array.from({ length: MAX_DEPTH }, (_, d) => {
    const message = `The webview imports only webview/, ${WEBVIEW_PACKAGES.join(', ')}, its css and the shared modules ${WEBVIEW_SHARED.join(', ')}.`;
    const allowed = [...WEBVIEW_SHARED.map((m) => `${esc(m)}(\\.ts)?$`), 'media/[^/]+\\.css$'].join('|');
    return {
      files: atDepth('webview', d),
      rules: {
        'no-restricted-imports': [
          'error',
          {
            patterns: [
              { regex: `${up(d + 1)}(?!webview/)(?!${allowed})`, message },
              { regex: `^(?![./])(?!(${WEBVIEW_PACKAGES.map(esc).join('|')})(/|$))`, message },
            ],
          },
        ],
      },
    };
  }),
  // Dynamic imports and require() escape no-restricted-imports: none of vscode in the pure layers.
  {
    files: ['src/core/**/*.ts', 'src/process/**/*.ts', 'src/probe/**/*.ts', 'src/cli/**/*.ts', 'webview/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "ImportExpression[source.value='vscode']", message: 'No run-time `vscode` here (see eslint.config.mjs).' },
        { selector: "CallExpression[callee.name='require'][arguments.0.value='vscode']", message: 'No run-time `vscode` here (see eslint.config.mjs).' },
      ],
    },
  },
);
