"""Gradient statistics computed with torch ops on the tensor's own device, without syncing.

Every function returns a 1-D float64 tensor on the input's device; the probe concatenates the
results of a whole step and copies them to the host once. Definitions follow docs/protocol.md:
NaN and ±Inf are counted and kept out of every other statistic; norms are overflow-safe
(m·‖x/m‖ with m = max|x|).

On the CPU, where reading a scalar costs nothing, the common all-finite case takes a fast path
(one min/max pass and one norm pass, no full-size temporaries) and the exclusion work is done only
for tensors that do hold NaN/Inf. Elsewhere (CUDA) the branch-free path runs, so nothing syncs.
"""
from __future__ import annotations

import math

import torch

HIST_BINS = 32
HIST_LO = -20.0  # log10 |g| at the left edge of bin 0: one decade per bin
HIST_HI = 12.0
THUMB_MAX = 32
STEP_STATS = 4  # norm, maxAbs, nanCount, infCount
F64 = torch.float64


def _work(g: torch.Tensor) -> torch.Tensor:
    """The values to measure: dense, real, at least float32, flat."""
    g = g.detach()
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


def _cell_sums(a: torch.Tensor, tr: int, tc: int) -> torch.Tensor:
    """Sums of a non-negative [R, C] matrix over a tr×tc grid of cells; row r is in cell floor(r·tr/R).
    Uneven grids use two products with 0/1 assignment matrices (no cancellation: the values are ≥ 0)."""
    R, C = a.shape
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
            return torch.full((3 + HIST_BINS,), float("nan"), dtype=F64, device=x.device), 0, 0
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
        return torch.cat(parts), tr, tc
