"""The ``torch.autograd.backward`` hook: the step's loss, and backward passes counted as steps (and the
``torch.autograd.grad`` hook: the loss of a gradient the script computes with it and applies itself).

``torch.autograd.backward`` (what ``Tensor.backward`` calls) is wrapped: it adds the scalar being
back-propagated to the step's loss (the loss of a step with accumulation is the sum over its
micro-batches; a loss a GradScaler scaled is reported unscaled, see amp.py). When the script never
builds a torch.optim optimizer, each backward pass is a step (see ``_after_backward``).
"""
from __future__ import annotations

import functools
import sys
import time

import torch

from . import forks, sources, stats


def params_moved(before, now) -> bool:
    """Whether the parameters changed in place between two _params_mark()s: read from the same
    tensors, with other versions. Unknown (no mark, or marks of two optimizers): False, so backward
    passes add up as accumulation."""
    return before is not None and now is not None and before[0] == now[0] and before != now


class BackwardHook:
    """Probe mixin: the loss of each step, and backward mode (backward passes as steps)."""

    def _init_backward(self) -> None:
        self._pending_loss = None  # the loss of the step in progress (its backward passes so far)
        self._loss_mark = None  # _params_mark() at the step's first backward pass
        self._bw_opt = None  # _Opt of the backward passes, once counted
        self._bw_pending = None  # backward mode: ctx of the last backward pass, its STEP not yet sent

    def _install_backward(self) -> None:
        probe = self

        def backward(orig):
            @functools.wraps(orig)
            def wrapper(tensors, *args, **kwargs):
                loss = None
                mark = False
                if forks.pid == probe.pid and not probe.finished:
                    try:
                        loss = probe._run(probe._on_backward, tensors, args[0] if args else kwargs.get("grad_tensors"))
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading the loss", e)
                    # (taken here: a backward pass inside this one, a reentrant checkpoint's, marks nothing)
                    mark, probe._mark_next = probe._mark_next, False
                    if not mark:
                        # The gradients this pass makes are the script's, not a change the step must be
                        # told of: marks of an earlier pass are stale (a GAN's D pass marked for G's
                        # step, then G's gradients zeroed in place and made again, inplace.py).
                        probe._bw_marks = None
                    if loss is not None:
                        probe._run(probe._check_limit)
                elif probe.end_reason == "step-limit" and forks.pid == probe.pid and not probe._optimizer_seen:
                    probe._exit_after_limit()
                out = orig(tensors, *args, **kwargs)
                if (loss is not None or mark) and not probe.finished and forks.pid == probe.pid:
                    try:
                        if mark:
                            probe._run(probe._mark_after_backward)  # (inplace.py)
                        elif not probe._optimizer_seen:
                            probe._run(probe._after_backward, loss)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("after a backward pass", e)
                return out
            return wrapper

        self._patch(torch.autograd, "backward", backward, dynamo=True)

        def grad(orig):
            @functools.wraps(orig)
            def wrapper(outputs, inputs, *args, **kwargs):
                if not isinstance(inputs, (torch.Tensor, list, tuple)) and hasattr(inputs, "__next__"):
                    inputs = tuple(inputs)  # (model.parameters(): read here, and torch reads it again)
                scalar = None
                if forks.pid == probe.pid and not probe.finished and probe._optimizer_seen:
                    try:
                        scalar = probe._run(probe._grad_loss, outputs, inputs, args, kwargs)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading the loss of torch.autograd.grad", e)
                out = orig(outputs, inputs, *args, **kwargs)
                if scalar is not None:
                    try:
                        probe._run(probe._add_loss, scalar)  # (once it gave gradients: not on an error)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("reading the loss of torch.autograd.grad", e)
                return out
            return wrapper

        self._patch(torch.autograd, "grad", grad, dynamo=True)

    def _on_backward(self, tensors, grad_tensors=None):
        """Before a backward pass: adds its scalar (unscaled) to the loss of the step in progress.
        Backward mode: sends the previous backward pass's STEP; returns (scalar, leaves) for after."""
        self._preclip.clear()  # new gradients: what a clip saw before is stale
        t = tensors
        if isinstance(t, (list, tuple)) and len(t) == 1:
            t = t[0]
        if isinstance(t, torch.Tensor):
            if t.numel() != 1:
                return None  # (a non-scalar output and its gradient: no loss to read)
            scalar = self._unscaled(t).detach()
            roots = [t]
        else:
            got = self._losses_of(t, grad_tensors)
            if got is None:
                return None
            scalar, roots = got
        self._add_loss(scalar)
        if self._optimizer_seen:
            self._mark_next = self._mark_due()
            return None
        self._finish_backward_step()
        return scalar, self._leaves_of(roots)

    def _add_loss(self, scalar) -> None:
        """Adds the scalar of a backward pass (or of a torch.autograd.grad call) to the loss of the
        step in progress."""
        mark = self._params_mark()
        # The step's first backward pass, or one after the parameters moved in place since then (SAM's
        # first_step goes to w+e before its second one): not accumulation but a new evaluation, whose
        # loss is the one of the gradient the step applies.
        if self._pending_loss is None or params_moved(self._loss_mark, mark):
            self._loss_mark = mark
            self._pending_loss = scalar
        else:
            self._pending_loss = self._pending_loss + scalar

    def _grad_loss(self, outputs, inputs, args, kwargs):
        """The loss of ``torch.autograd.grad(loss, params)`` where the script then sets ``p.grad`` itself
        and steps (a functional loop, meta-learning's outer step): the scalar(s) of `outputs`, unscaled
        and weighted by grad_outputs as a backward pass's, when `inputs` hold a parameter some optimizer
        trains and no graph is kept for a higher derivative. None for the other uses, which are not the
        step's objective: a gradient penalty (WGAN-GP, R1: create_graph=True, with respect to the
        inputs), an adversarial example's gradient (FGSM, PGD: with respect to the inputs), a MAML inner
        step (create_graph=True)."""
        create_graph = kwargs.get("create_graph", args[2] if len(args) > 2 else False)
        if create_graph:
            return None
        outs = [outputs] if isinstance(outputs, torch.Tensor) else outputs
        if not isinstance(outs, (list, tuple)) or not outs or not all(isinstance(t, torch.Tensor) and t.numel() == 1 for t in outs):
            return None
        ins = [inputs] if isinstance(inputs, torch.Tensor) else inputs
        if not isinstance(ins, (list, tuple)):
            return None  # (a GradientEdge)
        trained = {id(p) for ref in self._optimizers if ref() is not None
                   for g in ref().param_groups for p in g["params"]}
        if not any(id(t) in trained for t in ins if isinstance(t, torch.Tensor)):
            return None
        w = kwargs.get("grad_outputs", args[0] if args else None)
        if isinstance(w, torch.Tensor):
            w = [w]
        got = self._losses_of(list(outs), w)
        return None if got is None else got[0]

    def _losses_of(self, ts, weights):
        """The loss of ``torch.autograd.backward([l1, l2, …], grad_tensors)``, several scalars at once
        (multi-task losses): the sum of the (unscaled) scalars, each times its weight where
        grad_tensors gives one, which is the objective whose gradient the pass computes; with its
        roots. None where it is not that (a non-scalar, a weight that is not one number)."""
        if not isinstance(ts, (list, tuple)) or not ts or not all(isinstance(x, torch.Tensor) and x.numel() == 1 for x in ts):
            return None
        if weights is None:
            weights = [None] * len(ts)
        elif isinstance(weights, torch.Tensor) or not isinstance(weights, (list, tuple)) or len(weights) != len(ts):
            return None
        total = None
        for x, w in zip(ts, weights):
            v = self._unscaled(x).detach().reshape(())
            if w is not None:
                if not (isinstance(w, torch.Tensor) and w.numel() == 1):
                    return None
                v = v * w.detach().reshape(()).to(v.dtype)
            total = v if total is None else total + v.to(total.device)
        return total, list(ts)

    def _params_mark(self):
        """The version counters of the first and the last parameter of the last step's optimizer (or of
        the optimizer built last, before any step): they change when the parameters are changed in
        place (an optimizer's update, SAM's perturbation), not when gradients accumulate. Two tensors,
        not all: a per-step cost that does not grow with the model. (which, first, last): `which`
        names where they were read, since marks read from two optimizers say nothing (params_moved).
        None where there is none."""
        try:
            rec = self._last_rec
            ks = rec.knowns if rec is not None else None
            if ks:
                which = rec
                a, b = ks[0].ref(), ks[-1].ref()
            else:
                which = self._optimizers[-1]() if self._optimizers else None
                groups = [g["params"] for g in which.param_groups if g["params"]] if which is not None else None
                if not groups:
                    return None
                a, b = groups[0][0], groups[-1][-1]
            return (id(which), a._version if a is not None else -1, b._version if b is not None else -1)
        except Exception:  # noqa: BLE001 - a mark is an aid: without one, backward passes add up
            return None

    def _leaves_of(self, roots) -> list:
        """The leaf tensors a backward pass from the tensors `roots` accumulates gradients into
        (AccumulateGrad nodes of their graphs), in the order the script built their modules where known."""
        out = []
        seen = {}  # id -> node: held, as the Python objects of graph nodes are made on access
        stack = [t.grad_fn for t in reversed(roots) if t.grad_fn is not None]
        if not stack:
            return []
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
        scalar, leaves = loss
        if self._bw_opt is None and not leaves:
            return
        t_start = time.perf_counter()
        if self._bw_opt is None:
            self.send({"type": "event", "kind": "info", "step": self.steps, "message":
                       "the script built no torch.optim optimizer: GradScope counts each backward pass as a step "
                       "(the update norm is the change of the parameters until the next backward pass)"})
        rec = self._opt_rec(None)
        detail = self._detail_due(rec)
        sampled = self._sampled_due(rec)
        self._last_rec = rec
        with torch.no_grad():
            have = [p for p in leaves if p.grad is not None]
            # Not deferred: the gradients may be zeroed in place before the STEP goes out.
            rows, _ = stats.grad_stats_many([p.grad for p in have], defer=False, with_max=sampled)
            # The gradient itself may be zeroed in place before the STEP goes out: copy it on detail steps.
            grads = [(p, s, stats.local(p.grad).detach().clone() if detail else None) for p, s in zip(have, rows)]
            snaps = {}
            sampled_ms = 0.0
            if sampled:
                t_w = time.perf_counter()
                snaps = self._snapshot_all(leaves)
                sampled_ms = (time.perf_counter() - t_w) * 1e3
        self._pending_loss = None
        self._bw_pending = {"opt": None, "closure": False, "params": leaves, "grads": grads, "unchecked": (),
                            "loss": scalar, "t_start": t_start, "snapshots": snaps,
                            "detail": detail, "sampled": sampled, "sampled_ms": sampled_ms,
                            "probe_ms": (time.perf_counter() - t_start) * 1e3}

    def _finish_backward_step(self) -> None:
        ctx, self._bw_pending = self._bw_pending, None
        if ctx is None:
            return
        try:
            self._after_step(ctx, None)
        except Exception as e:  # noqa: BLE001
            self.warn("after a backward pass", e)
