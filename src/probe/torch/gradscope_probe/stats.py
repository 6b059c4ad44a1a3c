"""Gradient statistics computed with torch ops on the tensor's own device, without syncing.

Every function returns a 1-D float64 tensor on the input's device; the probe concatenates the
results of a whole step and copies them to the host once. Definitions follow docs/protocol.md:
NaN and ±Inf are counted and kept out of every other statistic; norms are overflow-safe
(m·‖x/m‖ with m = max|x|).

On the CPU, where reading a scalar costs nothing, the common all-finite case takes a fast path
(one min/max pass and one norm pass, no full-size temporaries) and the exclusion work is done only
for tensors that do hold NaN/Inf. Elsewhere (CUDA) the branch-free path runs, so nothing syncs.

The detail tier's all-finite CPU path bins |g| by decade from the float's bits (exponent → table
of the decade and of the one power of ten inside that binary octave, one integer comparison), which
gives exactly the bins of a comparison against the power-of-ten edges; its thumbnail cell sums use
index_add_ rather than a BLAS product, so the probe's background thread never enters (and never
waits on) the BLAS thread pool the training uses.
"""
from __future__ import annotations

import math
import threading
from typing import List

import torch

from . import wire

HIST_BINS = 32
HIST_LO = -20.0  # log10 |g| at the left edge of bin 0: one decade per bin
HIST_HI = 12.0
THUMB_MAX = 32
STEP_STATS = wire.GRAD_ROW_LENGTH  # a gradient's row: norm, maxAbs, nanCount, infCount (wire.ROW_*)
F64 = torch.float64


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP2 / tensor parallel): its own ops would reshape by sharding
    propagation, which fails or communicates; statistics are taken on the shard this rank holds.
    Any other tensor as it is."""
    to_local = getattr(t, "to_local", None)
    if to_local is not None and type(t).__name__ == "DTensor":
        return to_local()
    return t


def _work(g: torch.Tensor) -> torch.Tensor:
    """The values to measure: dense, real, at least float32, flat."""
    g = local(g).detach()
    if g.is_sparse:
        g = g.coalesce().values()
    if g.is_complex():
        g = torch.view_as_real(g)
    if g.dtype not in (torch.float32, torch.float64):
        g = g.float()
    return g.reshape(-1)


def _scaled_norm(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """m·‖x/m‖ (m ≥ 0 a 0-d tensor); 0 when m is 0."""
    s = torch.where(m > 0, m, torch.ones_like(m))
    return (torch.linalg.vector_norm(x / s) * s).to(F64)


def grad_stats(g: torch.Tensor) -> torch.Tensor:
    """[norm, maxAbs, nanCount, infCount] of a gradient, float64 on its device."""
    with torch.no_grad():
        x = _work(g)
        if x.numel() == 0:
            return torch.zeros(STEP_STATS, dtype=F64, device=x.device)
        if x.device.type == "cpu":
            mn, mx = torch.aminmax(x)
            lo, hi = float(mn), float(mx)
            if math.isfinite(lo) and math.isfinite(hi):
                m = max(-lo, hi)
                norm = float(torch.linalg.vector_norm(x))
                if not math.isfinite(norm) or (norm == 0.0 and m > 0.0):
                    norm = float(_scaled_norm(x, torch.tensor(m, dtype=x.dtype)))
                return torch.tensor([norm, m, 0.0, 0.0], dtype=F64)
        nan = torch.isnan(x).sum()
        inf = torch.isinf(x).sum()
        xf = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        mn, mx = torch.aminmax(xf)
        m = torch.maximum(-mn, mx)
        return torch.stack([_scaled_norm(xf, m), m.to(F64), nan.to(F64), inf.to(F64)])


_STRIDED = torch.strided
_FAST_DTYPES = (torch.float32, torch.float64)
_NAN = float("nan")
_INF = float("inf")


def _fast(x: torch.Tensor) -> bool:
    """Whether a gradient/parameter can go through the multi-tensor path as it is: dense, strided,
    float32/float64, not empty (anything else takes the one-tensor path, which converts it)."""
    return x.layout == torch.strided and x.dtype in (torch.float32, torch.float64) and x.numel() > 0


_foreach_norm = getattr(torch, "_foreach_norm", None)
# Grad mode switched by its C calls on the every-step pass: `with torch.no_grad()` builds objects and
# makes several Python calls, which right after backward() (cold caches) took 17 us of the CNN's 6.6 ms
# step, against 4 us this way (MODEL=cnn bench/torch_probe_step.py reduce, medians of ~500 steps).
_grad_enabled = torch.is_grad_enabled
_set_grad_enabled = getattr(torch._C, "_set_grad_enabled", None)


def _norms(xs: list) -> list:
    """L2 norms of same-device tensors as a list of 0-d tensors: one multi-tensor call where torch has
    it (1.13+), else one call per tensor. Not overflow-safe: callers check the result."""
    if _foreach_norm is not None:
        try:
            return list(_foreach_norm(xs))
        except (RuntimeError, TypeError):  # e.g. a tensor subclass the fused kernel refuses
            pass
    return [torch.linalg.vector_norm(x) for x in xs]


# On the CPU a long tensor's norm is taken by rows: the norms of its rows of LONG_ROW elements (one
# reduction, threaded over the rows), then the norm of those in float64. torch's norm kernel sums a
# whole tensor on one thread into float32 accumulators, which stop taking small squares once their
# sums are large: a 2.8M-element decoder gradient of Lightning's transformer example read rel.
# -3.7e-4 below its float64 norm (a BLAS dot product -5.7e-5), a 25M-element one -1.4e-3; by rows
# both read within 1e-8. By rows is also faster with 2 threads (that gradient 150 µs against 298,
# 25M elements 2.7 ms against 4.6) and as fast with 1 (305 against 299, 3.6 ms against 3.8; torch
# 2.13; on 1.13 with 2 threads 184 against 396 µs). Its three calls cost ~10 µs more than the norm's
# one, so tensors below LONG_MIN_NUMEL keep the multi-tensor norm: its error there is ≤ ~1e-6 on
# random values, but 1.6e-5 on 256K elements of that decoder gradient (a few rows hold most of it).
LONG_MIN_NUMEL = 262144
LONG_ROW = 1024
_vector_norm = torch.linalg.vector_norm


def _long(x: torch.Tensor) -> bool:
    """Whether the CPU tensor x (strided float32/float64) is measured by rows (_long_norms)."""
    return x.numel() >= LONG_MIN_NUMEL


def _flat(x: torch.Tensor) -> torch.Tensor:
    """x as one dimension: a view where its elements fill their memory without a gap, in any order of
    dimensions (contiguous, channels_last, a transpose: a norm does not depend on the order), else a
    copy."""
    if x.is_contiguous():
        return x.view(-1)
    expect = 1
    for st, sz in sorted((st, sz) for st, sz in zip(x.stride(), x.shape) if sz != 1):
        if st != expect:
            return x.reshape(-1)  # (gaps, or overlaps: a slice with a step, an expanded tensor)
        expect *= sz
    return x.as_strided((x.numel(),), (1,))


def _long_norms(xs: list) -> torch.Tensor:
    """The L2 norms of long CPU tensors (_long), by rows, as one float64 tensor."""
    out = []
    for x in xs:
        v = _flat(x)
        n = v.numel()
        k = n // LONG_ROW
        rows = _vector_norm(v[:k * LONG_ROW].view(k, LONG_ROW), dim=1)
        if n > k * LONG_ROW:
            rows = torch.cat([rows, _vector_norm(v[k * LONG_ROW:]).reshape(1)])
        out.append(_vector_norm(rows, dtype=F64))
    return torch.stack(out)


def _norm_stack(xs: list) -> torch.Tensor:
    """The L2 norms of same-device float32/float64 tensors in one 1-d tensor, in their order: on the CPU
    the long ones by rows (LONG_MIN_NUMEL), the others by the multi-tensor norm. Not overflow-safe:
    callers check the result."""
    if xs and xs[0].device.type == "cpu":
        big = [i for i, x in enumerate(xs) if _long(x)]
        if big:
            if len(big) == len(xs):
                return _long_norms(xs)
            taken = set(big)
            small = [i for i in range(len(xs)) if i not in taken]
            vals = torch.cat([_long_norms([xs[i] for i in big]), torch.stack(_norms([xs[i] for i in small]))])
            out = torch.empty_like(vals)
            out[torch.tensor(big + small)] = vals
            return out
    return torch.stack(_norms(xs))


# A fast-path norm at or below this may have lost precision to squares that are subnormal floats
# (|g| < 1.1e-19 in float32: the error of each is ≤ 1.4e-45, so ≤ 1.4e-15 of a sum of squares
# ≥ 1e-30 for n ≤ 1e9 entries) or be an underflow to 0: the gradient goes through grad_stats.
_FAST_NORM_MIN = 1e-15


def needs_exact(norm: float) -> bool:
    """Whether the fast path's norm (NaN/Inf counts taken as 0) may be wrong, so the gradient must go
    through grad_stats: not finite (a NaN or an Inf in it, or an overflow of the sum of squares) or
    so small that squares may have underflowed (a true 0 included: a dead unit's zero gradient takes
    the exact path, which also gives its maxAbs)."""
    return not (math.isfinite(norm) and norm > _FAST_NORM_MIN)


def _cheap_to_read(device) -> bool:
    """Whether reading a value on this device costs no sync (the CPU). A function so that tests can
    take the path of the other devices on the CPU."""
    return device.type == "cpu"


def grad_stats_many(grads: list, defer: bool = False, with_max: bool = True):
    """grad_stats of many gradients: (rows, unchecked). rows[i] holds grad_stats(grads[i])'s four values
    (except that without with_max its maxAbs is NaN, "not measured at this step", see
    docs/protocol.md, where the fast path took it): a list of floats for a CPU gradient, a float64
    tensor [4] on its device otherwise.

    Float32/float64 dense gradients take the fast path: one multi-tensor norm call per device (a
    second pass per tensor for the max only with_max), NaN/Inf counts 0; where needs_exact() says
    that may be wrong (a NaN, an Inf, an overflow, a norm ≤ 1e-15), that gradient alone goes through
    grad_stats. A NaN or Inf entry makes the norm NaN or Inf, so the counts of the fast rows are
    exact. On the CPU the check is made here (reading values there costs no sync). Elsewhere (CUDA)
    with defer=True it is left to the caller, after its one device→host copy of the step:
    `unchecked` lists the indices of those rows, whose gradients must still be as they were (an
    optimizer step reads them; a later backward pass or zero_grad may change them). With
    defer=False, non-CPU gradients take grad_stats' branch-free path (nothing syncs) and unchecked is
    empty."""
    rows = [None] * len(grads)
    unchecked = []
    groups = {}
    read_here = {}  # device -> _cheap_to_read(device)
    with torch.no_grad():
        # (Per gradient, only attribute reads: no detach()/reshape() per tensor, each a torch call of
        # about 0.5 µs; the multi-tensor norm takes any shape, and under no_grad nothing is recorded.)
        xs = list(grads)
        for i, x in enumerate(xs):
            if type(x) is not torch.Tensor:  # a DTensor (its shard), a Parameter used as a gradient
                x = xs[i] = local(x).detach()
            if x.layout is _STRIDED and x.dtype in _FAST_DTYPES and x.numel() > 0:
                dev = x.device
                cheap = read_here.get(dev)
                if cheap is None:
                    cheap = read_here[dev] = _cheap_to_read(dev)
                if defer or cheap:
                    groups.setdefault(dev, []).append(i)
                    continue
            rows[i] = grad_stats(x)
        for dev, idx in groups.items():
            # (a strided view is copied flat, as grad_stats measures it: the same order of summation)
            flat = [x if x.is_contiguous() else x.reshape(-1) for x in (xs[i] for i in idx)]
            norms = _norm_stack(flat)
            maxs = _max_abs_many(flat) if with_max else None
            if read_here[dev]:
                # Read here (no sync on the CPU): the rows are plain lists, no tensor per row to gather.
                for i, row in zip(idx, _rows_read([xs[i] for i in idx], norms, maxs)):
                    rows[i] = row
            else:
                norms = norms.to(F64)
                maxs = maxs.to(F64) if maxs is not None else torch.full((len(idx),), _NAN, dtype=F64, device=dev)
                zeros = torch.zeros(len(idx), dtype=F64, device=dev)
                block = torch.stack([norms, maxs, zeros, zeros], dim=1)
                for j, i in enumerate(idx):
                    rows[i] = block[j]
                unchecked.extend(idx)
        for i, row in enumerate(rows):
            if type(row) is not list and _cheap_to_read(row.device):
                rows[i] = row.tolist()
    return rows, unchecked


def plain_cpu(t: torch.Tensor) -> bool:
    """Whether a parameter's gradients can take plain_rows: a dense float32/float64 CPU tensor that
    is not empty (autograd gives a gradient the parameter's dtype and device; a sparse one, which an
    embedding may get, makes plain_rows return None)."""
    return _plain(t) and _cheap_to_read(t.device)


def _plain(t: torch.Tensor) -> bool:
    """A dense float32/float64 tensor (not a subclass such as DTensor) that is not empty."""
    return type(t) in (torch.Tensor, torch.nn.Parameter) and t.layout is _STRIDED and t.dtype in _FAST_DTYPES \
        and t.numel() > 0


def plain_on_device(params: list) -> bool:
    """Whether an optimizer's gradients can take the lean path off the CPU (a CUDA GPU): its tensors
    all dense float32/float64, not empty, on one device that is not cheap to read. Their norms are then
    one multi-tensor norm and one copy to the host per step (plain_values_later): on an H200
    the general path's per-tensor work cost 0.5 ms a step more than that (bench/torch_cuda.py ab)."""
    if not params:
        return False
    dev = params[0].device
    if _cheap_to_read(dev):
        return False
    return all(_plain(t) and t.device == dev for t in params)


# Small CPU tensors are measured stacked: one copy into a [k, n] block and one reduction per shape,
# instead of the multi-tensor norm, which on the CPU dispatches one kernel per tensor (about 1.1 µs each,
# most of a 32x32 tensor's cost). Measured on torch 2.13, 1 thread (bench/torch_probe_step.py): stacked
# costs less up to about 8K elements per tensor; at 16K the copy costs more than the dispatch saved.
STACK_MAX_NUMEL = 4096


class NormPlan:
    """How plain_rows measures one optimizer's gradients: `stacked`, index lists of two or more small
    tensors of one shape and dtype (each group one stack and one reduction), and `rest`, the indices
    measured by the multi-tensor norm. Built from the parameters (their gradients have their shape and
    dtype) and kept while they stay the same objects; a parameter given new data of another shape makes
    the stack refuse, and the plan is built again from the gradients (plan_for)."""
    __slots__ = ("stacked", "long", "rest", "order")

    def __init__(self, tensors: list):
        groups = {}
        rest = []
        long = []
        for i, t in enumerate(tensors):
            if t.numel() <= STACK_MAX_NUMEL:
                groups.setdefault((tuple(t.shape), t.dtype), []).append(i)
            elif _long(t):
                long.append(i)
            else:
                rest.append(i)
        self.stacked = [idx for idx in groups.values() if len(idx) > 1]
        self.long = long
        rest.extend(i for idx in groups.values() if len(idx) == 1 for i in idx)
        self.rest = sorted(rest)
        # Where each value of the concatenated results goes: the groups' entries, the long, then rest's.
        self.order = [i for idx in self.stacked for i in idx] + self.long + self.rest

    def fused(self) -> bool:
        """Whether measure() does more than one multi-tensor norm over all of them."""
        return bool(self.stacked or self.long)

    def measure(self, grads: list, with_max: bool):
        """(norms, maxima or None) of `grads` in the plan's order (self.order), as two CPU tensors (of
        the widest dtype among them). Raises RuntimeError where a group's tensors no longer share a shape."""
        norms, maxs = [], []
        for idx in self.stacked:
            block = torch.stack([grads[i] for i in idx]).reshape(len(idx), -1)
            norms.append(torch.linalg.vector_norm(block, dim=1))
            if with_max:
                lo, hi = torch.aminmax(block, dim=1)
                maxs.append(torch.maximum(-lo, hi))
        if self.long:
            xs = [grads[i] for i in self.long]
            norms.append(_long_norms(xs))
            if with_max:
                maxs.append(_max_abs_many(xs))
        if self.rest:
            xs = [grads[i] for i in self.rest]
            norms.append(torch.stack(_foreach_norm(xs)))
            if with_max:
                maxs.append(_max_abs_many(xs))
        return torch.cat(norms), (torch.cat(maxs) if with_max else None)


def plain_rows(grads: list, with_max: bool = True, plan: "NormPlan | None" = None):
    """grad_stats_many's rows for gradients of parameters that all passed plain_cpu (the caller keeps
    that answer while its parameters stay the same), without checking each again: small tensors of one
    shape stacked (`plan`, see NormPlan), the others in one multi-tensor norm, read at once. None when
    the multi-tensor call refuses them (a sparse gradient): the caller then takes grad_stats_many."""
    got = plain_values(grads, with_max, plan)
    if got is None:
        return None
    return rows_of(grads, *got)


def plain_values(grads: list, with_max: bool = True, plan: "NormPlan | None" = None):
    """plain_rows' fast-path values, in the order of `grads`: (norms, maxima or None), as floats, not
    checked (a norm that needs_exact needs grad_stats: rows_of); None where the multi-tensor call
    refuses them. (Off the CPU the lean step reads its norms after the step: plain_values_later.)"""
    if _foreach_norm is None:
        return None
    on = _set_grad_enabled is not None and _grad_enabled()
    if on:
        _set_grad_enabled(False)  # (torch.no_grad(), cheaper: see _set_grad_enabled)
    try:
        if plan is None or not plan.fused():
            nv = (torch.stack(_foreach_norm(grads)) if plan is not None else _norm_stack(grads)).tolist()
            return nv, (_max_abs_many(grads).tolist() if with_max else None)
        try:
            norms, maxs = plan.measure(grads, with_max)
        except RuntimeError:
            plan.__init__(grads)  # new shapes since the plan was made (a parameter's .data replaced)
            norms, maxs = plan.measure(grads, with_max)
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    finally:
        if on:
            _set_grad_enabled(True)
    n = len(grads)
    return _in_order(plan.order, norms, n), (_in_order(plan.order, maxs, n) if maxs is not None else None)


class Later:
    """Values on a device on their way to the host (plain_values_later): read() waits for their copy
    alone, not for the kernels queued after it (the optimizer's step)."""
    __slots__ = ("host", "event", "extra")

    def __init__(self, host, event, extra: bool):
        self.host, self.event, self.extra = host, event, extra

    def read(self):
        """(norms as floats, the extra value or None)."""
        if self.event is not None:
            self.event.synchronize()
        v = self.host.tolist()
        return (v[:-1], v[-1]) if self.extra else (v, None)


def plain_values_later(grads: list, extra=None):
    """plain_values off the CPU, without waiting: the norms of `grads` (and `extra`, a one-value tensor
    on their device: the step's loss) as one float64 tensor, queued for one copy to the host; on CUDA
    into pinned memory without a wait, with an event recorded after it on their device's stream. A
    Later, whose read() gives the values (not checked: needs_exact); None where the multi-tensor call
    refuses them. Read after the step, the copy no longer holds the host back while the optimizer's
    kernels are queued: a read before the step waits for the whole backward pass to finish."""
    if _foreach_norm is None:
        return None
    on = _set_grad_enabled is not None and _grad_enabled()
    if on:
        _set_grad_enabled(False)
    try:
        v = torch.stack(_foreach_norm(grads)).to(F64)
        if extra is not None:
            v = torch.cat([v, extra.detach().reshape(1).to(F64)])
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    finally:
        if on:
            _set_grad_enabled(True)
    host, event = v, None  # (another device, or no page-locked memory: read, and waited for, in read())
    if v.device.type == "cuda":
        try:
            pinned = torch.empty(v.shape, dtype=F64, pin_memory=True)  # (torch's caching host allocator)
            pinned.copy_(v, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(v.device))
            host = pinned
        except Exception:  # noqa: BLE001
            event = None
    return Later(host, event, extra is not None)


def _in_order(order: list, values: torch.Tensor, n: int) -> list:
    """values (a NormPlan's results, in its order) as floats in the order of its tensors."""
    out = [0.0] * n
    for i, v in zip(order, values.tolist()):
        out[i] = v
    return out


def _max_abs_many(xs: list) -> torch.Tensor:
    """max |x| of each of `xs` (same device), stacked: one aminmax pass per tensor."""
    mm = [torch.aminmax(x) for x in xs]
    return torch.maximum(-torch.stack([a for a, _ in mm]), torch.stack([b for _, b in mm]))


def _rows_read(xs: list, norms: torch.Tensor, maxs) -> list:
    """The rows of CPU tensors from their fast-path norms and maxima (None: not measured, NaN):
    [norm, maxAbs, 0, 0], or grad_stats' exact row where needs_exact (inline here: NaN fails both
    comparisons)."""
    return rows_of(xs, norms.tolist(), maxs.tolist() if maxs is not None else None)


def rows_of(xs: list, nv: list, mv) -> list:
    """_rows_read's rows from the values as floats (mv None: maxima not measured)."""
    if mv is None:
        mv = [_NAN] * len(xs)
    return [[v, m, 0.0, 0.0] if _FAST_NORM_MIN < v < _INF else grad_stats(x).tolist() for v, m, x in zip(nv, mv, xs)]


def scale_row(row, f: float):
    """A grad_stats row with its norm and maxAbs multiplied by f (unscaling a GradScaler's loss scale);
    a list stays a list, a tensor a tensor on its device."""
    if isinstance(row, list):
        return [row[wire.ROW_NORM] * f, row[wire.ROW_MAX_ABS] * f, row[wire.ROW_NAN_COUNT], row[wire.ROW_INF_COUNT]]
    return row * torch.tensor([f, f, 1.0, 1.0], dtype=F64, device=row.device)


def norms_many(tensors: list) -> list:
    """norm() of many tensors (parameters, update differences), equal to norm(t): a float for a CPU
    tensor, a float64 0-d tensor on its device otherwise. Float32/float64 dense ones take one multi-tensor call per device; a
    result that is not finite or is 0 is redone by norm() (overflow-safe, NaN kept) on the CPU. Off
    the CPU the results are returned as they are with the indices to check after the host copy, as
    in grad_stats_many: (values, unchecked)."""
    out = [None] * len(tensors)
    unchecked = []
    groups = {}
    with torch.no_grad():
        xs = [local(t).detach() for t in tensors]
        for i, x in enumerate(xs):
            if _fast(x):
                groups.setdefault(x.device, []).append(i)
            else:
                out[i] = float(norm(x)) if _cheap_to_read(x.device) else norm(x)
        for dev, idx in groups.items():
            ns = _norm_stack([xs[i].reshape(-1) for i in idx]).to(F64)
            if _cheap_to_read(dev):
                vals = ns.tolist()
                for j, i in enumerate(idx):
                    out[i] = float(norm(xs[i])) if norm_needs_exact(vals[j]) else vals[j]
            else:
                for j, i in enumerate(idx):
                    out[i] = ns[j]
                unchecked.extend(idx)
    return out, unchecked


_foreach_copy_ = getattr(torch, "_foreach_copy_", None)
_foreach_sub_ = getattr(torch, "_foreach_sub_", None)


def _pairs_fused(dst: list, src: list) -> bool:
    """Whether a multi-tensor call can take these pairs: same device, dtype and shape pairwise, one device."""
    if not dst:
        return False
    dev = dst[0].device
    for d, s in zip(dst, src):
        if d.device != dev or s.device != dev or d.dtype != s.dtype or d.shape != s.shape or d.layout != torch.strided:
            return False
    return True


def copy_many(dst: list, src: list) -> None:
    """dst[i].copy_(src[i]) for every i: one multi-tensor call where torch has it (2.1+)."""
    if _foreach_copy_ is not None and _pairs_fused(dst, src):
        try:
            _foreach_copy_(dst, src)
            return
        except (RuntimeError, TypeError):
            pass
    for d, s in zip(dst, src):
        d.copy_(s)


def sub_many(dst: list, src: list) -> None:
    """dst[i].sub_(src[i]) for every i, in one multi-tensor call where it can."""
    if _foreach_sub_ is not None and _pairs_fused(dst, src):
        try:
            _foreach_sub_(dst, src)
            return
        except (RuntimeError, TypeError):
            pass
    for d, s in zip(dst, src):
        d.sub_(s)


def norm_needs_exact(v: float) -> bool:
    """Whether a fast-path norm must be redone by norm(): not finite (an overflow, or a NaN/Inf that
    norm() keeps) or ≤ 1e-15 (squares that may have underflowed; a true 0, which norm() returns too)."""
    return not (math.isfinite(v) and v > _FAST_NORM_MIN)


def norm(p: torch.Tensor) -> torch.Tensor:
    """Plain L2 norm, overflow-safe; NaN/Inf propagate (a parameter holding NaN has a NaN norm). 0-d float64."""
    with torch.no_grad():
        x = _work(p)
        if x.numel() == 0:
            return torch.zeros((), dtype=F64, device=x.device)
        if x.device.type == "cpu":
            n = torch.linalg.vector_norm(x)
            v = float(n)
            if math.isfinite(v) and v > 0.0:
                return n.to(F64)
        mn, mx = torch.aminmax(x)
        m = torch.maximum(-mn, mx)
        # NaN in x makes m NaN, and m·‖x/m‖ NaN too; Inf makes it Inf or NaN: both "not finite".
        return _scaled_norm(x, m)


def thumb_shape(shape) -> tuple:
    """(rows, cols) of the 2-D view used for thumbnails, and the thumbnail's (rows, cols).

    torch keeps output units first (Linear [out, in], Conv2d [out, in, kh, kw]), so the view is
    [shape[0], prod(shape[1:])]: one row per output unit. Rank < 2: no thumbnail."""
    if len(shape) < 2:
        return (0, 0), (0, 0)
    rows = int(shape[0])
    cols = 1
    for d in shape[1:]:
        cols *= int(d)
    if rows == 0 or cols == 0:
        return (0, 0), (0, 0)
    return (rows, cols), (min(THUMB_MAX, rows), min(THUMB_MAX, cols))


def _assign(n: int, k: int, dtype, device) -> torch.Tensor:
    """[k, n] 0/1 matrix: index i belongs to cell floor(i·k/n)."""
    m = torch.zeros(k, n, dtype=dtype, device=device)
    i = torch.arange(n, device=device)
    m[i * k // n, i] = 1
    return m


def _cells(n: int, k: int, device) -> torch.Tensor:
    """[n] int64: index i belongs to cell floor(i·k/n)."""
    return torch.arange(n, device=device) * k // n


def _cell_sums(a: torch.Tensor, tr: int, tc: int) -> torch.Tensor:
    """Sums of a non-negative [R, C] matrix over a tr×tc grid of cells; row r is in cell floor(r·tr/R).
    CPU: index_add_ of the rows into tr rows (in a's dtype, non-negative terms: no cancellation), then
    of the columns of that small matrix in float64. Elsewhere: even grids by reshaping, uneven ones
    with two products with 0/1 assignment matrices (deterministic on CUDA, unlike index_add_)."""
    R, C = a.shape
    if a.device.type == "cpu":
        rows = torch.zeros(tr, C, dtype=a.dtype).index_add_(0, _cells(R, tr, a.device), a)
        cols = torch.zeros(tc, tr, dtype=F64).index_add_(0, _cells(C, tc, a.device), rows.t().to(F64))
        return cols.t()
    if R % tr == 0 and C % tc == 0:
        return a.reshape(tr, R // tr, tc, C // tc).sum(dim=(1, 3), dtype=F64)
    rows = _assign(R, tr, a.dtype, a.device)
    cols = _assign(C, tc, a.dtype, a.device).t()
    return (rows @ a @ cols).to(F64)


_EDGES: dict = {}


def _decade_edges(dtype: torch.dtype, device) -> torch.Tensor:
    """The interior bin edges 10^(HIST_LO+1) … 10^(HIST_HI-1) in `dtype`, each the smallest value
    of that dtype that is ≥ the exact power of ten, so `bucketize(|g|, edges, right=True)` is the
    decade bin floor(log10 |g|) − HIST_LO (clamped into the edge bins) with no rounding error, and no
    per-element log10 or float64 copy."""
    key = (dtype, str(device))
    e = _EDGES.get(key)
    if e is None:
        from fractions import Fraction
        vals = []
        for k in range(int(HIST_LO) + 1, int(HIST_HI)):
            exact = Fraction(10) ** k
            b = torch.tensor(float(exact), dtype=dtype)
            if Fraction(float(b.item())) < exact:
                b = torch.nextafter(b, torch.tensor(float("inf"), dtype=dtype))
            vals.append(b)
        e = torch.stack(vals).to(device)
        _EDGES[key] = e
    return e


# Decade bins from the bits of |g| (all-finite CPU path). Bin index of the extra counters:
_NONFINITE_BIN = HIST_BINS  # NaN/Inf (exponent all ones; never reached on the all-finite path)
_ZERO_BIN = HIST_BINS + 1  # exactly 0
_SUBNORMAL_BIN = HIST_BINS + 2  # subnormal: below 10^(HIST_LO+1), counted in bin 0
_LUTS: dict = {}


def _decade_lut(dtype: torch.dtype):
    """(int dtype, mantissa bits, base, thr) for float32/float64 |g| viewed as integers: for the
    biased exponent e of a finite non-zero |g| (bits b), its bin is base[e] + (b >= thr[e]).

    A binary octave [2^k, 2^(k+1)) holds at most one decade edge (edges are ×10 apart), so base[e]
    is the bin of the octave's smallest value and thr[e] the bits of the edge inside the octave (or
    the next octave's first bits when there is none). Non-negative floats order like their bits, so
    `b >= thr[e]` is `|g| >= edge` exactly: the same bins as bucketize against _decade_edges.
    Exponent 0 (0 and subnormals): 0 goes to _ZERO_BIN, subnormals to _SUBNORMAL_BIN."""
    hit = _LUTS.get(dtype)
    if hit is not None:
        return hit
    if dtype == torch.float32:
        itype, mant, nexp, top = torch.int32, 23, 256, 0x7FFFFFFF
    else:
        itype, mant, nexp, top = torch.int64, 52, 2048, 0x7FFFFFFFFFFFFFFF
    edges = _decade_edges(dtype, "cpu")
    ebits = edges.view(itype).tolist()
    octave_lo = (torch.arange(nexp, dtype=torch.int64) << mant).to(itype)
    base = torch.bucketize(octave_lo.view(dtype), edges, right=True).to(torch.int32)
    thr = [0] * nexp
    for e in range(nexp):
        lo, hi = e << mant, (e + 1) << mant
        inside = [b for b in ebits if lo < b < hi]
        thr[e] = inside[0] if inside else min(hi, top)
    base[0] = _ZERO_BIN
    thr[0] = 1  # bits ≥ 1 with exponent 0: subnormal
    base[nexp - 1] = _NONFINITE_BIN
    thr[nexp - 1] = top
    hit = (itype, mant, base, torch.tensor(thr, dtype=itype))
    _LUTS[dtype] = hit
    return hit


# The all-finite CPU path works through the gradient in chunks of at most this many elements (whole
# rows of the thumbnail view when a row fits): no full-size temporary, so no page faults on fresh
# memory, the chunk stays in cache, and each op is below ATen's GRAIN_SIZE (32768), so it runs on the
# calling thread alone: the probe's detail thread never starts an OpenMP team of its own next to the
# training's, whatever torch.set_num_threads says.
CHUNK = 32767
_tls = threading.local()


def _chunk_stats(xc: torch.Tensor, a: torch.Tensor, bits: torch.Tensor, base: torch.Tensor, thr: torch.Tensor,
                 mant: int, mom: torch.Tensor, counts: torch.Tensor) -> bool:
    """Adds one chunk's Σx, Σx² (float64) and decade counts; leaves |xc| in a (bits: a's memory as
    integers). False, and nothing added, when the chunk holds NaN/Inf."""
    torch.abs(xc, out=a)
    if not bool(torch.isfinite(a.max())):  # NaN and Inf propagate into the max
        return False
    d = xc.to(torch.float64)  # xc itself when x is float64: never written to
    mom[0] += d.sum()
    mom[1] += (d * d).sum()  # squares of float32 values are exact in float64
    e = torch.bitwise_right_shift(bits, mant)
    counts += torch.bincount(torch.index_select(base, 0, e) + torch.ge(bits, torch.index_select(thr, 0, e)),
                             minlength=35)
    return True


def _finite_kernel(x: torch.Tensor, A: torch.Tensor, Abits: torch.Tensor, base: torch.Tensor, thr: torch.Tensor,
                   mant: int, R: int, C: int, tr: int, tc: int, step: int) -> torch.Tensor:
    """detail_stats' values of a flat contiguous CPU x, [mean, std, zeroFrac, hist × 32, thumb ×
    tr·tc] in float64, or an empty tensor when some entry is NaN/Inf (the general path then runs).
    A: a buffer of `step` elements of x's dtype; Abits, the same memory viewed as integers
    (TorchScript has no view(dtype)). Chunks of `step` entries: whole rows of the [R, C] view when
    C ≤ step, else pieces of one row. Compiled with TorchScript when it can be: the whole of it then
    runs without the GIL, so the probe's detail thread neither waits for the training thread's
    Python nor holds it up.

    Same definitions as the general path: moments accumulated in float64, decade bins from the bits
    (equal to bucketize's), thumbnail cells summed in x's dtype over rows then in float64 over
    columns, counts from the cell sizes."""
    n = x.numel()
    counts = torch.zeros(35, dtype=torch.int64)  # 32 bins, non-finite, zero, subnormal
    mom = torch.zeros(2, dtype=torch.float64)
    rowcell = torch.div(torch.arange(R) * tr, R, rounding_mode="floor")
    rows = torch.zeros(tr, C, dtype=x.dtype)
    if tr > 0 and C > step:
        for r in range(R):
            cell_row = rows[int(rowcell[r])]
            for c0 in range(0, C, step):
                L = min(step, C - c0)
                a = A[:L]
                if not _chunk_stats(x[r * C + c0:r * C + c0 + L], a, Abits[:L], base, thr, mant, mom, counts):
                    return torch.zeros(0, dtype=torch.float64)
                cell_row[c0:c0 + L] += a
    else:
        for i in range(0, n, step):
            L = min(step, n - i)
            a = A[:L]
            if not _chunk_stats(x[i:i + L], a, Abits[:L], base, thr, mant, mom, counts):
                return torch.zeros(0, dtype=torch.float64)
            if tr > 0:
                r0 = i // C
                rows.index_add_(0, rowcell[r0:r0 + L // C], a.view(L // C, C))
    mean = mom[0] / n
    std = torch.sqrt(torch.clamp(mom[1] / n - mean * mean, min=0.0))
    hist = counts[:32].clone()
    hist[0] += counts[34]
    head = torch.cat([torch.stack([mean, std, counts[33].to(torch.float64) / n]), hist.to(torch.float64)])
    if tr == 0:
        return head
    colcell = torch.div(torch.arange(C) * tc, C, rounding_mode="floor")
    sums = torch.zeros(tc, tr, dtype=torch.float64).index_add_(0, colcell, rows.t().to(torch.float64)).t()
    cnts = torch.bincount(rowcell, minlength=tr).to(torch.float64)[:, None] * \
        torch.bincount(colcell, minlength=tc).to(torch.float64)[None, :]
    return torch.cat([head, (sums / cnts).reshape(-1)])


def _batch_kernel(x: torch.Tensor, seg: torch.Tensor, cell: torch.Tensor, A: torch.Tensor, Abits: torch.Tensor,
                  base: torch.Tensor, thr: torch.Tensor, mant: int, T: int, ncell: int, step: int) -> List[torch.Tensor]:
    """Many small tensors at once: x, their values end to end (flat, contiguous, CPU); seg, the
    tensor of each entry (0 … T-1); cell, its thumbnail cell (0 … ncell-1, ncell for none). Returns
    [Σx per tensor, Σx² per tensor (float64), decade counts (T × 35, as _finite_kernel's),
    Σ|x| per cell (ncell + 1, float64)], or [] when some entry is NaN/Inf. One call for all of a
    step's small tensors: their cost is then per entry, not per tensor."""
    n = x.numel()
    s = torch.zeros(T, dtype=torch.float64)
    ss = torch.zeros(T, dtype=torch.float64)
    counts = torch.zeros(T * 35, dtype=torch.int64)
    sums = torch.zeros(ncell + 1, dtype=torch.float64)
    for i in range(0, n, step):
        xc = x[i:i + step]
        L = xc.numel()
        sc = seg[i:i + L]
        a = A[:L]
        torch.abs(xc, out=a)
        if not bool(torch.isfinite(a.max())):
            return []
        d = xc.to(torch.float64)  # xc itself when x is float64: never written to
        s += torch.bincount(sc, weights=d, minlength=T)
        ss += torch.bincount(sc, weights=d * d, minlength=T)
        bits = Abits[:L]
        e = torch.bitwise_right_shift(bits, mant)
        b = torch.index_select(base, 0, e) + torch.ge(bits, torch.index_select(thr, 0, e))
        counts += torch.bincount(sc * 35 + b, minlength=T * 35)
        sums += torch.bincount(cell[i:i + L], weights=a.to(torch.float64), minlength=ncell + 1)
    return [s, ss, counts, sums]


assert HIST_BINS + 3 == 35  # the counters of the kernels
_kernels: dict = {}


def _run_kernel(fn, *args):
    """fn compiled with TorchScript (once; the same code eagerly where TorchScript is missing or
    fails), run on args."""
    k = _kernels.get(fn)
    if k is None:
        try:
            k = torch.jit.script(fn)
        except Exception:  # noqa: BLE001
            k = fn
        _kernels[fn] = k
    if k is fn:
        return fn(*args)
    try:
        return k(*args)
    except Exception:  # noqa: BLE001 - a TorchScript failure: run it eagerly from now on
        _kernels[fn] = fn
        return fn(*args)


def _chunk_buffer(dtype: torch.dtype, step: int) -> torch.Tensor:
    """This thread's buffer of `step` elements for the kernels (kept: no allocation per call)."""
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        bufs = _tls.bufs = {}
    A = bufs.get(dtype)
    if A is None or A.numel() < step:
        A = bufs[dtype] = torch.empty(step, dtype=dtype)
    return A[:step]


def _detail_finite_cpu(x: torch.Tensor, R: int, C: int, tr: int, tc: int):
    """detail_stats of a CPU gradient (x: flat, contiguous, float32/float64) when every entry is
    finite; None when some is not. See _finite_kernel."""
    itype, mant, base, thr = _decade_lut(x.dtype)
    if tr:
        step = max(1, CHUNK // C) * C if C <= CHUNK else CHUNK
    else:
        step, R, C = CHUNK, 0, 1
    A = _chunk_buffer(x.dtype, step)
    v = _run_kernel(_finite_kernel, x, A, A.view(itype), base, thr, mant, R, C, tr, tc, step)
    return v if v.numel() else None


# detail_stats_many: CPU tensors with fewer entries than this go through _batch_kernel together, at
# most BATCH_MAX entries per call (one chunk: every op below GRAIN_SIZE, as above); the index vectors
# of a batch are kept for the next step (a few batch layouts, typically one per optimizer).
BATCH_TENSOR_MAX = CHUNK
BATCH_MAX = CHUNK
_BATCH_IDS: dict = {}


def _batch_ids(layout):
    """(seg, cell, ncell, per tensor (n, first cell, number of cells), every cell's size as float64)
    for a batch layout, a tuple of (n, R, C, tr, tc) per tensor."""
    hit = _BATCH_IDS.get(layout)
    if hit is not None:
        return hit
    segs, cells, info, all_sizes = [], [], [], []
    ncell = 0
    pending_none = []
    for t, (n, R, C, tr, tc) in enumerate(layout):
        segs.append(torch.full((n,), t, dtype=torch.int32))
        if tr:
            rc = torch.div(torch.arange(R) * tr, R, rounding_mode="floor")
            cc = torch.div(torch.arange(C) * tc, C, rounding_mode="floor")
            cells.append((ncell + rc[:, None] * tc + cc[None, :]).reshape(-1).to(torch.int32))
            sizes = (torch.bincount(rc, minlength=tr)[:, None] * torch.bincount(cc, minlength=tc)[None, :]).reshape(-1)
            all_sizes.append(sizes)
            info.append((n, ncell, tr * tc))
            ncell += tr * tc
        else:
            cells.append(None)
            pending_none.append(t)
            info.append((n, ncell, 0))
    for t in pending_none:
        cells[t] = torch.full((layout[t][0],), -1, dtype=torch.int32)
    cell = torch.cat(cells)
    cell[cell < 0] = ncell
    sizes = torch.cat(all_sizes).to(torch.float64) if all_sizes else torch.zeros(0, dtype=torch.float64)
    hit = (torch.cat(segs), cell, ncell, info, sizes)
    if len(_BATCH_IDS) >= 8:
        _BATCH_IDS.pop(next(iter(_BATCH_IDS)))
    _BATCH_IDS[layout] = hit
    return hit


def _detail_batch(batch):
    """[(x, R, C, tr, tc)] small all-CPU tensors of one dtype → [(values list, tr, tc)], or None
    when one of them holds NaN/Inf (each then goes through detail_stats)."""
    dtype = batch[0][0].dtype
    layout = tuple((x.numel(), R, C, tr, tc) for x, R, C, tr, tc in batch)
    seg, cell, ncell, info, sizes = _batch_ids(layout)
    x = torch.cat([b[0] for b in batch]) if len(batch) > 1 else batch[0][0]
    itype, mant, base, thr = _decade_lut(dtype)
    A = _chunk_buffer(dtype, CHUNK)
    res = _run_kernel(_batch_kernel, x, seg, cell, A, A.view(itype), base, thr, mant, len(batch), ncell, CHUNK)
    if not res:
        return None
    s, ss, counts, sums = res
    # Every thumbnail's cell means in one division (a Python division per cell cost ~30 us per
    # 32x32 tensor: 3 ms of a 100-tensor detail step); the same float64 quotients.
    thumbs = (sums[:ncell] / sizes).tolist()
    s, ss, counts = s.tolist(), ss.tolist(), counts.tolist()
    out = []
    for t, ((n, c0, nc), (_x, _R, _C, tr, tc)) in enumerate(zip(info, batch)):
        mean = s[t] / n
        std = math.sqrt(max(ss[t] / n - mean * mean, 0.0))
        c = counts[t * 35:(t + 1) * 35]
        hist = c[:HIST_BINS]
        hist[0] += c[_SUBNORMAL_BIN]
        thumb = thumbs[c0:c0 + nc]
        out.append(([mean, std, c[_ZERO_BIN] / n] + [float(h) for h in hist] + thumb, tr, tc))
    return out


def detail_stats_many(items) -> list:
    """detail_stats of many gradients, [(g, shape)] → [(values as a list of floats, rows, cols)]:
    the same values, per item, as detail_stats(g, shape). Small CPU tensors are done together (one
    pass over all of them, not ~30 ops per tensor); the others one by one."""
    out = [None] * len(items)
    groups = {}
    with torch.no_grad():
        for i, (g, shape) in enumerate(items):
            x = _work(g)
            n = x.numel()
            (R, C), (tr, tc) = thumb_shape(list(shape))
            if R * C != n:
                tr = tc = 0
            if x.device.type == "cpu" and 0 < n < BATCH_TENSOR_MAX:
                groups.setdefault(x.dtype, []).append((i, (x.contiguous(), R, C, tr, tc)))
            else:
                v, tr, tc = detail_stats(g, shape)
                out[i] = (v.cpu().tolist(), tr, tc)
        for group in groups.values():
            start = 0
            while start < len(group):
                end, total = start, 0
                while end < len(group) and (end == start or total + group[end][1][0].numel() <= BATCH_MAX):
                    total += group[end][1][0].numel()
                    end += 1
                part = group[start:end]
                res = _detail_batch([b for _, b in part])
                for j, (i, _b) in enumerate(part):
                    if res is not None:
                        out[i] = res[j]
                    else:
                        v, tr, tc = detail_stats(items[i][0], items[i][1])
                        out[i] = (v.tolist(), tr, tc)
                start = end
    return out


def detail_stats(g: torch.Tensor, shape) -> tuple:
    """The detail tier of one gradient: (values, thumb_rows, thumb_cols) where values is a float64
    tensor on g's device holding [mean, std, zeroFrac, hist × 32, thumb × rows·cols]."""
    with torch.no_grad():
        x = _work(g)
        n = x.numel()
        (R, C), (tr, tc) = thumb_shape(list(shape))
        if R * C != n:
            tr = tc = 0
        if n == 0:
            # No values (an FSDP2 rank's empty block of a small parameter): mean, std and the zero
            # fraction are undefined, the histogram counts nothing.
            v = torch.zeros(3 + HIST_BINS, dtype=F64, device=x.device)
            v[:3] = float("nan")
            return v, 0, 0
        if x.device.type == "cpu":
            v = _detail_finite_cpu(x.contiguous(), R, C, tr, tc)
            if v is not None:
                return v, tr, tc
        return _detail_general(x, R, C, tr, tc), tr, tc


def _detail_general(x: torch.Tensor, R: int, C: int, tr: int, tc: int) -> torch.Tensor:
    """detail_stats' values for a flat, non-empty x on any device, NaN/Inf included; branch-free
    (nothing syncs on CUDA)."""
    with torch.no_grad():
        n = x.numel()
        # Element-wise work stays in the gradient's own dtype (one float64 copy of a 2M-element
        # gradient costs more than all the statistics); only the reductions accumulate in float64.
        finite = torch.isfinite(x)
        nf = finite.sum().to(F64)
        z = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
        s = z.sum(dtype=F64)
        # vector_norm casts to float64 before squaring: no overflow for |g| > 1.8e19 in float32.
        ss = torch.linalg.vector_norm(z, dtype=F64) ** 2
        safe = torch.clamp(nf, min=1.0)
        mean = s / safe
        std = torch.sqrt(torch.clamp(ss / safe - mean * mean, min=0.0))
        nanv = torch.tensor(float("nan"), dtype=F64, device=x.device)
        mean = torch.where(nf > 0, mean, nanv)
        std = torch.where(nf > 0, std, nanv)
        zero_frac = (x == 0).sum().to(F64) / n
        a = z.abs()
        valid = finite & (a > 0)
        idx = torch.bucketize(a, _decade_edges(a.dtype, a.device), right=True)
        idx = torch.where(valid, idx, torch.full_like(idx, HIST_BINS))
        if x.device.type != "cpu" and torch.are_deterministic_algorithms_enabled():
            # scatter_add_ on CUDA is not deterministic: count from the sorted bins instead.
            srt, _ = torch.sort(idx)
            edges = torch.searchsorted(srt, torch.arange(HIST_BINS + 1, device=x.device))
            hist = (edges[1:] - edges[:-1]).to(F64)
        else:
            hist = torch.bincount(idx, minlength=HIST_BINS + 1)[:HIST_BINS].to(F64)
        parts = [mean.reshape(1), std.reshape(1), zero_frac.reshape(1), hist]
        if tr:
            sums = _cell_sums(a.reshape(R, C), tr, tc)
            if x.device.type == "cpu" and bool(finite.all()):
                # All finite (the common case): the counts are the cell sizes, no second pass.
                cnts = _assign(R, tr, F64, x.device).sum(1)[:, None] * _assign(C, tc, F64, x.device).sum(1)[None, :]
            else:
                cnts = _cell_sums(finite.reshape(R, C).to(x.dtype), tr, tc)
            thumb = torch.where(cnts > 0, sums / torch.clamp(cnts, min=1.0), nanv)
            parts.append(thumb.reshape(-1))
        return torch.cat(parts)
