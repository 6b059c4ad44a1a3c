// Module resolution for the user's script, CommonJS and ESM alike:
// - `@tensorflow/tfjs-node-gpu` / `@tensorflow/tfjs-node` that did not load (absent, or no native
//   binding) resolve to the tfjs the runner chose, so such a script still runs; `@tensorflow/tfjs`
//   resolves to the very copy the probe hooked;
// - any other `@tensorflow/*` the script's folder cannot provide comes from the extension's copy
//   (NODE_PATH would not reach ESM imports, hence the hooks);
// - TypeScript (.ts/.cts/.mts) is transpiled (transpile.ts), inline source maps, so that under
//   --enable-source-maps stacks (and so the construction sites) show the .ts lines.
// CommonJS goes through Module._resolveFilename and require.extensions, ESM through a
// module.register() hook module (esmHooks.mjs, which runs on Node's loader thread).
import { readFileSync } from 'node:fs';
import Module, { createRequire, register } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { transpileTs } from './transpile';

export interface ResolutionPlan {
  /** Exact specifier → absolute file. */
  redirects: Record<string, string>;
  /** Exact specifier → URL, for ESM imports only (overrides `redirects` there): e.g. a data: URL shim. */
  esmRedirects?: Record<string, string>;
}

export interface HookData {
  redirects: Record<string, string>;
  /** A file URL in the extension, to resolve fallbacks from. */
  extBase: string;
}

const extRequire = createRequire(__filename);

type ResolveFn = (request: string, parent: unknown, isMain: boolean, options?: unknown) => string;

export function installResolution(plan: ResolutionPlan): void {
  const M = Module as unknown as { _resolveFilename: ResolveFn; _extensions: Record<string, (m: unknown, f: string) => void> };
  const orig = M._resolveFilename;
  M._resolveFilename = function (this: unknown, request, parent, isMain, options) {
    const r = plan.redirects[request];
    if (r) return r;
    try {
      return orig.call(this, request, parent, isMain, options);
    } catch (e) {
      if (request.startsWith('@tensorflow/')) {
        try {
          return extRequire.resolve(request);
        } catch {
          /* the user's error is the better one */
        }
      }
      throw e;
    }
  };

  const tsLoader = (m: unknown, filename: string): void => {
    const code = transpileTs(readFileSync(filename, 'utf8'), filename, 'cjs');
    (m as { _compile(code: string, filename: string): void })._compile(code, filename);
  };
  for (const ext of ['.ts', '.cts', '.tsx']) if (!M._extensions[ext]) M._extensions[ext] = tsLoader;

  const data: HookData = {
    redirects: { ...Object.fromEntries(Object.entries(plan.redirects).map(([k, v]) => [k, pathToFileURL(v).href])), ...plan.esmRedirects },
    extBase: pathToFileURL(__filename).href,
  };
  register(pathToFileURL(join(__dirname, 'esmHooks.mjs')).href, { data });
}
