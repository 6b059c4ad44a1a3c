// Test bundles run from dist/test/unit/…; find the repository root by walking up to package.json.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

function findRoot(): string {
  let d = __dirname;
  while (!existsSync(join(d, 'package.json')) || !existsSync(join(d, 'src'))) {
    const up = dirname(d);
    if (up === d) throw new Error(`no repository root above ${__dirname}`);
    d = up;
  }
  return d;
}

export const repoRoot = findRoot();
export const fixture = (...p: string[]): string => join(repoRoot, 'test', 'fixtures', ...p);
