// Where built assets live at run time: next to the running bundle (dist/), or under dist/ of an
// enclosing checkout (tests and benchmarks run from other folders).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The first `<dir>/<sub>` or `<dir>/dist/<sub>` above `start` that contains `marker`. */
export function findBuilt(sub: string, marker: string, start = __dirname): string {
  for (let d = start; ; d = dirname(d)) {
    for (const cand of [join(d, sub), join(d, 'dist', sub)]) {
      if (existsSync(join(cand, marker))) return cand;
    }
    if (dirname(d) === d) throw new Error(`GradScope is not built (no ${sub}/${marker} above ${start}): run \`npm run build\``);
  }
}
