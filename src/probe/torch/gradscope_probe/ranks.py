"""The processes of a distributed job (torchrun ranks, mp.spawn children) join the run over the host's
socket, one connection each, announced by its HELLO (rank, localRank, worldSize, host, pid).

The host puts two variables in the environment of the run (not GRADSCOPE_ ones: those are the main
probe's and are removed from the script's environment; these must reach every process it starts):
GS_PROBE_SOCKET, where to connect (``unix:/path``, or ``tcp:127.0.0.1:PORT`` where Unix sockets are
not available), and GS_PROBE_SETTINGS (``steps=N,detail=K,sampled=S,script=PATH``), plus the
folder of ``gradscope_boot/sitecustomize.py`` on PYTHONPATH. Every Python process of the run then
runs boot() at start-up; it instruments the process only when it is a rank (RANK or LOCAL_RANK in
the environment, set by torch.distributed.run for its workers) or a multiprocessing spawn child
(``--multiprocessing-fork``), and not when the main probe runs in it (GRADSCOPE_CHANNEL_FD). The
launcher itself (torchrun) is neither. Forked children (DataLoader workers) run no start-up code:
they inherit the parent's probe, which ignores forks.

The connection is made with the first frame (the HELLO goes out with it): a process that never
steps an optimizer (a spawn-started DataLoader worker, a helper) never connects, and finishing it
sends nothing unless it crashed.
"""
from __future__ import annotations

import os
import sys

SOCKET_ENV = "GS_PROBE_SOCKET"
SETTINGS_ENV = "GS_PROBE_SETTINGS"


def connect(address: str) -> int:
    """A connected stream socket to the host's address; returns its descriptor (the socket object
    let go of). Raises OSError when the host is not there."""
    import socket

    if address.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address[len("unix:"):]
    elif address.startswith("tcp:"):
        host, _, port = address[len("tcp:"):].rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    else:
        raise OSError("unknown address %r" % address)
    try:
        s.settimeout(10.0)
        s.connect(target)
        s.settimeout(None)
    except BaseException:
        s.close()
        raise
    return s.detach()


class LazyChannel:
    """A Channel (channel.py) on a socket opened with the first frame sent."""

    def __init__(self, address: str, on_host_gone=None):
        self.address = address
        self.on_host_gone = on_host_gone
        self.pid = os.getpid()
        self._ch = None
        self._failed = False

    @property
    def connected(self) -> bool:
        return self._ch is not None

    def _open(self):
        if self._ch is None and not self._failed and os.getpid() == self.pid:
            from .channel import Channel

            try:
                self._ch = Channel(connect(self.address), on_host_gone=self.on_host_gone)
            except Exception as e:  # noqa: BLE001 - never the script's problem
                self._failed = True
                try:
                    sys.stderr.write("[gradscope] warning: cannot join the run at %s (%s); this process runs without inspection\n" % (self.address, e))
                except Exception:  # noqa: BLE001
                    pass
        return self._ch

    def send(self, msg: dict) -> bool:
        ch = self._open()
        return ch.send(msg) if ch is not None else False

    def flush(self, timeout: float = 5.0) -> bool:
        return self._ch.flush(timeout) if self._ch is not None else True

    def close(self) -> None:
        if self._ch is not None:
            self._ch.close()


def settings(raw: str) -> dict:
    out = {}
    for part in raw.split(","):
        k, _, v = part.partition("=")
        out[k.strip()] = v
    return out


def _int(v) -> int:
    try:
        return max(0, int(v or 0))
    except ValueError:
        return 0


def is_rank_process(env=None, argv=None) -> bool:
    env = os.environ if env is None else env
    argv = sys.argv if argv is None else argv
    if not env.get(SOCKET_ENV) or env.get("GRADSCOPE_CHANNEL_FD"):
        return False
    return "RANK" in env or "LOCAL_RANK" in env or "--multiprocessing-fork" in argv


_probe = None


def boot() -> None:
    """Instruments this process when it is one of the run's ranks (see the module's doc). Never raises."""
    global _probe
    try:
        if _probe is not None or not is_rank_process():
            return
        opts = settings(os.environ.get(SETTINGS_ENV, ""))
        for k in [k for k in os.environ if k.startswith("GRADSCOPE_")]:
            os.environ.pop(k, None)
        script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else opts.get("script", "")
        from .__main__ import _host_gone
        from .probe import Probe

        channel = LazyChannel(os.environ[SOCKET_ENV], on_host_gone=_host_gone)
        probe = Probe(channel, os.path.abspath(script) if script else "", max_steps=_int(opts.get("steps")),
                      detail_every=_int(opts.get("detail")), sampled_every=_int(opts.get("sampled")))
        probe.distributed = True
        probe.install()
        _probe = probe
        _install_exit_hooks(probe, channel)
    except Exception as e:  # noqa: BLE001 - the script runs, uninstrumented
        try:
            sys.stderr.write("[gradscope] warning: the probe could not start in this process (%s); running without inspection\n" % (e,))
        except Exception:  # noqa: BLE001
            pass


def _install_exit_hooks(probe, channel) -> None:
    """END at exit: `crashed` after an uncaught exception (sys.excepthook) or a non-zero sys.exit
    (torch.multiprocessing's workers catch the error and call sys.exit(1): the exception is the one
    being handled then), else `completed` when the process took part (it connected)."""
    import atexit
    from .probe import error_info

    state = {"error": None, "code": 0}

    prev_hook = sys.excepthook

    def excepthook(tp, value, tb):
        try:
            if not isinstance(value, KeyboardInterrupt):
                probe.finish("crashed", error_info(value))
        except Exception:  # noqa: BLE001
            pass
        prev_hook(tp, value, tb)

    sys.excepthook = excepthook
    prev_exit = sys.exit

    def exit_(code=None):
        try:
            failed = code not in (None, 0) and not isinstance(code, bool)
            if failed and state["error"] is None:
                state["code"] = code
                e = sys.exc_info()[1]
                state["error"] = error_info(e) if e is not None else {"message": "the process called sys.exit(%r)" % (code,)}
        except Exception:  # noqa: BLE001
            pass
        prev_exit(code)

    sys.exit = exit_

    def at_exit():
        try:
            if probe.finished:
                return
            if state["error"] is not None:
                probe.finish("crashed", state["error"])
            elif channel.connected:
                probe.finish("completed")
        except Exception:  # noqa: BLE001
            pass

    atexit.register(at_exit)
