// Benchmarks import the TypeScript sources through a one-off esbuild bundle, so they measure the
// same code the extension ships without depending on how the test bundles are laid out.
import { build } from 'esbuild';
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = join(repoRoot, 'bench', 'out');

/** Bundles a TypeScript module of the repo and returns its exports. */
export async function loadTs(relPath) {
  mkdirSync(outDir, { recursive: true });
  const outfile = join(outDir, basename(relPath).replace(/\.ts$/, '') + '.cjs');
  await build({ entryPoints: [join(repoRoot, relPath)], outfile, bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'error', external: ['@tensorflow/*'] });
  return createRequire(import.meta.url)(outfile);
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
