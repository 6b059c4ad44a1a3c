"""Entry point: ``python -m gradscope_probe [--connect HOST:PORT] <script.py> [args...]``.

``--connect HOST:PORT``: stream to a GradScope that listens there (``gradscope listen``), with the
token in GRADSCOPE_TOKEN; see remote.py. A refused or failed connection leaves the script running,
unobserved, with a loud warning.

Like ``python script.py args...``: the script runs as ``__main__`` (runpy.run_path), ``sys.argv`` is
``[script, args...]``, the script's folder is first on ``sys.path`` (so its own modules import),
and the probe's folder (put on PYTHONPATH by the host) is taken off ``sys.path`` and PYTHONPATH
again so neither the script nor its children see it.

Environment (read, then removed so the script and its children do not inherit them):
GRADSCOPE_CHANNEL_FD (the fd to write frames to; without it the script runs uninstrumented),
GRADSCOPE_MAX_STEPS (stop cleanly after N optimizer steps), GRADSCOPE_DETAIL_EVERY (steps between
detail frames; 0 = automatic), GRADSCOPE_SAMPLED_EVERY (steps between measures of the sampled tier,
maxAbs/paramNorm/updateNorm; 0 = automatic, see sampled.py), GRADSCOPE_LOCATE_NAN (1: locate mode,
the host's bounded re-run that finds the operation making the first non-finite value; see locate.py).

Exit status: the script's own (0, 1 after an uncaught exception, sys.exit's code); 0 after the
step limit; 1 when the host goes away (the channel's watchdog).
"""
from __future__ import annotations

import os
import sys

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENV = ("GRADSCOPE_TOKEN", "GRADSCOPE_CHANNEL_FD", "GRADSCOPE_MAX_STEPS", "GRADSCOPE_DETAIL_EVERY", "GRADSCOPE_SAMPLED_EVERY", "GRADSCOPE_LOCATE_NAN")


def _env_int(name: str) -> int:
    try:
        v = int(os.environ.get(name, "") or 0)
    except ValueError:
        return 0
    return v if v > 0 else 0


def _clean_paths() -> None:
    def ours(p: str) -> bool:
        try:
            return bool(p) and os.path.realpath(p) == os.path.realpath(_PKG_PARENT)
        except OSError:
            return False

    # `python -m` put the current directory first; `python script.py` would not have it.
    if sys.path and sys.path[0] in ("", os.getcwd()) and getattr(sys.modules.get("__main__"), "__spec__", None) is not None:
        del sys.path[0]
    sys.path[:] = [p for p in sys.path if not ours(p)]
    pp = os.environ.get("PYTHONPATH")
    if pp is not None:
        rest = [p for p in pp.split(os.pathsep) if not ours(p)]
        if rest:
            os.environ["PYTHONPATH"] = os.pathsep.join(rest)
        else:
            del os.environ["PYTHONPATH"]


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    connect_to = None
    if argv and (argv[0] == "--connect" or argv[0].startswith("--connect=")):
        if argv[0] == "--connect":
            connect_to = argv[1] if len(argv) > 1 else ""
            argv = argv[2:]
        else:
            connect_to = argv[0][len("--connect="):]
            argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m gradscope_probe [--connect HOST:PORT] <script.py> [args...]\n"
                         "  --connect HOST:PORT  stream to `gradscope listen` there; the token in GRADSCOPE_TOKEN\n")
        sys.exit(2)
    if connect_to is not None:
        from .remote import parse_address

        try:
            parse_address(connect_to)
        except ValueError as e:
            sys.stderr.write("gradscope_probe: %s\n" % e)
            sys.exit(2)
    script = os.path.abspath(argv[0])
    token = os.environ.get("GRADSCOPE_TOKEN", "")
    fd_raw = os.environ.get("GRADSCOPE_CHANNEL_FD", "")
    max_steps = _env_int("GRADSCOPE_MAX_STEPS")
    detail_every = _env_int("GRADSCOPE_DETAIL_EVERY")
    sampled_every = _env_int("GRADSCOPE_SAMPLED_EVERY")
    locate_nan = _env_int("GRADSCOPE_LOCATE_NAN") > 0
    for k in _ENV:
        os.environ.pop(k, None)
    _clean_paths()
    if not os.path.exists(script):
        sys.stderr.write("python: can't open file %r: [Errno 2] No such file or directory\n" % argv[0])
        sys.exit(2)

    probe = None
    parent = os.getppid()  # the host, whose going away stops the script's group (_stop_if_orphaned)
    if connect_to is not None:
        probe = _start_remote(connect_to, token, script, max_steps, detail_every, sampled_every)
    elif fd_raw.strip().isdigit():
        probe = _start_probe(int(fd_raw), script, max_steps, detail_every, sampled_every)
    if locate_nan and probe is not None:
        _start_locate(probe)

    sys.argv = [script] + argv[1:]
    sys.path.insert(0, os.path.dirname(script))
    import runpy

    if probe is None or connect_to is not None:
        parent = None  # not with --connect: started by hand there, its group is the user's shell job
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        _stop_if_orphaned(parent)
        if probe is not None and not probe.finished:
            code = e.code
            if code is None or code == 0:
                probe.finish("completed")
            else:
                from .probe import error_info

                info = error_info(e)
                info["message"] = "the script called sys.exit(%r)" % (code,)
                probe.finish("crashed", info)
        raise
    except BaseException as e:  # noqa: BLE001 - the user's error: report it, then behave like Python
        _stop_if_orphaned(parent)
        if probe is not None:
            try:
                from .probe import error_info

                probe.finish("crashed", error_info(e))
            except Exception:  # noqa: BLE001
                pass
        if isinstance(e, KeyboardInterrupt):
            raise
        from .probe import script_traceback

        tb = script_traceback(e)
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        sys.stdout.flush()
        sys.exit(1)
    _stop_if_orphaned(parent)
    if probe is not None:
        probe.finish("completed")


def _stop_if_orphaned(parent) -> None:
    """The script ended right after the host died, before the watchdog saw the hang-up: nobody else
    will stop what the script started, so stop it as the watchdog would have (before END, which may
    wait seconds on a channel nobody reads). This process handed to another parent is the sign: it
    can come a moment before the channel's end-of-file (measured on the TF.js runner: 1 run in ~10
    under load). parent None: not asked (no probe, or --connect)."""
    if parent is None or os.getppid() == parent:
        return
    try:
        _stop_group()
    except Exception:  # noqa: BLE001
        pass


def _start_probe(fd, script, max_steps, detail_every, sampled_every=0):
    try:
        from .channel import Channel
        from .probe import Probe
    except Exception as e:  # noqa: BLE001 - e.g. torch does not import: run the script as is
        sys.stderr.write("[gradscope] warning: the probe could not start (%s); running without inspection\n" % (e,))
        return None
    try:
        channel = Channel(fd, on_host_gone=_host_gone)
    except Exception as e:  # noqa: BLE001
        sys.stderr.write("[gradscope] warning: cannot open the channel on fd %d (%s); running without inspection\n" % (fd, e))
        return None
    probe = Probe(channel, script, max_steps=max_steps, detail_every=detail_every, sampled_every=sampled_every)
    probe.install()
    return probe


def _start_remote(address, token, script, max_steps, detail_every, sampled_every):
    """--connect: the handshake now, before the script starts, so a refusal is said at once. Any
    failure: the script runs unobserved, with a loud warning (remote.py says why not exit)."""
    from . import remote

    try:
        from .channel import Channel
        from .probe import Probe
    except Exception as e:  # noqa: BLE001 - e.g. torch does not import: run the script as is
        remote.warn_loud("the probe could not start (%s); the script runs without inspection" % (e,))
        return None
    try:
        fd = remote.connect(address, token, remote.job_id())
    except remote.RemoteError as e:
        # Without a token the listener refuses too (and says so on its side): the same warning, with the cause.
        hint = "" if token else " (GRADSCOPE_TOKEN is not set: set it to the token `gradscope listen` printed)"
        remote.warn_loud("%s%s; the script runs without inspection" % (e, hint))
        return None
    watcher = remote.LostWatcher(address)
    try:
        channel = Channel(fd, on_host_gone=watcher)
    except Exception as e:  # noqa: BLE001
        remote.warn_loud("cannot use the connection to %s (%s); the script runs without inspection" % (address, e))
        return None
    probe = Probe(channel, script, max_steps=max_steps, detail_every=detail_every, sampled_every=sampled_every)
    # One process of a torchrun job says its place (rank, world size, host); a single one its host.
    probe.distributed = remote.job_id() is not None
    probe.hello_extra = {"host": _hostname()}
    watcher.probe = probe
    probe.install()
    try:
        sys.stderr.write("[gradscope] connected to GradScope at %s: this run is observed there\n" % address)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    return probe


def _hostname() -> str:
    import socket

    try:
        return socket.gethostname()
    except OSError:
        return ""


def _start_locate(probe) -> None:
    try:
        from .locate import enable

        enable(probe.send, lambda: probe.steps)
    except Exception as e:  # noqa: BLE001 - the re-run goes on without it and says so
        sys.stderr.write("[gradscope] warning: locate mode could not start (%s)\n" % (e,))


def _host_gone(why: str) -> None:
    # Watchdog: nobody reads our frames or will stop us any more: stop now, with what the script
    # started (the host would have stopped the whole group; it cannot any more).
    try:
        sys.stderr.write("[gradscope] %s: stopping the script\n" % why)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    try:
        _stop_group()
    except Exception:  # noqa: BLE001
        pass
    os._exit(1)


GROUP_GRACE_S = 2.0


def _group_members(pgid: int) -> list:
    """Live processes of process group pgid, from /proc (Linux); [] where /proc is not there."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp …
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            out.append(int(name))
    return out


def _stop_group() -> None:
    """When this process leads its process group (the host starts it so: the group is the run), stops
    the rest of the group: SIGTERM to each, then SIGKILL after GROUP_GRACE_S to what is left (this
    runs on the watchdog thread, which cannot change this process's own signal handling, so the
    signals go to the others one by one). A process that left the group (setsid daemons) is out of
    reach, as it would be for the host."""
    import signal
    import time

    me = os.getpid()
    if os.getpgid(0) != me:
        return  # not our group to stop (run by hand, or under another tool)

    def others():
        return [p for p in _group_members(me) if p != me]

    def send(sig, pids):
        for p in pids:
            try:
                os.kill(p, sig)
            except OSError:
                pass

    left = others()
    if not left:
        return
    send(signal.SIGTERM, left)
    deadline = time.monotonic() + GROUP_GRACE_S
    while time.monotonic() < deadline:
        left = others()
        if not left:
            return
        time.sleep(0.05)
    for _ in range(3):  # (a process may fork while being killed)
        left = others()
        if not left:
            return
        send(signal.SIGKILL, left)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
