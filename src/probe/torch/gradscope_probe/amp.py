"""GradScaler (mixed precision) hooks: the loss reported unscaled, skipped steps, the loss scale.

The base ``GradScaler`` (torch.amp's in 2.x, torch.cuda.amp's in 1.13) is wrapped: ``scale`` (the
loss of the step is reported unscaled), ``step`` and ``update`` (skipped, overflow steps: each a
``skipped-step`` EVENT with the scale after back-off). The loss scale the gradients are still
multiplied by is what clipping.py divides the gradient statistics by.
"""
from __future__ import annotations

import functools
import math
import weakref

import torch

from . import forks


class ScalerHooks:
    """Probe mixin: the GradScaler hooks and what they record."""

    def _init_scaler(self) -> None:
        self._scaled = {}  # id(scaled loss) -> (weakref(scaled), unscaled)
        self._scalers = {}  # id(GradScaler) -> [weakref, scale() called since update()]
        self._skipped = 0  # optimizer steps GradScaler skipped
        self._skip_pending = None  # (scale before back-off) of a skipped step whose update() is due

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

        def after(hook, what, while_finished=False):
            """A wrapper factory: the method runs, then `hook(scaler, args, out, steps before)` in
            the probe (never raising into the script)."""
            def factory(orig):
                @functools.wraps(orig)
                def wrapper(self, *args, **kwargs):
                    before = probe.steps
                    out = orig(self, *args, **kwargs)
                    if forks.pid == probe.pid and (while_finished or not probe.finished):
                        try:
                            probe._run(hook, self, args, kwargs, out, before)
                        except Exception as e:  # noqa: BLE001
                            probe.warn(what, e)
                    return out
                return wrapper
            return factory

        self._patch(GradScaler, "scale", after(self._after_scale, "reading the scaled loss", while_finished=True), dynamo=True)
        self._patch(GradScaler, "step", after(self._after_scaler_step, "reading GradScaler.step"), dynamo=True)
        self._patch(GradScaler, "update", after(self._after_scaler_update, "reading GradScaler.update"), dynamo=True)

    def _after_scale(self, scaler, args, kwargs, out, _steps_before) -> None:
        outputs = args[0] if args else kwargs.get("outputs")
        self._scalers.setdefault(id(scaler), [weakref.ref(scaler), False])[1] = True
        if isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor) and out is not outputs and outputs.numel() == 1:
            self._scaled.clear()  # only the latest scaled loss matters
            self._scaled[id(out)] = (weakref.ref(out), outputs.detach())

    def _after_scaler_step(self, scaler, args, kwargs, _out, steps_before) -> None:
        optimizer = args[0] if args else kwargs.get("optimizer")
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

    def _after_scaler_update(self, scaler, _args, _kwargs, _out, _steps_before) -> None:
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

    def _step_scale(self, opt):
        """For an optimizer that unscales inside its own step (fused SGD/Adam/AdamW:
        ``_step_supports_amp_scaling``), GradScaler.step does not unscale the gradients: it gives the
        optimizer ``grad_scale`` and ``found_inf``, and calls its step even on an overflow, which the
        optimizer then skips. (the factor that unscales the gradients as they are now, or 1.0 where
        ``grad_scale`` is unset: unscaled already; False where found_inf says the step is skipped: not
        measured, GradScaler's own step reports it, as for any other optimizer: found_inf is set for
        these optimizers whether or not the script called unscale_ first.)"""
        found = getattr(opt, "found_inf", None)
        if found is not None and float(found) > 0:
            return False
        scale = getattr(opt, "grad_scale", None)
        if scale is None:
            return 1.0
        s = float(scale)
        return 1.0 / s if s > 0 and math.isfinite(s) else 1.0

    def _unscaled(self, t):
        hit = self._scaled.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        return t
