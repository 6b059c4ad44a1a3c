// `npm run bench`: every benchmark in one go, each printing the figures it measured in this run
// (ratios against the user's plain run where it times training); none of them fails on timing.
// Run one alone with `node bench/<name>.mjs` (each has its own options, see its header).
//   ipc.mjs            the frame codec and the channel's throughput
//   store.mjs          the run store: ingest rate, memory
//   panel.mjs          the panel in headless chromium: full render, one append through the whole panel
//   probeOverhead.mjs  TF.js: plain `node script.js` vs `gradscope run` vs hand-written tfjs norms
//   torchPeers.mjs     torch 2.x: plain `python script.py` vs `gradscope run` vs hand-written norms,
//                      TensorBoard, wandb.watch, on every workload (MLP, CNN, transformer, 100M model)
//   torchOverhead.mjs  torch: the probe's tiers one by one (per-step only, automatic, detail every step)
// GRADSCOPE_BENCH_ONLY=a,b runs only those (names without .mjs).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './lib/bundle.mjs';

const benches = ['ipc', 'store', 'panel', 'probeOverhead', 'torchPeers', 'torchOverhead'];
const only = (process.env.GRADSCOPE_BENCH_ONLY ?? '').split(',').filter((b) => b);
const log = (s) => console.log(s);
for (const b of benches) {
  if (only.length && !only.includes(b)) continue;
  const p = join(repoRoot, 'bench', `${b}.mjs`);
  if (!existsSync(p)) {
    console.log(`(${b}.mjs not present)`);
    continue;
  }
  console.log(`\n== ${b}.mjs`);
  const t0 = Date.now();
  try {
    const mod = await import(p);
    const r = await mod.run({ log, print: log });
    if (typeof mod.print === 'function') mod.print(r, log);
    else if (typeof mod.table === 'function') log(mod.table(r));
    else if (r !== undefined) log(JSON.stringify(r, (_k, v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v), 2));
  } catch (e) {
    // One bench that cannot run here (no browser, no torch) does not stop the others.
    console.log(`${b}: could not run: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  }
  console.log(`(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
