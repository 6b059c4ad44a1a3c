"""Locate mode (GRADSCOPE_LOCATE_NAN=1): find the operation that made the first non-finite value.

Used by the host's bounded re-run (src/process/locateNan.ts), never in a normal run: it checks every
torch operation, which costs several times a step.

Two checks, the first to fire wins:
- forward: a torch function (``torch.log``, ``Tensor.sqrt``, ``/``) whose floating output holds NaN
  or ±Inf while all its floating inputs were finite (``log`` of 0 → -inf);
- backward: an autograd node whose computed input gradients hold NaN or ±Inf while the gradients it
  received were finite (``SqrtBackward0`` of sqrt(0) → inf). The node's forward site is recorded
  when the forward op ran, so the report names the user's forward line, as anomaly mode does.
The framework's own checking is on as well (``set_detect_anomaly(True, check_nan=True)``): its
error stops the run at the first NaN of the backward pass, and its "Traceback of forward call"
warning is on stderr for a person to read. Our node hooks run before its NaN check, so a culprit
found by either check is already reported when anomaly mode raises.

The report is one ``info`` EVENT whose message is ``LOCATE_PREFIX`` + JSON
``{"op", "phase", "file", "line", "column", "step"}``; the host's parser is
src/core/analysis/nanCause.ts.
"""
from __future__ import annotations

import json
import os
import sys

from . import sources

LOCATE_PREFIX = "gradscope-locate-nan: "


def _floats(x, out):
    import torch

    if isinstance(x, torch.Tensor):
        if x.is_floating_point() or x.is_complex():
            out.append(x)
    elif isinstance(x, (list, tuple)):
        for y in x:
            _floats(y, out)
    elif isinstance(x, dict):
        for y in x.values():
            _floats(y, out)
    return out


_PROBE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _op_site(depth=3):
    """The user's line that called the op being checked, or None when the probe itself called it:
    its statistics must not be mistaken for the user's ops, but an op of the user's optimizer, which
    runs inside the probe's step wrapper, is the user's (its caller is torch.optim, not the probe)."""
    try:
        f = sys._getframe(depth)  # _op_site ← after_op ← __torch_function__ ← the caller (depth 3)
    except ValueError:
        return None
    if f is not None and f.f_code.co_filename.startswith(_PROBE_DIR):
        return None
    while f is not None:
        if sources.is_user_file(f.f_code.co_filename):
            return sources.frame_location(f)
        f = f.f_back
    return None


def _all_finite(ts) -> bool:
    import torch

    for t in ts:
        try:
            if t.numel() and not bool(torch.isfinite(t).all()):
                return False
        except Exception:  # noqa: BLE001 - meta/sparse tensors: not ours to judge
            pass
    return True


class Locator:
    def __init__(self, send, steps_of=lambda: None):
        self._send = send
        self._steps_of = steps_of
        self.found = None
        self._busy = False
        self.mode = None

    def report(self, op: str, phase: str, site) -> None:
        if self.found is not None or site is None:
            return
        self.found = dict(site, op=op, phase=phase)
        step = self._steps_of()
        if step is not None:
            self.found["step"] = step
        try:
            self._send({"type": "event", "kind": "info", "message": LOCATE_PREFIX + json.dumps(self.found)})
        except Exception:  # noqa: BLE001
            pass
        try:
            sys.stderr.write("[gradscope] first non-finite value: %s (%s) at %s:%d\n" % (op, phase, site["file"], site["line"]))
        except Exception:  # noqa: BLE001
            pass

    def after_op(self, func, args, kwargs, out) -> None:
        if self.found is not None or self._busy:
            return
        self._busy = True  # our own isfinite calls must not be checked in turn
        try:
            outs = _floats(out, [])
            if not outs:
                return
            if _all_finite(outs):
                self._hook_nodes(func, outs)
                return
            ins = _floats([args, kwargs], [])
            # From finite inputs only; an op without floating inputs (torch.empty, torch.tensor(inf))
            # creates values rather than computing them: not the kind of culprit this looks for.
            if ins and _all_finite(ins):
                self.report(_op_name(func), "forward", _op_site())
        finally:
            self._busy = False

    def _hook_nodes(self, func, outs) -> None:
        site = None
        for t in outs:
            fn = getattr(t, "grad_fn", None)
            if fn is None or getattr(fn, "_gs_hooked", False):
                continue
            if site is None:
                site = _op_site(4)  # (one more frame: _hook_nodes)
                if site is None:
                    return
            try:
                fn.register_hook(self._node_hook(fn, site))
                fn._gs_hooked = True  # noqa: SLF001
            except Exception:  # noqa: BLE001 - some nodes take no attributes or hooks
                pass

    def _node_hook(self, fn, site):
        name = type(fn).__name__

        def hook(grad_inputs, grad_outputs):
            if self.found is not None:
                return None
            gi = [g for g in grad_inputs if g is not None]
            go = [g for g in grad_outputs if g is not None]
            if not _all_finite(gi) and _all_finite(go):
                self.report(name, "backward", site)
            return None

        return hook


def _op_name(func) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return name.strip("_") if name.startswith("__") else name


def enable(send, steps_of=lambda: None):
    """Turns locate mode on for the rest of the process; returns the Locator (or None if it could not)."""
    import torch

    loc = Locator(send, steps_of)
    try:
        torch.autograd.set_detect_anomaly(True, check_nan=True)
    except TypeError:  # torch 1.x: no check_nan (and it checks NaN anyway)
        torch.autograd.set_detect_anomaly(True)
    mode_cls = getattr(torch.overrides, "TorchFunctionMode", None)
    if mode_cls is None:
        sys.stderr.write("[gradscope] warning: this torch has no TorchFunctionMode: only anomaly mode's own check is on\n")
        return loc

    class _Check(mode_cls):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            try:
                loc.after_op(func, args, kwargs, out)
            except Exception:  # noqa: BLE001 - the probe never breaks the script
                pass
            return out

    mode = _Check()
    mode.__enter__()  # for the rest of the process (the re-run is short and ends with the script)
    loc.mode = mode
    return loc


def disable(loc) -> None:
    """Undoes enable() (tests; the re-run itself keeps it on to the end)."""
    import torch

    mode = getattr(loc, "mode", None)
    if mode is not None:
        mode.__exit__(None, None, None)
        loc.mode = None
    torch.autograd.set_detect_anomaly(False)
