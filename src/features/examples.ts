// The example training scripts shipped in the package (examples/tfjs, examples/torch): listed for
// the "Get started" walkthrough and copied into the user's folder, where they run like any script
// of theirs. No `vscode` import: unit-tested without an extension host.
import { copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ensureDir } from '../process/files';

export const EXAMPLE_FRAMEWORKS = ['tfjs', 'torch'] as const;
export type ExampleFramework = (typeof EXAMPLE_FRAMEWORKS)[number];

/** The example the walkthrough opens first: gradients that explode within a few steps. */
export const FIRST_EXAMPLE = 'tfjs/exploding-mlp.js';

/** Where examples are copied: a folder of their own in the workspace. */
export const EXAMPLES_FOLDER = 'gradscope-examples';

export interface Example {
  /** `<framework>/<file>`, the id the walkthrough's command links use. */
  id: string;
  framework: ExampleFramework;
  file: string;
  /** The first sentence of the script's leading comment or docstring. */
  summary: string;
}

const SCRIPT = /\.(js|mjs|cjs|ts|py)$/;

/** The first sentence of a script's leading `//` comment block or `"""` docstring ('' if none). */
export function summaryOf(source: string): string {
  const lines = source.split('\n');
  let text = '';
  if (lines[0]?.startsWith('//')) {
    for (const l of lines) {
      if (!l.startsWith('//')) break;
      text += ' ' + l.replace(/^\/\/\s?/, '');
    }
  } else {
    const m = /^\s*(?:[ru]?)("""|''')([\s\S]*?)\1/.exec(source);
    if (m) text = m[2]!;
  }
  text = text.replace(/\s+/g, ' ').trim();
  const end = /\.(\s|$)/.exec(text);
  return end ? text.slice(0, end.index) : text;
}

/** The examples under `root` (the package's examples/ folder), TF.js first, each folder sorted. */
export function listExamples(root: string): Example[] {
  const out: Example[] = [];
  for (const framework of EXAMPLE_FRAMEWORKS) {
    const dir = join(root, framework);
    if (!existsSync(dir)) continue;
    for (const file of readdirSync(dir)
      .filter((f) => SCRIPT.test(f))
      .sort()) {
      out.push({ id: `${framework}/${file}`, framework, file, summary: summaryOf(readFileSync(join(dir, file), 'utf8')) });
    }
  }
  return out;
}

/**
 * Copies example `id` from `root` into `destDir/<framework>/<file>` and returns its path. A copy
 * already there is kept (the user may have edited or fixed it) and reused.
 */
export function copyExample(root: string, id: string, destDir: string): { path: string; created: boolean } {
  const ex = listExamples(root).find((e) => e.id === id);
  if (!ex) throw new Error(`no example ${JSON.stringify(id)} in ${root}`);
  const dir = join(destDir, ex.framework);
  const path = join(dir, basename(ex.file));
  if (existsSync(path)) return { path, created: false };
  ensureDir(dir); // one level at a time: a recursive mkdir spins under /proc
  copyFileSync(join(root, ex.framework, ex.file), path);
  return { path, created: true };
}
