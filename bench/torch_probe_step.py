"""The torch probe's per-step cost on the training thread, in process: a residual model of many small
tensors (NT, default 100 tensors of 32x32 and 32, batch 8, Adam, 1 torch thread), so that the
probe's Python costs show against the step. The probe writes to a socket pair drained by `cat`.

    .venv-torch2/bin/python bench/torch_probe_step.py MODE

MODE: plain (no probe), plainpeer (hand-written `p.grad.norm().item()` per parameter each step),
time (the probe: best of REPS repeats of N steps, us per step, wall and CPU; and the mean time per
step in each of the probe's methods named in TIME), prof (cProfile of N steps with the probe;
SORT, NSTAT). Env: PROBE_DIR (the probe's folder, default this repository's src/probe/torch),
N (1000), REPS (5), NT (100), DE / SE (the probe's detail / sampled intervals; 0: automatic; the
every-step tier alone: DE=1000000 SE=1000000 NOJUMP=1), NOJUMP=1 (no detail tier on a norm jump).
Machines shared with other work: interleave plain / peer / probe runs and read the spread.
"""
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.environ.get("PROBE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "probe", "torch")))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
MODE = sys.argv[1] if len(sys.argv) > 1 else "time"
NT = int(os.environ.get("NT", "100"))
N = int(os.environ.get("N", "1000"))
REPS = int(os.environ.get("REPS", "5"))
probe = None
T = {}
if not MODE.startswith("plain"):
    from gradscope_probe.channel import Channel
    from gradscope_probe.probe import Probe

    a, b = socket.socketpair()
    drainer = subprocess.Popen(["cat"], stdin=a.fileno(), stdout=subprocess.DEVNULL)
    ch = Channel(os.dup(b.fileno()), watch=False)
    probe = Probe(ch, os.path.abspath(__file__), detail_every=int(os.environ.get("DE", "0")), sampled_every=int(os.environ.get("SE", "0")))
    probe.install()
    import gradscope_probe.detail as _d

    if os.environ.get("NOJUMP"):
        _d.JUMP_DETAIL_GAP = 10**9

    def timed(name, f):
        def w(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                T[name] = T.get(name, 0.0) + time.perf_counter() - t
        return w

    if MODE == "time":
        for nm in os.environ.get("TIME", "_before_step,_after_step,_grads_of,send").split(","):
            setattr(probe, nm, timed(nm, getattr(probe, nm)))


class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.ls = nn.ModuleList([nn.Linear(32, 32) for _ in range(NT // 2)])

    def forward(self, h):
        for lin in self.ls:
            h = h + torch.relu(lin(h)) * 0.1
        return h


m = Res()
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(8, 32)
PS = list(m.parameters())
NORMS = []


def step():
    opt.zero_grad()
    loss = m(x).square().mean()
    loss.backward()
    if MODE == "plainpeer":
        NORMS.append([p.grad.norm().item() for p in PS])
    opt.step()


for _ in range(50):
    step()
if MODE == "prof":
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(N):
        step()
    pr.disable()
    pstats.Stats(pr).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("NSTAT", "30")))
else:
    T.clear()
    best = bestc = 1e9
    for _ in range(REPS):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(N):
            step()
        best = min(best, (time.perf_counter() - t) / N * 1e6)
        bestc = min(bestc, (time.process_time() - c) / N * 1e6)
    if T:
        print("  mean per step: " + " ".join("%s=%.1f us" % (k, v / REPS / N * 1e6) for k, v in sorted(T.items())))
    print("%s: best %.1f us/step wall, %.1f us/step CPU (all threads)" % (MODE, best, bestc))
if probe is not None:
    probe.finish("completed")
