"""Child-process warnings: training in processes the script starts is not observed; say so.

``multiprocessing`` ``Process.start`` and ``torch.multiprocessing.spawn``/``start_processes`` in the
main process (not DataLoader workers): a ``warning`` EVENT, training there is not observed. Not for
children started with the spawn method when the host gave a socket (GS_PROBE_SOCKET): those join
the run as ranks of their own (ranks.py).
"""
from __future__ import annotations

import functools
import os

from . import forks, sources


class ChildProcessWarnings:
    """Probe mixin: the process-start hooks."""

    def _install_children(self) -> None:
        """Training in child processes is not observed: say so when the script starts some (not the
        DataLoader's workers, which only load data)."""
        probe = self
        import multiprocessing.process as mp_process

        def start(orig):
            @functools.wraps(orig)
            def wrapper(self, *args, **kwargs):
                if forks.pid == probe.pid and not getattr(probe._tls, "spawning", False) and not _joins_run(self):
                    try:
                        target = getattr(self, "_target", None)
                        if getattr(target, "__module__", "") != "torch.utils.data._utils.worker":
                            probe._child_warning("multiprocessing.Process(target=%s).start()" % _callable_name(target))
                    except Exception as e:  # noqa: BLE001
                        probe.warn("noticing a child process", e)
                return orig(self, *args, **kwargs)
            return wrapper

        self._patch(mp_process.BaseProcess, "start", start)
        try:
            import torch.multiprocessing as tmp
            import torch.multiprocessing.spawn as tspawn
        except Exception:  # noqa: BLE001
            return

        def spawn(name):
            def factory(orig):
                @functools.wraps(orig)
                def wrapper(fn, *args, **kwargs):
                    outer = not getattr(probe._tls, "spawning", False)
                    if outer and forks.pid == probe.pid and not _spawn_joins_run(kwargs):
                        try:
                            n = kwargs.get("nprocs", args[1] if len(args) > 1 else 1)
                            probe._child_warning("torch.multiprocessing.%s(%s, nprocs=%s)" % (name, _callable_name(fn), n))
                        except Exception as e:  # noqa: BLE001
                            probe.warn("noticing a child process", e)
                    probe._tls.spawning = True
                    try:
                        return orig(fn, *args, **kwargs)
                    finally:
                        if outer:
                            probe._tls.spawning = False
                return wrapper
            return factory

        for name in ("spawn", "start_processes"):
            for owner in (tmp, tspawn):
                if callable(getattr(owner, name, None)) and not isinstance(getattr(owner, name), type(tmp)):
                    self._patch(owner, name, spawn(name))

    def _child_warning(self, call) -> None:
        if call in self._warned or len(self._warned) > 50:
            return
        self._warned.add(call)
        site = sources.user_call_site(2)
        where = " at %s:%d" % (os.path.basename(site["file"]), site["line"]) if site else ""
        self.send({"type": "event", "kind": "warning", "step": self.steps, "message":
                   "the script started child processes with %s%s: GradScope observes only the main process, "
                   "training in the children is not captured" % (call, where)})


def _joins_run(proc) -> bool:
    """A child started with the spawn method runs GradScope's start-up hook (gradscope_probe/ranks.py)
    and joins the run itself, when the host gave a socket; a forked one does not (it is ignored)."""
    if not os.environ.get("GS_PROBE_SOCKET"):
        return False
    import multiprocessing

    method = getattr(proc, "_start_method", None) or multiprocessing.get_start_method(allow_none=True) or "fork"
    return method == "spawn"


def _spawn_joins_run(kwargs) -> bool:
    return bool(os.environ.get("GS_PROBE_SOCKET")) and kwargs.get("start_method", "spawn") == "spawn"


def _callable_name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
