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


def _cell_sums(a: torch.Tensor, tr: int, tc: int) -> torch.Tensor:
    """Sums of a [R, C] matrix over a tr×tc grid of cells; row r is in cell floor(r·tr/R)."""
    R, C = a.shape
    if R % tr == 0 and C % tc == 0:
        return a.reshape(tr, R // tr, tc, C // tc).sum(dim=(1, 3), dtype=F64)
    # Prefix sums subtract large partial sums: float64 keeps them exact enough.
    a = a.to(F64)
    # Uneven cells: prefix sums, read at the cell boundaries (cell c starts at ceil(c·C/tc)).
    def bounds(n, k):
        return torch.tensor([-(-c * n // k) for c in range(k + 1)], device=a.device)

    cs = torch.nn.functional.pad(a.cumsum(dim=1), (1, 0))
    bc = bounds(C, tc)
    a2 = cs[:, bc[1:]] - cs[:, bc[:-1]]  # [R, tc]
    rs = torch.nn.functional.pad(a2.cumsum(dim=0), (0, 0, 1, 0))
    br = bounds(R, tr)
    return rs[br[1:]] - rs[br[:-1]]  # [tr, tc]


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
        if x.device.type == "cpu" and a.dtype != F64:
            # log10 in float32 can put a value at a power of ten one decade off: recompute, in
            # float64, only the (rare) elements within 1e-4 of a decade boundary. (On CUDA the
            # nonzero() would cost a device sync per tensor, so the float64 path is used there.)
            la = torch.log10(torch.where(valid, a, torch.ones_like(a)))
            k = torch.floor(la)
            near = (valid & ((la - torch.round(la)).abs() < 1e-4)).nonzero(as_tuple=True)
            if near[0].numel():
                k[near] = torch.floor(torch.log10(a[near].to(F64))).to(k.dtype)
        else:
            k = torch.floor(torch.log10(torch.where(valid, a, torch.ones_like(a)).to(F64)))
        idx = (k.clamp(HIST_LO, HIST_HI - 1) - HIST_LO).to(torch.int64)
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
            cnts = _cell_sums(finite.reshape(R, C).to(x.dtype), tr, tc)
            thumb = torch.where(cnts > 0, sums / torch.clamp(cnts, min=1.0), nanv)
            parts.append(thumb.reshape(-1))
        return torch.cat(parts), tr, tc
