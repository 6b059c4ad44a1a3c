// Builds the bundles: the extension (node/cjs, `vscode` external), the CLI, the tfjs probe (runner,
// stats worker, ESM loader hooks; run inside the user's child process), the extension-host test
// suite, every unit test (test/unit/**/*.test.ts → dist/test/unit/, run by `node --test`) and the
// fault suite (test/faults/**/*.test.ts → dist/test/faults/, `npm run test:faults`).
// Type-checking is separate: `npm run typecheck`.
import { build, context } from 'esbuild';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

const watch = process.argv.includes('--watch');
const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  // tfjs is resolved at run time in the child (the user's own copy first), never bundled.
  external: ['vscode', '@tensorflow/*', 'mocha', 'playwright-core'],
  define: { PACKAGE_VERSION: JSON.stringify(JSON.parse(readFileSync('package.json', 'utf8')).version) },
};

function testsUnder(dir) {
  if (!existsSync(dir)) return {};
  const out = {};
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) Object.assign(out, testsUnder(p));
    else if (f.endsWith('.test.ts')) out[p.replace(/\.ts$/, '')] = p;
  }
  return out;
}

const entries = [
  { entryPoints: { extension: 'src/extension.ts', cli: 'src/cli/main.ts' } },
  {
    entryPoints: {
      'probe/tfjs/runner': 'src/probe/tfjs/runner.ts',
      'probe/tfjs/statsWorker': 'src/probe/tfjs/statsWorker.ts',
    },
  },
  { entryPoints: { 'probe/tfjs/esmHooks': 'src/probe/tfjs/esmHooks.ts' }, format: 'esm', outExtension: { '.js': '.mjs' } },
  { entryPoints: { 'test/suite/index': 'test/suite/index.ts' } },
  { entryPoints: testsUnder('test/unit') },
  { entryPoints: testsUnder('test/faults') },
  // The panel's webview (browser): dist/webview/main.js + main.css, also inlined into HTML reports.
  { entryPoints: { 'webview/main': 'webview/main.ts' }, platform: 'browser', format: 'iife', target: 'es2022', minify: true, external: [] },
].map((e) => {
  for (const [, src] of Object.entries(e.entryPoints)) if (!existsSync(src)) throw new Error(`build: entry ${src} does not exist`);
  return { ...common, outdir: 'dist', ...e };
});

// dist/ is overwritten in place, not wiped first: a wipe would break runs and tests that use
// dist/ while a build is under way. Only stale test bundles (whose source is gone) are removed, so
// `node --test dist/test/unit/` never runs a test that no longer exists.
function pruneStaleTests(dir = 'dist/test/unit') {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) pruneStaleTests(p);
    else if (f.endsWith('.test.js') && !existsSync(p.replace(/^dist\//, '').replace(/\.js$/, '.ts'))) rmSync(p, { force: true });
  }
}
pruneStaleTests();
pruneStaleTests('dist/test/faults');
let watchReady = () => {}; // `npm run watch`: called at the end of this script, once dist/ is complete
if (watch) {
  // `npm run watch`: every bundle rebuilds on change (the Python probe and the wasm copies below
  // only now: `npm run build` after changing them). One `[watch] build started` / `finished` pair
  // per wave of rebuilds across all bundles: .vscode/tasks.json launches the development host on
  // the first `finished`, so it never starts on a half-built dist/.
  let active = 1; // held until every bundle is watching and the copies below are done
  const settle = () => {
    if (--active === 0) console.log('[watch] build finished, watching for changes');
  };
  const markers = {
    name: 'watch-markers',
    setup(b) {
      b.onStart(() => {
        if (active++ === 0) console.log('[watch] build started');
      });
      b.onEnd(settle);
    },
  };
  console.log('[watch] build started');
  for (const e of entries) await (await context({ ...e, plugins: [...(e.plugins ?? []), markers] })).watch();
  watchReady = settle;
} else {
  await Promise.all(entries.map((e) => build(e)));
}

// The PyTorch probe is plain Python, shipped as is: dist/probe/torch/gradscope_probe/ (put on
// PYTHONPATH by the host), and gradscope_boot/ (the start-up hook of a distributed run's ranks).
// Tests and caches are left out.
{
  const { cpSync, mkdirSync } = await import('node:fs');
  for (const pkg of ['gradscope_probe', 'gradscope_boot']) {
    const dest = join('dist/probe/torch', pkg);
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dest, { recursive: true });
    for (const f of readdirSync(join('src/probe/torch', pkg))) {
      if (f.endsWith('.py')) cpSync(join('src/probe/torch', pkg, f), join(dest, f));
    }
  }
  // With its pyproject.toml, the folder is a pip-installable package (`pip install dist/probe/torch`).
  for (const f of ['pyproject.toml', 'README.md']) cpSync(join('src/probe/torch', f), join('dist/probe/torch', f));
}

// The Python fix engine's parser (src/process/pythonParser.ts): Tree-sitter's runtime wasm and
// the Python grammar, next to the bundles (dist/tree-sitter/), where the bundled tree-sitter.js is
// pointed at them (it cannot find them relative to itself once bundled).
{
  const { cpSync, mkdirSync } = await import('node:fs');
  const from = 'node_modules/@vscode/tree-sitter-wasm/wasm';
  mkdirSync('dist/tree-sitter', { recursive: true });
  for (const f of ['tree-sitter.js', 'tree-sitter.wasm', 'tree-sitter-python.wasm']) cpSync(join(from, f), join('dist/tree-sitter', f));
}

watchReady();
