// TypeScript user scripts (.ts/.cts/.mts/.tsx), and a Babel project's import/export (babel.ts), are
// transpiled in the child with Sucrase, bundled into the runner and the ESM hooks: pure
// JavaScript, so the packaged extension ships no native
// (per-platform) compiler. Sucrase keeps every line where it was; the inline source map also maps
// columns, so under --enable-source-maps stacks (and so the construction sites) show the .ts lines.
//
// Sucrase is initialised on the first .ts file, not when the runner loads: a JavaScript script
// never pays for it (about 8 ms of start-up, on the training thread and again on the hooks thread).
import type * as SucraseTypes from 'sucrase';

let sucrase: typeof SucraseTypes | null = null;

export function transpileTs(src: string, filename: string, format: 'cjs' | 'esm'): string {
  const transforms: Transform[] = ['typescript'];
  if (filename.endsWith('x')) transforms.push('jsx');
  if (format === 'cjs') transforms.push('imports');
  return transform(src, filename, transforms);
}

/**
 * A JavaScript file with `import`/`export` as a Babel project compiles it for Node: to CommonJS
 * (so `import './data'` resolves as require does, extension-less), lines kept, inline source map.
 */
export function transpileEsmToCjs(src: string, filename: string): string {
  return transform(src, filename, filename.endsWith('.jsx') ? ['jsx', 'imports'] : ['imports']);
}

type Transform = 'typescript' | 'jsx' | 'imports';

/** Sucrase's transforms, the code with its inline source map (sources: the original text). */
function transform(src: string, filename: string, transforms: Transform[]): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use (see above); bundled by esbuild
  sucrase ??= require('sucrase') as typeof SucraseTypes;
  const out = sucrase.transform(src, { transforms, filePath: filename, disableESTransforms: true, sourceMapOptions: { compiledFilename: filename } });
  const map = { ...out.sourceMap, sources: [filename], sourcesContent: [src] };
  return `${out.code}\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
}
