// TypeScript user scripts (.ts/.cts/.mts/.tsx) are transpiled in the child with Sucrase, bundled
// into the runner and the ESM hooks: pure JavaScript, so the packaged extension ships no native
// (per-platform) compiler. Sucrase keeps every line where it was; the inline source map also maps
// columns, so under --enable-source-maps stacks (and so the construction sites) show the .ts lines.
import { transform } from 'sucrase';

export function transpileTs(src: string, filename: string, format: 'cjs' | 'esm'): string {
  const transforms: ('typescript' | 'jsx' | 'imports')[] = ['typescript'];
  if (filename.endsWith('x')) transforms.push('jsx');
  if (format === 'cjs') transforms.push('imports');
  const out = transform(src, {
    transforms,
    filePath: filename,
    disableESTransforms: true,
    sourceMapOptions: { compiledFilename: filename },
  });
  const map = { ...out.sourceMap, sources: [filename], sourcesContent: [src] };
  return `${out.code}\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
}
