// `npm run bench`: every benchmark in one go. Each prints ratios/figures measured in this run;
// none of them fails on timing. Run one alone with `node bench/<name>.mjs`.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './lib/bundle.mjs';

const benches = ['ipc.mjs', 'store.mjs', 'probeOverhead.mjs', 'torchOverhead.mjs'];
for (const b of benches) {
  const p = join(repoRoot, 'bench', b);
  if (!existsSync(p)) {
    console.log(`(${b} not present)`);
    continue;
  }
  console.log(`\n== ${b}`);
  const t0 = Date.now();
  // Each bench prints its own figures when run as the main module; here we call run() and print the returned object too.
  const mod = await import(p);
  const r = await mod.run();
  console.log(JSON.stringify(r, (_k, v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v), 2));
  console.log(`(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
