"""The torch probe's core: the Probe object, its lifecycle (hooks installed, END), the frames it
sends (HELLO, TENSORS, STEP, EVENT, END) and the capture of each step's statistics.

Each hook lives in the module of its concern, as a mixin class Probe inherits: parameters.py
(module/parameter construction sites, TENSORS), optimizers.py (every optimizer's ``step``, optimizer
names, OPTIMIZER), backward.py (the loss; backward passes as steps when there is no optimizer),
amp.py (GradScaler), clipping.py (statistics before clipping), children.py (child-process warnings),
dynamo.py (torch.compile), detail.py (the detail tier). ``install`` puts them all in place once,
before the user's script runs.

Every STEP covers every tensor known so far: those of the stepping optimizer that have a gradient
get ``hasGrad`` 1; the others (``None`` gradient, another optimizer's) ``hasGrad`` 0 and NaN in the
other columns. DTensor (FSDP2) gradients and parameters are measured on their local shard.

A step without a closure: gradient statistics are taken just before the optimizer's own ``step``
runs (what it is about to apply). A step with a closure (LBFGS, Lightning, or any optimizer called as
``step(closure)``): gradients are computed inside ``step``, so ``step`` gets a wrapper of the closure
that reads them when its first evaluation returns (before a clip inside the closure), and the loss is
the value that evaluation returns: the gradient and the loss at the parameters the step starts from
(LBFGS evaluates the closure again at each of its inner iterations; those are not the step's). A
step that is never called (``GradScaler`` skipping an overflow step) produces no
STEP frame.

Everything here runs inside try/except: the probe's own failures become ``warning`` EVENTs and
never reach the user's code.
"""
from __future__ import annotations

import json
import operator
import os
import sys
import threading
import time

import torch

from . import forks, sources, stats, wire
from .amp import ScalerHooks
from .backward import BackwardHook, params_moved
from .children import ChildProcessWarnings
from .clipping import ClipHooks
from .detail import BACKGROUND, HERE, DetailTier
from .dynamo import DynamoExclusion
from .inplace import InPlaceCheck
from .inputs import InputScale
from .optimizers import OptimizerHooks
from .parameters import ParameterSites
from .sampled import SampledTier
from .snapshots import Snapshots


# Steps take the lean path where they can (Probe._lean_before); False: always the general one (tests).
LEAN_STEPS = True
# A tensor's gradient norm over this many times its norm at its previous step is a jump (an anomaly:
# the detail tier, see DetailTier._jump_detail_due).
NORM_JUMP = 10
_NAN = float("nan")


def probe_version() -> str:
    """The extension's version: package.json above this folder (the probe inside the extension or the
    repository), else the installed distribution's (``pip install``: pyproject.toml keeps them equal)."""
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
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("gradscope_probe")
        except PackageNotFoundError:
            pass
    except ImportError:  # Python < 3.8
        pass
    return "0.0.0"


def _err(e) -> str:
    return "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__


class StepLimitReached(SystemExit):
    """Raised out of optimizer.step() when GRADSCOPE_MAX_STEPS is reached (exit code 0)."""


class Probe(ParameterSites, OptimizerHooks, BackwardHook, ScalerHooks, ClipHooks, ChildProcessWarnings,
            DynamoExclusion, DetailTier, SampledTier, InputScale, InPlaceCheck):
    """The probe of this process: one object, its state spread over the mixins' _init_* methods."""

    def __init__(self, channel, script: str, max_steps: int = 0, detail_every: int = 0, sampled_every: int = 0):
        self.channel = channel
        self.script = script
        self.max_steps = max_steps
        self.pid = os.getpid()
        self.t0 = time.perf_counter()
        self.steps = 0
        self.finished = False
        self.end_reason = None
        self._hello_sent = False
        self._tls = threading.local()
        self._warned = set()
        self._nonfinite_reported = False
        self._prev_norms = []  # by tensor id: its gradient norm at its last step (NaN: none yet)
        self._snapshots = Snapshots()
        self._snapshot_full_reported = False
        self._rotation_reported = False
        self._installed = []
        self._init_parameters()
        self._init_optimizers()
        self._init_backward()
        self._init_scaler()
        self._init_clip()
        self._init_dynamo()
        self._init_detail(detail_every)
        self._init_sampled(sampled_every)
        self._init_inputs()
        self._init_inplace()

    # ------------------------------------------------------------------------------------------
    # Frames

    def send(self, msg: dict) -> bool:
        if forks.pid != self.pid or self.channel is None:
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
        hello = {"type": "hello", "probeVersion": probe_version(), "framework": "torch", "backend": backend,
                 "device": device, "backendReason": reason, "pid": self.pid, "rank": _rank(), "script": self.script,
                 "detailEvery": self.detail_every, "marksNoLoss": True}
        hello.update(getattr(self, "hello_extra", None) or {})
        if getattr(self, "distributed", False):
            hello.update(_distributed_place())
        self.send(hello)
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
                         ("torch.compile", self._install_compile), ("input scale", self._install_inputs)):
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

    def uninstall(self) -> None:
        """Restores what install() replaced and removes the input-scale hooks (tests, the notebook's
        ``off``). install() again counts on: the input scale is read on its schedule, not anew."""
        for owner, attr, orig in reversed(self._installed):
            try:
                setattr(owner, attr, orig)
            except Exception:  # noqa: BLE001
                pass
        self._installed = []
        try:
            self._stop_inputs()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------------------------------
    # Steps

    def _params_of(self, opt, rec=None):
        """The distinct tensors of the optimizer's param groups, in order. With its _Opt record, the
        work of picking them (a tensor in two groups, a non-tensor entry) is kept while the groups hold
        the same objects: an id comparison of the flat list per step."""
        flat = [p for g in opt.param_groups for p in g["params"]]
        if rec is not None:
            ids = list(map(id, flat))
            if ids == rec.param_ids:
                pick = rec.param_pick
                return flat if pick is None else [flat[i] for i in pick]
        pick = []
        seen = set()
        for i, p in enumerate(flat):
            if isinstance(p, torch.Tensor) and id(p) not in seen:
                seen.add(id(p))
                pick.append(i)
        params = flat if len(pick) == len(flat) else [flat[i] for i in pick]
        if rec is not None:
            rec.param_ids = ids
            rec.param_pick = None if len(pick) == len(flat) else pick
            rec.knowns = None
            rec.lean = None
            plain = bool(params) and all(stats.plain_cpu(p) for p in params)
            rec.norm_plan = stats.NormPlan(params) if plain else None
            rec.lean_ok = plain or stats.plain_on_device(params)
        return params

    def _knowns_of(self, rec, params) -> list:
        """The _Known of each of `params`, kept in `rec` while they stay the same objects (checked
        through the _Known's weak references: an id reused by a new tensor is not taken for the old
        one). When they are not the same, tensors seen for the first time are described first
        (TENSORS)."""
        ks = rec.knowns
        if ks is not None and len(ks) == len(params) and all(map(operator.is_, [k.ref() for k in ks], params)):
            return ks
        known = self._known
        fresh = [p for p in params if known.get(id(p)) is None or known[id(p)].ref() is not p]
        if fresh:
            for p in fresh:
                old = known.pop(id(p), None)
                if old is not None:
                    self._drop_detail_buf(old)
            self.send({"type": "tensors", "tensors": self._describe_new(fresh)})
        ks = rec.knowns = [known[id(p)] for p in params]
        return ks

    def _before_step(self, opt, args, kwargs):
        t_start = time.perf_counter()
        if self._bw_pending is not None:
            self._finish_backward_step()
        unscale = self._step_scale(opt) if self._scalers else 1.0
        if unscale is False:
            return None  # GradScaler found inf/NaN: the optimizer skips this step (amp.py reports it)
        closure = args[0] if args else kwargs.get("closure")
        rec = self._opt_rec(opt)
        params = self._params_of(opt, rec)
        sampled = self._sampled_due(rec)
        self._last_rec = rec
        if rec.lean is not None and LEAN_STEPS and closure is None and not sampled and not self._preclip \
                and unscale == 1.0:
            ctx = self._lean_before(rec, params, t_start)
            if ctx is not None:
                return ctx
        ctx = self._new_ctx(opt, closure is not None, params, t_start, sampled)
        if unscale != 1.0:
            # Gradients still multiplied by GradScaler's scale (_after_step), but for the rows a clip
            # measured before (clipping.py: unscaled there).
            ctx["unscale"] = unscale
            ctx["unscaled_ids"] = set(self._preclip)
        with torch.no_grad():
            if closure is None:
                # defer: the optimizer only reads the gradients, so a CUDA row is checked after the step's copy.
                t_g = time.perf_counter()
                ctx["grads"], ctx["unchecked"] = self._grads_of(params, defer=True, with_max=sampled, plan=rec.norm_plan)
                ctx["sampled_ms"] = self._grads_time(sampled, (time.perf_counter() - t_g) * 1e3)
                snap = [p for p, _, _ in ctx["grads"]]
                self._preclip.clear()
            else:
                # The pre-clip statistics of a clip before step(closure) stay: a closure that runs a
                # backward pass makes them stale and drops them then (_on_backward), and one that runs
                # none steps with the gradients that clip saw (Lightning's manual optimization:
                # clip_gradients, then optimizer.step() with a closure that does nothing).
                snap = params
                if callable(closure):  # (a custom step's first argument may be something else: left as it is)
                    ctx["closure_fn"] = self._measuring_closure(ctx, closure)
            ctx["snapshots"] = {}
            if sampled:
                t_w = time.perf_counter()
                ctx["snapshots"] = self._snapshot_all(snap)
                ctx["sampled_ms"] += (time.perf_counter() - t_w) * 1e3
        ctx["probe_ms"] = (time.perf_counter() - t_start) * 1e3
        return ctx

    def _lean_before(self, rec, params, t_start):
        """The lean step: the usual step of an optimizer whose last step went through the general path
        (rec.lean) with the same tensors, the same of them with a plain gradient (all, or all but
        frozen ones; on the CPU, or all on one GPU: stats.plain_on_device), no closure, no clip, not a
        sampled step, every norm in the fast path's range; a detail step too when its gradients are on
        the CPU (_lean_detail). Its STEP and DETAIL frames are the ones the general path sends
        (test_probe's LeanStepTest compares them), without the general path's per-step machinery
        (rows, a host batch, the layout of the detail tier): on a 19 ms step of a 2M-parameter MLP that
        machinery cost about 0.8 % of the step, most of it Python run with cold caches right after
        backward(). None: this step takes the general path."""
        ks = rec.knowns
        _ids, _dense, n, present = rec.lean
        if n != len(self._tensors) or not all(map(operator.is_, [k.ref() for k in ks], params)):
            return None
        detail = self._detail_due(rec)
        if detail and rec.norm_plan is None:
            return None  # (off the CPU: the general path gathers the detail values into its one copy)
        gs = [p.grad for p in params]
        plan = rec.norm_plan
        have = params  # the tensors with a gradient
        if present is None:
            if any(g is None for g in gs):
                return None
        else:
            # Some tensors without a gradient (frozen ones): the same ones as at the general step.
            if [g is not None for g in gs] != present:
                return None
            have = [p for p, has in zip(params, present) if has]
            gs = [g for g in gs if g is not None]
            plan = None  # (made for all of them)
        t_g = time.perf_counter()
        loss = self._pending_loss
        if plan is None and gs and not stats._cheap_to_read(gs[0].device):
            # Off the CPU (a GPU): the norms, and the loss where it is on their device, go to the host
            # in one copy that does not wait, read after the step (_lean_after), so that the host
            # queues the optimizer's kernels meanwhile instead of waiting for the backward pass.
            with_loss = isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.device == gs[0].device
            later = stats.plain_values_later(gs, loss if with_loss else None)
            if later is None:
                return None
            self._grads_time(False, (time.perf_counter() - t_g) * 1e3)
            self._pending_loss = None
            return {"lean": True, "rec": rec, "params": have, "all": params, "gs": gs, "norms": None, "later": later,
                    "loss": None if with_loss else loss, "t_start": t_start, "detail": detail,
                    "probe_ms": (time.perf_counter() - t_start) * 1e3}
        got = stats.plain_values(gs, False, plan)
        if got is None:
            return None
        norms = got[0]
        if any(map(stats.needs_exact, norms)):
            # A norm the fast path cannot vouch for: the general path, with the rows already measured.
            self._grads_time(False, (time.perf_counter() - t_g) * 1e3)
            ctx = self._exact_ctx(rec, params, have, gs, norms, self._pending_loss, t_start)
            self._pending_loss = None
            self._preclip.clear()
            ctx["probe_ms"] = (time.perf_counter() - t_start) * 1e3
            return ctx
        self._grads_time(False, (time.perf_counter() - t_g) * 1e3)
        self._pending_loss = None
        return {"lean": True, "rec": rec, "params": have, "gs": gs, "norms": norms, "loss": loss, "t_start": t_start,
                "detail": detail, "probe_ms": (time.perf_counter() - t_start) * 1e3}

    def _measuring_closure(self, ctx, closure):
        """What step(closure) gets instead of the script's closure: the same closure, after whose first
        evaluation the step's gradients and loss are taken (_closure_measured). That evaluation is at the
        parameters the step starts from, whose loss the optimizer returns (LBFGS: its first of up to
        max_iter evaluations); the later ones (LBFGS's inner iterations) are not the step's."""
        probe = self
        evals = [0]

        def measured(*args, **kwargs):
            if evals[0] == 1 and ctx["grads"] and getattr(probe._tls, "depth", 0):
                # A second evaluation may zero or overwrite the first one's gradients in place: keep a
                # copy for what reads them after the step (the detail tier, a late check).
                try:
                    with torch.no_grad():
                        ctx["grads"] = [(p, s, g.detach().clone()) for p, s, g in ctx["grads"]]
                except Exception as e:  # noqa: BLE001
                    probe.warn("keeping the gradients of a closure's first evaluation", e)
            out = closure(*args, **kwargs)
            evals[0] += 1
            # (only inside the step: an optimizer that keeps the closure and calls it after its step
            # returned or raised measures nothing, nor takes the next step's loss)
            if evals[0] == 1 and getattr(probe._tls, "depth", 0) and forks.pid == probe.pid and not probe.finished:
                try:
                    probe._run(probe._closure_measured, ctx, out)
                except Exception as e:  # noqa: BLE001
                    probe.warn("reading the gradients of a closure", e)
            return out

        return measured

    def _closure_measured(self, ctx, out) -> None:
        """After the first evaluation of a step's closure: its gradients (before a clip inside the
        closure) and the step's loss, the backward passes before the step (accumulation) plus what the
        closure returned, or its own backward passes when it returns nothing."""
        with torch.no_grad():
            rec = self._opt_rec(ctx["opt"])
            ctx["grads"], ctx["unchecked"] = self._grads_of(ctx["params"], defer=True, with_max=ctx["sampled"],
                                                            plan=rec.norm_plan)
        self._preclip.clear()
        inside, self._pending_loss = self._pending_loss, None
        ret = None
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            ret = out.detach()
        elif isinstance(out, (int, float)):
            ret = float(out)
        cur = ret if ret is not None else inside
        before = ctx["loss"]
        if before is not None and cur is not None and params_moved(ctx["loss_mark"], self._params_mark()):
            before = None  # the parameters moved since those passes (SAM's step(closure)): not accumulation
        ctx["loss"] = cur if before is None else (before if cur is None else before + cur)
        ctx["measured"] = True

    def _new_ctx(self, opt, closure: bool, params, t_start, sampled: bool) -> dict:
        """The general path's context of a step, before its gradients are measured (the loss of its
        backward passes taken)."""
        ctx = {"opt": opt, "closure": closure, "params": params, "grads": None, "unchecked": (),
               "loss": self._pending_loss, "loss_mark": self._loss_mark, "t_start": t_start, "sampled": sampled,
               "sampled_ms": 0.0}
        self._pending_loss = None
        return ctx

    def _lean_after(self, ctx, t_after) -> None:
        """_after_step of a lean step (see _lean_before)."""
        later = ctx.get("later")
        if later is not None:
            ctx["norms"], loss = later.read()
            if loss is not None:
                ctx["loss"] = loss
            if any(map(stats.needs_exact, ctx["norms"])):
                self._lean_exact_after(ctx)
                return
        rec = ctx["rec"]
        ids, dense, n, _present = rec.lean
        norms = ctx["norms"]
        nan = _NAN
        if dense:
            norm_c = norms
            zeros = [0.0] * n
            has = [1.0] * n
        else:
            norm_c = [nan] * n
            zeros = [nan] * n
            has = [0.0] * n
            for i, v in zip(ids, norms):
                norm_c[i] = v
                zeros[i] = 0.0
                has[i] = 1.0
        prev = self._prev_norms
        if len(prev) < n:
            prev.extend([nan] * (n - len(prev)))
        jump = False
        for i, v in zip(ids, norms):
            p_norm = prev[i]
            if p_norm > 0 and v > NORM_JUMP * p_norm:
                jump = True
            prev[i] = v
        by_name = {"norm": norm_c, "nanCount": zeros, "infCount": zeros, "hasGrad": has}
        columns = [by_name.get(s) or [nan] * n for s in wire.STAT_NAMES]
        loss_t = ctx["loss"]
        loss = None if loss_t is None else float(loss_t)  # (None: no loss seen, NO_LOSS on the wire)
        step = self.steps
        self.steps += 1
        rec.steps += 1
        self.send({"type": "step", "step": step, "optimizer": rec.id, "loss": loss, "wallMs": (ctx["t_start"] - self.t0) * 1e3,
                   "stats": list(wire.STAT_NAMES), "columns": columns, "nTensors": n})
        detail = ctx["detail"] and self._lean_detail(rec, step, list(zip(ctx["params"], ctx["gs"])))
        if not detail and jump and self._jump_detail_due(rec):
            detail = True  # an anomaly: the detail tier for this step too
            rec.last_detail = rec.steps - 1
            self._anomaly_detail(step, list(zip(ctx["params"], ctx["gs"])))
        self._tune(ctx, t_after, time.perf_counter(), detail)

    def _exact_ctx(self, rec, params, have, gs, norms, loss, t_start) -> dict:
        """The general path's context of a lean step whose norms need the exact path (a NaN, an Inf, a
        zero): rows_of measures those on `gs` (the gradients of `have`, of the optimizer's `params`)."""
        return {"opt": rec.ref(), "closure": False, "params": params, "grads": list(zip(have, stats.rows_of(gs, norms, None), gs)),
                "unchecked": (), "loss": loss, "loss_mark": None, "t_start": t_start, "sampled": False, "sampled_ms": 0.0,
                "snapshots": {}}

    def _lean_exact_after(self, ctx) -> None:
        """A lean step off the CPU whose norms, read after the step, need the exact path: the general
        path's _after_step, its rows measured on the gradients as they are now, which the step left as
        they were (torch's optimizers only read them)."""
        exact = self._exact_ctx(ctx["rec"], ctx["all"], ctx["params"], ctx["gs"], ctx["norms"], ctx["loss"], ctx["t_start"])
        exact["probe_ms"] = ctx["probe_ms"]
        self._after_step(exact, None)

    def _lean_detail(self, rec, step, items) -> bool:
        """The scheduled detail tier of a lean step (CPU gradients), where _scheduled_detail_way says,
        as the general path does it. items: (param, its gradient). Whether it ran. (rec.steps counts
        this step already.)"""
        way = self._scheduled_detail_way(items)
        if way is None:
            return False
        rec.last_detail = rec.steps - 1
        (self._detail_in_background if way == BACKGROUND else self._detail_here)(step, items)
        return True

    def _grads_of(self, params, defer: bool = False, with_max: bool = True, plan=None):
        """([(param, its gradient statistics, its gradient)] for the params that have a gradient, the
        ids of the params whose statistics are to be checked after the host copy (stats.grad_stats_many,
        defer, with_max)); the statistics taken before clipping where the script clipped (and
        unscaled, see _before_clip). plan: where the params all passed stats.plain_cpu, their
        stats.NormPlan (their _Opt's); their gradients then take stats.plain_rows."""
        gs = [p.grad for p in params]
        if plan is not None and not self._preclip and all(g is not None for g in gs):
            rows = stats.plain_rows(gs, with_max, plan)
            if rows is not None:
                return list(zip(params, rows, gs)), ()
        pairs = [(p, g) for p, g in zip(params, gs) if g is not None] if any(g is None for g in gs) else list(zip(params, gs))
        pre = self._preclip
        if pre:
            given = [pre.pop(id(p), None) for p, _ in pairs]
            todo = [i for i, s in enumerate(given) if s is None]
        else:
            given = None
            todo = None
        rows, late = stats.grad_stats_many([g for _, g in pairs] if todo is None else [pairs[i][1] for i in todo],
                                           defer=defer, with_max=with_max)
        if todo is None:
            out = [(p, r, g) for (p, g), r in zip(pairs, rows)]
            unchecked = {id(pairs[j][0]) for j in late}
        else:
            for i, r in zip(todo, rows):
                given[i] = r
            out = [(p, r, g) for (p, g), r in zip(pairs, given)]
            unchecked = {id(pairs[todo[j]][0]) for j in late}
        return out, unchecked

    def _snapshot_all(self, params) -> dict:
        """Copies of `params` before the step, for their update norms, by id: all of them, or those
        whose turn it is when the model is larger than the snapshot pool (snapshots.py)."""
        return self._snapshots.take(params)

    def _report_snapshots(self) -> None:
        """Says once, after the step (its tensors have names by then), that update norms are
        partial: tensors over the cap, or a model measured in turns."""
        sn = self._snapshots
        if sn.too_large and not self._snapshot_full_reported:
            self._snapshot_full_reported = True
            self.send({"type": "event", "kind": "info", "message":
                       "no update norm for %d parameter tensor(s) larger than %s (GRADSCOPE_UPDATE_NORM_MAX_BYTES), e.g. %s" % (
                           len(sn.too_large), _size(sn.cap), self._name_of(sn.too_large[0]))})
        elif sn.partial and not self._rotation_reported:
            self._rotation_reported = True
            self.send({"type": "event", "kind": "info", "message":
                       "the model is large: each sampled step measures the update norms of a part of its tensors "
                       "(%s of copies at a time), in turn" % _size(sn.nbytes())})

    def _name_of(self, p) -> str:
        k = self._known.get(id(p))
        return k.info["name"] if k is not None and k.ref() is p else "a %s tensor" % (tuple(p.shape),)

    def _weight_norms(self, ctx, grads, hb):
        """The parameter and update norms of a sampled step (sampled.py): where in `hb` each entry of
        `grads` has its parameter norm and its update norm (None: unknown), and the entries to check
        after the copy."""
        pls = [stats.local(p).detach() for p, _, _ in grads]
        pnorms, p_late = stats.norms_many(pls)
        befores, afters, which = [], [], []
        snaps = ctx["snapshots"]
        for j, (p, _, _) in enumerate(grads):
            before = snaps.get(id(p))
            if before is not None:
                befores.append(before)
                afters.append(pls[j])
                which.append(j)
        stats.sub_many(befores, afters)  # the snapshot buffers now hold the change
        unorms, u_late = stats.norms_many(befores)
        pn_at = [hb.add(v) for v in pnorms]
        un_at = [None] * len(grads)
        for j, v in zip(which, unorms):
            un_at[j] = hb.add(v)
        late = [(pn_at[j], pls[j]) for j in p_late] + [(un_at[which[j]], befores[j]) for j in u_late]
        return pn_at, un_at, late

    def _after_step(self, ctx, out) -> None:
        t_after = time.perf_counter()
        if "lean" in ctx:
            self._lean_after(ctx, t_after)
            return
        with torch.no_grad():
            if ctx["closure"]:
                if "measured" not in ctx:
                    # The optimizer never called the closure: the gradients as they are now, the loss
                    # as step returned it.
                    self._closure_measured(ctx, out)
                self._pending_loss = None  # (the later evaluations' backward passes: not the step's)
                self._preclip.clear()
            grads, unchecked = ctx["grads"], ctx["unchecked"]
            if not grads:
                return  # nothing had a gradient: not a training step we can describe
            params = ctx["params"]  # every tensor of the optimizer: those without a gradient are absent
            if not self._hello_sent:
                self._send_hello([p for p, _, _ in grads])
            rec = self._opt_rec(ctx["opt"])
            ks_all = self._knowns_of(rec, params)
            self._announce(rec, params)
            # The _Known of each entry of grads (in the usual step every tensor has a gradient).
            if len(grads) == len(params) and all(map(operator.is_, [p for p, _, _ in grads], params)):
                ks = ks_all
            else:
                known = self._known
                ks = [known[id(p)] for p, _, _ in grads]
            step = self.steps
            detail = ctx["detail"] if "detail" in ctx else self._detail_due(rec)
            # The gradients the detail tier reads: a backward pass's copies, else p.grad as it is now.
            items = [(p, g if g is not None else p.grad) for p, _, g in grads] if detail else None
            way = self._scheduled_detail_way(items) if detail else None
            detail = way is not None
            if detail:
                rec.last_detail = rec.steps
            # On this thread with gradients off the CPU: their detail values join the step's one
            # device→host copy (CPU gradients: all at once after the STEP, _detail_here).
            batched = way == HERE and not all(stats._cheap_to_read(g.device) for _, g in items)
            # Everything this step reports that is still on a device, as float64 tensors gathered per
            # device: one copy per device. Rows already read (CPU gradients) stay as they are.
            hb = _HostBatch()
            rows = [gs for _p, gs, _g in grads]
            grad_at = [None if type(gs) is list else hb.add(gs) for gs in rows]
            sampled = ctx.get("sampled", True)
            late = []  # (where, tensor) of fast-path norms to check after the copy (off the CPU)
            if sampled:
                t_w = time.perf_counter()
                rec.last_sampled = rec.steps
                self._report_snapshots()
                pn_at, un_at, late = self._weight_norms(ctx, grads, hb)
                ctx["sampled_ms"] += (time.perf_counter() - t_w) * 1e3
            else:
                pn_at = un_at = None
            layout = None  # batched: (known, where its detail values start, tr, tc)
            if batched:
                layout = []
                for (p, g), k in zip(items, ks):
                    dv, tr, tc = stats.detail_stats(g, tuple(stats.local(p).shape))
                    layout.append((k, hb.add(dv), tr, tc))
            loss_t = ctx["loss"]
            loss = None  # no loss seen (wire.NO_LOSS), not a NaN loss
            loss_at = None
            if isinstance(loss_t, torch.Tensor):
                if hb.has(loss_t.device):
                    loss_at = hb.add(loss_t.reshape(1).to(torch.float64))
            elif isinstance(loss_t, (int, float)):
                loss = float(loss_t)
            hb.fetch()  # the one device→host copy per device
            for j, at in enumerate(grad_at):
                if at is not None:
                    rows[j] = hb.values(at, wire.GRAD_ROW_LENGTH)
            # Rows measured before the step of an optimizer that unscales in its step (ctx["unscale"]). Its
            # detail tier reads the gradients as they are now, which torch's fused optimizers have
            # written back unscaled (as after a clip: what the step applied).
            unscale = ctx.get("unscale")
            if unscale is not None:
                done = ctx["unscaled_ids"]
                rows = [r if id(p) in done else stats.scale_row(r, unscale) for (p, _, _), r in zip(grads, rows)]
            # (a row redone here is measured on the gradient as it is now: unscaled, where an optimizer
            # unscaled it in its step)
            self._check_late(grads, rows, unchecked, late, hb)
            if self._bw_marks is not None:
                if sampled and not ctx["closure"] and unscale is None:
                    self._check_inplace(step, grads, rows, ks)
                else:
                    self._bw_marks = None
            if loss_at is not None:
                loss = hb.value(loss_at)
            elif isinstance(loss_t, torch.Tensor):
                loss = float(loss_t)  # a loss on another device than the parameters: rare
        wall_ms = (ctx["t_start"] - self.t0) * 1e3
        n = len(self._tensors)
        nan = float("nan")
        columns = [[nan] * n for _ in wire.STAT_NAMES]
        norm_c, max_c, nan_c, inf_c, pn_c, un_c = (columns[wire.STAT_NAMES.index(x)] for x in (
            "norm", "maxAbs", "nanCount", "infCount", "paramNorm", "updateNorm"))
        has = columns[wire.STAT_NAMES.index("hasGrad")] = [0.0] * n  # absent unless it has a gradient now
        prev = self._prev_norms
        if len(prev) < n:
            prev.extend([nan] * (n - len(prev)))
        first_nonfinite = None
        jump = False
        r_norm, r_max, r_nan, r_inf = wire.ROW_NORM, wire.ROW_MAX_ABS, wire.ROW_NAN_COUNT, wire.ROW_INF_COUNT  # locals: a per-tensor loop
        for k, v in zip(ks, rows):
            i = k.id
            g_norm = v[r_norm]
            norm_c[i] = g_norm
            max_c[i] = v[r_max]
            nan_c[i] = v[r_nan]
            inf_c[i] = v[r_inf]
            has[i] = 1.0
            if v[r_nan] or v[r_inf]:
                if first_nonfinite is None and not self._nonfinite_reported:
                    first_nonfinite = k
            p_norm = prev[i]
            if p_norm > 0 and g_norm > NORM_JUMP * p_norm:  # (NaN fails both)
                jump = True
            prev[i] = g_norm
        if sampled:
            for k, p_at, u_at in zip(ks, pn_at, un_at):
                pn_c[k.id] = hb.value(p_at)
                if u_at is not None:
                    un_c[k.id] = hb.value(u_at)
        self.steps += 1
        rec.steps += 1
        if rec.lean_ok and not ctx["closure"]:
            # Its next steps may take the lean path: these tensors with a gradient, the others without.
            ids = [k.id for k in ks]
            have = {id(k) for k in ks}
            present = None if ks is ks_all else [id(k) in have for k in ks_all]
            rec.lean = (ids, ids == list(range(n)), n, present)
        self.send({"type": "step", "step": step, "optimizer": rec.id, "loss": loss, "wallMs": wall_ms,
                   "stats": list(wire.STAT_NAMES), "columns": columns, "nTensors": n})
        if first_nonfinite is not None:
            self._nonfinite_reported = True
            k = first_nonfinite
            self.send({"type": "event", "kind": "non-finite", "step": step, "tensorId": k.id,
                       "message": "first non-finite gradient at step %d: %s has %d NaN and %d Inf value(s)" % (
                           step, k.info["name"], nan_c[k.id], inf_c[k.id])})
        if batched:
            for k, dat, tr, tc in layout:
                self._send_detail(step, k, hb.host[dat[0]], dat[1], tr, tc)
        elif way == HERE:
            self._detail_here(step, items)
        elif way == BACKGROUND:
            self._detail_in_background(step, items)
        elif first_nonfinite is not None or (jump and self._jump_detail_due(rec)):
            detail = True  # an anomaly: the detail tier for this step too
            rec.last_detail = rec.steps - 1
            self._anomaly_detail(step, [(p, g if g is not None else p.grad) for p, _, g in grads])
        end = time.perf_counter()
        self._tune(ctx, t_after, end, detail)
        if sampled and rec.steps > 1:
            self._tune_sampled(ctx["sampled_ms"] + self._mark_ms)  # (with inplace.py's marks for it)
        if sampled:
            self._mark_ms = 0.0

    def _check_late(self, grads, rows, unchecked, late, hb) -> None:
        """Redoes, after the copy, what the fast paths could not check on their device (CUDA): a
        gradient whose norm or max is not finite (NaN/Inf counted, overflow-safe norm), a norm that
        overflowed or underflowed. Rare: a step with none of them syncs nothing more."""
        if unchecked:
            for j, (p, _s, g) in enumerate(grads):
                if id(p) in unchecked and stats.needs_exact(rows[j][0]):
                    rows[j] = stats.grad_stats(g).cpu().tolist()
        for at, t in late:
            if stats.norm_needs_exact(hb.value(at)):
                hb.put(at, [float(stats.norm(t))])

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
        if self.finished or forks.pid != self.pid:
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
            self.send(msg)
            if self.channel is not None:
                self.channel.flush(5.0)
                self.channel.close()
        except Exception:  # noqa: BLE001
            pass


class _HostBatch:
    """Float64 tensors gathered per device during a step and brought to the host in one copy per
    device (fetch); add() returns where a tensor's values will be: (device, offset)."""

    def __init__(self):
        self._parts = {}  # device -> [tensors, total length so far]
        self._host_vals = []  # values that were on the host already (device key None)
        self.host = {}  # device (None: the host's own) -> list of floats, after fetch()

    def has(self, device) -> bool:
        return device in self._parts

    def add(self, t):
        """t: a tensor (any device), a list of floats or a float (already on the host)."""
        if isinstance(t, torch.Tensor):
            e = self._parts.setdefault(t.device, [[], 0])
            at = (t.device, e[1])
            e[0].append(t.reshape(-1))
            e[1] += t.numel()
            return at
        vals = self._host_vals
        at = (None, len(vals))
        if isinstance(t, list):
            vals.extend(t)
        else:
            vals.append(float(t))
        return at

    def fetch(self) -> None:
        self.host = {dev: _to_host(torch.cat(parts).to(torch.float64)) for dev, (parts, _n) in self._parts.items()}
        self.host[None] = self._host_vals

    def value(self, at) -> float:
        return self.host[at[0]][at[1]]

    def values(self, at, n: int) -> list:
        return self.host[at[0]][at[1]:at[1] + n]

    def put(self, at, values) -> None:
        self.host[at[0]][at[1]:at[1] + len(values)] = values


_PINNED = {}  # device -> page-locked host buffer for the step's copy (CUDA)


def _to_host(t: torch.Tensor) -> list:
    """A device's float64 values as a list: on CUDA through a page-locked buffer kept per device (a
    direct DMA, no staging copy), waiting for that copy only; elsewhere .cpu()."""
    if t.device.type == "cuda":
        try:
            buf = _PINNED.get(t.device)
            if buf is None or buf.numel() < t.numel():
                buf = _PINNED[t.device] = torch.empty(max(t.numel(), 1024), dtype=torch.float64, pin_memory=True)
            out = buf[:t.numel()]
            out.copy_(t, non_blocking=True)
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(t.device))
            done.synchronize()
            return out.tolist()
        except Exception:  # noqa: BLE001 - no pinned memory here: the plain copy
            pass
    return t.cpu().tolist()


def _size(n: int) -> str:
    return "%d MiB" % (n // (1024 * 1024)) if n >= 1024 * 1024 else "%d KiB" % (n // 1024) if n >= 1024 else "%d bytes" % n


def _in_script_source(exc: BaseException) -> bool:
    """Whether exc is a SyntaxError (IndentationError too) in a file of the user's code."""
    return isinstance(exc, SyntaxError) and isinstance(exc.filename, str) and sources.is_user_file(exc.filename) \
        and isinstance(exc.lineno, int) and exc.lineno > 0


def script_traceback(exc: BaseException):
    """exc's traceback from the first frame outside the probe and runpy, which ran the script: what
    `python script.py` shows. None for a SyntaxError in the script's own code, which never ran (the
    error's text is the line and its caret, as Python prints it); all of it when no frame is outside
    (an error of the probe's own)."""
    import runpy

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    runpy_file = os.path.abspath(runpy.__file__)
    t = exc.__traceback__
    while t is not None:
        raw = t.tb_frame.f_code.co_filename
        f = os.path.abspath(raw)
        if not (f.startswith(here) or f == runpy_file or raw.startswith("<frozen runpy")):
            return t
        t = t.tb_next
    return None if _in_script_source(exc) else exc.__traceback__


def error_info(exc: BaseException) -> dict:
    """END's error: the message, the traceback text, and the innermost frame in the user's code."""
    import traceback

    info = {"message": _err(exc)}
    try:
        info["stack"] = "".join(traceback.format_exception(type(exc), exc, script_traceback(exc)))[-8000:]
    except Exception:  # noqa: BLE001
        pass
    if _in_script_source(exc):
        # A SyntaxError in the user's code: the line it points at, in the script (no frame of it ran)
        # or in a module of theirs it imports (not the import statement's frame, which did run).
        fr = {"file": os.path.abspath(exc.filename), "line": exc.lineno,
              "column": exc.offset if isinstance(exc.offset, int) and exc.offset > 0 else 1}
    else:
        fr = sources.user_frame_of_traceback(exc.__traceback__)
    if fr is not None:
        info["frame"] = fr
    return info


def _rank() -> int:
    try:
        return max(0, int(os.environ.get("RANK", "0")))
    except ValueError:
        return 0


def _distributed_place() -> dict:
    """HELLO's rank, localRank, worldSize and host for a process of a distributed job: from
    torch.distributed once the script has initialised it (mp.spawn children learn their rank there),
    else from torchrun's RANK, LOCAL_RANK and WORLD_SIZE."""
    import socket

    def env_int(name, default):
        try:
            return max(0, int(os.environ.get(name, default)))
        except ValueError:
            return default

    rank, world = env_int("RANK", 0), env_int("WORLD_SIZE", 1)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
    except Exception:  # noqa: BLE001
        pass
    try:
        host = socket.gethostname()
    except OSError:
        host = ""
    return {"rank": rank, "localRank": env_int("LOCAL_RANK", rank), "worldSize": world, "host": host}


def _flush_stdio() -> None:
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:  # noqa: BLE001
            pass
