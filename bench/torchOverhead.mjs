// PyTorch probe overhead on the CPU: median training-step time of a script run under the probe
// (`python -m gradscope_probe script.py`, frames on fd 3 decoded here with the real FrameDecoder,
// as the extension would), divided by the same script run plainly (`python script.py`, no probe).
// Two models: an MLP 784-1536-512-10 (about 2.0M parameters) at batch 128, and a small conv net
// (two 3×3 convs, 16 and 32 channels, on 28×28) at batch 64; Adam. Two probe settings: the per-step
// tier only (GRADSCOPE_DETAIL_EVERY very large) and the detail tier on every step
// (GRADSCOPE_DETAIL_EVERY=1).
//
// Runs are interleaved (plain, per-step, detail, plain, …) so drift hits all settings alike; each
// figure is the median over runs of each run's median step time. Targets (printed, not asserted):
// ≤ 1.02 per-step tier, ≤ 1.05 with the detail tier.
//
// Interpreter: GRADSCOPE_PYTHON, else /usr/bin/python3 (Debian's torch; the `python3` first on PATH
// may lack it). Threads: GRADSCOPE_BENCH_THREADS torch threads (default 1: steadier figures on a
// shared machine; the probe's writer thread is not counted in it). Device: GRADSCOPE_BENCH_DEVICE
// (default cpu; `cuda` where a GPU is available).
//
//   node bench/torchOverhead.mjs            (needs `npm run build` first, for dist/probe/torch)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTs, median, repoRoot } from './lib/bundle.mjs';

const PROBE_DIRS = [join(repoRoot, 'dist', 'probe', 'torch'), join(repoRoot, 'src', 'probe', 'torch')];

// The training script (written to a temp folder). It reports its step times as one JSON line.
const SCRIPT = `
import json, os, sys, time
import torch
from torch import nn

kind, steps = sys.argv[1], int(sys.argv[2])
warm = 5
torch.set_num_threads(int(os.environ.get("GRADSCOPE_BENCH_THREADS", "1")))
device = torch.device(os.environ.get("GRADSCOPE_BENCH_DEVICE", "cpu"))
torch.manual_seed(0)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 1536)
        self.fc2 = nn.Linear(1536, 512)
        self.out = nn.Linear(512, 10)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32 * 5 * 5, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


if kind == "mlp":
    model, batch, shape = MLP(), 128, (784,)
else:
    model, batch, shape = ConvNet(), 64, (1, 28, 28)
model = model.to(device)
n = steps + warm
x = torch.randn(n * batch, *shape, device=device)
y = torch.randint(0, 10, (n * batch,), device=device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
times = []
last = None
for i in range(n):
    opt.zero_grad()
    loss = loss_fn(model(x[i * batch:(i + 1) * batch]), y[i * batch:(i + 1) * batch])
    loss.backward()
    opt.step()
    sync()
    now = time.perf_counter()
    if last is not None:
        times.append((now - last) * 1000)
    last = now
t = sorted(times[warm - 1:])
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"medianMs": t[len(t) // 2], "n": len(t), "params": params, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "device": str(device)}))
`;

function probeDir() {
  const d = PROBE_DIRS.find((p) => existsSync(join(p, 'gradscope_probe', '__main__.py')));
  if (!d) throw new Error('the torch probe is missing: run `npm run build` first');
  return d;
}

async function runOnce(python, script, kind, steps, mode, FrameDecoder) {
  const env = { ...process.env, PYTHONUNBUFFERED: '1' };
  delete env.GRADSCOPE_CHANNEL_FD;
  let args = [script, kind, String(steps)];
  if (mode !== 'plain') {
    const dir = probeDir();
    env.PYTHONPATH = env.PYTHONPATH ? `${dir}${delimiter}${env.PYTHONPATH}` : dir;
    env.GRADSCOPE_CHANNEL_FD = '3';
    env.GRADSCOPE_MAX_STEPS = '0';
    env.GRADSCOPE_DETAIL_EVERY = mode === 'detail' ? '1' : '1000000000';
    args = ['-m', 'gradscope_probe', ...args];
  }
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe', mode === 'plain' ? 'ignore' : 'pipe'], env });
    let out = '';
    let err = '';
    let frames = 0;
    let steps_ = 0;
    let details = 0;
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
          if (f.message.type === 'detail') details++;
        });
      });
    }
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop();
      if (code !== 0 || !line) return reject(new Error(`${kind}/${mode} exited ${code}: ${err.slice(-2000)}`));
      resolve({ ...JSON.parse(line), frames, steps: steps_, details, bytes, decodeError: dec?.error?.message ?? null });
    });
  });
}

export async function run({ rounds = 5, steps = 40, log = () => {} } = {}) {
  const python = process.env.GRADSCOPE_PYTHON || '/usr/bin/python3';
  const { FrameDecoder } = await loadTs('src/core/protocol/codec.ts');
  const dir = mkdtempSync(join(tmpdir(), 'gradscope-torch-bench-'));
  const script = join(dir, 'train.py');
  writeFileSync(script, SCRIPT);
  const modes = ['plain', 'step', 'detail'];
  const machine = {
    cpus: cpus().length,
    loadAverageAtStart: loadavg().map((x) => Number(x.toFixed(2))),
    note: 'shared machine: other work runs alongside, so step times are noisy; the fastest-run ratios are the least disturbed',
  };
  log(`machine: ${machine.cpus} CPUs, load average ${machine.loadAverageAtStart.join(' ')} at start (${machine.note})`);
  const figures = {};
  try {
    for (const kind of ['mlp', 'cnn']) {
      const per = { plain: [], step: [], detail: [] };
      const lastRun = {};
      for (let r = 0; r < rounds; r++) {
        for (const mode of modes) {
          const res = await runOnce(python, script, kind, steps, mode, FrameDecoder);
          if (res.decodeError) throw new Error(`decoder error: ${res.decodeError}`);
          if (mode !== 'plain' && res.steps === 0) throw new Error(`${kind}/${mode}: the probe sent no steps`);
          per[mode].push(res.medianMs);
          lastRun[mode] = res;
          log(`${kind} ${mode} round ${r + 1}: ${res.medianMs.toFixed(2)} ms/step (${res.frames} frames, ${res.details} details)`);
        }
      }
      const base = median(per.plain);
      figures[kind] = {
        params: lastRun.plain.params,
        device: lastRun.plain.device,
        torchThreads: lastRun.plain.threads,
        plainMsPerStep: base,
        perStepTierMsPerStep: median(per.step),
        detailEveryStepMsPerStep: median(per.detail),
        ratioPerStepTier: median(per.step) / base,
        ratioDetailEveryStep: median(per.detail) / base,
        ratioPerStepTierBest: Math.min(...per.step) / Math.min(...per.plain),
        ratioDetailEveryStepBest: Math.min(...per.detail) / Math.min(...per.plain),
        runsMs: per,
        detailFramesPerRun: lastRun.detail.details,
        bytesPerRunDetail: lastRun.detail.bytes,
      };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  machine.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
  return { python, rounds, stepsPerRun: steps, targets: { perStepTier: 1.02, detailTier: 1.05 }, machine, ...figures };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await run({ log: (s) => console.log(s) });
  console.log(`load average ${r.machine.loadAverageAtStart.join(' ')} → ${r.machine.loadAverageAtEnd.join(' ')} on ${r.machine.cpus} CPUs (${r.machine.note})`);
  for (const kind of ['mlp', 'cnn']) {
    const f = r[kind];
    console.log(
      `${kind} (${(f.params / 1e6).toFixed(2)}M params, ${f.device}, ${f.torchThreads} thread${f.torchThreads > 1 ? 's' : ''}): plain ${f.plainMsPerStep.toFixed(2)} ms/step; ` +
        `per-step tier ×${f.ratioPerStepTier.toFixed(3)} (best runs ×${f.ratioPerStepTierBest.toFixed(3)}; target ≤ 1.02); ` +
        `detail tier every step ×${f.ratioDetailEveryStep.toFixed(3)} (best runs ×${f.ratioDetailEveryStepBest.toFixed(3)}; target ≤ 1.05)`,
    );
  }
}
