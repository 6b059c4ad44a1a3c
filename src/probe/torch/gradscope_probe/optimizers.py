"""Optimizer hooks: every optimizer's ``step`` wrapped, each optimizer named and announced.

``Optimizer.__init__`` wraps ``step`` of every Optimizer class in the instance's MRO, once per class.
A thread-local depth counter makes ``super().step()`` (and torch's own profiling wrapper) count
once. This is the same on torch 1.13 and 2.x: torch 2.x's global
``register_optimizer_step_post_hook`` hooks run inside an equivalent per-class wrapper (installed by
``Optimizer.__init__`` too), so they would reach no more optimizers, and they do not run their post
hooks when ``step`` raises, which would leave a re-entrancy guard stale. The optimizer's name is the
variable the user's code assigns it to (read from the bytecode after the constructor call, followed
through user functions that return it), else ``<ClassName>#<id>``; an OPTIMIZER frame announces it
and its tensors before its first STEP, and every STEP names its optimizer.
"""
from __future__ import annotations

import dis
import functools
import sys
import weakref

import torch

from . import forks, sources


class _Opt:
    """One optimizer as the OPTIMIZER message describes it (or the backward-pass pseudo-optimizer)."""
    __slots__ = ("id", "ref", "name", "class_name", "mode", "tensor_ids", "param_key", "steps", "last_detail", "last_sampled",
                 "param_ids", "param_pick", "knowns", "norm_plan", "lean_ok", "lean")

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
        self.last_sampled = None  # automatic interval: its step of the last sampled tier (sampled.py)
        # Per-step bookkeeping kept from the previous step (probe.py: _params_of, _knowns_of); ids and
        # _Known objects only: nothing here keeps a parameter alive.
        self.param_ids = None  # id() of every entry of the param groups, in order
        self.param_pick = None  # indices into that flat list of the distinct tensors (None: all of them)
        self.knowns = None  # the _Known of each of those tensors
        # Where they all pass stats.plain_cpu (their gradients take stats.plain_rows): how plain_rows
        # groups them (stats.NormPlan); None where one does not.
        self.norm_plan = None
        # Whether its steps may take the lean path at all: a norm plan (CPU), or its tensors all plain
        # on one other device (stats.plain_on_device).
        self.lean_ok = False
        # Where its steps may take the lean path (probe.py, _lean_before): (the tensor id of each of
        # its tensors with a gradient, whether they are tensors 0..n-1 in order, n: the number of
        # tensors known, which of its tensors have a gradient: None for all).
        self.lean = None


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


class OptimizerHooks:
    """Probe mixin: the ``Optimizer.__init__`` and ``step`` hooks, optimizer names, OPTIMIZER frames."""

    def _init_optimizers(self) -> None:
        self._opts = {}  # id(optimizer) -> _Opt, in the order of their first step
        self._opt_count = 0
        self._opt_names = {}  # id(optimizer) -> (weakref, name found where it was built, or None)
        self._opt_owners = {}  # id(optimizer) -> weakref to the module whose `self.x = Optimizer(…)` built it
        self._optimizers = []  # weakrefs to every optimizer built (GradScaler state, clip ownership)
        self._optimizer_seen = False  # an Optimizer was constructed: steps are optimizer steps

    def _install_optimizers(self) -> None:
        probe = self
        Optimizer = torch.optim.Optimizer

        def opt_init(orig):
            @functools.wraps(orig)
            def __init__(self, *args, **kwargs):
                orig(self, *args, **kwargs)
                if forks.pid == probe.pid:
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
            if getattr(tls, "depth", 0) or probe.finished or forks.pid != probe.pid:
                if probe.end_reason == "step-limit" and forks.pid == probe.pid and not getattr(tls, "depth", 0):
                    probe._exit_after_limit()
                return orig(opt, *args, **kwargs)
            tls.depth = 1
            ctx = None
            try:
                try:
                    ctx = probe._run(probe._before_step, opt, args, kwargs)
                except Exception as e:  # noqa: BLE001
                    probe.warn("before optimizer.step", e)
                if ctx is not None and "closure_fn" in ctx:
                    # step(closure): the closure that measures its first evaluation (probe.py)
                    if args:
                        args = (ctx["closure_fn"],) + args[1:]
                    else:
                        kwargs = dict(kwargs, closure=ctx["closure_fn"])
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

    def _on_optimizer_built(self, opt, f) -> None:
        """Every optimizer as it is built: its name (the variable the user's code assigns it to, read
        from the bytecode after the call), and a switch away from counting backward passes."""
        try:
            # The frame that called the constructor (past the optimizer classes' own __init__ and
            # this probe's, all in this module): only there is the value assigned (not in the user's
            # frame that called a library which built it: `result = trainer.train()`).
            g = sys._getframe(1)
            while g is not None and (g.f_code.co_filename == __file__ or (
                    g.f_code.co_name == "__init__" and g.f_code.co_argcount
                    and g.f_locals.get(g.f_code.co_varnames[0]) is opt)):
                g = g.f_back
            name = _assigned_name(g, opt) if g is not None else None
            # `self.opt = Adam(self.parameters())` in a module's own __init__: the module, so that the
            # name can follow it (_optimizer_name: `net.layers.0.opt` where modules are renamed).
            owner = g.f_locals.get("self") if name is not None and name.startswith("self.") else None
            owner = weakref.ref(owner) if isinstance(owner, torch.nn.Module) else None
        except Exception:  # noqa: BLE001
            name, owner = None, None
        self._opt_names[id(opt)] = (weakref.ref(opt), name)
        if owner is not None:
            self._opt_owners[id(opt)] = owner
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
        owner = self._opt_owners.get(id(opt))
        m = owner() if owner is not None else None
        root = self._root_names.get(id(m)) if m is not None else None
        if name and root is not None and root[0]() is m and root[1]:
            name = root[1] + name[len("self"):]  # its module was given a name (_name_self_roots)
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
                self._name_self_roots()  # (its name may follow its module's: _optimizer_name)
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
