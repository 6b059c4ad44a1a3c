"""The torch probe proper: hooks, parameter metadata, per-step statistics, lifecycle frames.

Hooks (installed once, before the user's script runs):
- ``nn.Module.__init__`` and ``nn.Parameter.__new__``: record where each module / parameter was
  built in the user's code (the first stack frame outside torch, the probe, the standard library and
  installed packages; a module's own ``__init__`` frames are skipped, so ``model = Net()`` rather
  than the ``super().__init__()`` line), and for modules a library builds inside that line
  (transformers), the library's line too. ``nn.Module.__setstate__`` does the same for modules
  ``copy.deepcopy`` makes (``nn.TransformerEncoder``'s layers), which never run ``__init__``.
  Names and the choice between sites: see ``_describe`` and names.py.
- ``Optimizer.__init__``: wraps ``step`` of every Optimizer class in the instance's MRO, once per
  class. A thread-local depth counter makes ``super().step()`` (and torch's own profiling wrapper)
  count once. This is the same on torch 1.13 and 2.x: torch 2.x's global
  ``register_optimizer_step_post_hook`` hooks run inside an equivalent per-class wrapper (installed by
  ``Optimizer.__init__`` too), so they would reach no more optimizers, and they do not run their
  post hooks when ``step`` raises, which would leave a re-entrancy guard stale. The optimizer's name
  is the variable the user's code assigns it to (read from the bytecode after the constructor call,
  followed through user functions that return it), else ``<ClassName>#<id>``; an OPTIMIZER frame
  announces it and its tensors before its first STEP, and every STEP names its optimizer.
- ``torch.compile``: dynamo would trace into these wrappers (``torch.compile(opt.step)``, a compiled
  function that calls ``opt.step()``), graph-break and fail each step. On the first
  ``torch.compile`` call the wrappers are excluded from tracing, non-recursively (what they call, the
  optimizer's own ``step``, stays compiled), and the probe's work inside them recursively.
- ``torch.autograd.backward`` (what ``Tensor.backward`` calls): adds the scalar being back-propagated
  to the step's loss (the loss of a step with accumulation is the sum over its micro-batches;
  ``GradScaler.scale`` is wrapped too, so a scaled loss is reported unscaled). When the script never
  builds a torch.optim optimizer, each backward pass is a step (see ``_after_backward``).
- ``clip_grad_norm_`` / ``clip_grad_value_`` (the module's and ``torch.nn.utils``' re-export, which is
  what Lightning calls, inside its closure): computes the gradient statistics of the parameters given
  before clipping; the step reports those (the norm the script actually produced). A ``clip`` EVENT
  gives the threshold once. Clipping gradients a GradScaler still scales is recognised: the
  statistics are divided by the scale and a ``warning`` EVENT says so.
- ``GradScaler`` (torch.amp's base class in 2.x, torch.cuda.amp's in 1.13): ``step`` and ``update``
  tell skipped (overflow) steps, each a ``skipped-step`` EVENT with the scale after back-off.
- ``multiprocessing`` ``Process.start`` and ``torch.multiprocessing.spawn``/``start_processes`` in the
  main process (not DataLoader workers): a ``warning`` EVENT, training there is not observed.

Every STEP covers every tensor known so far: those of the stepping optimizer that have a gradient
get ``hasGrad`` 1; the others (``None`` gradient, another optimizer's) ``hasGrad`` 0 and NaN in the
other columns. DTensor (FSDP2) gradients and parameters are measured on their local shard.

A step without a closure: gradient statistics are taken just before the optimizer's own ``step``
runs (what it is about to apply). A step with a closure (LBFGS, Lightning, or any optimizer called as
``step(closure)``): gradients are computed inside ``step``, so they are read just after it (the
gradient of the last closure evaluation, before a clip inside the closure), and the loss is the value
``step`` returns. A step that is never called (``GradScaler`` skipping an overflow step) produces no
STEP frame.

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

import dis
import functools
import json
import math
import os
import sys
import threading
import time
import weakref

import torch

from . import names, sources, stats, wire

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


class _Opt:
    """One optimizer as the OPTIMIZER message describes it (or the backward-pass pseudo-optimizer)."""
    __slots__ = ("id", "ref", "name", "class_name", "mode", "tensor_ids", "param_key", "steps", "last_detail")

    def __init__(self, oid, ref, name, class_name, mode):
        self.id = oid
        self.ref = ref  # weakref to the optimizer; None for the backward passes
        self.name = name
        self.class_name = class_name
        self.mode = mode
        self.tensor_ids = None  # as last sent
        self.param_key = None  # ids of the parameter objects they were sent for
        self.steps = 0  # this optimizer's steps: the detail tier is scheduled per optimizer
        self.last_detail = None  # automatic interval: this optimizer's step of its last detail tier


_STORE_OPS = {"STORE_NAME", "STORE_FAST", "STORE_GLOBAL", "STORE_DEREF"}
_LOAD_OPS = {"LOAD_NAME", "LOAD_FAST", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"}
_CODE_INSTRUCTIONS = {}


def _assignment_after_call(f):
    """What the frame does with the value of the call it is executing: the variable it stores it in
    (``opt``, ``self.optimizer``), "<return>" when it returns it, or None."""
    code = f.f_code
    ins = _CODE_INSTRUCTIONS.get(code)
    if ins is None:
        ins = [(i.offset, i.opname, i.argval) for i in dis.get_instructions(code)]
        if len(_CODE_INSTRUCTIONS) > 256:
            _CODE_INSTRUCTIONS.clear()
        _CODE_INSTRUCTIONS[code] = ins
    after = [x for x in ins if x[0] > f.f_lasti][:3]
    while after and after[0][1] in ("COPY", "DUP_TOP", "CACHE", "NOP", "EXTENDED_ARG"):
        after = after[1:]
    if not after:
        return None
    op, arg = after[0][1], after[0][2]
    if op in _STORE_OPS:
        return str(arg)
    if op in ("RETURN_VALUE",):
        return "<return>"
    if op in _LOAD_OPS and len(after) > 1 and after[1][1] == "STORE_ATTR":
        return "%s.%s" % (arg, after[1][2])
    return None


def _assigned_name(f, obj):
    """The name the user's code gives `obj`, built by the call frame `f` is executing: followed through
    user functions that return it (``def make_opt(): return Adam(...)``)."""
    for _ in range(4):
        if f is None or not sources.is_user_file(f.f_code.co_filename):
            return None
        target = _assignment_after_call(f)
        if target != "<return>":
            return target
        f = f.f_back
    return None


def _no_dynamo():
    """(non-recursive, recursive) exclusions from TorchDynamo's tracing, or None where torch has no
    dynamo (1.13). A wrapper is excluded non-recursively, so what it calls (a compiled optimizer's own
    ``step``) stays compiled; the probe's work it does is excluded recursively (dynamo cannot trace
    it, and would otherwise compile each function the wrapper calls as a frame of its own)."""
    disable = None
    try:
        import torch.compiler as tc
        disable = getattr(tc, "disable", None)
    except Exception:  # noqa: BLE001
        pass
    if disable is None:
        try:
            import torch._dynamo as dyn
            disable = getattr(dyn, "disable", None)
        except Exception:  # noqa: BLE001
            return None
    if disable is None:
        return None

    def apply(fn):
        try:
            return disable(fn, recursive=False)
        except TypeError:  # (2.0: no `recursive`) the whole call runs uncompiled, but is seen
            return disable(fn)
    return apply, disable


def _call(fn, *args):
    return fn(*args)


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
        self._module_sites = {}  # id(module) -> (user site, library site) (modules are weak-referenced alongside)
        self._param_sites = {}  # id(parameter) -> (weakref, site)
        self._root_names = {}  # id(module) -> (weakref, variable name found where an optimizer was built)
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
        # Optimizers (OPTIMIZER messages), GradScaler, backward passes as steps, child processes.
        self._opts = {}  # id(optimizer) -> _Opt, in the order of their first step
        self._opt_count = 0
        self._opt_names = {}  # id(optimizer) -> (weakref, name found where it was built, or None)
        self._optimizers = []  # weakrefs to every optimizer built (GradScaler state, clip ownership)
        self._optimizer_seen = False  # an Optimizer was constructed: steps are optimizer steps
        self._bw_opt = None  # _Opt of the backward passes, once counted
        self._bw_pending = None  # backward mode: ctx of the last backward pass, its STEP not yet sent
        self._scalers = {}  # id(GradScaler) -> [weakref, scale() called since update()]
        self._skipped = 0  # optimizer steps GradScaler skipped
        self._skip_pending = None  # (scale before back-off) of a skipped step whose update() is due
        self._scaled_clip_warned = set()
        self._nodynamo = None  # fn -> fn, once torch.compile is used (see _exclude_from_dynamo)
        self._run = _call  # runs the probe's own work from a wrapper: outside dynamo once it matters
        self._dynamo_targets = []  # (owner, attr) of wrappers that may be reached from compiled code

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
        if not params:
            params = self._some_parameters()
        backend, device, reason = self._backend(params)
        self.send({"type": "hello", "probeVersion": probe_version(), "framework": "torch", "backend": backend,
                   "device": device, "backendReason": reason, "pid": self.pid, "rank": _rank(), "script": self.script,
                   "detailEvery": self.detail_every})
        self.send({"type": "event", "kind": "backend", "message": "%s: %s (torch %s)" % (device, reason, torch.__version__)})

    def _some_parameters(self) -> list:
        """Parameters to tell the backend by when HELLO goes out before any step (a clip, a warning):
        the tensors described so far, else those of the modules built so far."""
        out = [p for p in (k.ref() for k in self._tensors[:64]) if p is not None]
        for r in reversed(self._module_refs):
            if out:
                break
            m = r()
            if m is not None:
                out = list(m.parameters())[:64]
        return out

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
                         ("GradScaler", self._install_scaler), ("child process", self._install_children),
                         ("torch.compile", self._install_compile)):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                self.warn("installing the %s hook" % name, e)

    def _patch(self, owner, attr, wrapper_factory, dynamo=False):
        """Replaces owner.attr by wrapper_factory(orig). dynamo: the wrapper may be called from code
        torch.compile traces; it is excluded from tracing once torch.compile is used."""
        orig = getattr(owner, attr)
        if getattr(orig, "_gradscope_wrapped", False):
            return
        w = wrapper_factory(orig)
        w._gradscope_wrapped = True
        if dynamo:
            self._dynamo_targets.append((owner, attr))
            if self._nodynamo is not None:
                w = self._nodynamo(w)
                w._gradscope_wrapped = True
        setattr(owner, attr, w)
        self._installed.append((owner, attr, orig))

    def _install_compile(self) -> None:
        """Dynamo traces into any Python wrapper a compiled function calls (``torch.compile(opt.step)``,
        a compiled train step): the probe's wrappers are excluded from tracing before the first
        torch.compile (importing dynamo earlier would cost every run ~0.7 s of start-up)."""
        compile_fn = getattr(torch, "compile", None)
        if compile_fn is None:
            return  # torch 1.13
        if "torch._dynamo" in sys.modules:
            self._exclude_from_dynamo()
        probe = self

        def compile_wrapper(orig):
            @functools.wraps(orig)
            def compile(*args, **kwargs):
                if probe._nodynamo is None:
                    try:
                        probe._exclude_from_dynamo()
                    except Exception as e:  # noqa: BLE001
                        probe.warn("preparing for torch.compile", e)
                return orig(*args, **kwargs)
            return compile

        self._patch(torch, "compile", compile_wrapper)

    def _exclude_from_dynamo(self) -> None:
        if self._nodynamo is not None:
            return
        nd = _no_dynamo()
        if nd is None:
            return
        self._nodynamo = nd[0]
        self._run = nd[1](_call)
        for owner, attr in self._dynamo_targets:
            w = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
            if w is None or not getattr(w, "_gradscope_wrapped", False) or getattr(w, "_torchdynamo_disable", False):
                continue
            d = self._nodynamo(w)
            d._gradscope_wrapped = True
            setattr(owner, attr, d)

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

        def module_setstate(orig):
            @functools.wraps(orig)
            def __setstate__(self, state):
                orig(self, state)
                if os.getpid() == probe.pid:
                    try:
                        probe._on_module(self)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("recording a copied module", e)
            return __setstate__

        self._patch(torch.nn.Module, "__init__", module_init)
        self._patch(torch.nn.Module, "__setstate__", module_setstate)
        orig_new = torch.nn.Parameter.__dict__["__new__"]
        fn = orig_new.__func__ if isinstance(orig_new, staticmethod) else orig_new
        if not getattr(fn, "_gradscope_wrapped", False):
            w = param_new(fn)
            w._gradscope_wrapped = True
            torch.nn.Parameter.__new__ = staticmethod(w)
            self._installed.append((torch.nn.Parameter, "__new__", orig_new))

    def _on_module(self, m) -> None:
        """Records where ``m`` was built: the user's line and, when a library (transformers) built it
        inside that line, the library's line. Called from ``Module.__init__`` and from
        ``Module.__setstate__``: copies made by ``copy.deepcopy`` (``nn.TransformerEncoder`` clones
        its layer) and unpickled modules never run ``__init__``; their site is the line that copied or
        loaded them."""
        key = id(m)
        sites = self._module_sites
        if key in sites:
            return  # Module.__init__ run twice on one object (multiple inheritance): the first call's site
        site, built = sources.construction_sites(sys._getframe(2), m)
        self._module_refs.append(weakref.ref(m, lambda _r, k=key: sites.pop(k, None)))
        sites[key] = (site, built)
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
            w = self._step_wrapper(orig)
            self._dynamo_targets.append((c, "step"))
            if self._nodynamo is not None:
                w = self._nodynamo(w)
                w._gradscope_wrapped = True
            c.step = w
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
                    ctx = probe._run(probe._before_step, opt, args, kwargs)
                except Exception as e:  # noqa: BLE001
                    probe.warn("before optimizer.step", e)
                out = orig(opt, *args, **kwargs)
            finally:
                tls.depth = 0
            if ctx is not None:
                try:
                    probe._run(probe._after_step, ctx, out)
                except Exception as e:  # noqa: BLE001
                    probe.warn("after optimizer.step", e)
                probe._run(probe._check_limit)
            return out

        step._gradscope_wrapped = True
        return step

    def _on_optimizer(self, opt) -> None:
        self._wrap_step_of(type(opt))
        # Names for the model(s) and raw tensors this optimizer trains, from the code that built it.
        f = sys._getframe(2)
        while f is not None and not sources.is_user_file(f.f_code.co_filename):
            f = f.f_back
        self._on_optimizer_built(opt, f)
        if f is None:
            return
        params = {id(p) for g in opt.param_groups for p in g["params"]}
        scopes = [f.f_locals, f.f_globals] if f.f_locals is not f.f_globals else [f.f_globals]
        for scope in scopes:
            for name, v in list(scope.items()):
                if name.startswith("__"):
                    continue
                if isinstance(v, torch.nn.Module):
                    # Built inside the model's own method (Lightning's configure_optimizers): names are
                    # the model's own (``fc1.weight``), without ``self.``.
                    self._name_root(v, "" if name == "self" else name)
                elif isinstance(v, torch.Tensor):
                    if id(v) in params:
                        self._raw_names.setdefault(id(v), name)
                elif name == "self" and hasattr(v, "__dict__"):
                    # A trainer object holding the model as ``self.model``: ``model.fc1.weight``.
                    for attr, av in list(vars(v).items()):
                        if isinstance(av, torch.nn.Module):
                            self._name_root(av, attr)
                        elif isinstance(av, torch.Tensor) and id(av) in params:
                            self._raw_names.setdefault(id(av), attr)

    def _name_root(self, m, name) -> None:
        old = self._root_names.get(id(m))
        if old is None or old[0]() is not m:
            self._root_names[id(m)] = (weakref.ref(m), name)

    def _on_optimizer_built(self, opt, f) -> None:
        """Every optimizer as it is built: its name (the variable the user's code assigns it to, read
        from the bytecode after the call), and a switch away from counting backward passes."""
        try:
            # The frame that called the constructor (past the optimizer classes' own __init__ and
            # this probe's): only there is the value assigned (not in the user's frame that called a
            # library which built it: `result = trainer.train()`).
            g = sys._getframe(1)
            while g is not None and (g.f_code.co_filename == __file__ or (
                    g.f_code.co_name == "__init__" and g.f_code.co_argcount
                    and g.f_locals.get(g.f_code.co_varnames[0]) is opt)):
                g = g.f_back
            name = _assigned_name(g, opt) if g is not None else None
        except Exception:  # noqa: BLE001
            name = None
        self._opt_names[id(opt)] = (weakref.ref(opt), name)
        self._optimizers = [r for r in self._optimizers if r() is not None] + [weakref.ref(opt)]
        if not self._optimizer_seen:
            self._optimizer_seen = True
            if self._bw_opt is not None:
                self._finish_backward_step()
                self.send({"type": "event", "kind": "info", "step": self.steps, "message":
                           "the script built an optimizer (%s) after %d backward pass(es) counted as steps: "
                           "from step %d on, steps are its optimizer steps" % (type(opt).__name__, self._bw_opt.steps,
                                                                              self.steps)})

    def _optimizer_name(self, opt) -> str:
        hit = self._opt_names.get(id(opt))
        name = hit[1] if hit is not None and hit[0]() is opt else None
        if not name:
            main = sys.modules.get("__main__")
            for k, v in list(getattr(main, "__dict__", {}).items()):
                if v is opt and not k.startswith("_"):
                    name = k
                    break
        return name or "%s#%d" % (type(opt).__name__, self._opt_count)

    def _opt_rec(self, opt) -> _Opt:
        """The optimizer's _Opt (opt None: the backward passes), made on first use."""
        if opt is None:
            rec = self._bw_opt
            if rec is None:
                rec = self._bw_opt = _Opt(self._opt_count, None, "backward passes", "backward", "backward")
                self._opt_count += 1
        else:
            rec = self._opts.get(id(opt))
            if rec is None or rec.ref() is not opt:
                rec = _Opt(self._opt_count, weakref.ref(opt), self._optimizer_name(opt), type(opt).__name__, "optimizer")
                self._opt_count += 1
                self._opts[id(opt)] = rec
        return rec

    def _announce(self, rec, params) -> None:
        """OPTIMIZER goes out before an optimizer's first STEP and again when its tensors change."""
        key = (len(self._tensors), tuple(map(id, params)))
        if key == rec.param_key:
            return
        rec.param_key = key
        ids = sorted(self._known[id(p)].id for p in params if id(p) in self._known)
        if ids != rec.tensor_ids:
            rec.tensor_ids = ids
            self.send({"type": "optimizer", "id": rec.id, "name": rec.name, "className": rec.class_name,
                       "mode": rec.mode, "tensorIds": ids})

    def _detail_due(self, rec) -> bool:
        """Whether this step of `rec` gets the detail tier: counted in its own steps, so that several
        optimizers taking turns all get it."""
        if self.auto_detail:
            return rec.last_detail is None or rec.steps - rec.last_detail >= self.detail_every
        return rec.steps % self.detail_every == 0

    def _install_backward(self) -> None:
        probe = self

        def backward(orig):
            @functools.wraps(orig)
            def wrapper(tensors, *args, **kwargs):
                loss = None
                if os.getpid() == probe.pid and not probe.finished:
                    try:
                        loss = probe._run(probe._on_backward, tensors)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading the loss", e)
                    if loss is not None:
                        probe._run(probe._check_limit)
                elif probe.end_reason == "step-limit" and os.getpid() == probe.pid and not probe._optimizer_seen:
                    probe._exit_after_limit()
                out = orig(tensors, *args, **kwargs)
                if loss is not None and not probe._optimizer_seen and not probe.finished and os.getpid() == probe.pid:
                    try:
                        probe._run(probe._after_backward, loss)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("after a backward pass", e)
                return out
            return wrapper

        self._patch(torch.autograd, "backward", backward, dynamo=True)

    def _on_backward(self, tensors):
        """Before a backward pass: adds its scalar (unscaled) to the loss of the step in progress.
        Backward mode: sends the previous backward pass's STEP; returns (scalar, leaves) for after."""
        self._preclip.clear()  # new gradients: what a clip saw before is stale
        t = tensors
        if isinstance(t, (list, tuple)) and len(t) == 1:
            t = t[0]
        if not (isinstance(t, torch.Tensor) and t.numel() == 1):
            return None
        scalar = self._unscaled(t).detach()
        self._pending_loss = scalar if self._pending_loss is None else self._pending_loss + scalar
        if self._optimizer_seen:
            return None
        self._finish_backward_step()
        return t, self._leaves_of(t)

    def _leaves_of(self, t) -> list:
        """The leaf tensors a backward pass from `t` accumulates gradients into (AccumulateGrad
        nodes of its graph), in the order the script built their modules where known."""
        fn = t.grad_fn
        if fn is None:
            return []
        out = []
        seen = {}  # id -> node: held, as the Python objects of graph nodes are made on access
        stack = [fn]
        while stack and len(seen) < 200000:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen[id(node)] = node
            v = getattr(node, "variable", None)
            if isinstance(v, torch.Tensor):
                out.append(v)
                continue
            stack.extend(n for n, _ in node.next_functions)
        out.reverse()
        new = [p for p in out if id(p) not in self._known or self._known[id(p)].ref() is not p]
        if new:
            self._name_from_backward_call(new)
        if len(new) > 1:
            index = self._module_index()
            order = {k: i for i, k in enumerate(getattr(index, "owners", index))}
            out.sort(key=lambda p: order.get(id(p), len(order)))
        return out

    def _name_from_backward_call(self, leaves) -> None:
        """Backward mode has no optimizer construction to name the models from: the variables of the
        user's frame that calls backward() name them (``model`` → ``model.0.weight``)."""
        f = sys._getframe(1)
        while f is not None and not sources.is_user_file(f.f_code.co_filename):
            f = f.f_back
        if f is None:
            return
        ids = {id(p) for p in leaves}
        scopes = [f.f_locals, f.f_globals] if f.f_locals is not f.f_globals else [f.f_globals]
        for scope in scopes:
            for name, v in list(scope.items()):
                if name.startswith("__"):
                    continue
                if isinstance(v, torch.nn.Module):
                    self._name_root(v, "" if name == "self" else name)
                elif isinstance(v, torch.Tensor) and id(v) in ids:
                    self._raw_names.setdefault(id(v), name)

    def _after_backward(self, loss) -> None:
        """Backward mode (the script never built a torch.optim optimizer): the backward pass that just
        ended is a step; its gradient statistics are taken now, its STEP is sent (with the update the
        script applied by hand) at the start of the next backward pass or at the end of the run."""
        t, leaves = loss
        if self._bw_opt is None and not leaves:
            return
        t_start = time.perf_counter()
        if self._bw_opt is None:
            self.send({"type": "event", "kind": "info", "step": self.steps, "message":
                       "the script built no torch.optim optimizer: GradScope counts each backward pass as a step "
                       "(the update norm is the change of the parameters until the next backward pass)"})
        rec = self._opt_rec(None)
        detail = self._detail_due(rec)
        with torch.no_grad():
            grads = []
            for p in leaves:
                g = p.grad
                if g is None:
                    continue
                # The gradient itself may be zeroed in place before the STEP goes out: copy it on detail steps.
                grads.append((p, stats.grad_stats(g), stats.local(g).detach().clone() if detail else None))
            fresh = {}
            for p in leaves:
                k = self._known.get(id(p))
                if k is None or k.ref() is not p:
                    if self._snapshot_bytes + p.numel() * p.element_size() <= UPDATE_SNAPSHOT_MAX_BYTES:
                        fresh[id(p)] = stats.local(p).detach().clone()
                else:
                    self._snapshot(k, p)
        self._pending_loss = None
        self._bw_pending = {"opt": None, "closure": False, "params": leaves, "grads": grads,
                            "loss": self._unscaled(t).detach(), "t_start": t_start, "fresh_snapshots": fresh,
                            "detail": detail, "probe_ms": (time.perf_counter() - t_start) * 1e3}

    def _finish_backward_step(self) -> None:
        ctx, self._bw_pending = self._bw_pending, None
        if ctx is None:
            return
        try:
            self._after_step(ctx, None)
        except Exception as e:  # noqa: BLE001
            self.warn("after a backward pass", e)

    def _unscaled(self, t):
        hit = self._scaled.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        return t

    # ------------------------------------------------------------------------------------------
    # GradScaler

    def _install_scaler(self) -> None:
        """The base GradScaler (torch.amp's in 2.x: torch.cuda.amp's is a subclass that defines no
        scale; torch.cuda.amp's in 1.13): scale (the loss is reported unscaled), step (skipped
        steps), update (the scale after a skip's back-off)."""
        probe = self
        GradScaler = None
        try:
            from torch.amp.grad_scaler import GradScaler
        except Exception:  # noqa: BLE001
            try:
                from torch.cuda.amp.grad_scaler import GradScaler
            except Exception:  # noqa: BLE001
                return

        def scale(orig):
            @functools.wraps(orig)
            def wrapper(self, outputs, *args, **kwargs):
                out = orig(self, outputs, *args, **kwargs)
                if os.getpid() == probe.pid:
                    try:
                        probe._run(probe._after_scale, self, outputs, out)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading the scaled loss", e)
                return out
            return wrapper

        def step(orig):
            @functools.wraps(orig)
            def wrapper(self, optimizer, *args, **kwargs):
                before = probe.steps
                out = orig(self, optimizer, *args, **kwargs)
                if os.getpid() == probe.pid and not probe.finished:
                    try:
                        probe._run(probe._after_scaler_step, self, optimizer, before)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading GradScaler.step", e)
                return out
            return wrapper

        def update(orig):
            @functools.wraps(orig)
            def wrapper(self, *args, **kwargs):
                out = orig(self, *args, **kwargs)
                if os.getpid() == probe.pid and not probe.finished:
                    try:
                        probe._run(probe._after_scaler_update, self)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading GradScaler.update", e)
                return out
            return wrapper

        self._patch(GradScaler, "scale", scale, dynamo=True)
        self._patch(GradScaler, "step", step, dynamo=True)
        self._patch(GradScaler, "update", update, dynamo=True)

    def _after_scale(self, scaler, outputs, out) -> None:
        self._scalers.setdefault(id(scaler), [weakref.ref(scaler), False])[1] = True
        if isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor) and out is not outputs and outputs.numel() == 1:
            self._scaled.clear()  # only the latest scaled loss matters
            self._scaled[id(out)] = (weakref.ref(out), outputs.detach())

    def _after_scaler_step(self, scaler, optimizer, steps_before) -> None:
        if not getattr(scaler, "_enabled", False):
            return
        state = getattr(scaler, "_per_optimizer_states", {}).get(id(optimizer))
        found = (state or {}).get("found_inf_per_device") or {}
        if self.steps != steps_before or not sum(float(v) for v in found.values()):
            return
        # Skipped: optimizer.step never ran. This iteration's loss and clip readings go with it.
        self._skipped += 1
        self._pending_loss = None
        self._preclip.clear()
        self._skip_pending = float(scaler._scale) if getattr(scaler, "_scale", None) is not None else float("nan")

    def _after_scaler_update(self, scaler) -> None:
        hit = self._scalers.get(id(scaler))
        if hit is not None:
            hit[1] = False
        if self._skip_pending is None:
            return
        before, self._skip_pending = self._skip_pending, None
        try:
            after = float(scaler.get_scale())
        except Exception:  # noqa: BLE001
            after = float("nan")
        self.send({"type": "event", "kind": "skipped-step", "step": self.steps, "count": self._skipped, "value": after,
                   "message": "GradScaler skipped an optimizer step: inf/NaN gradients at loss scale %g; the scale "
                              "is now %g (%d step(s) skipped so far)" % (before, after, self._skipped)})

    def _loss_scale_of(self, params):
        """The loss scale the gradients of `params` are still multiplied by (a GradScaler scaled the
        loss since its last update() and has not unscaled their optimizer), or None."""
        ids = {id(p) for p in params}
        for sref, scaled in list(self._scalers.values()):
            sc = sref()
            if sc is None or not scaled or not getattr(sc, "_enabled", False) or getattr(sc, "_scale", None) is None:
                continue
            states = getattr(sc, "_per_optimizer_states", {})
            for oref in self._optimizers:
                opt = oref()
                if opt is None or not any(id(p) in ids for g in opt.param_groups for p in g["params"]):
                    continue
                st = states.get(id(opt))
                stage = getattr(st.get("stage") if st else None, "name", "READY")
                if stage == "READY":
                    return float(sc._scale)
        return None

    # ------------------------------------------------------------------------------------------
    # Clipping

    def _install_clip(self) -> None:
        probe = self
        import torch.nn.utils as nn_utils
        import torch.nn.utils.clip_grad as clip_mod

        def clip(kind):
            def factory(orig):
                @functools.wraps(orig)
                def clip_fn(*args, **kwargs):
                    if os.getpid() == probe.pid and not probe.finished:
                        try:
                            args, kwargs = probe._run(probe._before_clip, kind, args, kwargs)
                        except Exception as e:  # noqa: BLE001
                            probe.warn("reading gradients before %s" % kind, e)
                    return orig(*args, **kwargs)
                return clip_fn
            return factory

        # Both the module and its re-export (`torch.nn.utils.clip_grad_norm_`, what Lightning and
        # `from torch.nn.utils import clip_grad_norm_` reach): each wrapper calls the original.
        for kind in ("clip_grad_norm_", "clip_grad_value_"):
            for owner in (clip_mod, nn_utils):
                if getattr(owner, kind, None) is not None:
                    self._patch(owner, kind, clip(kind), dynamo=True)

    def _before_clip(self, kind, args, kwargs):
        """Statistics of the gradients about to be clipped; returns the call's arguments, with the
        parameters made a list (they may be a generator, which this consumes)."""
        names = ("parameters", "max_norm", "norm_type") if kind == "clip_grad_norm_" else ("parameters", "clip_value")
        call = dict(zip(names, args))
        call.update(kwargs)
        parameters = call.get("parameters")
        threshold = call.get(names[1])
        if parameters is None or threshold is None:
            return args, kwargs
        parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        if args:
            args = (parameters,) + tuple(args[1:])
        else:
            kwargs = dict(kwargs, parameters=parameters)
        params = [p for p in parameters if isinstance(p, torch.Tensor)]
        if not self._hello_sent:
            self._send_hello(params)
        scale = self._loss_scale_of(params) if self._scalers else None
        inv = None
        if scale is not None and scale > 0 and scale != 1.0:
            inv = torch.tensor([1.0 / scale, 1.0 / scale, 1.0, 1.0], dtype=torch.float64)
        for p in params:
            # The first clip since the backward pass sees the gradients the script produced (a second
            # one, e.g. clip_grad_value_ after clip_grad_norm_, sees clipped ones).
            if p.grad is not None and id(p) not in self._preclip:
                s = stats.grad_stats(p.grad)
                self._preclip[id(p)] = s * inv.to(s.device) if inv is not None else s
        if kind == "clip_grad_norm_":
            key = (kind, float(threshold), float(call.get("norm_type", 2.0)))
            what = "clip_grad_norm_(max_norm=%g, norm_type=%g)" % key[1:]
        else:
            key = (kind, float(threshold))
            what = "clip_grad_value_(clip_value=%g)" % key[1]
        if key not in self._clip_reported and len(self._clip_reported) < 10:
            self._clip_reported.add(key)
            self.send({"type": "event", "kind": "clip", "step": self.steps, "value": float(threshold),
                       "message": "the script clips gradients with %s; GradScope reports the gradients before clipping" % what})
        if inv is not None and key not in self._scaled_clip_warned and len(self._scaled_clip_warned) < 10:
            self._scaled_clip_warned.add(key)
            self.send({"type": "event", "kind": "warning", "step": self.steps, "value": float(threshold) / scale,
                       "message": "%s was called on gradients still multiplied by the GradScaler's loss scale (%g): on the "
                                  "true gradients it clips at %g / %g = %.3g. Call scaler.unscale_(optimizer) before "
                                  "clipping. GradScope reports the unscaled gradients" % (
                                      what, scale, float(threshold), scale, float(threshold) / scale)})
        return args, kwargs

    # ------------------------------------------------------------------------------------------
    # Child processes

    def _install_children(self) -> None:
        """Training in child processes is not observed: say so when the script starts some (not the
        DataLoader's workers, which only load data)."""
        probe = self
        import multiprocessing.process as mp_process

        def start(orig):
            @functools.wraps(orig)
            def wrapper(self, *args, **kwargs):
                if os.getpid() == probe.pid and not getattr(probe._tls, "spawning", False):
                    try:
                        target = getattr(self, "_target", None)
                        if getattr(target, "__module__", "") != "torch.utils.data._utils.worker":
                            probe._child_warning("multiprocessing.Process(target=%s).start()" % _callable_name(target))
                    except Exception as e:  # noqa: BLE001
                        probe.warn("noticing a child process", e)
                return orig(self, *args, **kwargs)
            return wrapper

        self._patch(mp_process.BaseProcess, "start", start)
        try:
            import torch.multiprocessing as tmp
            import torch.multiprocessing.spawn as tspawn
        except Exception:  # noqa: BLE001
            return

        def spawn(name):
            def factory(orig):
                @functools.wraps(orig)
                def wrapper(fn, *args, **kwargs):
                    outer = not getattr(probe._tls, "spawning", False)
                    if outer and os.getpid() == probe.pid:
                        try:
                            n = kwargs.get("nprocs", args[1] if len(args) > 1 else 1)
                            probe._child_warning("torch.multiprocessing.%s(%s, nprocs=%s)" % (name, _callable_name(fn), n))
                        except Exception as e:  # noqa: BLE001
                            probe.warn("noticing a child process", e)
                    probe._tls.spawning = True
                    try:
                        return orig(fn, *args, **kwargs)
                    finally:
                        if outer:
                            probe._tls.spawning = False
                return wrapper
            return factory

        for name in ("spawn", "start_processes"):
            for owner in (tmp, tspawn):
                if callable(getattr(owner, name, None)) and not isinstance(getattr(owner, name), type(tmp)):
                    self._patch(owner, name, spawn(name))

    def _child_warning(self, call) -> None:
        if call in self._warned or len(self._warned) > 50:
            return
        self._warned.add(call)
        site = sources.user_call_site(2)
        where = " at %s:%d" % (os.path.basename(site["file"]), site["line"]) if site else ""
        self.send({"type": "event", "kind": "warning", "step": self.steps, "message":
                   "the script started child processes with %s%s: GradScope observes only the main process, "
                   "training in the children is not captured" % (call, where)})

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

    def _module_index(self):
        """names.ParameterIndex over the live modules whose construction was seen."""
        mods = []
        alive = []
        seen = set()
        for r in self._module_refs:
            m = r()
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                mods.append(m)
                alive.append(r)
        self._module_refs = alive
        self._module_refs_live = len(alive)
        children = set()
        for m in mods:
            for c in m.children():
                children.add(id(c))
        roots_named = self._root_names

        def variable_of(m):
            hit = roots_named.get(id(m))
            return hit[1] if hit is not None and hit[0]() is m else None

        return names.index_parameters([m for m in mods if id(m) not in children], variable_of)

    def _module_site(self, owner):
        """(user site, library site) of a parameter's module; a module whose construction was not
        seen, or seen outside the user's code, takes the site of the nearest module above it."""
        entry = self._module_sites.get(id(owner.module))
        built = entry[1] if entry is not None else None
        if entry is not None and entry[0] is not None:
            return entry[0], built
        for a in reversed(owner.ancestors):
            up = self._module_sites.get(id(a))
            if up is not None and up[0] is not None:
                return up[0], built if entry is not None else up[1]
        return None, built

    def _describe(self, p, tid, index) -> dict:
        shape = [int(d) for d in p.shape]
        owners = index.owners.get(id(p))
        psite = self._param_sites.get(id(p))
        psite = psite[1] if psite is not None and psite[0]() is p else None
        if not owners:
            name = self._raw_names.get(id(p)) or "param%d" % tid
            return {"id": tid, "name": name, "layer": name, "layerType": type(p).__name__, "shape": shape, "source": psite}
        owner = owners[0]
        m = owner.module
        site, built = self._module_site(owner)
        # A parameter created in the user's own module class: its own line is the precise one, unless
        # the model holds several instances of the class: then each instance's line tells them apart.
        if psite is not None and index.count(owner) <= 1 and (
                type(m).__module__ == "__main__"
                or sources.is_user_file(getattr(sys.modules.get(type(m).__module__), "__file__", "") or "")):
            site = psite
        info = {"id": tid, "name": owner.name, "layer": owner.layer or type(m).__name__, "layerType": type(m).__name__,
                "shape": shape, "source": site}
        aliases = [o.name for o in owners[1:]]
        if aliases:
            info["aliases"] = aliases
        if built is not None:
            info["builtIn"] = built
        return info

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
        if self._bw_pending is not None:
            self._finish_backward_step()
        closure = args[0] if args else kwargs.get("closure")
        params = self._params_of(opt)
        ctx = {"opt": opt, "closure": closure is not None, "params": params, "grads": None,
               "loss": self._pending_loss, "t_start": t_start}
        self._pending_loss = None
        with torch.no_grad():
            if closure is None:
                ctx["grads"] = self._grads_of(params)
                snap = [p for p, _, _ in ctx["grads"]]
            else:
                snap = params
            self._preclip.clear()
            fresh = {}
            for p in snap:
                k = self._known.get(id(p))
                if k is None or k.ref() is not p:
                    # New: described after the step; a one-off copy gives its first update norm.
                    if self._snapshot_bytes + p.numel() * p.element_size() <= UPDATE_SNAPSHOT_MAX_BYTES:
                        fresh[id(p)] = stats.local(p).detach().clone()
                    continue
                self._snapshot(k, p)
            ctx["fresh_snapshots"] = fresh
        ctx["probe_ms"] = (time.perf_counter() - t_start) * 1e3
        return ctx

    def _grads_of(self, params) -> list:
        """(param, its gradient statistics, its gradient) for the params that have a gradient; the
        statistics taken before clipping where the script clipped (and unscaled, see _before_clip)."""
        out = []
        for p in params:
            g = p.grad
            if g is None:
                continue
            s = self._preclip.pop(id(p), None)
            out.append((p, s if s is not None else stats.grad_stats(g), g))
        return out

    def _snapshot(self, k, p) -> None:
        p = stats.local(p)
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
                grads = self._grads_of(ctx["params"])
                self._preclip.clear()
                # The loss: backward passes before the step (accumulation) plus what step(closure)
                # returns, or the closure's own backward passes when it returns nothing.
                inside, self._pending_loss = self._pending_loss, None
                ret = None
                if isinstance(out, torch.Tensor) and out.numel() == 1:
                    ret = out.detach()
                elif isinstance(out, (int, float)):
                    ret = float(out)
                cur = ret if ret is not None else inside
                before = ctx["loss"]
                ctx["loss"] = cur if before is None else (before if cur is None else before + cur)
            else:
                grads = ctx["grads"]
            if not grads:
                return  # nothing had a gradient: not a training step we can describe
            params = ctx["params"]  # every tensor of the optimizer: those without a gradient are absent
            if not self._hello_sent:
                self._send_hello([p for p, _, _ in grads])
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
            rec = self._opt_rec(ctx["opt"])
            self._announce(rec, params)
            step = self.steps
            detail = ctx["detail"] if "detail" in ctx else self._detail_due(rec)
            # The gradients the detail tier reads: a backward pass's copies, else p.grad as it is now.
            items = [(p, g if g is not None else p.grad) for p, _, g in grads]
            deferred = None  # (known, copy of the gradient, shape) for the background job
            if detail and self._can_defer(items):
                if self._worker.busy:
                    # Skipped (a fixed interval: counted) or, automatic, put off to the next step.
                    detail = False
                    if not self.auto_detail:
                        self._detail_skipped += 1
                else:
                    deferred = []
            if detail:
                rec.last_detail = rec.steps
            inline = detail and deferred is None
            # CPU gradients on the training thread: all at once after the loop (small tensors together).
            inline_cpu = inline and all(g is not None and g.device.type == "cpu" for _, g in items)
            # Everything this step reports, per device, as float64 tensors; one copy per device.
            per_device = {}
            layout = []  # (known, device key, offset of the 6 stats, offset of detail or -1, tr, tc)
            for (p, gs, _g), (_p, g) in zip(grads, items):
                k = self._known[id(p)]
                dev = gs.device
                parts = per_device.setdefault(dev, [])
                off = sum(t.numel() for t in parts)
                pl = stats.local(p)
                pn = stats.norm(pl).reshape(1)
                before = ctx["fresh_snapshots"].get(id(p)) if id(p) in fresh_ids else k.snapshot
                if before is not None:
                    un = stats.norm(before.sub_(pl.detach())).reshape(1)
                else:
                    un = torch.full((1,), float("nan"), dtype=torch.float64, device=dev)
                parts.extend((gs, pn.to(dev), un.to(dev)))
                doff, tr, tc = -1, 0, 0
                if inline and not inline_cpu and g is not None:
                    dv, tr, tc = stats.detail_stats(g, tuple(pl.shape))
                    doff = off + 6
                    parts.append(dv)
                elif deferred is not None:
                    deferred.append((k, self._detail_copy(k, stats.local(g)), tuple(pl.shape)))
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
            inline_values = stats.detail_stats_many([(g, tuple(stats.local(p).shape)) for p, g in items]) \
                if inline_cpu else None
            if loss_dev is not None:
                loss = host[loss_dev][-1]
            elif isinstance(loss_t, torch.Tensor):
                loss = float(loss_t)  # a loss on another device than the parameters: rare
        wall_ms = (ctx["t_start"] - self.t0) * 1e3
        n = len(self._tensors)
        nan = float("nan")
        columns = [[nan] * n for _ in wire.STAT_NAMES]
        has = columns[wire.STAT_NAMES.index("hasGrad")] = [0.0] * n  # absent unless it has a gradient now
        first_nonfinite = None
        jump = False
        for k, dev, off, _doff, _tr, _tc in layout:
            v = host[dev]
            for s in range(6):
                columns[s][k.id] = v[off + s]
            has[k.id] = 1.0
            bad = v[off + 2] + v[off + 3]
            if bad > 0 and not self._nonfinite_reported and first_nonfinite is None:
                first_nonfinite = k
            prev = self._prev_norm.get(k.id)
            if prev is not None and prev > 0 and v[off] > 10 * prev:
                jump = True
            self._prev_norm[k.id] = v[off]
        self.steps += 1
        rec.steps += 1
        self.send({"type": "step", "step": step, "optimizer": rec.id, "loss": loss, "wallMs": wall_ms,
                   "stats": list(wire.STAT_NAMES), "columns": columns, "nTensors": n})
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
                if doff >= 0:
                    self._send_detail(step, k, host[dev], doff, tr, tc)
        elif deferred is not None:
            self._submit_detail(step, deferred)
        elif first_nonfinite is not None or jump:
            # An anomaly: the detail tier for this step too, after the job in flight (a tensor's
            # DETAIL frames stay in step order), in the background when it can be.
            detail = True
            live = [(p, g) for p, g in items if g is not None]
            if self._can_defer(live) and self._worker.wait_idle(DETAIL_DRAIN_S):
                with torch.no_grad():
                    self._submit_detail(step, [(self._known[id(p)], self._detail_copy(self._known[id(p)], stats.local(g)),
                                                tuple(stats.local(p).shape)) for p, g in live])
            else:
                with torch.no_grad():  # a second device→host copy, on anomalies only
                    values = stats.detail_stats_many([(g, tuple(stats.local(p).shape)) for p, g in live])
                for (p, _g), (v, tr, tc) in zip(live, values):
                    self._send_detail(step, self._known[id(p)], v, 0, tr, tc)
        end = time.perf_counter()
        self._tune(ctx, t_after, end, detail)

    # ------------------------------------------------------------------------------------------
    # Detail tier in the background

    def _can_defer(self, items) -> bool:
        """Whether this step's detail tier can go to the background thread (started here, once).
        items: (param, the gradient to describe)."""
        if self._worker_failed:
            return False
        need = 0
        total = 0
        for p, g in items:
            g = stats.local(g) if g is not None else None
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
        try:
            if self._bw_pending is not None:
                self._finish_backward_step()
        except Exception:  # noqa: BLE001
            pass
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


def _callable_name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


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
