"""Gradient clipping hooks: the statistics a step reports are those of the gradients before clipping.

``clip_grad_norm_`` / ``clip_grad_value_`` (the module's and ``torch.nn.utils``' re-export, which is
what Lightning calls, inside its closure) and ``clip_grads_with_norm_`` (torch 2.6+) are wrapped: the wrapper computes the gradient statistics
of the parameters given before clipping; the step reports those (the norm the script actually
produced). A ``clip`` EVENT gives the threshold once. Clipping gradients a GradScaler still scales is
recognised: the statistics are divided by the scale and a ``warning`` EVENT says so.
"""
from __future__ import annotations

import functools

import torch

from . import forks, stats


# The leading arguments of each clip function that _before_clip reads, in their order.
_ARGS = {"clip_grad_norm_": ("parameters", "max_norm", "norm_type"), "clip_grad_value_": ("parameters", "clip_value"),
         "clip_grads_with_norm_": ("parameters", "max_norm", "total_norm")}


class ClipHooks:
    """Probe mixin: the clip hooks and the pre-clip statistics they keep for the step."""

    def _init_clip(self) -> None:
        self._preclip = {}  # id(param) -> grad stats tensor computed before clipping
        self._clip_reported = set()
        self._scaled_clip_warned = set()

    def _install_clip(self) -> None:
        probe = self
        import torch.nn.utils as nn_utils
        import torch.nn.utils.clip_grad as clip_mod

        def clip(kind):
            def factory(orig):
                @functools.wraps(orig)
                def clip_fn(*args, **kwargs):
                    if forks.pid == probe.pid and not probe.finished:
                        try:
                            args, kwargs = probe._run(probe._before_clip, kind, args, kwargs)
                        except Exception as e:  # noqa: BLE001
                            probe.warn("reading gradients before %s" % kind, e)
                    return orig(*args, **kwargs)
                return clip_fn
            return factory

        # Both the module and its re-export (`torch.nn.utils.clip_grad_norm_`, what Lightning and
        # `from torch.nn.utils import clip_grad_norm_` reach): each wrapper calls the original.
        # clip_grads_with_norm_ (torch 2.6+, public in torch.nn.utils only): the second half of
        # clip_grad_norm_, which a script calls with a total norm of its own (get_total_norm, or one
        # all-reduced over shards); clip_grad_norm_ calls the module's private name, not this wrapper.
        for kind in ("clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_"):
            for owner in (clip_mod, nn_utils):
                if getattr(owner, kind, None) is not None:
                    self._patch(owner, kind, clip(kind), dynamo=True)

    def _before_clip(self, kind, args, kwargs):
        """Statistics of the gradients about to be clipped; returns the call's arguments, with the
        parameters made a list (they may be a generator, which this consumes)."""
        names = _ARGS[kind]
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
            inv = 1.0 / scale
        # The first clip since the backward pass sees the gradients the script produced (a second
        # one, e.g. clip_grad_value_ after clip_grad_norm_, sees clipped ones). Not deferred: the clip
        # changes them in place next.
        todo = [p for p in params if p.grad is not None and id(p) not in self._preclip]
        # maxAbs where the coming step is a sampled one (as the optimizer that stepped last schedules it).
        rows, _ = stats.grad_stats_many([p.grad for p in todo], defer=False, with_max=self._next_sampled())
        for p, s in zip(todo, rows):
            self._preclip[id(p)] = stats.scale_row(s, inv) if inv is not None else s
        if kind == "clip_grad_norm_":
            key = (kind, float(threshold), float(call.get("norm_type", 2.0)))
            what = "clip_grad_norm_(max_norm=%g, norm_type=%g)" % key[1:]
        else:  # clip_grad_value_(clip_value=…), clip_grads_with_norm_(max_norm=…)
            key = (kind, float(threshold))
            what = "%s(%s=%g)" % (kind, names[1], key[1])
        if key not in self._clip_reported and len(self._clip_reported) < 10:
            self._clip_reported.add(key)
            self.send({"type": "event", "kind": "clip", "step": self.steps, "value": float(threshold),
                       "clipBy": "value" if kind == "clip_grad_value_" else "norm",
                       "message": "the script clips gradients with %s; GradScope reports the gradients before clipping" % what})
        if inv is not None and key not in self._scaled_clip_warned and len(self._scaled_clip_warned) < 10:
            self._scaled_clip_warned.add(key)
            self.send({"type": "event", "kind": "warning", "step": self.steps, "value": float(threshold) / scale,
                       "message": "%s was called on gradients still multiplied by the GradScaler's loss scale (%g): on the "
                                  "true gradients it clips at %g / %g = %.3g. Call scaler.unscale_(optimizer) before "
                                  "clipping. GradScope reports the unscaled gradients" % (
                                      what, scale, float(threshold), scale, float(threshold) / scale)})
        return args, kwargs
