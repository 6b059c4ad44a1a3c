"""torch's CPU ops on the probe's own background thread (the detail tier's job) run on that thread
alone, not on an OpenMP team of their own.

Why: torch parallelises CPU ops with OpenMP, and OpenMP gives every thread that starts a parallel
region its own team of worker threads, kept while that thread lives. One such op on the probe's
background thread (a histogram of a large gradient) thus adds `torch.get_num_threads() - 1` threads
to the process for good, and GNU OpenMP, once it manages more threads than there are CPUs, makes
every team's idle workers sleep almost at once instead of spinning (its "throttled" spin count). The
training thread's team then wakes its workers from sleep at every parallel op of every step. Measured
on the 2-core machine, torch 2.13 at its default 2 threads, 2.0M-parameter MLP: forward and backward
8.1 -> 8.9 ms, Adam's step 2.5 -> 3.2 ms, one pass over the gradients 267 -> 360 us, all from a
background thread that had run ONE parallel op and then only waited (bench/torch_omp_team.py).

So the background thread sets its own OpenMP thread count to 1 (an OpenMP ICV of the calling thread
only: the training thread and torch's global setting are untouched), after torch's per-thread
initialisation, which would set it back. The OpenMP runtime is the one torch loaded (libgomp in
torch's wheels and Debian's build, libiomp5 / libomp elsewhere), found among the process's mapped
libraries; where none is found (not Linux, a build without OpenMP), nothing is done.
"""
from __future__ import annotations

import ctypes
import os

import torch

_RUNTIMES = ("libgomp", "libiomp5", "libomp")
_lib = None
_looked = False


def _openmp_runtime():
    """The OpenMP runtime loaded in this process (ctypes handle), or None."""
    global _lib, _looked
    if _looked:
        return _lib
    _looked = True
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {fields[-1] for fields in map(str.split, f) if fields}  # (the path, where a line has one)
    except OSError:
        return None
    for path in sorted(paths):
        name = os.path.basename(path)
        if path.startswith("/") and name.startswith(_RUNTIMES) and ".so" in name:
            try:
                lib = ctypes.CDLL(path)
                lib.omp_set_num_threads.argtypes = [ctypes.c_int]
            except (OSError, AttributeError):
                continue
            _lib = lib
            break
    return _lib


def single_threaded_here() -> bool:
    """Makes torch's CPU ops on the calling thread run on it alone (see the module's docstring).
    Whether it did."""
    try:
        torch.get_num_threads()  # (torch's per-thread initialisation first: it sets the count itself)
        lib = _openmp_runtime()
        if lib is None:
            return False
        lib.omp_set_num_threads(1)
        return torch.get_num_threads() == 1
    except Exception:  # noqa: BLE001 - an optimisation: never fatal
        return False
