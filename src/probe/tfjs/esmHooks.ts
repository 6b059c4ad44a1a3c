// ESM loader hooks (registered by resolve.ts with module.register; they run on Node's loader
// thread, so they get everything they need through `data`). Same rules as the CommonJS side:
// redirects for tfjs-node(-gpu) and tfjs, the extension's @tensorflow/* as a fallback, TypeScript
// transpiled with inline source maps. A .ts file in a CommonJS package is handed to the CommonJS
// loader (format 'commonjs' with no source), whose require.extensions['.ts'] the runner installed.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HookData } from './resolve';
import { transpileTs } from './transpile';

let data: HookData = { redirects: {}, extBase: '' };

export function initialize(d: HookData): void {
  if (d) data = d;
}

interface ResolveContext {
  parentURL?: string;
  conditions?: string[];
  importAttributes?: Record<string, string>;
}
interface ResolveResult {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}
type NextResolve = (specifier: string, context?: ResolveContext) => Promise<ResolveResult>;

export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<ResolveResult> {
  const r = data.redirects[specifier];
  if (r) return { url: r, shortCircuit: true };
  try {
    return await next(specifier, context);
  } catch (e) {
    if (specifier.startsWith('@tensorflow/')) {
      try {
        return await next(specifier, { ...context, parentURL: data.extBase });
      } catch {
        /* keep the user's error */
      }
    }
    // TypeScript's ESM convention: `import './util.js'` names ./util.ts.
    if (context.parentURL && /\.[cm]?tsx?$/.test(context.parentURL) && /^\.\.?\//.test(specifier)) {
      for (const alt of tsAlternatives(specifier)) {
        try {
          return await next(alt, context);
        } catch {
          /* next */
        }
      }
    }
    throw e;
  }
}

function tsAlternatives(spec: string): string[] {
  if (spec.endsWith('.js')) return [spec.slice(0, -3) + '.ts', spec.slice(0, -3) + '.tsx'];
  if (spec.endsWith('.mjs')) return [spec.slice(0, -4) + '.mts'];
  if (spec.endsWith('.cjs')) return [spec.slice(0, -4) + '.cts'];
  if (!/\.[a-z]+$/.test(spec)) return [spec + '.ts', spec + '/index.ts'];
  return [];
}

interface LoadContext {
  format?: string | null;
  conditions?: string[];
}
interface LoadResult {
  format: string;
  source?: string | ArrayBuffer | Uint8Array | null;
  shortCircuit?: boolean;
}
type NextLoad = (url: string, context?: LoadContext) => Promise<LoadResult>;

function packageType(file: string): string {
  for (let d = dirname(file); ; d = dirname(d)) {
    try {
      return (JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { type?: string }).type ?? 'commonjs';
    } catch {
      /* up */
    }
    if (dirname(d) === d) return 'commonjs';
  }
}

export async function load(url: string, context: LoadContext, next: NextLoad): Promise<LoadResult> {
  if (url.startsWith('file:') && /\.[cm]?tsx?$/.test(url)) {
    const file = fileURLToPath(url);
    const esm = file.endsWith('.mts') || (!file.endsWith('.cts') && packageType(file) === 'module');
    if (!esm) return { format: 'commonjs', shortCircuit: true };
    return { format: 'module', source: transpileTs(readFileSync(file, 'utf8'), file, 'esm'), shortCircuit: true };
  }
  return next(url, context);
}
