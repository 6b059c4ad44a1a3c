"""Gradients changed in place between backward() and optimizer.step() by code GradScope does not hook.

A clip written by hand (``g.mul_(max_norm / total)``: fairseq's and Megatron's own, adaptive gradient
clipping), a manual all-reduce (``dist.all_reduce(p.grad)``, the averaging loop of torch's
distributed tutorial) or a rescale changes the gradients after the backward pass made them and
before the step reads them. The probe reads them at the step, as the step applies them: where the
script clips by hand, the norms it shows are capped at the threshold and an explosion behind the clip
does not show. torch's clip functions are hooked (clipping.py) and GradScaler's scale is known
(amp.py); anything else is found here and said, since the probe cannot tell a clip from an average.

How: before a step that measures the sampled tier (sampled.py's schedule, as the optimizer that
stepped last sets it), the end of each backward pass that carries a loss takes the norms of every
optimizer's gradients (one multi-tensor pass; off the CPU left on the device, read after the step's
own copy). The step's general path compares its measurement of the same gradient objects with them.
A norm that moved by more than CHANGE_REL of itself (the two reductions may run in another order:
~1e-7) is a change; one ``warning`` EVENT says where and by how much, once per run. Not checked:
steps with a closure (their backward passes run inside the step, LBFGS's several), steps while a
GradScaler scales the loss (unscale_ divides in place), backward mode (no optimizer).
"""
from __future__ import annotations

import math
import time

import torch

from . import stats, wire

CHANGE_REL = 1e-4


class InPlaceCheck:
    """Probe mixin: the norms at the end of the backward pass, compared with the step's own."""

    def _init_inplace(self) -> None:
        self._bw_marks = None  # id(param) -> (param, its gradient, its norm: a float or a 0-d device tensor)
        self._mark_next = False  # set by _on_backward: the wrapper marks after this backward pass
        self._inplace_reported = False
        self._mark_ms = 0.0  # time of the marks since the last sampled step: part of that tier's cost

    def _mark_due(self) -> bool:
        """Whether the backward pass about to run (one with a loss) is to be marked: an optimizer
        steps, the coming step is a sampled one, no GradScaler is scaling, nothing said yet."""
        if self._inplace_reported or not self._optimizer_seen or not self._next_sampled():
            return False
        return not any(flag for _ref, flag in self._scalers.values())

    def _mark_after_backward(self) -> None:
        """After a marked backward pass: the norms of the gradients of every optimizer's parameters
        (the last pass before the step wins: accumulation)."""
        t0 = time.perf_counter()
        seen = set()
        pairs = []
        for ref in self._optimizers:
            opt = ref()
            if opt is None:
                continue
            for group in opt.param_groups:
                for p in group["params"]:
                    g = getattr(p, "grad", None)
                    if g is not None and id(p) not in seen:
                        seen.add(id(p))
                        pairs.append((p, g))
        if not pairs:
            self._bw_marks = None
            return
        # The step's own measurement (DTensor shards, sparse, half precision as it measures them);
        # rows off the CPU stay on their device, unchecked: a non-finite norm is not compared.
        rows, _unchecked = stats.grad_stats_many([g for _, g in pairs], defer=True, with_max=False)
        self._bw_marks = {id(p): (p, g, r) for (p, g), r in zip(pairs, rows)}
        self._mark_ms += (time.perf_counter() - t0) * 1e3

    def _check_inplace(self, step: int, grads, rows, ks) -> None:
        """After a sampled step's measurement (general path; rows read): says once where the
        gradients it measured differ from what the backward pass left (see the module)."""
        marks, self._bw_marks = self._bw_marks, None
        if marks is None or self._inplace_reported:
            return
        same = []
        for (p, _s, g), row, k in zip(grads, rows, ks):
            m = marks.get(id(p))
            if m is not None and m[0] is p and m[1] is g:  # (else a new gradient object: set, not changed)
                same.append((k, m[2], row[wire.ROW_NORM]))
        changed = []
        sq_before = sq_after = 0.0
        for (k, _m, a), before in zip(same, _norms_read([m for _, m, _ in same])):
            after = float(a)
            if not (math.isfinite(before) and math.isfinite(after)):
                continue  # (non-finite: the non-finite report's business)
            sq_before += before * before
            sq_after += after * after
            if abs(after - before) > CHANGE_REL * max(abs(before), abs(after)):
                changed.append((k, before, after))
        if not changed:
            return
        self._inplace_reported = True
        names = ", ".join(k.info["name"] for k, _, _ in changed[:3]) + (", …" if len(changed) > 3 else "")
        self.send({"type": "event", "kind": "warning", "step": step, "tensorId": changed[0][0].id,
                   "value": math.sqrt(sq_before),
                   "message": "the gradients of %d tensor(s) (%s) were changed in place between backward() and "
                              "optimizer.step() by code GradScope does not hook (a clip written by hand, an all-reduce, "
                              "a rescale): global norm %.4g after backward(), %.4g at the step. GradScope shows them as "
                              "the step applies them, so a clip written by hand hides how large they were "
                              "(torch.nn.utils.clip_grad_norm_ is read before it clips)" % (
                                  len(changed), names, math.sqrt(sq_before), math.sqrt(sq_after))})


def _norms_read(rows) -> list:
    """The norms of grad_stats_many rows as floats: a list as it is, the rows on a device read with
    one copy per device (after the step's own copy: nothing left to wait for)."""
    out = [None] * len(rows)
    on = {}
    for i, r in enumerate(rows):
        if type(r) is list:
            out[i] = r[wire.ROW_NORM]
        else:
            on.setdefault(r.device, []).append(i)
    for idx in on.values():
        for i, v in zip(idx, torch.stack([rows[i][wire.ROW_NORM] for i in idx]).tolist()):
            out[i] = v
    return out
