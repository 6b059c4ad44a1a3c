"""The torch probe on a CUDA GPU, in one process: what CI cannot run (it has no GPU). Run it when a GPU
machine is lent:

    python3 bench/torch_cuda.py [check] [ab]

check: for an MLP, a CNN and a small transformer on the GPU (Adam, detail tier every DE=5 steps, the
sampled tier automatic: dense on the first 10 steps), trains 25 steps with the probe writing to a
socket pair, decodes every frame it sent, and compares them with the gradients themselves, copied to
the host before each step: per tensor and step the norm and maxAbs (NaN and Inf left out), the NaN
and Inf counts (the last step has a NaN and an Inf planted in two gradients), and the detail tier
(mean, std, zero fraction, histogram, thumbnail) against stats.detail_stats on the CPU copy (the norms
within 1e-4 of the float64 norm: the every-step tier sums float32 gradients in float32). Prints
the largest differences and PASS or FAIL per model; exits 1 on a FAIL.

ab: the low-noise comparison of bench/torch_probe_step.py on the GPU: blocks of K (20) steps of plain,
hand-written norms (`p.grad.norm().item()` per parameter), the `foreach` floor (one multi-tensor norm,
one copy to the host) and the probe in turn, R (20) rounds, the GPU synchronized at each block's ends;
per mode the median ratio to plain and the ratio of the mean block times; once with the every-step
tier alone (TIERS=step) and once with the defaults (TIERS=defaults), for the three models above and a
100M-parameter MLP. The plain loop never reads a value back from the GPU: the worst case for any tool
that reads one statistic per step (a script that logs `loss.item()` each step has paid the sync
already).

Env: DEVICE (cuda, or cpu to try the script here), MODELS (mlp,cnn,transformer[,big]), K, R, S (steps
of check).
"""
import math
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "probe", "torch"))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from gradscope_probe import stats, wire  # noqa: E402
from gradscope_probe.channel import Channel  # noqa: E402
from gradscope_probe.probe import Probe  # noqa: E402

DEV = torch.device(os.environ.get("DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
K, R, S = int(os.environ.get("K", "20")), int(os.environ.get("R", "20")), int(os.environ.get("S", "25"))


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize(DEV)


class Tiny(nn.Module):
    """A small transformer encoder (4 layers, d=256) with a linear head: 50 tensors."""

    def __init__(self, d=256, layers=4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        return self.head(self.enc(x).mean(1))


def build(name):
    """(model, input) on DEV, built while the probe is installed (it names them from here)."""
    torch.manual_seed(0)
    if name == "mlp":
        m, x = nn.Sequential(nn.Linear(784, 1536), nn.ReLU(), nn.Linear(1536, 512), nn.ReLU(), nn.Linear(512, 10)), torch.randn(128, 784)
    elif name == "cnn":
        m = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 5 * 5, 10))
        x = torch.randn(64, 1, 28, 28)
    elif name == "transformer":
        m, x = Tiny(), torch.randn(16, 64, 256)
    elif name == "big":  # ~100M parameters
        m = nn.Sequential(*[mod for _ in range(6) for mod in (nn.Linear(4096, 4096), nn.ReLU())], nn.Linear(4096, 10))
        x = torch.randn(256, 4096)
    else:
        raise SystemExit("unknown model %r" % name)
    return m.to(DEV), x.to(DEV)


class Run:
    """One probe writing to a socket pair whose other end a thread reads to the end."""

    def __init__(self, detail_every, sampled_every):
        self.host, child = socket.socketpair()
        self.child = child
        self.chunks = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.probe = Probe(Channel(os.dup(child.fileno()), watch=False), os.path.abspath(__file__),
                           detail_every=detail_every, sampled_every=sampled_every)
        self.probe.install()

    def _read(self):
        while True:
            d = self.host.recv(1 << 20)
            if not d:
                return
            self.chunks.append(d)

    def frames(self):
        """END, then every frame the probe sent, decoded."""
        self.probe.finish("completed")
        self.probe.uninstall()
        self.child.shutdown(socket.SHUT_WR)
        self.reader.join(30)
        frames, err = wire.decode_all(b"".join(self.chunks))
        if err is not None:
            raise SystemExit("the probe's stream does not decode: %s" % (err,))
        return [m for _, m in frames]


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def check(name):
    run = Run(detail_every=int(os.environ.get("DE", "5")), sampled_every=0)
    m, x = build(name)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    params = list(m.parameters())
    refs = {}
    for s in range(S):
        opt.zero_grad()
        m(x).square().mean().backward()
        if s == S - 1:
            params[0].grad.view(-1)[3] = float("nan")
            params[1].grad.view(-1)[0] = float("inf")
        refs[s] = [p.grad.detach().to("cpu", copy=True) for p in params]
        opt.step()
    sync()
    probe = run.probe
    index = {id(p): i for i, p in enumerate(params)}
    ids = {k.id: index[id(k.ref())] for k in probe._tensors if k.ref() is not None and id(k.ref()) in index}
    msgs = run.frames()
    steps = [mm for mm in msgs if mm["type"] == "step"]
    details = [mm for mm in msgs if mm["type"] == "detail"]
    events = [mm for mm in msgs if mm["type"] == "event"]
    hello = next((mm for mm in msgs if mm["type"] == "hello"), {})
    worst = {"norm": 0.0, "maxAbs": 0.0, "mean": 0.0, "std": 0.0, "thumb": 0.0, "hist": 0}
    bad = []
    maxabs_seen = 0
    for st in steps:
        s = st["step"]
        col = dict(zip(st["stats"], st["columns"]))
        for tid, i in ids.items():
            g = refs[s][i].double().reshape(-1)
            fin = g[torch.isfinite(g)]
            nan, inf = int(torch.isnan(g).sum()), int(torch.isinf(g).sum())
            norm = float(fin.norm()) if fin.numel() else 0.0
            if col["nanCount"][tid] != nan or col["infCount"][tid] != inf:
                bad.append("step %d tensor %d: NaN/Inf %s/%s, want %d/%d" % (s, tid, col["nanCount"][tid], col["infCount"][tid], nan, inf))
            worst["norm"] = max(worst["norm"], rel(col["norm"][tid], norm))
            mx = col["maxAbs"][tid]
            if not math.isnan(mx):
                maxabs_seen += 1
                worst["maxAbs"] = max(worst["maxAbs"], rel(mx, float(fin.abs().max()) if fin.numel() else 0.0))
    for d in details:
        g = refs[d["step"]][ids[d["tensorId"]]]
        v, tr, tc = stats.detail_stats(g, list(g.shape))
        v = v.tolist()
        if (tr, tc) != (d["thumbRows"], d["thumbCols"]):
            bad.append("step %d tensor %d: thumbnail %dx%d, want %dx%d" % (d["step"], d["tensorId"], d["thumbRows"], d["thumbCols"], tr, tc))
            continue
        worst["mean"] = max(worst["mean"], abs(d["mean"] - v[0]) / max(v[1], 1e-30))  # in units of std
        worst["std"] = max(worst["std"], rel(d["std"], v[1]))
        if abs(d["zeroFrac"] - v[2]) > 1e-15:  # (the GPU's count / n may differ from the CPU's in the last bit)
            bad.append("step %d tensor %d: zero fraction %r, want %r" % (d["step"], d["tensorId"], d["zeroFrac"], v[2]))
        hist = [int(h) for h in v[3:3 + stats.HIST_BINS]]
        worst["hist"] = max(worst["hist"], sum(abs(a - b) for a, b in zip(d["hist"], hist)))
        for a, b in zip(d["thumb"], v[3 + stats.HIST_BINS:]):
            worst["thumb"] = max(worst["thumb"], abs(a - b) / max(abs(b), 1e-6 * max(map(abs, v[3 + stats.HIST_BINS:]), default=1.0), 1e-30))
    want_steps = S
    if len(steps) != want_steps:
        bad.append("%d STEP frames, want %d" % (len(steps), want_steps))
    if not any(e.get("kind") == "non-finite" and e.get("step") == S - 1 for e in events):
        bad.append("no non-finite EVENT at step %d" % (S - 1))
    if not details:
        bad.append("no DETAIL frames")
    if worst["norm"] > 1e-4 or worst["maxAbs"] > 1e-6 or worst["mean"] > 1e-5 or worst["std"] > 1e-4 \
            or worst["hist"] > 0 or worst["thumb"] > 1e-4:
        bad.append("differences over the bounds: %r" % worst)
    warn = [e["message"] for e in events if e.get("kind") == "warning"]
    print("check %-11s on %s (%s): %d steps, %d tensors, %d DETAIL frames, maxAbs on %d rows; largest relative "
          "differences: norm %.2e, maxAbs %.2e, mean %.2e std, std %.2e, thumbnail %.2e; histogram counts off by %d%s" % (
              name, hello.get("device", DEV), hello.get("backend"), len(steps), len(ids), len(details), maxabs_seen,
              worst["norm"], worst["maxAbs"], worst["mean"], worst["std"], worst["thumb"], worst["hist"],
              ("; probe warnings: %s" % warn) if warn else ""))
    for b in bad[:10]:
        print("  FAIL: " + b)
    print("  %s" % ("FAIL" if bad else "PASS"))
    return not bad


def ab(name, tiers):
    step_only = tiers == "step"
    run = Run(detail_every=10 ** 6 if step_only else 0, sampled_every=10 ** 6 if step_only else 0)
    if step_only:
        import gradscope_probe.detail as det
        det.JUMP_DETAIL_GAP = 10 ** 9
    probe = run.probe
    m, x = build(name)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    ps = list(m.parameters())
    sink = []

    def step(mode):
        opt.zero_grad()
        m(x).square().mean().backward()
        if mode == "peer":
            sink.append([p.grad.norm().item() for p in ps])
        elif mode == "foreach":
            sink.append(torch.stack(torch._foreach_norm([p.grad for p in ps])).tolist())
        opt.step()
        if len(sink) > 1000:
            del sink[:]

    def use(mode):
        probe.uninstall()
        if mode == "probe":
            probe.install()
            probe._wrap_step_of(type(opt))

    modes = ["plain", "peer", "foreach", "probe"]
    for md in modes:
        use(md)
        for _ in range(10):
            step(md)
    times = {md: [] for md in modes}
    for r in range(R):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for md in order[::-1] if r % 2 else order:
            use(md)
            step(md)
            step(md)
            sync()
            t = time.perf_counter()
            for _ in range(K):
                step(md)
            sync()
            times[md].append((time.perf_counter() - t) / K * 1e3)
    use("probe")
    probe_steps = probe.steps
    run.frames()
    if step_only:
        import gradscope_probe.detail as det
        det.JUMP_DETAIL_GAP = 10
    out = []
    for md in modes:
        ratios = [v / p for v, p in zip(times[md], times["plain"])]
        out.append("%s ×%.3f (%.2f ms, means ×%.3f)" % (md, statistics.median(ratios), statistics.median(times[md]),
                                                        statistics.mean(times[md]) / statistics.mean(times["plain"])))
    print("ab %-11s tiers=%-8s %d rounds x %d steps (%d probe steps), %d tensors: %s" % (
        name, tiers, R, K, probe_steps, len(ps), ", ".join(out)))
    sys.stdout.flush()


def main():
    what = sys.argv[1:] or ["check", "ab"]
    if DEV.type == "cuda":
        print("torch %s, CUDA %s, %s" % (torch.__version__, torch.version.cuda, torch.cuda.get_device_name(DEV)))
    else:
        print("torch %s on the CPU (DEVICE=cpu)" % torch.__version__)
    ok = True
    if "check" in what:
        for name in os.environ.get("MODELS", "mlp,cnn,transformer").split(","):
            ok = check(name) and ok
            sys.stdout.flush()
    if "ab" in what:
        for name in os.environ.get("AB_MODELS", "mlp,cnn,transformer,big").split(","):
            for tiers in os.environ.get("TIERS", "step,defaults").split(","):
                ab(name, tiers)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
