"""Copies of the parameters before a sampled step, for their update norms, within a memory budget.

A copy of every parameter doubles the model's memory (+0.4 GB on a 100M-parameter model). The
copies live instead in one pool per (device, dtype) of at most ``budget`` bytes: the whole model when
it is small (up to SNAPSHOT_POOL_MIN_BYTES, or SNAPSHOT_FRACTION of the model), else a part of it,
taken in turn: each sampled step copies the next tensors that fit, starting where the previous one
stopped, so every tensor has its update measured every few sampled steps and the others report
updateNorm NaN ("not measured") on that step. A tensor larger than the cap
(GRADSCOPE_UPDATE_NORM_MAX_BYTES) never has one, and an ``info`` event says so.
"""
from __future__ import annotations

import os

import torch

from . import stats

UPDATE_SNAPSHOT_MAX_BYTES = int(os.environ.get("GRADSCOPE_UPDATE_NORM_MAX_BYTES", str(512 * 1024 * 1024)) or 0)
# The pool holds the whole model up to this size…
SNAPSHOT_POOL_MIN_BYTES = 64 * 1024 * 1024
# …or this share of the model's parameter bytes, whichever is larger (and at least its largest tensor).
SNAPSHOT_FRACTION = 0.25


class Snapshots:
    """The pool and the rotation. `take(params)` copies those whose turn it is and returns
    {id(param): copy}; the copies stay valid until the next take()."""

    def __init__(self, cap_bytes: int = UPDATE_SNAPSHOT_MAX_BYTES):
        self.cap = cap_bytes
        self._pools = {}  # (device, dtype) -> flat tensor
        self._cursor = 0  # where the next rotation starts, as an index into the params of the last take
        self.partial = False  # the last take left some tensors out (rotation or cap)
        self.too_large = []  # tensors over the cap: never copied

    def budget(self, params) -> int:
        nbytes = [p.numel() * p.element_size() for p in params]
        total = sum(nbytes)
        want = max(min(total, SNAPSHOT_POOL_MIN_BYTES), int(total * SNAPSHOT_FRACTION), max(nbytes, default=0))
        return min(want, self.cap)

    def take(self, params) -> dict:
        """Copies of the params whose turn it is (local shards for DTensors), by id."""
        locs = [stats.local(p).detach() for p in params]
        n = len(locs)
        budget = self.budget(locs)
        used = {}  # pool key -> elements used
        used_bytes = 0
        out = {}
        dst, src = [], []
        self.too_large = [p for p, x in zip(params, locs) if x.numel() * x.element_size() > self.cap]
        start = self._cursor % n if n else 0
        stop = start + n  # where the next take starts: the first tensor of this turn that did not fit
        for j in range(n):
            i = (start + j) % n
            x = locs[i]
            size = x.numel() * x.element_size()
            key = (x.device, x.dtype)
            if size > self.cap:
                continue  # never: said once by the probe
            if used_bytes + size > budget:
                stop = start + j
                break
            pool = self._pool(key, budget)
            off = used.get(key, 0)
            view = pool[off:off + x.numel()].view(x.shape)
            used[key] = off + x.numel()
            used_bytes += size
            out[id(params[i])] = view
            dst.append(view)
            src.append(x)
        if dst:
            stats.copy_many(dst, src)
        self.partial = len(out) < n
        self._cursor = stop % n if n else 0
        return out

    def _pool(self, key, budget: int) -> torch.Tensor:
        device, dtype = key
        elems = budget // _itemsize(dtype)
        pool = self._pools.get(key)
        if pool is None or pool.numel() < elems:
            self._pools.pop(key, None)
            pool = self._pools[key] = torch.empty(elems, dtype=dtype, device=device)
        return pool

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self._pools.values())


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
