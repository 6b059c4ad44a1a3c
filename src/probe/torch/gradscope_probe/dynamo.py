"""torch.compile: keeping TorchDynamo out of the probe's wrappers.

Dynamo would trace into the probe's wrappers (``torch.compile(opt.step)``, a compiled function that
calls ``opt.step()``), graph-break and fail each step. On the first ``torch.compile`` call the
wrappers are excluded from tracing, non-recursively (what they call, the optimizer's own ``step``,
stays compiled), and the probe's work inside them recursively. The wrappers that need it are the
ones installed with ``Probe._patch(..., dynamo=True)`` and the optimizers' ``step`` wrappers.
"""
from __future__ import annotations

import functools
import sys

import torch


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


class DynamoExclusion:
    """Probe mixin: the ``torch.compile`` hook and the exclusion of the wrappers from tracing."""

    def _init_dynamo(self) -> None:
        self._nodynamo = None  # fn -> fn, once torch.compile is used (see _exclude_from_dynamo)
        self._run = _call  # runs the probe's own work from a wrapper: outside dynamo once it matters
        self._dynamo_targets = []  # (owner, attr) of wrappers that may be reached from compiled code

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
                try:
                    probe._stop_inputs()  # inputs.py: its hooks would break the compiled graph
                except Exception as e:  # noqa: BLE001
                    probe.warn("removing the input-scale hooks before torch.compile", e)
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
