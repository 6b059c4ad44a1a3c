// PyTorch probe overhead on the CPU: median training-step time of a script run under the probe
// (`python -m gradscope_probe script.py`, frames on fd 3 decoded here with the real FrameDecoder,
// as the extension would), divided by the same script run plainly (`python script.py`, no probe).
// Two models: an MLP 784-1536-512-10 (about 2.0M parameters) at batch 128, and a small conv net
// (two 3×3 convs, 16 and 32 channels, on 28×28) at batch 64; Adam. Three probe settings:
//   step    the per-step tier only (GRADSCOPE_DETAIL_EVERY very large);
//   auto    the probe's default: GRADSCOPE_DETAIL_EVERY unset, the automatic detail interval (what a
//           user gets; the detail frames sent per step are reported alongside);
//   detail  the detail tier on every step (GRADSCOPE_DETAIL_EVERY=1): the worst case.
//
// Runs are interleaved (plain, step, auto, detail, plain, …) so drift hits all settings alike; each
// figure is the median over runs of each run's median step time. The automatic interval puts the
// detail tier on a few steps only, which a median does not see, so its ratio is taken on the mean
// step time (every step after the warm-up counts) against the plain runs' mean. Targets (printed,
// not asserted): ≤ 1.02 per-step tier, ≤ 1.05 with the detail tier.
//
// Interpreter: GRADSCOPE_PYTHON, else /usr/bin/python3 (Debian's torch; the `python3` first on PATH
// may lack it). Threads: GRADSCOPE_BENCH_THREADS torch threads (default: torch's own, one per core,
// what a plain `python script.py` gets; 1 gives steadier figures on a shared machine; the probe's
// writer thread is not counted in it). Device: GRADSCOPE_BENCH_DEVICE
// (default cpu; `cuda` where a GPU is available). GRADSCOPE_BENCH_ROUNDS (default 5) and
// GRADSCOPE_BENCH_STEPS (default 100 timed steps per run, after 5 warm-up steps); GRADSCOPE_BENCH_MODELS
// (default `mlp,cnn`); GRADSCOPE_BENCH_MODES (default `step,auto,detail`; `plain` always runs);
// GRADSCOPE_BENCH_PROBE_DIR: the folder holding gradscope_probe/ to measure (default dist/probe/torch,
// else src/probe/torch), e.g. to compare with a copy of an older probe in the same conditions.
// GRADSCOPE_BENCH_BASELINE_DIR: a second probe folder (holding gradscope_probe/, e.g. an older copy)
// whose runs are interleaved with the others (modes `step@baseline`, …), for a before/after under
// the same load. GRADSCOPE_BENCH_MALLOC=fixed: every run (plain ones too) with glibc's mmap and trim thresholds
// fixed (MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_=64 MiB). By default glibc raises its
// mmap threshold after a large block is freed, which changes how many page faults the training
// itself takes (reported per step as pageFaultsPerStep): a probe whose first detail step frees a
// few large temporaries makes the training it watches faster than the plain run. Fixing the
// thresholds takes that out of the ratios.
//
//   node bench/torchOverhead.mjs            (needs `npm run build` first, for dist/probe/torch)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTs, median, repoRoot } from './lib/bundle.mjs';
import { TORCH_THREADS_PY, TORCH_WORKLOADS_PY, threadsNote } from './lib/torchModels.mjs';

const PROBE_DIRS = [join(repoRoot, 'dist', 'probe', 'torch'), join(repoRoot, 'src', 'probe', 'torch')];

// The training script (written to a temp folder). It reports its step times as one JSON line.
const SCRIPT = `
import json, os, resource, sys, time
import torch
from torch import nn

kind, steps = sys.argv[1], int(sys.argv[2])
warm = 5
${TORCH_THREADS_PY}
device = torch.device(os.environ.get("GRADSCOPE_BENCH_DEVICE", "cpu"))
torch.manual_seed(0)


${TORCH_WORKLOADS_PY}

n = steps + warm
model, batches, loss_fn = make_workload(kind if kind == "mlp" else "cnn", n, device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
times = []
cpu = []  # the training thread's CPU time per step (the probe's own thread not counted)
last = lastc = None
faults0 = 0
for i in range(n):
    opt.zero_grad()
    xb, yb = batches(i)
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    sync()
    now, nowc = time.perf_counter(), time.thread_time()
    if last is not None:
        times.append((now - last) * 1000)
        cpu.append((nowc - lastc) * 1000)
    last, lastc = now, nowc
    if i == warm - 1:
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = sorted(times[warm - 1:])  # the steps after the warm-up ones
c = sorted(cpu[warm - 1:])
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / len(t)
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"medianMs": t[len(t) // 2], "meanMs": sum(t) / len(t), "n": len(t),
                  "cpuMedianMs": c[len(c) // 2], "pageFaultsPerStep": faults, "params": params, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "device": str(device)}))
`;

function probeDir() {
  if (process.env.GRADSCOPE_BENCH_PROBE_DIR) return process.env.GRADSCOPE_BENCH_PROBE_DIR;
  const d = PROBE_DIRS.find((p) => existsSync(join(p, 'gradscope_probe', '__main__.py')));
  if (!d) throw new Error('the torch probe is missing: run `npm run build` first');
  return d;
}

async function runOnce(python, script, kind, steps, mode, FrameDecoder) {
  const env = { ...process.env, PYTHONUNBUFFERED: '1' };
  delete env.GRADSCOPE_CHANNEL_FD;
  if (process.env.GRADSCOPE_BENCH_MALLOC === 'fixed') {
    env.MALLOC_MMAP_THRESHOLD_ = String(32 << 20);
    env.MALLOC_TRIM_THRESHOLD_ = String(64 << 20);
  }
  let args = [script, kind, String(steps)];
  const [setting, tag] = mode.split('@');
  if (mode !== 'plain') {
    const dir = tag === 'baseline' ? process.env.GRADSCOPE_BENCH_BASELINE_DIR : probeDir();
    env.PYTHONPATH = env.PYTHONPATH ? `${dir}${delimiter}${env.PYTHONPATH}` : dir;
    env.GRADSCOPE_CHANNEL_FD = '3';
    env.GRADSCOPE_MAX_STEPS = '0';
    if (setting === 'auto') delete env.GRADSCOPE_DETAIL_EVERY;
    else env.GRADSCOPE_DETAIL_EVERY = setting === 'detail' ? '1' : '1000000000';
    args = ['-m', 'gradscope_probe', ...args];
  }
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe', mode === 'plain' ? 'ignore' : 'pipe'], env });
    let out = '';
    let err = '';
    let frames = 0;
    let steps_ = 0;
    let details = 0;
    const detailSteps = new Set();
    let skipped = null;
    let bytes = 0;
    let dec;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    if (mode !== 'plain') {
      dec = new FrameDecoder();
      child.stdio[3].on('data', (c) => {
        bytes += c.length;
        dec.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), (f) => {
          frames++;
          if (f.message.type === 'step') steps_++;
          if (f.message.type === 'detail') {
            details++;
            detailSteps.add(f.message.step);
          }
          const m = f.message.type === 'event' && /detail tier skipped on (\d+) step/.exec(f.message.message ?? '');
          if (m) skipped = Number(m[1]);
        });
      });
    }
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop();
      if (code !== 0 || !line) return reject(new Error(`${kind}/${mode} exited ${code}: ${err.slice(-2000)}`));
      resolve({ ...JSON.parse(line), frames, steps: steps_, details, detailSteps: detailSteps.size, detailSkipped: skipped ?? 0, bytes, decodeError: dec?.error?.message ?? null });
    });
  });
}

const envInt = (name, dflt) => {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

export async function run({ rounds = envInt('GRADSCOPE_BENCH_ROUNDS', 5), steps = envInt('GRADSCOPE_BENCH_STEPS', 100), log = () => {} } = {}) {
  const python = process.env.GRADSCOPE_PYTHON || '/usr/bin/python3';
  const { FrameDecoder } = await loadTs('src/core/protocol/codec.ts');
  const dir = mkdtempSync(join(tmpdir(), 'gradscope-torch-bench-'));
  const script = join(dir, 'train.py');
  writeFileSync(script, SCRIPT);
  const known = ['step', 'auto', 'detail'];
  const wanted = (process.env.GRADSCOPE_BENCH_MODES ?? '').split(',').filter((m) => known.includes(m));
  const settings = wanted.length ? wanted : known;
  const baseline = process.env.GRADSCOPE_BENCH_BASELINE_DIR;
  const modes = ['plain', ...settings, ...(baseline ? settings.map((m) => `${m}@baseline`) : [])];
  const kinds = (process.env.GRADSCOPE_BENCH_MODELS ?? '').split(',').filter((k) => k === 'mlp' || k === 'cnn');
  const machine = {
    cpus: cpus().length,
    loadAverageAtStart: loadavg().map((x) => Number(x.toFixed(2))),
    note: 'shared machine: other work runs alongside, so step times are noisy; the fastest-run ratios are the least disturbed',
  };
  log(`machine: ${machine.cpus} CPUs, ${threadsNote()}, load average ${machine.loadAverageAtStart.join(' ')} at start (${machine.note})`);
  const figures = {};
  try {
    for (const kind of kinds.length ? kinds : ['mlp', 'cnn']) {
      const runs = Object.fromEntries(modes.map((m) => [m, []]));
      for (let r = 0; r < rounds; r++) {
        for (const mode of modes) {
          const res = await runOnce(python, script, kind, steps, mode, FrameDecoder);
          if (res.decodeError) throw new Error(`decoder error: ${res.decodeError}`);
          if (mode !== 'plain' && res.steps === 0) throw new Error(`${kind}/${mode}: the probe sent no steps`);
          runs[mode].push(res);
          const extra =
            mode === 'plain'
              ? ''
              : ` (${res.frames} frames, ${res.details} details on ${res.detailSteps} of ${res.steps} steps${res.detailSkipped ? `, ${res.detailSkipped} skipped while busy` : ''})`;
          log(
            `${kind} ${mode} round ${r + 1}: median ${res.medianMs.toFixed(2)}, mean ${res.meanMs.toFixed(2)} ms/step, ` +
              `training thread CPU ${res.cpuMedianMs.toFixed(2)} ms/step, ${Math.round(res.pageFaultsPerStep)} page faults/step${extra}`,
          );
        }
      }
      const col = (mode, key) => runs[mode].map((x) => x[key]);
      const plain = runs.plain;
      const base = median(col('plain', 'medianMs'));
      const baseMean = median(col('plain', 'meanMs'));
      const best = (xs, ys) => Math.min(...xs) / Math.min(...ys);
      const f = {
        params: plain[0].params,
        device: plain[0].device,
        torchThreads: plain[0].threads,
        plainMsPerStep: base,
        plainMeanMsPerStep: baseMean,
      };
      for (const tag of baseline ? ['', '@baseline'] : ['']) {
        const g = tag ? (f.baseline = { dir: baseline }) : f;
        const m = (s) => `${s}${tag}`;
        if (runs[m('step')]) {
          g.perStepTierMsPerStep = median(col(m('step'), 'medianMs'));
          g.ratioPerStepTier = g.perStepTierMsPerStep / base;
          g.ratioPerStepTierBest = best(col(m('step'), 'medianMs'), col('plain', 'medianMs'));
        }
        if (runs[m('auto')]) {
          // The automatic interval (the probe's default): on the mean step time, as the detail steps are few.
          const steps_ = col(m('auto'), 'detailSteps');
          g.autoDetailMeanMsPerStep = median(col(m('auto'), 'meanMs'));
          g.ratioAutoDetail = g.autoDetailMeanMsPerStep / baseMean;
          g.ratioAutoDetailBest = best(col(m('auto'), 'meanMs'), col('plain', 'meanMs'));
          g.autoDetailStepsPerRun = steps_;
          g.autoDetailStepsPerStep = median(steps_) / runs[m('auto')][0].steps;
        }
        if (runs[m('detail')]) {
          const last = runs[m('detail')].at(-1);
          g.detailEveryStepMsPerStep = median(col(m('detail'), 'medianMs'));
          g.ratioDetailEveryStep = g.detailEveryStepMsPerStep / base;
          g.ratioDetailEveryStepBest = best(col(m('detail'), 'medianMs'), col('plain', 'medianMs'));
          g.detailEveryStepMeanMsPerStep = median(col(m('detail'), 'meanMs'));
          g.ratioDetailEveryStepMean = g.detailEveryStepMeanMsPerStep / baseMean;
          g.detailEveryStepDetailStepsPerRun = last.detailSteps;
          g.detailEveryStepSkippedPerRun = last.detailSkipped;
          g.detailFramesPerRun = last.details;
          g.bytesPerRunDetail = last.bytes;
        }
      }
      f.runsMs = Object.fromEntries(modes.map((mode) => [mode, col(mode, 'medianMs')]));
      f.runsMeanMs = Object.fromEntries(modes.map((mode) => [mode, col(mode, 'meanMs')]));
      f.trainingThreadCpuMsPerStep = Object.fromEntries(modes.map((mode) => [mode, median(col(mode, 'cpuMedianMs'))]));
      f.pageFaultsPerStep = Object.fromEntries(modes.map((mode) => [mode, median(col(mode, 'pageFaultsPerStep'))]));
      figures[kind] = f;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  machine.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
  return {
    python,
    rounds,
    stepsPerRun: steps,
    malloc: process.env.GRADSCOPE_BENCH_MALLOC === 'fixed' ? 'fixed thresholds' : 'glibc default',
    targets: { perStepTier: 1.02, detailTier: 1.05 },
    machine,
    ...figures,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await run({ log: (s) => console.log(s) });
  console.log(`load average ${r.machine.loadAverageAtStart.join(' ')} → ${r.machine.loadAverageAtEnd.join(' ')} on ${r.machine.cpus} CPUs (${r.machine.note})`);
  const describe = (f, stepsPerRun) => {
    const parts = [];
    if (f.ratioPerStepTier !== undefined) parts.push(`per-step tier ×${f.ratioPerStepTier.toFixed(3)} (best runs ×${f.ratioPerStepTierBest.toFixed(3)}; target ≤ 1.02)`);
    if (f.ratioAutoDetail !== undefined)
      parts.push(
        `automatic detail interval ×${f.ratioAutoDetail.toFixed(3)} on the mean step (best runs ×${f.ratioAutoDetailBest.toFixed(3)}; ` +
          `${f.autoDetailStepsPerStep.toFixed(3)} detail steps per step; target ≤ 1.05)`,
      );
    if (f.ratioDetailEveryStep !== undefined)
      parts.push(
        `detail tier every step ×${f.ratioDetailEveryStep.toFixed(3)} (best runs ×${f.ratioDetailEveryStepBest.toFixed(3)}; ` +
          `×${f.ratioDetailEveryStepMean.toFixed(3)} on the mean step; detail on ${f.detailEveryStepDetailStepsPerRun} of ${stepsPerRun + 5} steps` +
          `${f.detailEveryStepSkippedPerRun ? `, ${f.detailEveryStepSkippedPerRun} skipped while busy` : ''}; target ≤ 1.05)`,
      );
    return parts.join('; ');
  };
  for (const kind of ['mlp', 'cnn']) {
    const f = r[kind];
    if (!f) continue;
    const pf = Object.entries(f.pageFaultsPerStep)
      .map(([m, v]) => `${m} ${Math.round(v)}`)
      .join(', ');
    console.log(
      `${kind} (${(f.params / 1e6).toFixed(2)}M params, ${f.device}, ${f.torchThreads} thread${f.torchThreads > 1 ? 's' : ''}, malloc ${r.malloc}): ` +
        `plain ${f.plainMsPerStep.toFixed(2)} ms/step; ${describe(f, r.stepsPerRun)}; page faults per step: ${pf}`,
    );
    if (f.baseline) console.log(`  baseline probe (${f.baseline.dir}): ${describe(f.baseline, r.stepsPerRun)}`);
  }
}
