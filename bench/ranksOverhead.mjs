// Per-rank overhead of observing a distributed run: bench/ranks_ddp.py (DDP, 2 ranks, gloo, CPU) run
// plainly under torch's launcher (`python -m torch.distributed.run --standalone --nproc_per_node 2`,
// what `torchrun` runs) and under `gradscope run --nproc-per-node 2` (every rank's probe streaming to
// the run's socket, rank files written, the cross-rank analysis at the end). Rounds are interleaved
// (plain, gradscope, plain, …) so drift hits both alike. Printed: each run's wall time and rank 0's
// median step time (measured by the script itself), their medians over rounds, and the ratios.
// GRADSCOPE_PYTHON (default /usr/bin/python3; it must start torch.distributed.run),
// GRADSCOPE_BENCH_ROUNDS (default 5), GRADSCOPE_BENCH_STEPS (default 100 timed steps per run).
//
//   npm run build && GRADSCOPE_PYTHON=.venv-torch2/bin/python node bench/ranksOverhead.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const python = process.env.GRADSCOPE_PYTHON || '/usr/bin/python3';
const rounds = Number(process.env.GRADSCOPE_BENCH_ROUNDS || 5);
const steps = process.env.GRADSCOPE_BENCH_STEPS || '100';
const script = join(root, 'bench', 'ranks_ddp.py');
const out = mkdtempSync(join(tmpdir(), 'gs-ranks-bench-'));

function timed(cmd, args, timing) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: out, env: { ...process.env, GRADSCOPE_PYTHON: python, STEPS: steps, TIMING_OUT: timing }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const wall = (performance.now() - t0) / 1000;
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
      resolve({ wall, stepMs: Number(readFileSync(timing, 'utf8')) });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const runs = { plain: [], gradscope: [] };
const load0 = loadavg()[0];
for (let r = 0; r < rounds; r++) {
  runs.plain.push(await timed(python, ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', script], join(out, `plain${r}.txt`)));
  runs.gradscope.push(await timed(process.execPath, [join(root, 'bin', 'gradscope.js'), 'run', '--out', out, '--nproc-per-node', '2', script], join(out, `gs${r}.txt`)));
  const [p, g] = [runs.plain[r], runs.gradscope[r]];
  console.log(`round ${r + 1}: plain ${p.wall.toFixed(2)} s, ${p.stepMs.toFixed(2)} ms/step · gradscope ${g.wall.toFixed(2)} s, ${g.stepMs.toFixed(2)} ms/step`);
}
const m = (k, f) => median(runs[k].map(f));
const [pw, gw, ps, gs] = [m('plain', (x) => x.wall), m('gradscope', (x) => x.wall), m('plain', (x) => x.stepMs), m('gradscope', (x) => x.stepMs)];
console.log(`median over ${rounds} rounds, ${steps} timed steps per run, 2 ranks:`);
console.log(`  step time (rank 0, measured by the script): plain ${ps.toFixed(2)} ms, gradscope ${gs.toFixed(2)} ms, ratio ${(gs / ps).toFixed(3)}`);
console.log(`  wall time per run (start-up and end included): plain ${pw.toFixed(2)} s, gradscope ${gw.toFixed(2)} s, ratio ${(gw / pw).toFixed(3)}`);
console.log(`  load average (1 min) before / after: ${load0.toFixed(2)} / ${loadavg()[0].toFixed(2)}`);
