// Backend selection inside the child: tfjs-node-gpu (with a GPU) → tfjs-node → wasm → cpu.
//
// Every package is resolved from the user's script folder first (their node_modules win), then from
// the extension's own node_modules. "Installed but fails to load" counts as absent, with the reason:
// a present tfjs-node(-gpu) often lacks its native binding, which its install script downloads (a
// script that could not reach Google's storage, `--ignore-scripts`, or npm >= 12, which runs a
// dependency's install script only when allowed; npm 11 runs it, with a warning). The wasm backend
// must have finished `setBackend('wasm')` before the user's script runs;
// the runner awaits this function and only then loads the script.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type * as tfTypes from '@tensorflow/tfjs';
import { registerMissingWasmKernels } from './wasmKernels';

export type Tf = typeof tfTypes;
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendSelection {
  tf: Tf;
  /** Resolved path of the module that `tf` is (tfjs, tfjs-node or tfjs-node-gpu main file). */
  tfPath: string;
  /** Resolved path of plain @tensorflow/tfjs (same instance family as `tf`). */
  tfjsPath: string;
  backend: BackendName;
  device: string;
  reason: string;
  /** Which native package was loaded, if any: requests for the others are redirected to it. */
  nativePackage: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node' | null;
  /** Whether @tensorflow/tfjs came from the user's node_modules. */
  userTfjs: boolean;
  /** Kernels registered by GradScope for wasm (composed from existing ones). */
  composedKernels: string[];
}

export interface Resolver {
  /** Resolves a package from the script's folder, then from the extension's. */
  resolve(spec: string): { path: string; fromUser: boolean } | null;
}

export function makeResolver(scriptPath: string): Resolver {
  const fromUser = createRequire(scriptPath);
  const fromExt = createRequire(__filename);
  return {
    resolve(spec) {
      try {
        return { path: fromUser.resolve(spec), fromUser: true };
      } catch {
        /* fall through */
      }
      try {
        return { path: fromExt.resolve(spec), fromUser: false };
      } catch {
        return null;
      }
    },
  };
}

const firstLine = (e: unknown): string =>
  String((e as Error)?.message ?? e)
    .split('\n')[0]
    .slice(0, 300);

/** What fetches a missing native binding again (from Google's storage, or TFJS_NODE_BASE_URI's mirror). */
function rebuildHint(spec: string): string {
  return `\`npm rebuild ${spec}\` with internet access fetches it`;
}

interface NativeAttempt {
  ok: boolean;
  note: string;
  /** Whether its module was loaded (into the shared tfjs-core, kernels and all), even if it then failed. */
  loaded?: boolean;
  tf?: Tf;
  path?: string;
}

async function tryNative(spec: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node', r: Resolver, load: (p: string) => unknown): Promise<NativeAttempt> {
  const short = spec.slice('@tensorflow/'.length);
  const res = r.resolve(spec);
  if (!res) return { ok: false, note: `${short} is not installed` };
  // Not loaded at all without its native binding: a failed load has already registered its ~150
  // kernels in the shared tfjs-core, and the next package's load then prints "kernel … already
  // registered" for each of them.
  if (!hasNativeBinding(res.path)) {
    return {
      ok: false,
      note:
        `${short} is installed without its native binding (lib/napi-v*/tfjs_binding.node), which its install script downloads ` +
        `(it did not run, or could not download: offline, \`--ignore-scripts\`, npm 12's allowScripts): ${rebuildHint(spec)}`,
      loaded: false,
    };
  }
  let mod: Tf;
  try {
    mod = load(res.path) as Tf;
  } catch (e) {
    return {
      ok: false,
      loaded: true,
      note: `${short} is installed but failed to load (${firstLine(e)}); its native binding is downloaded by its install script: ` + rebuildHint(spec),
    };
  }
  try {
    await mod.setBackend('tensorflow');
    await mod.ready();
  } catch (e) {
    return { ok: false, loaded: true, note: `${short} loaded but its tensorflow backend did not start (${firstLine(e)})` };
  }
  return { ok: true, note: '', tf: mod, path: res.path };
}

export interface SelectOptions {
  force?: string;
  /** Loads a module by absolute path (the runner passes its own require). */
  load: (path: string) => unknown;
}

export async function selectBackend(scriptPath: string, opts: SelectOptions): Promise<BackendSelection> {
  const r = makeResolver(scriptPath);
  const notes: string[] = [];
  const force = opts.force?.trim().toLowerCase() || '';
  if (force && !['tensorflow', 'wasm', 'cpu'].includes(force)) notes.push(`GRADSCOPE_BACKEND=${opts.force} is not one of tensorflow, wasm, cpu; ignored`);
  const want = ['tensorflow', 'wasm', 'cpu'].includes(force) ? force : '';

  const tfjs = r.resolve('@tensorflow/tfjs');
  if (!tfjs) throw new Error('@tensorflow/tfjs is not installed next to the script, nor in the GradScope extension');

  if (!want || want === 'tensorflow') {
    const gpu = await tryNative('@tensorflow/tfjs-node-gpu', r, opts.load);
    if (gpu.ok && gpu.tf) {
      const onGpu = Boolean((gpu.tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice);
      // tfjs-node-gpu without a usable GPU silently runs TensorFlow on the CPU. That is still the
      // native backend (faster than wasm), and tfjs-node cannot be loaded beside it (both register
      // "tensorflow"), so we keep it and say so.
      const tfjsPathNative = resolveNextTo(gpu.path!, '@tensorflow/tfjs') ?? tfjs.path;
      return {
        tf: gpu.tf,
        tfPath: gpu.path!,
        tfjsPath: tfjsPathNative,
        backend: 'tensorflow',
        device: onGpu ? 'GPU (tfjs-node-gpu, CUDA)' : 'CPU (tfjs-node-gpu found no usable GPU)',
        reason: onGpu ? 'running on tfjs-node-gpu (GPU)' : 'tfjs-node-gpu loaded but found no usable GPU (it needs CUDA 11.2 and cuDNN 8.1): running TensorFlow on the CPU',
        nativePackage: '@tensorflow/tfjs-node-gpu',
        userTfjs: tfjs.fromUser,
        composedKernels: [],
      };
    }
    notes.push(gpu.note);
    // tfjs-node after a tfjs-node-gpu that loaded and failed registers the same ~150 kernels in the
    // same tfjs-core again: tfjs-core warns once per kernel. Those warnings are counted, not shown.
    const cpuNative = await withKernelWarningsMuted(gpu.loaded === true, () => tryNative('@tensorflow/tfjs-node', r, opts.load));
    if (cpuNative.ok && cpuNative.tf) {
      return {
        tf: cpuNative.tf,
        tfPath: cpuNative.path!,
        tfjsPath: resolveNextTo(cpuNative.path!, '@tensorflow/tfjs') ?? tfjs.path,
        backend: 'tensorflow',
        device: 'CPU (tfjs-node, TensorFlow)',
        reason: `${notes.join('; ')}: running on tfjs-node (TensorFlow, CPU)`,
        nativePackage: '@tensorflow/tfjs-node',
        userTfjs: tfjs.fromUser,
        composedKernels: [],
      };
    }
    notes.push(cpuNative.note);
  } else {
    notes.push(`GRADSCOPE_BACKEND=${want}`);
  }

  const tf = opts.load(tfjs.path) as Tf;
  const base = { tf, tfPath: tfjs.path, tfjsPath: tfjs.path, nativePackage: null, userTfjs: tfjs.fromUser } as const;

  if (want !== 'cpu') {
    // The wasm backend's Emscripten glue adds process-wide 'uncaughtException' and
    // 'unhandledRejection' listeners that rethrow (Node then exits with code 7 and an odd message)
    // and mean "the script handles its own errors". Its own clean-up of them is broken, so we remove
    // whatever it added once the backend is up: the user's errors behave as in plain Node.
    const before = {
      uncaughtException: process.listeners('uncaughtException'),
      unhandledRejection: process.listeners('unhandledRejection'),
    };
    const restoreListeners = (): void => {
      for (const l of process.listeners('uncaughtException')) {
        if (!before.uncaughtException.includes(l)) process.removeListener('uncaughtException', l);
      }
      for (const l of process.listeners('unhandledRejection')) {
        if (!before.unhandledRejection.includes(l)) process.removeListener('unhandledRejection', l);
      }
    };
    const wasm = tryWasm(tf, tfjs.path, r, opts.load);
    if (wasm.ok) {
      try {
        const composedKernels = registerMissingWasmKernels(tf);
        await withoutGlobalFetch(wasm.version, async () => {
          const ok = await tf.setBackend('wasm');
          if (!ok) throw new Error('setBackend("wasm") returned false');
          await tf.ready();
        });
        restoreListeners();
        const simd = await tf
          .env()
          .getAsync('WASM_HAS_SIMD_SUPPORT')
          .catch(() => false);
        return {
          ...base,
          backend: 'wasm',
          device: simd ? 'CPU (wasm, SIMD)' : 'CPU (wasm)',
          reason: `${notes.join('; ')}: running on wasm`,
          composedKernels,
        };
      } catch (e) {
        restoreListeners();
        notes.push(`the wasm backend did not start (${firstLine(e)})`);
      }
    } else {
      notes.push(wasm.note);
    }
  } else if (!notes.length) {
    notes.push('GRADSCOPE_BACKEND=cpu');
  }

  await tf.setBackend('cpu');
  await tf.ready();
  return { ...base, backend: 'cpu', device: 'CPU (pure JavaScript)', reason: `${notes.join('; ')}: running on cpu`, composedKernels: [] };
}

/** Runs `fn` with tfjs-core's "kernel … already registered" warnings left out of the output (when `mute`). */
async function withKernelWarningsMuted<T>(mute: boolean, fn: () => Promise<T>): Promise<T> {
  if (!mute) return fn();
  const warn = console.warn;
  console.warn = (...args: unknown[]): void => {
    if (typeof args[0] === 'string' && /^The kernel '.*' for backend '.*' is already registered|backend was already registered/.test(args[0])) return;
    warn.apply(console, args);
  };
  try {
    return await fn();
  } finally {
    console.warn = warn;
  }
}

/**
 * Whether the tfjs-node(-gpu) package whose main file is `mainPath` has a native binding file
 * (lib/napi-v<N>/tfjs_binding.node, where node-pre-gyp puts it); read from the disk, not by loading.
 */
export function hasNativeBinding(mainPath: string): boolean {
  const m = /^(.*\/node_modules\/@tensorflow\/tfjs-node(?:-gpu)?)\//.exec(mainPath.replace(/\\/g, '/'));
  if (!m) return true; // not laid out as a package: let the load decide
  try {
    const lib = join(m[1], 'lib');
    return readdirSync(lib).some((d) => d.startsWith('napi-v') && existsSync(join(lib, d, 'tfjs_binding.node')));
  } catch {
    return false;
  }
}

function resolveNextTo(modulePath: string, spec: string): string | null {
  try {
    return createRequire(modulePath).resolve(spec);
  } catch {
    return null;
  }
}

function tryWasm(tf: Tf, tfjsPath: string, r: Resolver, load: (p: string) => unknown): { ok: boolean; note: string; version?: string } {
  // Prefer the wasm backend that sits next to the tfjs we use (same tfjs-core), then the user's, then ours.
  const res =
    (() => {
      const p = resolveNextTo(tfjsPath, '@tensorflow/tfjs-backend-wasm');
      return p ? { path: p } : null;
    })() ?? r.resolve('@tensorflow/tfjs-backend-wasm');
  if (!res) return { ok: false, note: 'tfjs-backend-wasm is not installed' };
  const core = tf.version?.['tfjs-core'];
  let wasmVersion: string | undefined;
  try {
    wasmVersion = (JSON.parse(readFileSync(joinPkg(res.path), 'utf8')) as { version?: string }).version;
  } catch {
    wasmVersion = undefined;
  }
  // Kernels and backend are registered in tfjs-core's global registry; a wasm backend built for
  // another tfjs-core version can misbehave in subtle ways, so we do not mix them.
  if (core && wasmVersion && core !== wasmVersion) {
    return {
      ok: false,
      note:
        `your @tensorflow/tfjs-core is ${core} but the available tfjs-backend-wasm is ${wasmVersion}; not mixing versions ` +
        `(\`npm install @tensorflow/tfjs-backend-wasm@${core}\` next to the script gives this tfjs a wasm backend, several times faster than cpu)`,
    };
  }
  try {
    load(res.path);
  } catch (e) {
    return { ok: false, note: `tfjs-backend-wasm failed to load (${firstLine(e)})` };
  }
  return { ok: true, note: '', version: wasmVersion };
}

/**
 * Runs `fn` (the wasm backend's start) without Node's global `fetch` when the backend's Emscripten
 * glue predates Node having one (tfjs-backend-wasm before 4.x): that glue takes a global `fetch` to
 * mean a browser and fetches its .wasm by file path, which Node's fetch refuses ("Failed to parse
 * URL"), and the backend aborts. Without it, the glue reads the file from disk, as it did under the
 * Node versions it was built for. The user's script has not started yet: nothing else misses it.
 */
async function withoutGlobalFetch<T>(wasmVersion: string | undefined, fn: () => Promise<T>): Promise<T> {
  const major = Number((wasmVersion ?? '').split('.')[0]);
  const g = globalThis as { fetch?: unknown };
  const d = Object.getOwnPropertyDescriptor(g, 'fetch');
  if (!(major > 0 && major < 4) || !d?.configurable) return fn();
  delete g.fetch;
  try {
    return await fn();
  } finally {
    Object.defineProperty(g, 'fetch', d);
  }
}

/** package.json of the package that contains `mainPath` (…/node_modules/@scope/name/dist/x.js). */
function joinPkg(mainPath: string): string {
  const marker = '/node_modules/@tensorflow/tfjs-backend-wasm/';
  const i = mainPath.lastIndexOf(marker);
  if (i < 0) throw new Error('not inside a tfjs-backend-wasm package');
  return mainPath.slice(0, i + marker.length) + 'package.json';
}
