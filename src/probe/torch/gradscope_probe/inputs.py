"""The scale of the model's input: RMS and max |x| of what the first parameterised layer receives.

Un-normalised features (raw prices, pixel values 0-255, sensor counts in the thousands) make the first
layer's gradient dW = delta x^T scale with x, and its curvature with x^2: a learning rate that suits
unit-scale inputs is then orders of magnitude too large for that layer, and the run explodes. The
analysis (src/core/analysis/inputScale.ts) can only say "normalise the inputs" with evidence if the
probe reports the input's scale, which no gradient statistic shows.

How: a global forward pre-hook (``register_module_forward_pre_hook``) waits for the first module that
owns a trainable parameter directly to run a forward pass with autograd on; that module is the first
layer (containers such as ``nn.Sequential`` own none; evaluation passes under ``no_grad`` are skipped).
The global hook is then removed, so every later forward pays nothing for it, and a hook on that module
alone reads its input on a few forward passes (the first three, then one in every INPUT_EVERY, at most
INPUT_MAX_EVENTS in all): two reductions and one device read each time. An integer input (token ids
into an embedding) has no scale to judge: nothing is reported. Each reading is an ``input-scale`` EVENT
(``value``: RMS, ``max``: max |x|, ``tensorId``: the layer's first tensor once described). Under
torch.compile the hooks step aside (see _compiling).
"""
from __future__ import annotations

import math
import sys
import weakref

import torch

from . import forks

INPUT_DENSE = 3
INPUT_EVERY = 50
INPUT_MAX_EVENTS = 20


def _compiling() -> bool:
    """Whether torch.compile is tracing this call: the hooks then do nothing (a device read would
    break the graph, and a counter read in it would recompile it); compiled models report no input
    scale."""
    f = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if f is None:
        f = getattr(sys.modules.get("torch._dynamo"), "is_compiling", None)
    return bool(f()) if f is not None else False


def _first_tensor(args):
    for a in args if isinstance(args, (tuple, list)) else (args,):
        if isinstance(a, torch.Tensor):
            return a
    return None


class InputScale:
    """Probe mixin: finds the first parameterised layer and reports the scale of its input."""

    def _init_inputs(self) -> None:
        self._input_global = None  # handle of the global pre-hook, until the first layer is found
        self._input_handle = None  # handle of the first layer's own pre-hook
        self._input_module = None  # weakref to the first layer
        self._input_forwards = 0
        self._input_reports = 0

    def _install_inputs(self) -> None:
        from torch.nn.modules import module as module_mod

        register = getattr(module_mod, "register_module_forward_pre_hook", None)
        if register is None:  # torch older than 1.9: no global hook, no input scale
            return
        if self._input_global is not None or self._input_handle is not None:
            return  # (installed already: a second global hook would add a layer hook at every forward)
        probe = weakref.ref(self)

        def find_first_layer(m, args):
            p = probe()
            if p is None or p.finished or forks.pid != p.pid or _compiling():
                return None
            if not torch.is_grad_enabled():
                return None
            try:
                p._on_first_forward(m, args)
            except Exception as e:  # noqa: BLE001
                p._stop_looking()
                p.warn("finding the model's first layer", e)
            return None

        self._input_global = register(find_first_layer)

    def _stop_looking(self) -> None:
        h, self._input_global = self._input_global, None
        if h is not None:
            h.remove()

    def _stop_inputs(self) -> None:
        """Removes both hooks for good: called before torch.compile (dynamo would trace them and
        break the graph around them even though they return at once: 2 graph breaks more measured in
        a compiled model + optimizer step). Compiled runs report no input scale."""
        self._stop_looking()
        h, self._input_handle = self._input_handle, None
        if h is not None:
            h.remove()

    def _on_first_forward(self, m, args) -> None:
        if not any(p.requires_grad for p in m.parameters(recurse=False)):
            return  # a container, a frozen layer or a parameter-free one (ReLU, a loss)
        self._stop_looking()
        x = _first_tensor(args)
        if x is None or not x.is_floating_point():
            return  # token ids into an embedding, or a module called with no tensor: no scale to read
        probe = weakref.ref(self)

        def on_input(mod, a):
            p = probe()
            if p is None or p.finished or forks.pid != p.pid or _compiling():
                return None
            try:
                p._read_input(mod, a)
            except Exception as e:  # noqa: BLE001
                p.warn("reading the model's input", e)
            return None

        self._input_module = weakref.ref(m)
        self._input_handle = m.register_forward_pre_hook(on_input)
        self._read_input(m, args)

    def _read_input(self, m, args) -> None:
        if not torch.is_grad_enabled():
            return  # evaluation passes: not what the gradients were computed from
        n = self._input_forwards
        self._input_forwards += 1
        if self._input_reports >= INPUT_MAX_EVENTS or not (n < INPUT_DENSE or n % INPUT_EVERY == 0):
            if self._input_reports >= INPUT_MAX_EVENTS and self._input_handle is not None:
                self._input_handle.remove()
                self._input_handle = None
            return
        x = _first_tensor(args)
        if x is None or not x.is_floating_point() or x.numel() == 0:
            return
        with torch.no_grad():
            xd = x.detach().float()
            mx, rms = torch.stack([xd.abs().max(), xd.pow(2).mean().sqrt()]).tolist()
        if not (math.isfinite(mx) and math.isfinite(rms)):
            return  # a non-finite input is the non-finite detector's business
        self._input_reports += 1
        tid = None
        for prm in m.parameters(recurse=False):
            k = self._known.get(id(prm))
            if k is not None:
                tid = k.id if tid is None else min(tid, k.id)
        name = type(m).__name__
        msg = {"type": "event", "kind": "input-scale", "step": self.steps, "value": float(rms), "max": float(mx),
               "message": "input of the first layer (%s) at step %d: RMS %.4g, max |x| %.4g, shape %s" % (
                   name, self.steps, rms, mx, list(x.shape))}
        if tid is not None:
            msg["tensorId"] = tid
        self.send(msg)
