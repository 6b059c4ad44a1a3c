// `npm run package [-- OUT.vsix]`: builds gradscope-<version>.vsix.
//
// The package is staged in a temporary folder holding exactly what runs (the lists below), then
// checked there as a user would run it (the CLI trains an example on the staged copy of TF.js,
// the Python probe if torch is available, and both fix engines), then packed with vsce and
// checked against its budget. Staging, rather than vsce over the repository with an ignore file:
// vsce matches every file under the folder (the torch venv, code-server, all of node_modules)
// against every pattern, which takes a minute; and a staged copy outside the repository cannot
// pick up anything that exists only in the checkout.
import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const MAX_BYTES = 15 * 1024 * 1024;
const MAX_FILES = 200;
const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');

/** Files and folders of the repository that go into the package as they are. */
const FILES = [
  'package.json',
  'README.md',
  'CHANGELOG.md',
  'LICENSE',
  'media/icon.png',
  'media/walkthrough',
  'docs/findings.md',
  'docs/fixes.md',
  'docs/protocol.md',
  'docs/run-file.md',
  'bin/gradscope.js',
  // The esbuild bundles: extension, CLI (both with the TypeScript fix engine), tfjs probe, webview.
  'dist/extension.js',
  'dist/cli.js',
  'dist/probe/tfjs/runner.js',
  'dist/probe/tfjs/statsWorker.js',
  'dist/probe/tfjs/esmHooks.mjs',
  'dist/webview/main.js',
  'dist/webview/main.css',
  // The Python probe (plain sources, put on PYTHONPATH) and Tree-sitter for the Python fix engine.
  'dist/probe/torch/gradscope_probe',
  'dist/probe/torch/gradscope_boot',
  // ... and what makes its folder pip-installable (`pip install <extension>/dist/probe/torch`, for notebooks).
  'dist/probe/torch/pyproject.toml',
  'dist/probe/torch/README.md',
  'dist/tree-sitter/tree-sitter.js',
  'dist/tree-sitter/tree-sitter.wasm',
  'dist/tree-sitter/tree-sitter-python.wasm',
  // The examples the "Get started" walkthrough opens.
  'examples/tfjs',
  'examples/torch',
];

/**
 * TensorFlow.js, loaded in the training process when the user's project has no copy of its own:
 * per package, its package.json, licence files and the files Node loads (each package's `main`, a
 * self-contained Node build; the wasm backend's binaries). Staged under dist/node_modules, where
 * Node's resolution from dist/probe/tfjs/runner.js finds them. `npm run package` fails if a name
 * here no longer exists, and the staged run below fails if something loaded is missing.
 */
const RUNTIME_MODULES = {
  '@tensorflow/tfjs': ['dist/tf.node.js'],
  '@tensorflow/tfjs-core': ['dist/tf-core.node.js'],
  '@tensorflow/tfjs-backend-cpu': ['dist/tf-backend-cpu.node.js'],
  '@tensorflow/tfjs-backend-webgl': ['dist/tf-backend-webgl.node.js'],
  '@tensorflow/tfjs-backend-wasm': ['dist/tf-backend-wasm.node.js', 'dist/tfjs-backend-wasm.wasm', 'dist/tfjs-backend-wasm-simd.wasm', 'dist/tfjs-backend-wasm-threaded-simd.wasm'],
  '@tensorflow/tfjs-converter': ['dist/tf-converter.node.js'],
  '@tensorflow/tfjs-data': ['dist/tf-data.node.js'],
  '@tensorflow/tfjs-layers': ['dist/tf-layers.node.js'],
  long: ['src/long.js'],
  seedrandom: ['index.js', 'seedrandom.js', 'lib/alea.js', 'lib/tychei.js', 'lib/xor128.js', 'lib/xor4096.js', 'lib/xorshift7.js', 'lib/xorwow.js'],
};

const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const out = resolve(process.argv[2] ?? join(ROOT, `gradscope-${version}.vsix`));
const node = process.execPath;

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}

function copy(from, to) {
  if (!existsSync(from)) fail(`${from} does not exist (run from a built checkout: \`npm ci\` builds it)`);
  mkdirSync(dirname(to), { recursive: true });
  cpSync(from, to, { recursive: true, filter: (src) => !/(__pycache__|\.pyc$|\.map$)/.test(src) });
}

function stage(dir) {
  for (const f of [...FILES, '.vscodeignore']) copy(join(ROOT, f), join(dir, f));
  for (const [name, files] of Object.entries(RUNTIME_MODULES)) {
    const from = join(ROOT, 'node_modules', name);
    const to = join(dir, 'dist', 'node_modules', name);
    const licences = existsSync(from) ? readdirSync(from).filter((f) => /^(licen[cs]e|notice)/i.test(f)) : [];
    for (const f of ['package.json', ...licences, ...files]) copy(join(from, f), join(to, f));
  }
}

/** An interpreter with torch for the staged Python probe, or null (the PyTorch check is then skipped, and said). */
function torchPython() {
  for (const py of [process.env.GRADSCOPE_PYTHON, 'python3', '/usr/bin/python3']) {
    if (!py) continue;
    try {
      execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
      return py;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Runs the staged CLI as a user would, from a folder outside the repository. */
function smokeTest(dir) {
  const work = mkdtempSync(join(tmpdir(), 'gradscope-smoke-'));
  const env = { ...process.env, NODE_PATH: '' };
  const cli = (args, extra = {}) =>
    execFileSync(node, [join(dir, 'bin', 'gradscope.js'), ...args], { cwd: work, env: { ...env, ...extra }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  try {
    cpSync(join(dir, 'examples'), join(work, 'examples'), { recursive: true });
    const run = JSON.parse(cli(['run', 'examples/tfjs/exploding-mlp.js', '--steps', '8', '--json', '--out', 'runs']));
    if (!run.tensors?.length || !run.findings?.length) fail('the staged CLI ran the TF.js example but saw no tensors or findings');
    const runFile = join(
      work,
      'runs',
      readdirSync(join(work, 'runs')).find((f) => f.endsWith('.gsrun')),
    );
    if (!/^\+/m.test(cli(['fix', 'examples/tfjs/exploding-mlp.js', '--from-run', runFile, '--dry-run']))) {
      fail('the staged CLI printed no diff for the TF.js example');
    }
    let torch = 'skipped: no interpreter with torch (GRADSCOPE_PYTHON, python3, /usr/bin/python3)';
    const py = torchPython();
    if (py) {
      const t = JSON.parse(cli(['run', 'examples/torch/exploding_init.py', '--steps', '5', '--json', '--out', 'truns'], { GRADSCOPE_PYTHON: py }));
      if (!t.tensors?.length) fail('the staged Python probe ran but reported no tensors');
      const tRun = join(
        work,
        'truns',
        readdirSync(join(work, 'truns')).find((f) => f.endsWith('.gsrun')),
      );
      if (!/^\+/m.test(cli(['fix', 'examples/torch/exploding_init.py', '--from-run', tRun, '--dry-run']))) fail('the staged CLI printed no diff for the PyTorch example (Tree-sitter)');
      torch = `${py}: ${t.tensors.length} tensors, Tree-sitter fix diff`;
    }
    console.log(`package: staged CLI ok (TF.js: ${run.tensors.length} tensors, ${run.findings.length} findings, fix diff; PyTorch: ${torch})`);
  } catch (e) {
    fail(`the staged package does not run: ${e.message}\n${String(e.stderr ?? '').slice(-2000)}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Entries in a zip, from its end-of-central-directory record. */
function zipEntries(file) {
  const size = statSync(file).size;
  const tail = Buffer.alloc(Math.min(size, 22 + 0xffff));
  const fd = openSync(file, 'r');
  try {
    readSync(fd, tail, 0, tail.length, size - tail.length);
  } finally {
    closeSync(fd);
  }
  const at = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (at < 0) fail(`${file} is not a zip archive`);
  return tail.readUInt16LE(at + 10);
}

execFileSync(node, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT, stdio: 'inherit' });
const dir = mkdtempSync(join(tmpdir(), 'gradscope-package-'));
try {
  stage(dir);
  smokeTest(dir);
  // Dependencies are staged above (dist/node_modules), so vsce packs the folder as it is.
  execFileSync(node, [join(ROOT, 'node_modules', '@vscode', 'vsce', 'vsce'), 'package', '--no-dependencies', '--out', out], { cwd: dir, stdio: 'inherit' });
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const bytes = statSync(out).size;
// As vsce counts them: the extension's files and the package's two manifests.
const files = zipEntries(out);
console.log(`package: ${out}: ${(bytes / 1024 / 1024).toFixed(2)} MB, ${files} files (budget ${MAX_BYTES / 1024 / 1024} MB, ${MAX_FILES} files)`);
if (bytes > MAX_BYTES || files > MAX_FILES) fail(`${out} is over budget`);
