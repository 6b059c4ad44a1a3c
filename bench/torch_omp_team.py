"""What a background thread that runs torch CPU ops costs the training thread, by OpenMP team
(see src/probe/torch/gradscope_probe/omp.py): the 2.0M-parameter MLP (784-1536-512-10, batch 128,
Adam) trained plainly, with a background thread that ran one parallel op and then waits (as the
probe's detail thread did), and with that thread single-threaded first (omp.single_threaded_here(),
what the probe does now). Each variant in its own process (an OpenMP team lives as long as its
thread), ROUNDS rounds (6) interleaved, the order rotated; prints per variant the median over rounds
of the median time of forward+backward, of the optimizer step and of one pass over the gradients
(torch._foreach_norm, right after backward), and the whole step against the plain variant's.

    .venv-torch2/bin/python bench/torch_omp_team.py [THREADS=2] [ROUNDS=6] [STEPS=150]
"""
import os
import statistics
import subprocess
import sys

VARIANTS = ("plain", "team", "single")


def child(variant: str) -> None:
    import threading
    import time

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "probe", "torch"))
    import torch
    import torch.nn as nn

    from gradscope_probe import omp

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    torch.manual_seed(0)
    if variant != "plain":
        ready = threading.Event()

        def side():
            if variant == "single":
                omp.single_threaded_here()
            torch.randn(1 << 22).abs().sum()  # one parallel op: its thread's team, where it has one
            ready.set()
            threading.Event().wait()

        threading.Thread(target=side, daemon=True).start()
        ready.wait()
    m = nn.Sequential(nn.Linear(784, 1536), nn.ReLU(), nn.Linear(1536, 512), nn.ReLU(), nn.Linear(512, 10))
    x = torch.randn(128, 784)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    ps = list(m.parameters())
    pc = time.perf_counter
    fb, st, ps_t, whole = [], [], [], []
    for i in range(int(os.environ.get("STEPS", "150"))):
        t0 = pc()
        opt.zero_grad()
        m(x).square().mean().backward()
        t1 = pc()
        torch._foreach_norm([p.grad for p in ps])
        t2 = pc()
        opt.step()
        t3 = pc()
        if i >= 20:
            fb.append(t1 - t0)
            ps_t.append(t2 - t1)
            st.append(t3 - t2)
            whole.append(t3 - t0)
    print(" ".join("%.1f" % (statistics.median(v) * 1e6) for v in (fb, st, ps_t, whole)))


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "6"))
    got = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        for v in (order if r % 2 == 0 else tuple(reversed(order))):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "child", v], capture_output=True, text=True, check=True)
            got[v].append([float(x) for x in out.stdout.split()])
    base = statistics.median(w[3] for w in got["plain"])
    print("MLP 2.0M params, %s torch threads, %d rounds (median over rounds of per-process medians, us):" % (os.environ.get("THREADS", "2"), rounds))
    for v in VARIANTS:
        cols = list(zip(*got[v]))
        fb, st, pa, wh = (statistics.median(c) for c in cols)
        print("  %-7s fwd+bwd %7.1f  step %7.1f  grad pass %6.1f  whole %7.1f  x%.3f" % (v, fb, st, pa, wh, wh / base))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        main()
