"""The torch probe proper: hooks, parameter metadata, per-step statistics, lifecycle frames.

Hooks (installed once, before the user's script runs):
- ``nn.Module.__init__`` and ``nn.Parameter.__new__``: record where each module / parameter was
  built in the user's code (the first stack frame outside torch, the probe, the standard library and
  installed packages; a module's own ``__init__`` frames are skipped, so ``model = Net()`` rather
  than the ``super().__init__()`` line).
- ``Optimizer.__init__``: wraps ``step`` of every Optimizer class in the instance's MRO, once per
  class. A thread-local depth counter makes ``super().step()`` (and torch's own profiling wrapper)
  count once. This is the same on torch 1.13 and 2.x: torch 2.x's global
  ``register_optimizer_step_post_hook`` hooks run inside an equivalent per-class wrapper (installed by
  ``Optimizer.__init__`` too), so they would reach no more optimizers, and they do not run their
  post hooks when ``step`` raises, which would leave a re-entrancy guard stale.
- ``torch.autograd.backward`` (what ``Tensor.backward`` calls): remembers the scalar being
  back-propagated as the step's loss (``GradScaler.scale`` is wrapped too, so a scaled loss is
  reported unscaled).
- ``torch.nn.utils.clip_grad_norm_``: computes the gradient statistics of the parameters it is given
  before clipping; the next step reports those (the norm the script actually produced). An ``info``
  EVENT gives the ``max_norm`` once.

A step without a closure: gradient statistics are taken just before the optimizer's own ``step``
runs (what it is about to apply). A step with a closure (LBFGS, or any optimizer called as
``step(closure)``): gradients are computed inside ``step``, so they are read just after it (the
gradient of the last closure evaluation), and the loss is the value ``step`` returns. A step that
is never called (``GradScaler`` skipping an overflow step) produces no STEP frame.

The detail tier (histogram, thumbnail) of CPU gradients is computed off the training thread: on a
detail step the training thread copies the gradients into buffers kept for that purpose and hands
them to one background thread, which sends the DETAIL frames when done (its kernels run in
TorchScript, without the GIL: see stats.py). One job at a time, nothing queues: with a fixed
interval a detail step that comes while the previous job still runs is skipped and counted (an
``info`` EVENT before END); with the automatic one it is put off to the next step. END waits
(bounded) for the job in flight; an anomaly's detail waits for it too (a tensor's frames stay in step
order). Small steps (DETAIL_INLINE_MAX_ELEMENTS gradient entries or fewer), gradients elsewhere
(CUDA), sparse ones, or more than GRADSCOPE_DETAIL_COPY_MAX_BYTES of them: the detail tier runs on
the training thread, as before (on CUDA, in the step's one device→host copy).

Everything here runs inside try/except: the probe's own failures become ``warning`` EVENTs and
never reach the user's code.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import threading
import time
import weakref

import torch

from . import sources, stats, wire

AUTO_DETAIL_START = 10
# Fraction of the step interval the detail tier may cost on average in automatic mode: its time on
# the training thread plus the background job's CPU time (a free CPU for that job is not assumed:
# other work, or torch's own threads, may be using them all).
DETAIL_BUDGET = 0.05
UPDATE_SNAPSHOT_MAX_BYTES = int(os.environ.get("GRADSCOPE_UPDATE_NORM_MAX_BYTES", str(512 * 1024 * 1024)) or 0)
# A step with at most this many gradient entries computes its detail tier on the training thread:
# that costs less than handing it over (the background thread needs the GIL for its Python parts,
# which a Python-bound training loop seldom leaves it), and its frames come out with the step.
DETAIL_INLINE_MAX_ELEMENTS = 1 << 16
# Copies of the gradients kept for the background detail job (CPU gradients only).
DETAIL_COPY_MAX_BYTES = int(os.environ.get("GRADSCOPE_DETAIL_COPY_MAX_BYTES", str(256 * 1024 * 1024)) or 0)
# How long END waits for a detail job still running (then its remaining frames are not sent), and
# how long an anomaly's detail waits for the job before it, so the frames of a tensor stay in order.
DETAIL_DRAIN_S = 10.0


def probe_version() -> str:
    d = os.path.dirname(os.path.abspath(__file__))
    for _ in range(6):
        d = os.path.dirname(d)
        try:
            with open(os.path.join(d, "package.json"), encoding="utf-8") as f:
                pkg = json.load(f)
            if pkg.get("name") == "gradscope" and pkg.get("version"):
                return str(pkg["version"])
        except (OSError, ValueError):
            pass
    return "0.0.0"


def _err(e) -> str:
    return "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__


class _Known:
    __slots__ = ("id", "ref", "info", "snapshot", "detail_buf")

    def __init__(self, tid, p, info):
        self.id = tid
        self.ref = weakref.ref(p)
        self.info = info
        self.snapshot = None  # copy of the parameter before this step (update norm)
        self.detail_buf = None  # copy of the gradient for the background detail job


class _DetailWorker:
    """The background thread of the detail tier: runs one job at a time. submit() refuses a job
    while one is running (the caller skips that step's detail): nothing queues up."""

    def __init__(self, run):
        self._run = run
        self._cv = threading.Condition()
        self._job = None  # the job submitted or running; None when idle
        self.last_cpu_ms = 0.0  # CPU time of the last job, on this thread
        self.jobs_done = 0
        self.thread = threading.Thread(target=self._loop, name="gradscope-detail", daemon=True)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self._job is not None

    def submit(self, job) -> bool:
        with self._cv:
            if self._job is not None:
                return False
            self._job = job
            self._cv.notify_all()
            return True

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._job is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._job is None:
                    self._cv.wait()
                job = self._job
            t0 = time.thread_time()
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001 - the runner reports its own errors
                pass
            finally:
                with self._cv:
                    self.last_cpu_ms = (time.thread_time() - t0) * 1e3
                    self.jobs_done += 1
                    self._job = None
                    self._cv.notify_all()


class StepLimitReached(SystemExit):
    """Raised out of optimizer.step() when GRADSCOPE_MAX_STEPS is reached (exit code 0)."""


class Probe:
    def __init__(self, channel, script: str, max_steps: int = 0, detail_every: int = 0):
        self.channel = channel
        self.script = script
        self.max_steps = max_steps
        self.auto_detail = not detail_every or detail_every <= 0
        self.detail_every = AUTO_DETAIL_START if self.auto_detail else int(detail_every)
        self.pid = os.getpid()
        self.t0 = time.perf_counter()
        self.steps = 0
        self.finished = False
        self.end_reason = None
        self._hello_sent = False
        self._backend_known = False
        self._tls = threading.local()
        self._warned = set()
        self._known = {}  # id(param) -> _Known
        self._tensors = []  # _Known in id order
        self._module_refs = []  # weakrefs to modules, construction order
        self._module_refs_live = 0
        self._module_sites = {}  # id(module) -> site (modules are weak-referenced alongside)
        self._param_sites = {}  # id(parameter) -> (weakref, site)
        self._root_names = {}  # id(root module) -> variable name found where an optimizer was built
        self._raw_names = {}  # id(tensor) -> variable name, for tensors given to an optimizer directly
        self._pending_loss = None
        self._scaled = {}  # id(scaled loss) -> (weakref(scaled), unscaled)
        self._preclip = {}  # id(param) -> grad stats tensor computed before clipping
        self._clip_reported = set()
        self._nonfinite_reported = False
        self._prev_norm = {}
        self._snapshot_bytes = 0
        self._snapshot_full_reported = False
        self._last_step_end = None
        self._interval_ms = 0.0
        self._plain_cost_ms = 0.0
        self._dropped_steps = 0
        self._installed = []
        # Detail tier off the training thread (see the module's docstring).
        self._worker = None
        self._worker_failed = False
        self._detail_lock = threading.Lock()  # the background thread sends under it; END closes it
        self._detail_closed = False
        self._detail_bytes = 0  # bytes held in _Known.detail_buf
        self._detail_skipped = 0  # scheduled detail steps skipped: the previous job was still running
        self._detail_job_step = None
        self._detail_fg_ms = 0.0  # the detail tier's cost on the training thread, last detail step
        self._detail_jobs_seen = 0
        self._detail_bg_ms = 0.0  # the background job's CPU time, smoothed (automatic interval)
        self._last_detail_step = None  # automatic interval: the next detail step is this + detail_every

    # ------------------------------------------------------------------------------------------
    # Frames

    def send(self, msg: dict) -> bool:
        if os.getpid() != self.pid or self.channel is None:
            return False
        if not self._hello_sent and msg["type"] != "hello":
            self._send_hello()
        return self.channel.send(msg)

    def warn(self, where: str, e) -> None:
        key = "%s: %s" % (where, _err(e))
        if key in self._warned or len(self._warned) > 50:
            return
        self._warned.add(key)
        try:
            self.send({"type": "event", "kind": "warning", "message": "probe " + key})
        except Exception:  # noqa: BLE001
            pass

    def _send_hello(self, params=None) -> None:
        """HELLO goes out with the first frame that needs it: by then the script has usually put its
        model on a device, so the backend is what actually ran, not a guess."""
        self._hello_sent = True
        backend, device, reason = self._backend(params)
        self.send({"type": "hello", "probeVersion": probe_version(), "framework": "torch", "backend": backend,
                   "device": device, "backendReason": reason, "pid": self.pid, "rank": _rank(), "script": self.script,
                   "detailEvery": self.detail_every})
        self.send({"type": "event", "kind": "backend", "message": "%s: %s (torch %s)" % (device, reason, torch.__version__)})

    def _backend(self, params):
        devs = []
        for p in params or ():
            if p.device not in devs:
                devs.append(p.device)
        if not devs:
            # Nothing trained yet (e.g. a crash before the first step): say what torch offers,
            # without initialising CUDA on the script's behalf.
            if torch.version.cuda is None:
                return "cpu", "CPU", "no optimizer step ran; this torch build has no CUDA support"
            return "cpu", "CPU", "no optimizer step ran"
        self._backend_known = True
        cuda = [d for d in devs if d.type == "cuda"]
        if cuda:
            d = cuda[0]
            try:
                name = torch.cuda.get_device_name(d)
            except Exception:  # noqa: BLE001
                name = str(d)
            more = " (and %d more device(s))" % (len(devs) - 1) if len(devs) > 1 else ""
            return "cuda", name, "the model's parameters are on %s%s, CUDA %s" % (d, more, torch.version.cuda)
        d = devs[0]
        if d.type != "cpu":
            return d.type, str(d), "the model's parameters are on %s" % d
        threads = "CPU (%d thread%s)" % (torch.get_num_threads(), "" if torch.get_num_threads() == 1 else "s")
        if torch.version.cuda is None:
            return "cpu", threads, "this torch build has no CUDA support: training on the CPU"
        try:
            n = torch.cuda.device_count()
        except Exception:  # noqa: BLE001
            n = 0
        if n > 0:
            return "cpu", threads, ("the model's parameters are on the CPU although %d CUDA device(s) are available: "
                                    "move the model and its inputs with .to('cuda')" % n)
        return "cpu", threads, "torch was built with CUDA %s but no GPU is visible: training on the CPU" % torch.version.cuda

    # ------------------------------------------------------------------------------------------
    # Installation

    def install(self) -> None:
        for name, fn in (("module sites", self._install_modules), ("optimizer hooks", self._install_optimizers),
                         ("loss capture", self._install_backward), ("clip_grad_norm_", self._install_clip),
                         ("GradScaler", self._install_scaler)):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                self.warn("installing the %s hook" % name, e)

    def _patch(self, owner, attr, wrapper_factory):
        orig = getattr(owner, attr)
        if getattr(orig, "_gradscope_wrapped", False):
            return
        w = wrapper_factory(orig)
        w._gradscope_wrapped = True
        setattr(owner, attr, w)
        self._installed.append((owner, attr, orig))

    def uninstall(self) -> None:
        """Restores what install() replaced (tests)."""
        for owner, attr, orig in reversed(self._installed):
            try:
                setattr(owner, attr, orig)
            except Exception:  # noqa: BLE001
                pass
        self._installed = []

    def _install_modules(self) -> None:
        probe = self

        def module_init(orig):
            @functools.wraps(orig)
            def __init__(self, *args, **kwargs):
                orig(self, *args, **kwargs)
                if os.getpid() == probe.pid:
                    try:
                        probe._on_module(self)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("recording a module", e)
            return __init__

        def param_new(orig):
            # Parameter.__new__ is a staticmethod; wrap the function and re-wrap it.
            fn = orig

            def __new__(cls, *args, **kwargs):
                p = fn(cls, *args, **kwargs)
                if os.getpid() == probe.pid:
                    try:
                        site = sources.user_call_site(1)
                        if site is not None:
                            probe._param_sites[id(p)] = (weakref.ref(p, probe._forget_param(id(p))), site)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("recording a parameter", e)
                return p
            return __new__

        self._patch(torch.nn.Module, "__init__", module_init)
        orig_new = torch.nn.Parameter.__dict__["__new__"]
        fn = orig_new.__func__ if isinstance(orig_new, staticmethod) else orig_new
        if not getattr(fn, "_gradscope_wrapped", False):
            w = param_new(fn)
            w._gradscope_wrapped = True
            torch.nn.Parameter.__new__ = staticmethod(w)
            self._installed.append((torch.nn.Parameter, "__new__", orig_new))

    def _on_module(self, m) -> None:
        # Skip the frames of the module's own constructors (Net.__init__ → super().__init__()).
        f = sys._getframe(2)
        while f is not None:
            code = f.f_code
            if sources.is_user_file(code.co_filename):
                if not (code.co_name == "__init__" and code.co_argcount and f.f_locals.get(code.co_varnames[0]) is m):
                    break
            f = f.f_back
        site = sources.frame_location(f) if f is not None else None
        key = id(m)
        sites = self._module_sites
        self._module_refs.append(weakref.ref(m, lambda _r, k=key: sites.pop(k, None)))
        sites[key] = site
        # Scripts that build modules in every forward pass: keep the list to the live ones.
        if len(self._module_refs) > 2 * self._module_refs_live + 1024:
            self._module_refs = [r for r in self._module_refs if r() is not None]
            self._module_refs_live = len(self._module_refs)

    def _forget_param(self, key):
        sites = self._param_sites
        return lambda _r: sites.pop(key, None)

    def _install_optimizers(self) -> None:
        probe = self
        Optimizer = torch.optim.Optimizer

        def opt_init(orig):
            @functools.wraps(orig)
            def __init__(self, *args, **kwargs):
                orig(self, *args, **kwargs)
                if os.getpid() == probe.pid:
                    try:
                        probe._on_optimizer(self)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("hooking an optimizer", e)
            return __init__

        self._patch(Optimizer, "__init__", opt_init)

    def _wrap_step_of(self, cls) -> None:
        Optimizer = torch.optim.Optimizer
        for c in cls.__mro__:
            if c is object or not issubclass(c, Optimizer) or "step" not in c.__dict__:
                continue
            orig = c.__dict__["step"]
            if getattr(orig, "_gradscope_wrapped", False) or not callable(orig):
                continue
            c.step = self._step_wrapper(orig)
            self._installed.append((c, "step", orig))

    def _step_wrapper(self, orig):
        probe = self

        @functools.wraps(orig)
        def step(opt, *args, **kwargs):
            tls = probe._tls
            if getattr(tls, "depth", 0) or probe.finished or os.getpid() != probe.pid:
                if probe.end_reason == "step-limit" and os.getpid() == probe.pid and not getattr(tls, "depth", 0):
                    probe._exit_after_limit()
                return orig(opt, *args, **kwargs)
            tls.depth = 1
            ctx = None
            try:
                try:
                    ctx = probe._before_step(opt, args, kwargs)
                except Exception as e:  # noqa: BLE001
                    probe.warn("before optimizer.step", e)
                out = orig(opt, *args, **kwargs)
            finally:
                tls.depth = 0
            if ctx is not None:
                try:
                    probe._after_step(ctx, out)
                except Exception as e:  # noqa: BLE001
                    probe.warn("after optimizer.step", e)
                probe._check_limit()
            return out

        step._gradscope_wrapped = True
        return step

    def _on_optimizer(self, opt) -> None:
        self._wrap_step_of(type(opt))
        # Names for the model(s) and raw tensors this optimizer trains, from the code that built it.
        f = sys._getframe(2)
        while f is not None and not sources.is_user_file(f.f_code.co_filename):
            f = f.f_back
        if f is None:
            return
        params = {id(p) for g in opt.param_groups for p in g["params"]}
        scopes = [f.f_locals, f.f_globals] if f.f_locals is not f.f_globals else [f.f_globals]
        for scope in scopes:
            for name, v in list(scope.items()):
                if name.startswith("__"):
                    continue
                if isinstance(v, torch.nn.Module):
                    self._root_names.setdefault(id(v), name)
                elif isinstance(v, torch.Tensor):
                    if id(v) in params:
                        self._raw_names.setdefault(id(v), name)
                elif name == "self" and hasattr(v, "__dict__"):
                    for attr, av in list(vars(v).items()):
                        if isinstance(av, torch.nn.Module):
                            self._root_names.setdefault(id(av), "self." + attr)

    def _install_backward(self) -> None:
        probe = self

        def backward(orig):
            @functools.wraps(orig)
            def wrapper(tensors, *args, **kwargs):
                if os.getpid() == probe.pid:
                    try:
                        t = tensors
                        if isinstance(t, (list, tuple)) and len(t) == 1:
                            t = t[0]
                        if isinstance(t, torch.Tensor) and t.numel() == 1:
                            probe._pending_loss = probe._unscaled(t).detach()
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading the loss", e)
                return orig(tensors, *args, **kwargs)
            return wrapper

        self._patch(torch.autograd, "backward", backward)

    def _unscaled(self, t):
        hit = self._scaled.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        return t

    def _install_scaler(self) -> None:
        probe = self
        try:
            from torch.cuda.amp import GradScaler
        except Exception:  # noqa: BLE001
            return

        def scale(orig):
            @functools.wraps(orig)
            def wrapper(self, outputs, *args, **kwargs):
                out = orig(self, outputs, *args, **kwargs)
                try:
                    if isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor) and out is not outputs and outputs.numel() == 1:
                        probe._scaled.clear()  # only the latest scaled loss matters
                        probe._scaled[id(out)] = (weakref.ref(out), outputs.detach())
                except Exception as e:  # noqa: BLE001
                    probe.warn("reading the scaled loss", e)
                return out
            return wrapper

        self._patch(GradScaler, "scale", scale)

    def _install_clip(self) -> None:
        probe = self
        import torch.nn.utils as nn_utils
        import torch.nn.utils.clip_grad as clip_mod

        def clip(orig):
            @functools.wraps(orig)
            def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
                if os.getpid() == probe.pid and not probe.finished:
                    try:
                        if isinstance(parameters, torch.Tensor):
                            parameters = [parameters]
                        parameters = list(parameters)  # it may be a generator: we consume it, pass the list on
                        probe._before_clip(parameters, max_norm, args, kwargs)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading gradients before clip_grad_norm_", e)
                return orig(parameters, max_norm, *args, **kwargs)
            return clip_grad_norm_

        self._patch(clip_mod, "clip_grad_norm_", clip)
        if getattr(nn_utils, "clip_grad_norm_", None) is not clip_mod.clip_grad_norm_:
            self._patch(nn_utils, "clip_grad_norm_", clip)

    def _before_clip(self, parameters, max_norm, args, kwargs) -> None:
        for p in parameters:
            if isinstance(p, torch.Tensor) and p.grad is not None:
                self._preclip[id(p)] = stats.grad_stats(p.grad)
        norm_type = kwargs.get("norm_type", args[0] if args else 2.0)
        key = (float(max_norm), float(norm_type))
        if key not in self._clip_reported and len(self._clip_reported) < 10:
            self._clip_reported.add(key)
            self.send({"type": "event", "kind": "clip", "step": self.steps, "value": float(max_norm),
                       "message": "the script clips gradients with clip_grad_norm_(max_norm=%g, norm_type=%g); "
                                  "GradScope reports the gradients before clipping" % key})

    # ------------------------------------------------------------------------------------------
    # Parameter metadata

    def _describe_new(self, params) -> list:
        """TENSORS entries for parameters seen for the first time."""
        index = self._module_index()
        fresh = []
        for p in params:
            tid = len(self._tensors)
            info = self._describe(p, tid, index)
            k = _Known(tid, p, info)
            self._known[id(p)] = k
            self._tensors.append(k)
            fresh.append(info)
        return fresh

    def _module_index(self) -> dict:
        """id(param) -> (root, qualified module name, module, local param name) over live modules."""
        mods = []
        alive = []
        for r in self._module_refs:
            m = r()
            if m is not None:
                mods.append(m)
                alive.append(r)
        self._module_refs = alive
        self._module_refs_live = len(alive)
        children = set()
        for m in mods:
            for c in m.children():
                children.add(id(c))
        index = {}
        for root in (m for m in mods if id(m) not in children):
            for qn, m in root.named_modules():
                for pn, q in m.named_parameters(recurse=False):
                    index.setdefault(id(q), (root, qn, m, pn))
        return index

    def _describe(self, p, tid, index) -> dict:
        shape = [int(d) for d in p.shape]
        hit = index.get(id(p))
        psite = self._param_sites.get(id(p))
        psite = psite[1] if psite is not None and psite[0]() is p else None
        if hit is None:
            name = self._raw_names.get(id(p)) or "param%d" % tid
            return {"id": tid, "name": name, "layer": name, "layerType": type(p).__name__, "shape": shape, "source": psite}
        root, qn, m, pn = hit
        prefix = self._root_names.get(id(root), "")
        layer = ".".join(x for x in (prefix, qn) if x)
        name = ".".join(x for x in (layer, pn) if x)
        site = self._module_sites.get(id(m))
        # A parameter the user created in their own module class: its own line is the precise one.
        if psite is not None and sources.is_user_file(getattr(sys.modules.get(type(m).__module__), "__file__", "") or ""):
            site = psite
        elif type(m).__module__ == "__main__" and psite is not None:
            site = psite
        return {"id": tid, "name": name, "layer": layer or type(m).__name__, "layerType": type(m).__name__,
                "shape": shape, "source": site}

    # ------------------------------------------------------------------------------------------
    # Steps

    def _params_of(self, opt):
        out = []
        seen = set()
        for g in opt.param_groups:
            for p in g["params"]:
                if isinstance(p, torch.Tensor) and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def _before_step(self, opt, args, kwargs):
        t_start = time.perf_counter()
        closure = args[0] if args else kwargs.get("closure")
        params = self._params_of(opt)
        ctx = {"opt": opt, "closure": closure is not None, "params": params, "grads": None,
               "loss": self._pending_loss, "t_start": t_start}
        self._pending_loss = None
        with torch.no_grad():
            if closure is None:
                with_grad = [p for p in params if p.grad is not None]
                ctx["grads"] = [(p, self._preclip.pop(id(p), None)) for p in with_grad]
                ctx["grads"] = [(p, s if s is not None else stats.grad_stats(p.grad)) for p, s in ctx["grads"]]
                snap = with_grad
            else:
                snap = params
            self._preclip.clear()
            fresh = {}
            for p in snap:
                k = self._known.get(id(p))
                if k is None or k.ref() is not p:
                    # New: described after the step; a one-off copy gives its first update norm.
                    if self._snapshot_bytes + p.numel() * p.element_size() <= UPDATE_SNAPSHOT_MAX_BYTES:
                        fresh[id(p)] = p.detach().clone()
                    continue
                self._snapshot(k, p)
            ctx["fresh_snapshots"] = fresh
        ctx["probe_ms"] = (time.perf_counter() - t_start) * 1e3
        return ctx

    def _snapshot(self, k, p) -> None:
        buf = k.snapshot
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            nbytes = p.numel() * p.element_size()
            if self._snapshot_bytes + nbytes > UPDATE_SNAPSHOT_MAX_BYTES:
                if not self._snapshot_full_reported:
                    self._snapshot_full_reported = True
                    self.send({"type": "event", "kind": "info", "message":
                               "update norms are reported for the first %d MiB of parameters only "
                               "(GRADSCOPE_UPDATE_NORM_MAX_BYTES)" % (UPDATE_SNAPSHOT_MAX_BYTES // (1024 * 1024))})
                k.snapshot = None
                return
            if buf is not None:
                self._snapshot_bytes -= buf.numel() * buf.element_size()
            buf = torch.empty_like(p, memory_format=torch.contiguous_format)
            self._snapshot_bytes += nbytes
            k.snapshot = buf
        buf.copy_(p.detach())

    def _after_step(self, ctx, out) -> None:
        t_after = time.perf_counter()
        with torch.no_grad():
            if ctx["closure"]:
                grads = [(p, stats.grad_stats(p.grad)) for p in ctx["params"] if p.grad is not None]
                if isinstance(out, torch.Tensor) and out.numel() == 1:
                    ctx["loss"] = out.detach()
                elif isinstance(out, (int, float)):
                    ctx["loss"] = float(out)
            else:
                grads = ctx["grads"]
            if not grads:
                return  # nothing had a gradient: not a training step we can describe
            params = [p for p, _ in grads]
            if not self._hello_sent:
                self._send_hello(params)
            fresh = [p for p in params if self._known.get(id(p)) is None or self._known[id(p)].ref() is not p]
            fresh_ids = set()
            if fresh:
                for p in fresh:
                    old = self._known.pop(id(p), None)
                    if old is not None and old.detail_buf is not None:  # a job in flight keeps its own reference
                        self._detail_bytes -= old.detail_buf.numel() * old.detail_buf.element_size()
                        old.detail_buf = None
                infos = self._describe_new(fresh)
                fresh_ids = {id(p) for p in fresh}
                self.send({"type": "tensors", "tensors": infos})
            step = self.steps
            if self.auto_detail:
                detail = self._last_detail_step is None or step - self._last_detail_step >= self.detail_every
            else:
                detail = step % self.detail_every == 0
            deferred = None  # (known, copy of the gradient, shape) for the background job
            if detail and self._can_defer(grads):
                if self._worker.busy:
                    # Skipped (a fixed interval: counted) or, automatic, put off to the next step.
                    detail = False
                    if not self.auto_detail:
                        self._detail_skipped += 1
                else:
                    deferred = []
            if detail:
                self._last_detail_step = step
            inline = detail and deferred is None
            # CPU gradients on the training thread: all at once after the loop (small tensors together).
            inline_cpu = inline and all(p.grad is not None and p.grad.device.type == "cpu" for p, _ in grads)
            # Everything this step reports, per device, as float64 tensors; one copy per device.
            per_device = {}
            layout = []  # (known, device key, offset of the 6 stats, offset of detail or -1, tr, tc)
            for p, gs in grads:
                k = self._known[id(p)]
                dev = gs.device
                parts = per_device.setdefault(dev, [])
                off = sum(t.numel() for t in parts)
                pn = stats.norm(p).reshape(1)
                before = ctx["fresh_snapshots"].get(id(p)) if id(p) in fresh_ids else k.snapshot
                if before is not None:
                    un = stats.norm(before.sub_(p.detach())).reshape(1)
                else:
                    un = torch.full((1,), float("nan"), dtype=torch.float64, device=dev)
                parts.extend((gs, pn.to(dev), un.to(dev)))
                doff, tr, tc = -1, 0, 0
                if inline and not inline_cpu:
                    dv, tr, tc = stats.detail_stats(p.grad, p.shape)
                    doff = off + 6
                    parts.append(dv)
                elif deferred is not None:
                    deferred.append((k, self._detail_copy(k, p.grad), tuple(p.shape)))
                layout.append((k, dev, off, doff, tr, tc))
            loss_t = ctx["loss"]
            loss = float("nan")
            loss_dev = None
            if isinstance(loss_t, torch.Tensor):
                loss_dev = loss_t.device if loss_t.device in per_device else None
                if loss_dev is not None:
                    per_device[loss_dev].append(loss_t.reshape(1).to(torch.float64))
            elif isinstance(loss_t, (int, float)):
                loss = float(loss_t)
            host = {}
            for dev, parts in per_device.items():
                host[dev] = torch.cat(parts).cpu().tolist()  # the one device→host copy
            inline_values = stats.detail_stats_many([(p.grad, p.shape) for p, _ in grads]) if inline_cpu else None
            if loss_dev is not None:
                loss = host[loss_dev][-1]
            elif isinstance(loss_t, torch.Tensor):
                loss = float(loss_t)  # a loss on another device than the parameters: rare
        now = time.perf_counter()
        wall_ms = (ctx["t_start"] - self.t0) * 1e3
        n = len(self._tensors)
        nan = float("nan")
        columns = [[nan] * n for _ in wire.STAT_NAMES]
        first_nonfinite = None
        jump = False
        for k, dev, off, _doff, _tr, _tc in layout:
            v = host[dev]
            for s in range(6):
                columns[s][k.id] = v[off + s]
            bad = v[off + 2] + v[off + 3]
            if bad > 0 and not self._nonfinite_reported and first_nonfinite is None:
                first_nonfinite = k
            prev = self._prev_norm.get(k.id)
            if prev is not None and prev > 0 and v[off] > 10 * prev:
                jump = True
            self._prev_norm[k.id] = v[off]
        self.steps += 1
        self.send({"type": "step", "step": step, "loss": loss, "wallMs": wall_ms, "stats": list(wire.STAT_NAMES),
                   "columns": columns, "nTensors": n})
        if first_nonfinite is not None:
            self._nonfinite_reported = True
            k = first_nonfinite
            self.send({"type": "event", "kind": "non-finite", "step": step, "tensorId": k.id,
                       "message": "first non-finite gradient at step %d: %s has %d NaN and %d Inf value(s)" % (
                           step, k.info["name"], columns[2][k.id], columns[3][k.id])})
        if inline_values is not None:
            for (k, *_rest), (v, tr, tc) in zip(layout, inline_values):
                self._send_detail(step, k, v, 0, tr, tc)
        elif inline:
            for k, dev, _off, doff, tr, tc in layout:
                self._send_detail(step, k, host[dev], doff, tr, tc)
        elif deferred is not None:
            self._submit_detail(step, deferred)
        elif first_nonfinite is not None or jump:
            # An anomaly: the detail tier for this step too, after the job in flight (a tensor's
            # DETAIL frames stay in step order), in the background when it can be.
            detail = True
            if self._can_defer(grads) and self._worker.wait_idle(DETAIL_DRAIN_S):
                with torch.no_grad():
                    self._submit_detail(step, [(self._known[id(p)], self._detail_copy(self._known[id(p)], p.grad),
                                                tuple(p.shape)) for p, _ in grads])
            else:
                with torch.no_grad():  # a second device→host copy, on anomalies only
                    values = stats.detail_stats_many([(p.grad, p.shape) for p, _ in grads])
                for (p, _), (v, tr, tc) in zip(grads, values):
                    self._send_detail(step, self._known[id(p)], v, 0, tr, tc)
        end = time.perf_counter()
        self._tune(ctx, t_after, end, detail)

    # ------------------------------------------------------------------------------------------
    # Detail tier in the background

    def _can_defer(self, grads) -> bool:
        """Whether this step's detail tier can go to the background thread (started here, once)."""
        if self._worker_failed:
            return False
        need = 0
        total = 0
        for p, _ in grads:
            g = p.grad
            if g is None or g.device.type != "cpu" or g.layout != torch.strided:
                return False
            total += g.numel()
            k = self._known.get(id(p))
            buf = k.detail_buf if k is not None else None
            if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
                need += g.numel() * g.element_size()
        if total <= DETAIL_INLINE_MAX_ELEMENTS or self._detail_bytes + need > DETAIL_COPY_MAX_BYTES:
            return False
        if self._worker is None:
            try:
                self._worker = _DetailWorker(self._run_detail_job)
            except Exception as e:  # noqa: BLE001 - e.g. no threads: the training thread does it
                self._worker_failed = True
                self.warn("starting the detail thread", e)
                return False
        return True

    def _detail_copy(self, k, g):
        """Copies a CPU gradient into the tensor's own buffer (kept: no allocation per step)."""
        buf = k.detail_buf
        if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
            if buf is not None:
                self._detail_bytes -= buf.numel() * buf.element_size()
            buf = torch.empty(g.shape, dtype=g.dtype)
            self._detail_bytes += buf.numel() * buf.element_size()
            k.detail_buf = buf
        buf.copy_(g.detach())
        return buf

    def _submit_detail(self, step, items) -> None:
        self._detail_job_step = step
        if not self._worker.submit((step, items)):
            self._detail_skipped += 1  # not reached: callers check that the worker is idle

    def _run_detail_job(self, job) -> None:
        """On the detail thread: the DETAIL frames of one step, from the copies."""
        step, items = job
        with torch.no_grad():
            # Small tensors all at once, then the large ones one by one (each sent when done).
            small = [it for it in items if it[1].numel() < stats.BATCH_TENSOR_MAX]
            large = [it for it in items if it[1].numel() >= stats.BATCH_TENSOR_MAX]
            for part in ([small] if small else []) + [[it] for it in large]:
                if self._detail_closed:
                    return
                try:
                    values = stats.detail_stats_many([(buf, shape) for _k, buf, shape in part])
                except Exception as e:  # noqa: BLE001
                    with self._detail_lock:
                        if not self._detail_closed:
                            self.warn("computing the detail tier", e)
                    continue
                with self._detail_lock:
                    if self._detail_closed:
                        return
                    for (k, _buf, _shape), (v, tr, tc) in zip(part, values):
                        self._send_detail(step, k, v, 0, tr, tc)

    def _close_detail(self) -> None:
        """Before END: waits (bounded) for the job in flight; later frames of it are not sent."""
        done = True
        if self._worker is not None:
            done = self._worker.wait_idle(DETAIL_DRAIN_S)
        with self._detail_lock:
            self._detail_closed = True
        if not done:
            self.send({"type": "event", "kind": "warning", "message":
                       "the detail tier of step %s was still being computed when the run ended: "
                       "its remaining DETAIL frames were not sent" % self._detail_job_step})
        if self._detail_skipped:
            self.send({"type": "event", "kind": "info", "count": self._detail_skipped, "message":
                       "detail tier skipped on %d step(s): the histograms and thumbnails of an earlier step "
                       "were still being computed in the background (GRADSCOPE_DETAIL_EVERY=%d)" % (
                           self._detail_skipped, self.detail_every)})

    def _send_detail(self, step, k, v, off, tr, tc) -> None:
        hist = [int(x) for x in v[off + 3: off + 3 + stats.HIST_BINS]]
        thumb = v[off + 3 + stats.HIST_BINS: off + 3 + stats.HIST_BINS + tr * tc]
        self.send({"type": "detail", "step": step, "tensorId": k.id, "mean": v[off], "std": v[off + 1],
                   "zeroFrac": v[off + 2], "histLo": stats.HIST_LO, "histHi": stats.HIST_HI, "hist": hist,
                   "thumbRows": tr, "thumbCols": tc, "thumb": thumb})

    def _tune(self, ctx, t_after, end, detail) -> None:
        """Automatic detail interval: keep the detail tier's cost (on the training thread, plus the
        background job's CPU time) under DETAIL_BUDGET of the step interval on average."""
        cost_ms = ctx["probe_ms"] + (end - t_after) * 1e3
        if self._last_step_end is not None:
            dt = (end - self._last_step_end) * 1e3
            self._interval_ms = dt if not self._interval_ms else 0.8 * self._interval_ms + 0.2 * dt
        self._last_step_end = end
        if not detail:
            self._plain_cost_ms = cost_ms if not self._plain_cost_ms else 0.8 * self._plain_cost_ms + 0.2 * cost_ms
        elif self.steps > 1:
            self._detail_fg_ms = max(0.0, cost_ms - self._plain_cost_ms)
        w = self._worker
        fresh_job = w is not None and w.jobs_done != self._detail_jobs_seen
        if not (self.auto_detail and self._interval_ms > 0 and self.steps > 1 and (detail or fresh_job)):
            return
        if w is not None and w.jobs_done:
            if w.jobs_done > 1 and w.jobs_done != self._detail_jobs_seen:
                # (not the first job: it also compiled the kernels, as step 0 is not counted)
                bg = w.last_cpu_ms
                self._detail_bg_ms = bg if not self._detail_bg_ms else 0.5 * self._detail_bg_ms + 0.5 * bg
            self._detail_jobs_seen = w.jobs_done
        every = math.ceil((self._detail_fg_ms + self._detail_bg_ms) / (DETAIL_BUDGET * self._interval_ms))
        self.detail_every = int(min(1000, max(AUTO_DETAIL_START, every)))

    def _check_limit(self) -> None:
        if self.max_steps > 0 and self.steps >= self.max_steps and not self.finished:
            self.finish("step-limit")
            _flush_stdio()
            raise StepLimitReached(0)

    def _exit_after_limit(self) -> None:
        # The script caught the SystemExit of the step limit and went on training: stop for good.
        _flush_stdio()
        os._exit(0)

    # ------------------------------------------------------------------------------------------
    # End of run

    def finish(self, reason: str, error=None) -> None:
        """END (idempotent), then waits (bounded) until everything queued has been written."""
        if self.finished or os.getpid() != self.pid:
            return
        self.finished = True
        self.end_reason = reason
        msg = {"type": "end", "reason": reason, "steps": self.steps}
        if error is not None:
            msg["error"] = error
        try:
            self._close_detail()
        except Exception:  # noqa: BLE001
            pass
        try:
            if self._dropped_steps:
                self.send({"type": "event", "kind": "warning", "message": "statistics of %d step(s) skipped" % self._dropped_steps})
            self.send(msg)
            if self.channel is not None:
                self.channel.flush(5.0)
                self.channel.close()
        except Exception:  # noqa: BLE001
            pass


def error_info(exc: BaseException) -> dict:
    """END's error: the message, the traceback text, and the innermost frame in the user's code."""
    import traceback

    info = {"message": _err(exc)}
    try:
        info["stack"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
    except Exception:  # noqa: BLE001
        pass
    fr = sources.user_frame_of_traceback(exc.__traceback__)
    if fr is not None:
        info["frame"] = fr
    return info


def _rank() -> int:
    try:
        return max(0, int(os.environ.get("RANK", "0")))
    except ValueError:
        return 0


def _flush_stdio() -> None:
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:  # noqa: BLE001
            pass
