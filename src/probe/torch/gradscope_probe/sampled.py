"""The sampled tier: the statistics measured on a schedule rather than on every step, and when.

Every step measures what costs one pass over the gradients: each gradient's norm (one multi-tensor
call) and its NaN/Inf counts (exact at no cost: a NaN or Inf entry makes the norm non-finite, and only
then are they counted, see stats.grad_stats_many). That is as cheap as a hand-written
``p.grad.norm()`` per parameter, without a sync per tensor.

The sampled tier adds what costs more passes:
- maxAbs (a second pass over the gradients, about as long as the norm's);
- paramNorm and updateNorm: the update needs a copy of every parameter before the step and both
  copies read after it, three passes over the whole model, about as much memory traffic as the
  gradient statistics and the optimizer's own update together (on a 2M-parameter MLP on one CPU
  thread, 1.9 ms of a 13 ms step).

It is measured on every step of an optimizer's first SAMPLED_DENSE_STEPS (the analysis reads the
first step's update to judge the initialisation, and the early steps to catch a learning rate that
overshoots), then every ``sampled_every`` steps, an interval tuned so the tier costs SAMPLED_BUDGET of
the step time on average (every step where it is that cheap). Steps in between report these three as
NaN, which the protocol defines as "not measured at this step" (docs/protocol.md): the detectors and
the panel skip them. A gradient that takes grad_stats' exact path (a NaN or Inf in it, an overflow, a
zero or tiny norm) has its maxAbs on every step.

GRADSCOPE_SAMPLED_EVERY=N fixes the interval (1: every statistic on every step, as before the tier).
"""
from __future__ import annotations

import math

SAMPLED_DENSE_STEPS = 10
# Average share of the step interval the sampled tier may take in automatic mode.
SAMPLED_BUDGET = 0.005
SAMPLED_EVERY_MAX = 100


class SampledTier:
    """Probe mixin: whether a step measures the sampled tier, and the automatic interval."""

    def _init_sampled(self, fixed: int = 0) -> None:
        """fixed: GRADSCOPE_SAMPLED_EVERY (read by __main__); 0 or less: the automatic interval."""
        fixed = int(fixed or 0)
        self.auto_sampled = fixed <= 0
        self.sampled_every = 1 if self.auto_sampled else fixed
        self._sampled_ms = 0.0  # the tier's cost on a step that measured it, smoothed
        self._grads_plain_ms = 0.0  # the gradient statistics' time on a step that did not, smoothed
        self._last_rec = None  # the optimizer record of the last step (clip hooks schedule by it)

    def _sampled_due(self, rec) -> bool:
        """Whether this step of `rec` measures the sampled tier (decided before the step: the
        parameters must be copied before it changes them). Counted in the optimizer's own steps."""
        n = rec.steps
        if not self.auto_sampled:
            return n % self.sampled_every == 0
        if n < SAMPLED_DENSE_STEPS:
            return True
        return rec.last_sampled is None or n - rec.last_sampled >= self.sampled_every

    def _next_sampled(self) -> bool:
        """Whether the coming step is a sampled one, asked before its optimizer is known (a clip): as
        the optimizer that stepped last schedules its next step; True before any step."""
        rec = self._last_rec
        return True if rec is None else self._sampled_due(rec)

    def _grads_time(self, sampled: bool, ms: float) -> float:
        """The sampled tier's share of the gradient statistics' time `ms` of this step (its maxAbs
        pass): the excess over the smoothed time of the steps without it."""
        if not sampled:
            self._grads_plain_ms = ms if not self._grads_plain_ms else 0.8 * self._grads_plain_ms + 0.2 * ms
            return 0.0
        return max(0.0, ms - self._grads_plain_ms) if self._grads_plain_ms else 0.0

    def _tune_sampled(self, cost_ms: float) -> None:
        """Automatic interval from the cost of a step that measured the tier (copies before the step,
        the second pass and the norms after) and the smoothed step interval (detail.py's)."""
        if not self.auto_sampled or cost_ms <= 0:
            return
        self._sampled_ms = cost_ms if not self._sampled_ms else 0.7 * self._sampled_ms + 0.3 * cost_ms
        if self._interval_ms <= 0:
            return
        every = math.ceil(self._sampled_ms / (SAMPLED_BUDGET * self._interval_ms))
        self.sampled_every = int(min(SAMPLED_EVERY_MAX, max(1, every)))
