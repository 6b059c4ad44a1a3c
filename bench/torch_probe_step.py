"""The torch probe's per-step cost on the training thread, in process: a residual model of many small
tensors (NT, default 100 tensors of 32x32 and 32, batch 8, Adam, 1 torch thread), so that the
probe's Python costs show against the step. The probe writes to a socket pair drained by `cat`.

    .venv-torch2/bin/python bench/torch_probe_step.py MODE

MODE: plain (no probe), plainpeer (hand-written `p.grad.norm().item()` per parameter each step),
cold (no probe: a Python loop and one multi-tensor norm timed right after backward() and again at
once: what any Python between backward and step pays there), reduce (no probe: one norm per gradient
right after backward(), written four ways, one of them at random each step: the hand-written
`p.grad.norm().item()` per parameter, the `foreach` floor, the probe's own pass, stats.plain_values
with the NormPlan the probe makes for the optimizer, and the floor inside `torch.no_grad()`; median and
quartiles, us), time (the probe: best of REPS repeats
of N steps, us per step, wall and CPU; and the mean time per step in each of the probe's methods
named in TIME), detail (the probe, N steps: the median step time by its distance from the last step
that ran the detail tier, which shows what a detail step costs and where (on that step, or on the
next ones: frames written, a background job), with the automatic interval's own estimate of that cost
and the interval it picked; DE=0 NOJUMP=1 SE=1000000: the automatic interval alone), prof (cProfile of N steps with the probe;
SORT, NSTAT), ab (below). Env: PROBE_DIR (the probe's folder, default this repository's
src/probe/torch), MODEL (res: the model above; mlp: 784-1536-512-10, batch 128, 2.0M parameters in 6
tensors; cnn: two 3x3 convs and a linear head, batch 64; both as in bench/lib/torchModels.mjs), N (1000), REPS (5), NT (100), DE / SE (the probe's detail /
sampled intervals; 0: automatic; the every-step tier alone: DE=1000000 SE=1000000 NOJUMP=1),
NOJUMP=1 (no detail tier on a norm jump), THREADS (torch's intra-op threads; default torch's own, one
per core, what a plain `python script.py` uses; 1 is steadier on a shared machine), chunks (the cost of Python 3.11's frame chunks by call depth: see chunks()).

ab: the low-noise comparison, in ONE process: blocks of K steps (20) of each of AB (default
plain,peer,foreach,probe; also hooked, hookedAfter, hookedBg, hookedFork (see _fork_norms()), hookedSpin (hooked + SPIN_US µs of Python, 200: what a gap of
Python before the step costs at a thread count), hookedPost (each norm in a post-accumulate-grad hook,
see hooked_post()); see hooked(); probeB: the probe of PROBE_B, another checkout's
src/probe/torch, in the same process, to tell two versions apart by less than the ±0.5 % that separate
runs of ab differ by) in turn, R rounds (30) with the order rotated and reversed every other
round; per round each mode's block time ÷ the plain block's; prints the median ratio and its
quartiles, and the ratio of the mean block times (the figure for the automatic tiers, which run on
some blocks only). Separate processes of the same script differ by ±15 % here (memory layout, page faults),
which hides a 1 % change; blocks in one process share them. foreach is the floor of the every-step
tier as it was: one multi-tensor norm pass (`torch.stack(torch._foreach_norm(grads)).tolist()`) and
nothing else; pass is the probe's own norm pass (stats.plain_values with the optimizer's NormPlan:
small tensors stacked, long ones by rows) and nothing else, the floor now. The
probe is installed for its blocks and uninstalled for the others (its input-scale hooks too: the
first layer is found again at the first forward pass of its block).
Machines shared with other work: interleave plain / peer / probe runs and read the spread.
"""
import cProfile
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.environ.get("PROBE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "probe", "torch")))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

if os.environ.get("THREADS"):  # (unset: torch's default, one per core, what a plain run gets)
    torch.set_num_threads(int(os.environ["THREADS"]))
torch.manual_seed(0)
MODE = sys.argv[1] if len(sys.argv) > 1 else "time"
NT = int(os.environ.get("NT", "100"))
N = int(os.environ.get("N", "1000"))
REPS = int(os.environ.get("REPS", "5"))
probe = probe_b = None
T = {}
if not MODE.startswith("plain") and MODE not in ("cold", "reduce"):
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

    if os.environ.get("PROBE_B"):
        # ab's probeB: another version of the probe in the same process, to compare two versions to
        # within the noise of one process (see the docstring).
        import importlib
        import tempfile

        top = tempfile.mkdtemp(prefix="gs-probe-b-")
        os.symlink(os.path.join(os.path.abspath(os.environ["PROBE_B"]), "gradscope_probe"), os.path.join(top, "gradscope_probe_b"))
        sys.path.insert(0, top)
        _pb = importlib.import_module("gradscope_probe_b.probe")
        _cb = importlib.import_module("gradscope_probe_b.channel")
        a2, b2 = socket.socketpair()
        drainer_b = subprocess.Popen(["cat"], stdin=a2.fileno(), stdout=subprocess.DEVNULL)
        probe_b = _pb.Probe(_cb.Channel(os.dup(b2.fileno()), watch=False), os.path.abspath(__file__),
                            detail_every=int(os.environ.get("DE", "0")), sampled_every=int(os.environ.get("SE", "0")))
        if os.environ.get("NOJUMP"):
            importlib.import_module("gradscope_probe_b.detail").JUMP_DETAIL_GAP = 10**9

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


if os.environ.get("MODEL", "res") == "mlp":
    m = nn.Sequential(nn.Linear(784, 1536), nn.ReLU(), nn.Linear(1536, 512), nn.ReLU(), nn.Linear(512, 10))
    x = torch.randn(128, 784)
elif os.environ.get("MODEL") == "cnn":
    m = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(32 * 5 * 5, 10))
    x = torch.randn(64, 1, 28, 28)
else:
    m = Res()
    x = torch.randn(8, 32)
opt = torch.optim.Adam(m.parameters(), 1e-3)
if probe_b is not None:
    probe_b._on_optimizer_built(opt, None)  # (built while the other probe was installed: steps are its steps)
PS = list(m.parameters())
NORMS = []


_PASS = []
if MODE == "ab" and "pass" in os.environ.get("AB", ""):
    from gradscope_probe import stats as _stats

    _plan = _stats.NormPlan(PS)
    _PASS.append(lambda gs: _stats.plain_values(gs, False, _plan)[0])


def step(peer=MODE):
    opt.zero_grad()
    loss = m(x).square().mean()
    loss.backward()
    if peer in ("plainpeer", "peer"):
        NORMS.append([p.grad.norm().item() for p in PS])
    elif peer == "foreach":
        NORMS.append(torch.stack(torch._foreach_norm([p.grad for p in PS])).tolist())
    elif peer == "pass":
        NORMS.append(_PASS[0]([p.grad for p in PS]))
    opt.step()
    if len(NORMS) > 1000:
        del NORMS[:]


def cold():
    """What the probe's Python costs where it runs, between backward() and step(): the median time of
    a 200-iteration Python loop and of one `_foreach_norm` over the gradients, right after the
    backward pass and again at once (warm), over N steps of the plain script."""
    def loop():
        t = 0
        for i in range(200):
            t += i
        return t

    pc = time.perf_counter
    got = {"loop after backward": [], "loop again": [], "norm after backward": [], "norm again": []}
    for i in range(N):
        opt.zero_grad()
        m(x).square().mean().backward()
        gs = [p.grad for p in PS]
        t0 = pc()
        loop()
        t1 = pc()
        loop()
        t2 = pc()
        torch._foreach_norm(gs)
        t3 = pc()
        torch._foreach_norm(gs)
        t4 = pc()
        opt.step()
        for k, v in zip(got, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            got[k].append(v)
    print("%s, %d tensors, median of %d steps: %s" % (os.environ.get("MODEL", "res"), len(PS), N, ", ".join(
        "%s %.1f us" % (k, statistics.median(v) * 1e6) for k, v in got.items())))


def floor_no_grad(gs):
    """The floor inside `with torch.no_grad()`: what the context manager costs where the probe runs
    (stats.plain_values switches grad mode with torch's C calls instead)."""
    with torch.no_grad():
        return torch.stack(torch._foreach_norm(gs)).tolist()


def reduce_():
    """The every-step tier's one norm pass on its own, written four ways (see the docstring's MODE)."""
    import random

    from gradscope_probe import stats

    plan = stats.NormPlan(PS)  # (as the probe keeps one for the optimizer)
    ways = {
        "hand-written .norm().item()": lambda gs: [g.norm().item() for g in gs],
        "foreach floor": lambda gs: torch.stack(torch._foreach_norm(gs)).tolist(),
        "probe (plain_values)": lambda gs: stats.plain_values(gs, False, plan),
        "foreach in torch.no_grad()": floor_no_grad,
    }
    got = {k: [] for k in ways}
    rng = random.Random(0)
    pc = time.perf_counter
    for _ in range(N):
        k = rng.choice(list(ways))
        opt.zero_grad()
        m(x).square().mean().backward()
        gs = [p.grad for p in PS]
        t0 = pc()
        ways[k](gs)
        got[k].append(pc() - t0)
        opt.step()
    print("%s, %d tensors%s, right after backward(), %d steps:" % (
        os.environ.get("MODEL", "res"), len(PS), " (NormPlan: %d stacked groups, %d long)" % (len(plan.stacked), len(plan.long)), N))
    for k, v in got.items():
        q1, q2, q3 = statistics.quantiles(v, n=4)
        print("  %-28s median %7.1f us (quartiles %.1f-%.1f), %d steps" % (k, q2 * 1e6, q1 * 1e6, q3 * 1e6, len(v)))


def detail():
    """Step times by distance from the last detail step (see the docstring's MODE)."""
    due = [False]
    real_due = probe._detail_due

    def seen_due(rec):
        d = real_due(rec)
        due[0] = due[0] or d
        return d

    probe._detail_due = seen_due
    pc = time.perf_counter
    by = {}
    since = None
    details = 0
    for _ in range(N):
        due[0] = False
        t = pc()
        step()
        dt = (pc() - t) * 1e6
        since = 0 if due[0] else (None if since is None else since + 1)
        details += due[0]
        if since is not None:
            by.setdefault(min(since, 5), []).append(dt)
    rest = statistics.median(by.get(5, [0.0]))
    print("%s, %d tensors, %d steps, %d of them with the detail tier; the probe's own estimate: %.2f ms on the "
          "training thread + %.2f ms of background CPU per detail step, step interval %.2f ms, interval picked %d" % (
              os.environ.get("MODEL", "res"), len(PS), N, details, probe._detail_fg_ms, probe._detail_bg_ms,
              probe._interval_ms, probe.detail_every))
    for k in sorted(by):
        v = by[k]
        print("  %-22s median %8.1f us (%+8.1f us), %d steps" % (
            "detail step" if k == 0 else ("%d after" % k if k < 5 else "5 or more after"), statistics.median(v),
            statistics.median(v) - rest, len(v)))


def _mmap_counter():
    """A reader of the number of mmap system calls this thread made (perf's syscalls:sys_enter_mmap
    tracepoint through perf_event_open), or None where perf or the tracepoint is not available."""
    import ctypes
    import platform
    import struct

    nr = {"x86_64": 298, "aarch64": 241}.get(platform.machine())  # perf_event_open
    try:
        with open("/sys/kernel/tracing/events/syscalls/sys_enter_mmap/id") as f:
            tracepoint = int(f.read())
    except (OSError, ValueError):
        return None
    if nr is None:
        return None
    attr = ctypes.create_string_buffer(struct.pack("<IIQ", 2, 64, tracepoint), 64)  # PERF_TYPE_TRACEPOINT
    fd = ctypes.CDLL(None, use_errno=True).syscall(nr, attr, 0, -1, -1, 0)  # this thread, any CPU
    return None if fd < 0 else (lambda: struct.unpack("<Q", os.read(fd, 8))[0])


def chunks():
    """CPython 3.11+ keeps its frames in 16 KiB chunks that it maps and unmaps as the call stack
    crosses their ends: a call made right below a chunk's end maps a chunk and unmaps it on return,
    every time. Prints (1) what a small Python call costs at each extra call depth from here (DEPTHS,
    default 0-199) where that costs over 10x the median; (2) with perf's mmap tracepoint where it can
    be read, the mmap calls per step of the plain step and of the probe's, K steps each, at extra
    depths D0..D (step DS): a training loop at a depth where its frames straddle a chunk's end pays
    them on every step, with the probe or without it."""
    def leaf(xs):
        return [v for v in xs]

    def at(d, f):
        return at(d - 1, f) if d else f()

    def calls():
        pc = time.perf_counter
        t = pc()
        for _ in range(2000):
            leaf((1, 2))
        return (pc() - t) / 2000 * 1e9

    lo, hi = (int(v) for v in os.environ.get("DEPTHS", "0-199").split("-"))
    per = [(d, at(d, calls)) for d in range(lo, hi + 1)]
    med = statistics.median(v for _, v in per)
    print("a 2-frame Python call: median %.0f ns; extra depths where it costs over 10x that: %s" % (
        med, ", ".join("%d (%.1f us)" % (d, v / 1e3) for d, v in per if v > 10 * med) or "none"))
    count = _mmap_counter()
    if count is None:
        print("mmap calls per step: perf's syscalls:sys_enter_mmap tracepoint is not readable here")
        return
    k = int(os.environ.get("K", "20"))

    def steps(md):
        def run():
            step(md)
            c = count()
            for _ in range(k):
                step(md)
            return (count() - c) / k
        return run

    rows = []
    for d in range(int(os.environ.get("D0", "0")), int(os.environ.get("D", "200")), int(os.environ.get("DS", "2"))):
        probe.uninstall()
        plain = at(d, steps("plain"))
        probe.install()
        probe._wrap_step_of(type(opt))
        rows.append((d, plain, at(d, steps("probe"))))
    print("mmap calls per step by extra depth (plain / probe), where either is not 0:")
    print("  " + ", ".join("%d: %.1f / %.1f" % r for r in rows if r[1] or r[2]))
    print("  mean over the %d depths: plain %.2f, probe %.2f" % (
        len(rows), statistics.mean(r[1] for r in rows), statistics.mean(r[2] for r in rows)))


_HOOKED = {}


_BG = {}


def _bg_worker():
    """hookedBg's thread: one norm pass per job, while the training thread runs the step."""
    import queue
    import threading

    if "q" in _BG:
        return _BG
    q_in, q_out = queue.SimpleQueue(), queue.SimpleQueue()

    def run():
        while True:
            gs = q_in.get()
            torch._C._set_grad_enabled(False)
            q_out.put(torch.stack(torch._foreach_norm(gs)).tolist())

    threading.Thread(target=run, daemon=True).start()
    _BG.update(q=q_in, out=q_out)
    return _BG


def hooked(on, after=False, bg=False, spin_us=0.0, fork=False):
    """The `hooked` mode of ab: the least a tool that hooks the script's steps can cost, with no change
    to the script: a Python wrapper of `torch.autograd.backward` (which `loss.backward()` calls) that
    keeps the loss, and one of the optimizer class's `step` that takes the floor's norm pass before
    the step and keeps the numbers; no frame, no checks, no bookkeeping. after (`hookedAfter`): the
    same norm pass after the step (torch's optimizers only read the gradients), where the step has
    just read the gradients into the CPU's caches, instead of right after backward(). bg (`hookedBg`):
    the norm pass on a second thread while the step runs (torch's kernels release the GIL), joined
    after the step. Measured (torch 2.13, in-process ab): on the MLP with 1 torch thread x1.004
    against hooked's x1.017 (its 0.4 ms norm pass overlaps the step on the idle core), but with the
    default 2 threads on 2 cores x1.027 against x1.021 (the thread takes a core from torch's own
    workers), and on the CNN (a 0.1 ms pass) x1.027 against x1.012 (the hand-off costs more than the
    pass): not what a user's default run gains, so the probe keeps its pass on the training thread.
    fork (`hookedFork`): the pass forked onto torch's inter-op pool by a scripted function
    (_fork_norms), waited for after the step: no Python thread, no GIL hand-off. Measured (torch
    2.13, 2 threads, 100 rounds): MLP x1.013 against hooked's x1.021, CNN x1.044-1.055 against
    x1.006-1.010 (60 rounds: the fork's thread waits for a core the OpenMP workers hold); with 1
    thread, CNN x1.005 against x1.003. Not adopted: it loses on the CNN at the default thread count,
    and torch 2.13 deprecates torch.jit.script."""
    import torch.autograd as ag

    if not on:
        if _HOOKED:
            ag.backward = _HOOKED.pop("backward")
            type(opt).step = _HOOKED.pop("step")
        return
    if _HOOKED:
        return
    orig_bw, orig_step = ag.backward, type(opt).step
    _HOOKED.update(backward=orig_bw, step=orig_step)
    kept = []

    def backward(tensors, *a, **kw):
        kept.append(tensors)
        return orig_bw(tensors, *a, **kw)

    def step_after(self, *a, **kw):
        out = orig_step(self, *a, **kw)
        gs = [p.grad for g in self.param_groups for p in g["params"]]
        torch._C._set_grad_enabled(False)
        NORMS.append(torch.stack(torch._foreach_norm(gs)).tolist())
        torch._C._set_grad_enabled(True)
        del kept[:]
        return out

    def step(self, *a, **kw):
        gs = [p.grad for g in self.param_groups for p in g["params"]]
        torch._C._set_grad_enabled(False)
        NORMS.append(torch.stack(torch._foreach_norm(gs)).tolist())
        torch._C._set_grad_enabled(True)
        if spin_us:
            end = time.perf_counter() + spin_us * 1e-6
            while time.perf_counter() < end:
                pass
        out = orig_step(self, *a, **kw)
        del kept[:]
        return out

    def step_bg(self, *a, **kw):
        gs = [p.grad for g in self.param_groups for p in g["params"]]
        w["q"].put(gs)
        out = orig_step(self, *a, **kw)
        NORMS.append(w["out"].get())
        del kept[:]
        return out

    def step_fork(self, *a, **kw):
        gs = [p.grad for g in self.param_groups for p in g["params"]]
        fut = _fork_norms()(gs)
        out = orig_step(self, *a, **kw)
        NORMS.append(fut.wait().tolist())
        del kept[:]
        return out

    w = _bg_worker() if bg else None
    ag.backward, type(opt).step = backward, (step_fork if fork else step_bg if bg else step_after if after else step)


_FORK = []


def _fork_norms():
    """A TorchScript function that forks the floor's norm pass onto torch's inter-op thread pool and
    returns its Future at once: the pass runs in C++ beside the step, with no Python thread and no GIL
    hand-off (eager torch.jit.fork runs synchronously; inside a scripted function it does not)."""
    if not _FORK:
        import warnings
        from typing import List

        def norms(gs: List[torch.Tensor]) -> torch.Tensor:
            with torch.no_grad():
                return torch.stack(torch._foreach_norm(gs))

        def launch(gs: List[torch.Tensor]) -> torch.jit.Future[torch.Tensor]:
            return torch.jit.fork(norms_s, gs)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            norms_s = torch.jit.script(norms)
            globals()["norms_s"] = norms_s
            _FORK.append(torch.jit.script(launch))
    return _FORK[0]


_POST = {"handles": [], "norms": [], "orig": None}


def hooked_post(on):
    """The `hookedPost` mode of ab: each gradient's norm taken right after backward() wrote it (a
    post-accumulate-grad hook per parameter, torch >= 2.1), while it is still in the CPU's caches,
    as a 0-d tensor; the optimizer's step wrapper stacks them and reads them in one call. Measured
    (torch 2.13, 2 threads): CNN x1.028 against hooked's x1.010, MLP x1.033 against x1.025: a Python
    call per tensor inside backward() costs more than the warm caches save."""
    if not on:
        for h in _POST["handles"]:
            h.remove()
        _POST["handles"].clear()
        if _POST["orig"] is not None:
            type(opt).step = _POST["orig"]
            _POST["orig"] = None
        return
    if _POST["handles"]:
        return
    kept = _POST["norms"]
    vn = torch.linalg.vector_norm

    def hook(p):
        kept.append(vn(p.grad))

    _POST["handles"].extend(p.register_post_accumulate_grad_hook(hook) for p in PS)
    orig_step = _POST["orig"] = type(opt).step

    def step(self, *a, **kw):
        NORMS.append(torch.stack(kept).tolist())
        del kept[:]
        return orig_step(self, *a, **kw)

    type(opt).step = step


def ab():
    modes = os.environ.get("AB", "plain,peer,foreach,probe").split(",")
    k, rounds = int(os.environ.get("K", "20")), int(os.environ.get("R", "30"))
    if "plain" not in modes:
        modes.insert(0, "plain")

    def use(mode):
        probe.uninstall()
        if probe_b is not None:
            probe_b.uninstall()
        hooked(False)
        hooked_post(mode == "hookedPost")
        if mode in ("hooked", "hookedAfter", "hookedBg", "hookedSpin", "hookedFork"):
            hooked(True, after=mode == "hookedAfter", bg=mode == "hookedBg", fork=mode == "hookedFork",
                   spin_us=float(os.environ.get("SPIN_US", "200")) if mode == "hookedSpin" else 0.0)
        if mode in ("probe", "probeB"):
            p = probe if mode == "probe" else probe_b
            p.install()
            p._wrap_step_of(type(opt))  # the optimizer was built while installed: hooked again

    times = {md: [] for md in modes}
    for r in range(rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for md in order[::-1] if r % 2 else order:
            use(md)
            step(md)
            step(md)
            t = time.perf_counter()
            for _ in range(k):
                step(md)
            times[md].append((time.perf_counter() - t) / k * 1e6)
    use("probe")
    print("%s, %d rounds x %d steps per block, %d tensors, %d torch threads" % (os.environ.get("MODEL", "res"), rounds, k, len(PS), torch.get_num_threads()))
    for md in modes:
        ratios = [v / p for v, p in zip(times[md], times["plain"])]
        q1, _q2, q3 = statistics.quantiles(ratios, n=4)
        # The mean of the blocks' times as well: a tier that runs every N > K steps (the detail and
        # sampled tiers in their automatic schedules) falls in some blocks only, which the median of
        # the per-block ratios leaves out or over-weights; the ratio of the means counts it once.
        print("  %-8s median %8.1f us/step   ratio to plain: median %.4f (quartiles %.4f-%.4f), of the means %.4f" % (
            md, statistics.median(times[md]), statistics.median(ratios), q1, q3,
            statistics.mean(times[md]) / statistics.mean(times["plain"])))


for _ in range(50):
    step()
if MODE == "ab":
    ab()
elif MODE == "cold":
    cold()
elif MODE == "reduce":
    reduce_()
elif MODE == "detail":
    detail()
elif MODE == "chunks":
    chunks()
elif MODE == "prof":
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
    if probe_b is not None:
        probe_b.finish("completed")
