// GradScope against its peers on torch 2.x, CPU: the same training script run in one go as
//   plain          `python train.py`, nothing else loaded (the baseline of every ratio);
//   gradscope      `node bin/gradscope.js run train.py`, the CLI with its defaults, as a user runs it
//                  (every-step tier, sampled tier at ~1 % and detail tier at ~2 % of step time);
//   step           the same with the every-step tier alone: `--detail-every 1000000000` and
//                  GRADSCOPE_SAMPLED_EVERY=1000000000 (both still run at step 0; the detail tier also
//                  at the first non-finite value and at norm jumps, at most once per 10 steps);
//   norms          hand-written per-tensor norms: `p.grad.norm().item()` per parameter each step;
//   foreach        the floor of any every-step per-tensor norm: GradScope's own norm pass written into
//                  the script, `torch.stack(torch._foreach_norm(grads)).tolist()`, and nothing else
//                  (no NaN/Inf counts, no frames, no host): what the every-step tier costs beyond it
//                  is the probe's bookkeeping;
//   tensorboard    `SummaryWriter.add_histogram` + `add_scalar` (the gradient norm) per parameter
//                  each step, to a temp folder;
//   wandb          `wandb.watch(model, log="gradients", log_freq=1)` offline (WANDB_MODE=offline,
//                  temp folder), with `wandb.log({"loss": …})` each step, which commits the histograms;
//   wandb-default  the same at wandb.watch's default log_freq (1000): what the default gives up
//                  (no gradient data at all in a run shorter than 1000 steps).
// on each workload of bench/lib/torchModels.mjs (Adam): mlp (2.0M parameters, 6 tensors), cnn,
// transformer (100 tensors), big (100M parameters: peak RSS is the figure to read there).
// Every mode is timed the same way, inside the script: perf_counter between consecutive step ends
// (so whatever a tool does anywhere in the loop counts), results written as JSON to the file named
// by GRADSCOPE_BENCH_RESULT. CPU per step is the Python process's rusage (user + system, all its
// threads) over the timed steps; "run CPU" is the whole process tree of the run (bash `times`:
// the GradScope host, wandb's service process, start-up and imports included); peak RSS is the
// Python process's own (ru_maxrss: the training, and the probe or peer inside it).
//
// Rounds are interleaved and alternate their order (plain, gradscope, …, then the reverse), and each
// ratio is the median over rounds of (mode ÷ plain of the same round), with the min–max over rounds.
// Peers that cannot be imported are printed as unavailable with the reason. They are not in the
// test requirements; install them into the torch 2.x venv from the local mirror:
//   PIP_RETRIES=0 .venv-torch2/bin/pip install tensorboard
//   PIP_RETRIES=0 .venv-torch2/bin/pip install --no-deps wandb
//   PIP_RETRIES=0 .venv-torch2/bin/pip install platformdirs pydantic requests xxhash
//
// Env: GRADSCOPE_PYTHON (default .venv-torch2/bin/python), GRADSCOPE_BENCH_WORKLOADS (comma list,
// default all), GRADSCOPE_BENCH_ROUNDS (default 5; 2 for big), GRADSCOPE_BENCH_STEPS (timed steps per
// run after 12 warm-up steps; default per workload: mlp 60, cnn 80, transformer 40, big 10),
// GRADSCOPE_BENCH_MODES (comma list of the modes above; plain always runs), GRADSCOPE_BENCH_THREADS
// (torch threads; default: torch's own, one per core, what a plain `python script.py` gets), GRADSCOPE_BENCH_MALLOC=fixed (glibc's mmap and trim thresholds fixed
// in every run, as in torchOverhead.mjs: a tool's temporaries otherwise shift glibc's dynamic mmap
// threshold and with it the page faults the training itself takes, shown per step).
//
//   npm run bench:peers            (needs `npm run build` first, for the CLI)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot } from './lib/bundle.mjs';
import { figuresVsPlain } from './lib/vsPlain.mjs';
import { TORCH_THREADS_PY, TORCH_WORKLOADS, TORCH_WORKLOADS_PY, threadsNote } from './lib/torchModels.mjs';

export const MODES = ['plain', 'gradscope', 'step', 'norms', 'foreach', 'tensorboard', 'wandb', 'wandb-default'];
/** The CLI modes: GradScope with its defaults, and its every-step tier alone. */
const CLI_MODES = ['gradscope', 'step'];
const NEVER = '1000000000';
// Steps before the timing starts: past GradScope's dense start (its sampled tier measures every step of
// an optimizer's first 10, see sampled.py), so the figures are the steady state of every mode. With 5,
// half of the 100M model's 10 timed steps were dense ones.
const WARM = 12;

// wandb 0.30 imports its OpenTelemetry telemetry on `import wandb`, and opentelemetry-sdk needs
// opentelemetry-semantic-conventions, which the local mirror lacks. Its gradient hooks do not use the
// telemetry, so where opentelemetry-sdk does not import, its telemetry module is replaced by no-ops.
const WANDB_IMPORT = `
try:
    import opentelemetry.sdk.metrics
except ImportError:
    import types

    class _Recorder:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            return lambda *a, **k: self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def reraise(self, e, *a, **k):
            raise e

    class _Proxy:
        @classmethod
        def from_settings(cls, *a, **k):
            return None

    _tel = types.ModuleType("wandb.analytics.opentelemetry")
    _tel.__path__ = []
    _tel.TelemetryRecorder = _tel.TelemetryContext = _Recorder
    _tel.OpenTelemetryProxy = _Proxy
    _tel.get_telemetry_recorder = lambda *a, **k: _Recorder()
    _tel.opentelemetry_proxy = _tel
    sys.modules["wandb.analytics.opentelemetry"] = _tel
    sys.modules["wandb.analytics.opentelemetry.opentelemetry_proxy"] = _tel
import wandb
`;

const SCRIPT = `
import json, os, resource, sys, time
import torch
from torch import nn

peer = sys.argv[sys.argv.index("--peer") + 1] if "--peer" in sys.argv else "none"
kind = os.environ["GRADSCOPE_BENCH_WORKLOAD"]
steps = int(os.environ["GRADSCOPE_BENCH_STEPS"])
warm = ${WARM}
tmp = os.environ["GRADSCOPE_BENCH_TMP"]
${TORCH_THREADS_PY}
torch.manual_seed(0)

${TORCH_WORKLOADS_PY}

n = steps + warm
model, batches, loss_fn = make_workload(kind, n)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
named = list(model.named_parameters())

writer = run = None
if peer == "tensorboard":
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(log_dir=os.path.join(tmp, "tb"))
elif peer in ("wandb", "wandb-default"):
${WANDB_IMPORT.replace(/^(?=.)/gm, '    ')}
    run = wandb.init(project="gradscope-bench", mode="offline", dir=tmp)
    if peer == "wandb":
        wandb.watch(model, log="gradients", log_freq=1)
    else:
        wandb.watch(model, log="gradients")
elif peer not in ("none", "norms", "foreach"):
    sys.exit(f"unknown peer {peer}")

norms = []
times, ru0, last = [], None, None
for i in range(n):
    opt.zero_grad()
    xb, yb = batches(i)
    loss = loss_fn(model(xb), yb)
    loss.backward()
    if peer == "norms":
        norms.append([p.grad.norm().item() for p in model.parameters()])
    elif peer == "foreach":
        norms.append(torch.stack(torch._foreach_norm([p.grad for p in model.parameters()])).tolist())
    elif writer is not None:
        for name, p in named:
            writer.add_histogram(f"grad/{name}", p.grad, i)
            writer.add_scalar(f"grad_norm/{name}", p.grad.norm().item(), i)
    elif run is not None:
        wandb.log({"loss": loss.item()})
    opt.step()
    now = time.perf_counter()
    if last is not None and i >= warm:
        times.append((now - last) * 1000)
    last = now
    if i == warm - 1:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
ru1 = resource.getrusage(resource.RUSAGE_SELF)
if writer is not None:
    writer.close()
if run is not None:
    run.finish()
cpu = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) * 1000 / len(times)
faults = (ru1.ru_minflt - ru0.ru_minflt) / len(times)
t = sorted(times)
with open(os.environ["GRADSCOPE_BENCH_RESULT"], "w") as f:
    json.dump({"medianMs": t[len(t) // 2], "meanMs": sum(t) / len(t), "n": len(t), "cpuMsPerStep": cpu, "pageFaultsPerStep": faults,
               "peakRssMiB": ru1.ru_maxrss / 1024, "params": sum(p.numel() for p in model.parameters()),
               "tensors": len(named), "torch": torch.__version__}, f)
`;

// What each peer needs to import; a failed import makes the mode unavailable.
const IMPORTS = { tensorboard: 'from torch.utils.tensorboard import SummaryWriter', wandb: `import sys\n${WANDB_IMPORT}`, 'wandb-default': `import sys\n${WANDB_IMPORT}` };

const envInt = (name, dflt) => {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

/** Runs `argv` under bash so that `times` gives the CPU of the whole process tree it waited for. */
function runTimed(argv, { env, cwd }) {
  const cpuFile = join(env.GRADSCOPE_BENCH_TMP, 'times.txt');
  const sh = '"$@"; s=$?; times > "$GS_TIMES_FILE"; exit $s';
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('bash', ['-c', sh, 'bash', ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, GS_TIMES_FILE: cpuFile }, cwd });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallS = (performance.now() - t0) / 1000;
      if (code !== 0) return reject(new Error(`${argv.join(' ')} exited ${code}: ${err.slice(-1500)}`));
      // `times`: line 1 the shell itself, line 2 its children, e.g. "0m1.234s 0m0.056s".
      const line = readFileSync(cpuFile, 'utf8').trim().split('\n')[1] ?? '';
      const secs = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      resolve({ wallS, treeCpuS: secs.length === 2 ? secs[0] + secs[1] : NaN });
    });
  });
}

async function runOnce({ python, script, dir, steps, mode, workload }) {
  const tmp = mkdtempSync(join(dir, `${mode}-`));
  const result = join(tmp, 'result.json');
  const env = {
    ...process.env,
    PYTHONUNBUFFERED: '1',
    GRADSCOPE_BENCH_WORKLOAD: workload,
    GRADSCOPE_BENCH_STEPS: String(steps),
    GRADSCOPE_BENCH_TMP: tmp,
    GRADSCOPE_BENCH_RESULT: result,
  };
  delete env.GRADSCOPE_CHANNEL_FD;
  if (process.env.GRADSCOPE_BENCH_MALLOC === 'fixed') {
    env.MALLOC_MMAP_THRESHOLD_ = String(32 << 20);
    env.MALLOC_TRIM_THRESHOLD_ = String(64 << 20);
  }
  let argv;
  if (mode === 'plain') argv = [python, script];
  else if (CLI_MODES.includes(mode)) {
    env.GRADSCOPE_PYTHON = python;
    argv = [process.execPath, join(repoRoot, 'bin', 'gradscope.js'), 'run', script];
    if (mode === 'step') {
      argv.push('--detail-every', NEVER);
      env.GRADSCOPE_SAMPLED_EVERY = NEVER;
    }
  } else {
    if (mode.startsWith('wandb')) Object.assign(env, { WANDB_MODE: 'offline', WANDB_DIR: tmp, WANDB_SILENT: 'true', WANDB_CONSOLE: 'off' });
    argv = [python, script, '--peer', mode];
  }
  try {
    const tree = await runTimed(argv, { env, cwd: tmp }); // cwd: the CLI's .gradscope/runs lands in the temp folder
    if (!existsSync(result)) throw new Error(`${mode}: the script wrote no result`);
    return { ...JSON.parse(readFileSync(result, 'utf8')), ...tree };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function unavailable(python, mode) {
  if (CLI_MODES.includes(mode)) return existsSync(join(repoRoot, 'dist', 'cli.js')) ? null : 'the CLI is not built: run `npm run build`';
  const stmt = IMPORTS[mode];
  if (!stmt) return null;
  return new Promise((resolve) => {
    const child = spawn(python, ['-c', stmt], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => resolve(e.message));
    child.on('close', (code) => resolve(code === 0 ? null : (err.trim().split('\n').pop() ?? `exit ${code}`)));
  });
}

const STEPS = { mlp: 60, cnn: 80, transformer: 40, big: 10 };

/** One workload: every mode, interleaved rounds. */
async function runWorkload({ python, script, dir, modes, workload, rounds, steps, log }) {
  const runs = Object.fromEntries(modes.map((m) => [m, []]));
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 ? [...modes].reverse() : modes) {
      const res = await runOnce({ python, script, dir, steps, mode, workload });
      runs[mode].push(res);
      log(
        `${workload} round ${r + 1} ${mode}: median ${res.medianMs.toFixed(2)}, mean ${res.meanMs.toFixed(2)} ms/step, CPU ${res.cpuMsPerStep.toFixed(2)} ms/step, ` +
          `${Math.round(res.pageFaultsPerStep)} page faults/step, peak RSS ${res.peakRssMiB.toFixed(0)} MiB, run ${res.wallS.toFixed(1)} s wall, ${res.treeCpuS.toFixed(1)} s CPU`,
      );
    }
  }
  const figures = figuresVsPlain(runs, modes, ['pageFaultsPerStep', 'peakRssMiB']);
  const first = runs.plain[0];
  return { workload, params: first?.params, tensors: first?.tensors, torch: first?.torch, rounds, stepsPerRun: steps, modes: figures };
}

export async function run({ rounds = envInt('GRADSCOPE_BENCH_ROUNDS', 0), steps = envInt('GRADSCOPE_BENCH_STEPS', 0), log = () => {} } = {}) {
  const python = process.env.GRADSCOPE_PYTHON || join(repoRoot, '.venv-torch2', 'bin', 'python');
  const wanted = (process.env.GRADSCOPE_BENCH_MODES ?? '').split(',').filter((m) => MODES.includes(m) && m !== 'plain');
  const asked = ['plain', ...(wanted.length ? MODES.filter((m) => wanted.includes(m)) : MODES.slice(1))];
  const workloadsAsked = (process.env.GRADSCOPE_BENCH_WORKLOADS ?? '').split(',').filter((w) => TORCH_WORKLOADS.includes(w));
  const workloads = workloadsAsked.length ? workloadsAsked : TORCH_WORKLOADS;
  const missing = {};
  for (const m of asked) {
    const why = await unavailable(python, m);
    if (why) missing[m] = why;
  }
  const modes = asked.filter((m) => !missing[m]);
  for (const [m, why] of Object.entries(missing)) log(`${m}: unavailable (${why})`);
  const machine = { cpus: cpus().length, loadAverageAtStart: loadavg().map((x) => Number(x.toFixed(2))) };
  log(`machine: ${machine.cpus} CPUs, ${threadsNote()}, load average ${machine.loadAverageAtStart.join(' ')} at start; workloads ${workloads.join(', ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'gradscope-peers-bench-'));
  const script = join(dir, 'train.py');
  writeFileSync(script, SCRIPT);
  const results = [];
  try {
    for (const workload of workloads) {
      const r = rounds || (workload === 'big' ? 2 : 5);
      results.push(await runWorkload({ python, script, dir, modes, workload, rounds: r, steps: steps || STEPS[workload], log }));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  machine.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
  const malloc = process.env.GRADSCOPE_BENCH_MALLOC === 'fixed' ? 'fixed thresholds' : 'glibc default';
  return { python, torch: results[0]?.torch, malloc, machine, unavailable: missing, workloads: results };
}

/** One workload's figures as a text table. */
export function table(w, unavailableModes = {}) {
  const f2 = (x) => x.toFixed(2);
  const ratio = (s) => `×${s.median.toFixed(3)} (${s.min.toFixed(3)}–${s.max.toFixed(3)})`;
  const head = ['mode', 'ratio, median step (min–max)', 'ratio, mean step', 'ratio, CPU/step', 'median step ms', 'CPU ms/step', 'peak RSS MiB', 'run CPU s'];
  const rows = Object.entries(w.modes).map(([m, f]) => [
    m,
    ratio(f.ratioMedianStep),
    `×${f.ratioMeanStep.median.toFixed(3)}`,
    `×${f.ratioCpu.median.toFixed(3)}`,
    f2(f.medianStepMs),
    f2(f.cpuMsPerStep),
    f.peakRssMiB.toFixed(0),
    f2(f.runCpuS),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length), ...(i ? [] : Object.keys(unavailableModes).map((m) => m.length))));
  const fmt = (row) =>
    row
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const gone = Object.entries(unavailableModes).map(([m, why]) => `${m.padEnd(widths[0])}  unavailable: ${why}`);
  return [fmt(head), ...rows.map(fmt), ...gone].join('\n');
}

export function print(r, out = console.log) {
  out(`\ntorch ${r.torch}, Adam, CPU, malloc ${r.malloc}; load average ${r.machine.loadAverageAtStart.join(' ')} → ${r.machine.loadAverageAtEnd.join(' ')} on ${r.machine.cpus} CPUs`);
  out('ratios: per round, mode ÷ plain of the same round; median over rounds (min–max). Targets: step (every-step tier) ≤ 1.02, gradscope (with the detail tier) ≤ 1.05.');
  out('foreach is the floor of the every-step tier (its norm pass alone); wandb-default logs no gradients in runs under 1000 steps.');
  for (const w of r.workloads) {
    out(`\n${w.workload}: ${(w.params / 1e6).toFixed(2)}M params in ${w.tensors} tensors; ${w.rounds} rounds × ${w.stepsPerRun} timed steps`);
    out(table(w, r.unavailable));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  print(await run({ log: (s) => console.log(s) }));
}
