// Scripts of a Babel project (`babel-node train.js`, `node -r @babel/register`): `import` and
// `require` mixed in .js files of a package that is not "type": "module", relative imports without
// extensions. Plain Node runs such a file as ESM (module syntax detected) and fails on
// `import './data'`. When the script's project has a Babel configuration, its files are compiled to
// CommonJS as Babel would: by the project's own @babel/register when it has one (its presets and
// plugins apply), else by Sucrase's imports transform (what babel-preset-env's module transform
// does; other Babel plugins are not applied, and the run says so).
import { existsSync, readFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { transpileEsmToCjs } from './transpile';

const CONFIG_FILES = ['.babelrc', '.babelrc.json', '.babelrc.js', '.babelrc.cjs', 'babel.config.js', 'babel.config.json', 'babel.config.cjs'];

export interface BabelProject {
  root: string;
  /** The file (or `package.json#babel`) that configures Babel. */
  config: string;
}

/** The Babel project the script belongs to: the nearest folder up with a package.json, if Babel is configured there. */
export function findBabelProject(script: string): BabelProject | null {
  for (let d = dirname(script); ; d = dirname(d)) {
    for (const f of CONFIG_FILES) if (existsSync(join(d, f))) return { root: d, config: join(d, f) };
    const pkg = join(d, 'package.json');
    if (existsSync(pkg)) {
      try {
        const p = JSON.parse(readFileSync(pkg, 'utf8')) as { babel?: unknown; type?: string };
        if (p.babel && p.type !== 'module') return { root: d, config: `${pkg}#babel` };
      } catch {
        /* not readable: no Babel project */
      }
      return null; // the package's own folder: its config is here or nowhere
    }
    if (dirname(d) === d) return null;
  }
}

const MODULE_SYNTAX = /^\s*(?:import\s*[\w*{'"]|export\s+(?:\{|\*|default\b|const\b|let\b|var\b|function\b|async\b|class\b))/m;

/**
 * Compiles the project's .js/.jsx files (not node_modules) to CommonJS from now on. Returns how
 * ('@babel/register' or 'sucrase'), to be said in the run.
 */
export function installBabel(project: BabelProject, script: string): 'babel' | 'sucrase' {
  try {
    const reg = createRequire(script).resolve('@babel/register');
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the project's own @babel/register, resolved at run time
    require(reg); // registers itself with the project's configuration
    return 'babel';
  } catch {
    /* not installed (or broken): our own transform */
  }
  const M = Module as unknown as { _extensions: Record<string, (m: unknown, f: string) => void> };
  const inProject = (f: string): boolean => f.startsWith(project.root + sep) && !f.includes(`${sep}node_modules${sep}`);
  for (const ext of ['.js', '.jsx']) {
    const orig = M._extensions[ext] ?? M._extensions['.js'];
    M._extensions[ext] = (m, filename) => {
      if (!inProject(filename)) return orig(m, filename);
      const src = readFileSync(filename, 'utf8');
      if (!MODULE_SYNTAX.test(src) && !filename.endsWith('.jsx')) return orig(m, filename);
      (m as { _compile(code: string, filename: string): void })._compile(transpileEsmToCjs(src, filename), filename);
    };
  }
  return 'sucrase';
}
