"""Notebook runs: ``%load_ext gradscope_probe``, then ``%gradscope on`` / ``off`` / ``status`` in any
Jupyter kernel (ipykernel: VS Code's notebooks, JupyterLab, nbclient).

``on`` starts the probe inside the kernel process and writes a run file (docs/run-file.md: the
``GSRUN 1`` meta line, the probe's frames through its usual Channel over the file's descriptor, and
the ``GSEX`` trailer at ``off`` or when the kernel exits) to ``.gradscope/runs/`` of the notebook's
folder, so the run can be opened later (Open Run…, ``gradscope fix --from-run``). Every optimizer
step of any cell is a STEP from then on, those of optimizers built before ``on`` included (found
through the garbage collector; their layers' lines are unknown, which an EVENT says).

``off`` ends the run (END, trailer) and removes every hook ``on`` installed, so ``on`` again starts a
new run without stacking hooks. The kernel is never broken by the probe: its errors are warnings.

Lines in cells: ipykernel compiles each cell as its own file (``/tmp/ipykernel_<pid>/<hash>.py``;
``<ipython-input-N-…>`` in older IPython), whose line 1 is the cell's first line. While a run is on,
such a file is mapped to the notebook and the cell's 0-based index by comparing the cell's source
(the kernel's input history, else the compiled text linecache keeps) with the notebook file's cells;
locations then read ``{file: <notebook.ipynb>, cell, line, column}`` (protocol ``cell``). A cell that
is not found (a notebook not saved since the cell was edited) keeps the kernel's file name, and an
EVENT says so once.

Live: ``%gradscope on [NOTEBOOK] --connect unix:/path`` also streams every frame to a GradScope that
listens there (VS Code's "GradScope: Inspect This Notebook's Kernel" sends it, with the per-run
Unix socket of src/process/rankListener.ts: a folder only this user can reach, so no token), while
still writing the run file. ``off`` ("Detach") ends both. ``on --connect`` while a run is on ends
that run and starts a streaming one (hooks never stack).

Which notebook: ``%gradscope on path/to/nb.ipynb`` when given; else ``__vsc_ipynb_file__`` (VS Code
sets it in the user namespace), ``__session__`` (ipykernel sets it from Jupyter Server's
``JPY_SESSION_NAME``) or ``JPY_SESSION_NAME`` itself; else the only ``.ipynb`` in the kernel's
working folder; else none: the run file goes under the kernel's working folder and cells keep
their kernel file names.
"""
from __future__ import annotations

import atexit
import datetime
import json
import linecache
import os
import random
import re
import shlex
import struct
import sys

from . import sources
from .channel import Channel

RUNS_SUBDIR = os.path.join(".gradscope", "runs")
RUN_FILE_EXT = ".gsrun"
RUN_FILE_VERSION = 1
TRAILER_MAGIC = 0x58455347  # "GSEX" little-endian
_CELL_FILE = re.compile(r"ipykernel_\d+[/\\][^/\\]+\.py$")


def _warn(msg: str) -> None:
    try:
        sys.stderr.write("[gradscope] warning: %s\n" % msg)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass


def _iso(now: datetime.datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as JavaScript's toISOString writes it."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_run_id(now: datetime.datetime) -> str:
    """Like the host's makeRunId: the start time, sortable and file-name safe, and 4 hex digits."""
    return "%s-%04x" % (_iso(now).replace(":", "-").replace(".", "-"), random.randrange(0x10000))


def trailer(record: dict) -> bytes:
    """The run file's exit record (docs/run-file.md): 16-byte head, JSON, length and magic."""
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return struct.pack("<IHHII", TRAILER_MAGIC, RUN_FILE_VERSION, 0, len(body), 0) + body + struct.pack("<II", len(body), TRAILER_MAGIC)


# ------------------------------------------------------------------------------------------------
# Which notebook


def _existing_notebook(v, cwd: str):
    if not isinstance(v, str) or not v.endswith(".ipynb"):
        return None
    # Jupyter Server's session name is relative to the server's root, which need not be the
    # kernel's folder (the notebook's): the name alone in that folder is the next guess.
    for p in (os.path.join(cwd, v), os.path.join(cwd, os.path.basename(v))):  # (join keeps an absolute v)
        if os.path.isfile(p):
            return os.path.abspath(p)
    return None


def find_notebook(ns, environ=None, cwd=None):
    """(absolute path of the kernel's notebook or None, how it was found, in words)."""
    environ = os.environ if environ is None else environ
    cwd = cwd or os.getcwd()
    for key, how in (("__vsc_ipynb_file__", "__vsc_ipynb_file__ (VS Code)"), ("__session__", "__session__ (Jupyter)")):
        p = _existing_notebook(ns.get(key), cwd)
        if p:
            return p, how
    p = _existing_notebook(environ.get("JPY_SESSION_NAME"), cwd)
    if p:
        return p, "JPY_SESSION_NAME"
    try:
        nbs = sorted(f for f in os.listdir(cwd) if f.endswith(".ipynb"))
    except OSError:
        nbs = []
    if len(nbs) == 1:
        return os.path.join(cwd, nbs[0]), "the only notebook in the kernel's working folder"
    return None, "none found (no __vsc_ipynb_file__, __session__ or JPY_SESSION_NAME, and %d notebooks in %s)" % (len(nbs), cwd)


# ------------------------------------------------------------------------------------------------
# Cells


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _norm_magic(text: str) -> str:
    """Magic and shell lines compare equal whatever IPython made of them (``%gradscope on`` is
    compiled as ``get_ipython().run_line_magic(...)``, on the same line)."""
    out = []
    for line in text.strip().splitlines():
        s = line.strip()
        out.append("%" if s.startswith(("%", "!")) or "get_ipython()." in s else line.rstrip())
    return "\n".join(out)


class CellLocator:
    """co_filename of a cell -> {"file": notebook, "cell": index} (sources.set_cell_locator)."""

    def __init__(self, notebook: str, shell=None, on_miss=None):
        self.notebook = notebook
        self._shell = shell
        self._on_miss = on_miss
        self._cache = {}
        self._cells = None
        self._stamp = None

    def is_cell_file(self, filename: str) -> bool:
        if sources.is_ipython_input(filename) or _CELL_FILE.search(filename):
            return True
        fm = getattr(getattr(self._shell, "compile", None), "_filename_map", None)
        return isinstance(fm, dict) and filename in fm

    def __call__(self, filename: str):
        if filename in self._cache:
            return self._cache[filename]
        hit = None
        if self.is_cell_file(filename):
            idx = self.find(filename)
            if idx is None:
                if self._on_miss is not None:
                    self._on_miss(filename)
            else:
                hit = {"file": self.notebook, "cell": idx}
        self._cache[filename] = hit
        return hit

    def _notebook_cells(self):
        """[(index among all cells, source)] of the notebook's code cells, re-read when the file changes."""
        try:
            st = os.stat(self.notebook)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return []
        if stamp != self._stamp:
            try:
                with open(self.notebook, encoding="utf-8") as f:
                    nb = json.load(f)
                cells = []
                for i, c in enumerate(nb.get("cells", [])):
                    if c.get("cell_type") == "code":
                        src = c.get("source", "")
                        cells.append((i, "".join(src) if isinstance(src, list) else str(src)))
            except (OSError, ValueError, AttributeError, TypeError):
                cells = []
            self._cells, self._stamp = cells, stamp
        return self._cells or []

    def _texts(self, filename: str) -> list:
        """The cell's source as typed (the input history), then as compiled (linecache)."""
        out = []
        fm = getattr(getattr(self._shell, "compile", None), "_filename_map", None)
        n = fm.get(filename) if isinstance(fm, dict) else None
        ih = getattr(getattr(self._shell, "history_manager", None), "input_hist_raw", None)
        if isinstance(n, int) and isinstance(ih, list) and 0 <= n < len(ih) and isinstance(ih[n], str):
            out.append(ih[n])
        lines = linecache.getlines(filename)
        if lines:
            out.append("".join(lines))
        return out

    def find(self, filename: str):
        cells = self._notebook_cells()
        texts = self._texts(filename)
        for norm in (_norm, _norm_magic):
            for t in texts:
                want = norm(t)
                if not want:
                    continue
                for i, src in cells:
                    if norm(src) == want:
                        return i
        return None


# ------------------------------------------------------------------------------------------------
# A run


class _RunChannel(Channel):
    """The probe's channel over the run file. The run's own EVENTs wait for the first STEP: HELLO goes
    out with the probe's first frame and names the device of the parameters known by then, which
    before any step may be none (it would say "CPU" of a run that trains on a GPU).

    With ``--connect ADDRESS`` (a GradScope that listens: VS Code's "Inspect This Notebook's
    Kernel"), every frame also goes to that socket, the same frames as the file in the same order
    (``live``, a Channel of its own: its own queue, its own drops). The socket's loss never touches
    the kernel nor the run file: the stream stops, a warning says so, the file goes on."""

    def __init__(self, fd, run, live=None, **kwargs):
        super().__init__(fd, **kwargs)
        self._run = run
        self.live = live

    def send(self, msg: dict) -> bool:
        ok = super().send(msg)
        live = self.live
        if live is not None:
            live.send(msg)
        if msg.get("type") == "step" and self._run.pending:
            self._run.flush_events()
        return ok

    def flush(self, timeout: float = 5.0) -> bool:
        ok = super().flush(timeout)
        if self.live is not None:
            self.live.flush(timeout)
        return ok

    def release_live(self, timeout: float = 5.0) -> None:
        """Writes what the socket has queued, then closes it (the listener sees the run's end)."""
        live, self.live = self.live, None
        if live is None:
            return
        try:
            live.release(timeout)
        finally:
            try:
                os.close(live.fd)
            except OSError:
                pass


class NotebookRun:
    """One ``%gradscope on`` … ``off``: the probe, its run file, the hooks to remove."""

    def __init__(self, shell, notebook=None, connect=None):
        self.shell = shell
        self.connect = connect  # a listening GradScope's address (ranks.connect), or None
        ns = getattr(shell, "user_ns", None) or {}
        if notebook:
            found = _existing_notebook(notebook, os.getcwd())
            self.notebook, self.how = (found, "given") if found else (None, "given, but %s is not a notebook file" % notebook)
        else:
            self.notebook, self.how = find_notebook(ns)
        self.folder = os.path.dirname(self.notebook) if self.notebook else os.getcwd()
        self.path = None
        self.probe = None
        self.channel = None
        self.locator = None
        self.ended = False
        self._missed = False
        self.pending = []  # EVENTs held until the first STEP (_RunChannel)

    def start(self) -> None:
        from .probe import Probe

        run_dir = os.path.join(self.folder, RUNS_SUBDIR)
        os.makedirs(run_dir, exist_ok=True)
        now = _utcnow()
        run_id = make_run_id(now)
        self.path = os.path.join(run_dir, run_id + RUN_FILE_EXT)
        script = self.notebook or self.folder
        meta = {"runId": run_id, "script": script, "args": [], "cwd": os.getcwd(), "startedAt": _iso(now), "framework": "torch"}
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            os.write(fd, b"GSRUN 1 " + json.dumps(meta, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n")
            # The probe's own channel, over the file: no watchdog (nobody reads a file's other end).
            self.channel = _RunChannel(fd, self, on_host_gone=self._write_failed, watch=False)
        except BaseException:
            os.close(fd)
            raise
        if self.connect:
            self.channel.live = self._open_live(self.connect)
        self.probe = Probe(self.channel, script)
        if self.notebook:
            self.locator = CellLocator(self.notebook, self.shell, self._cell_missed)
            sources.set_cell_locator(self.locator)
        self.probe.install()
        self.event("info", "notebook run: %s (notebook: %s)" % (script, self.how))
        self._adopt()
        atexit.register(self._at_exit)

    def _open_live(self, address: str):
        """The socket to a listening GradScope, or None (said once) when it cannot be reached: the run
        file is written either way. No watchdog reads it (a watchdog's hang-up would stop the kernel's
        script); a listener that goes away is seen by the next write, and only the stream stops."""
        from .ranks import connect

        try:
            return Channel(connect(address), watch=False)
        except Exception as e:  # noqa: BLE001
            _warn("cannot connect to GradScope at %s (%s): writing the run file only" % (address, e))
            return None

    @property
    def live(self) -> bool:
        ch = self.channel
        return ch is not None and ch.live is not None and not ch.live.host_gone

    def event(self, kind: str, message: str) -> None:
        self.pending.append({"type": "event", "kind": kind, "message": message})

    def flush_events(self) -> None:
        pending, self.pending = self.pending, []
        for msg in pending:
            self.probe.send(msg)

    def _write_failed(self, why: str) -> None:
        _warn("writing the run file %s failed (%s): the notebook goes on without inspection" % (self.path, why))

    def _cell_missed(self, filename: str) -> None:
        if self._missed:
            return
        self._missed = True
        self.event("info", "a cell (%s) is not in %s as saved: its locations name the kernel's file, not the cell "
                   "(save the notebook before running the cells to have them on their cell lines)" % (filename, self.notebook))

    def _adopt(self) -> None:
        """Optimizers and models that existed before ``on``: their classes' step wrapped as the
        Optimizer.__init__ hook would, their names taken from the notebook's variables. Where they
        were built is not known any more."""
        import gc
        import weakref

        import torch

        probe = self.probe
        ns = getattr(self.shell, "user_ns", None) or {}
        models = []
        for name, v in list(ns.items()):
            if name.startswith("_") or not isinstance(v, torch.nn.Module):
                continue
            models.append(name)
            sites = probe._module_sites
            if id(v) not in sites:
                key = id(v)
                probe._module_refs.append(weakref.ref(v, lambda _r, k=key: sites.pop(k, None)))
                sites[key] = (None, None)
            probe._name_root(v, name)
        opts = []
        Optimizer = torch.optim.Optimizer
        for o in gc.get_objects():
            # type(), not isinstance(): isinstance reads __class__, which some objects compute (a
            # deprecated torch.distributed.reduce_op warns when touched).
            if issubclass(type(o), Optimizer):
                opts.append(o)
        names = []
        for opt in opts:
            probe._wrap_step_of(type(opt))
            probe._on_optimizer_built(opt, None)
            name = next((k for k, v in ns.items() if v is opt and not k.startswith("_")), None)
            probe._opt_names[id(opt)] = (weakref.ref(opt), name)
            names.append(name or type(opt).__name__)
            params = {id(p) for g in opt.param_groups for p in g["params"]}
            for k, v in list(ns.items()):
                if isinstance(v, torch.Tensor) and id(v) in params and not k.startswith("_"):
                    probe._raw_names.setdefault(id(v), k)
        if opts or models:
            self.event("info", "built before %%gradscope on: %s%s%s. Their steps are seen, but not where their layers were built: "
                       "re-run the cells that build them after %%gradscope on to have findings on their lines" % (
                           "optimizer(s) " + ", ".join(names) if names else "",
                           "; " if names and models else "", "model(s) " + ", ".join(models) if models else ""))

    def stop(self, reason: str = "completed", error=None) -> int:
        """END, the trailer, and every hook removed. Returns the steps recorded."""
        if self.ended:
            return self.probe.steps if self.probe is not None else 0
        self.ended = True
        try:
            atexit.unregister(self._at_exit)
        except Exception:  # noqa: BLE001
            pass
        probe = self.probe
        steps = 0
        if probe is not None:
            steps = probe.steps
            for what, fn in (("sending the run's events", self.flush_events), ("ending the run", lambda: probe.finish(reason, error)),
                             ("removing the hooks", probe.uninstall),
                             ("removing the input hooks", probe._stop_inputs),
                             ("stopping the detail thread", lambda: probe._worker is not None and probe._worker.stop())):
                try:
                    fn()
                except Exception as e:  # noqa: BLE001
                    _warn("%s: %s" % (what, e))
            steps = probe.steps
        if self.locator is not None and sources._cell_locator is self.locator:
            sources.set_cell_locator(None)
        ch = self.channel
        if ch is not None:
            try:
                ch.release_live()
            except Exception as e:  # noqa: BLE001
                _warn("closing the connection to GradScope: %s" % e)
            try:
                ch.release()
                if not ch.host_gone:
                    record = {"reason": reason, "code": None, "signal": None, "error": error, "endedAt": _iso(_utcnow()), "steps": steps}
                    data = trailer(record)
                    while data:
                        data = data[os.write(ch.fd, data):]
                    os.fsync(ch.fd)
            except Exception as e:  # noqa: BLE001
                _warn("finishing the run file %s: %s" % (self.path, e))
            try:
                os.close(ch.fd)
            except OSError:
                pass
        return steps

    def _at_exit(self) -> None:
        try:
            self.stop("completed")
        except Exception:  # noqa: BLE001
            pass

    def status(self) -> str:
        steps = self.probe.steps if self.probe is not None else 0
        ch = self.channel
        if ch is not None and ch.live is not None:
            # The channel holds STEP frames up to 50 ms before its writer writes them; a listener that
            # went away is seen by that write: written first, so that the answer is current.
            ch.live.flush(1.0)
        return "GradScope is on: %d step(s) so far, run file %s, notebook %s (%s)%s" % (
            steps, self.path, self.notebook or "unknown", self.how,
            (", streaming to %s" % self.connect if self.live else ", not streaming (the connection to %s is gone)" % self.connect) if self.connect else "")


# ------------------------------------------------------------------------------------------------
# The magic

_active = None  # the NotebookRun that is on, if any

USAGE = "usage: %gradscope on [NOTEBOOK.ipynb] [--connect unix:/path] | off | status"


def _parse_on(args):
    """(notebook or None, address or None) of ``on``'s arguments; ValueError on anything else."""
    notebook = connect = None
    rest = list(args)
    while rest:
        a = rest.pop(0)
        if a == "--connect" and rest:
            connect = rest.pop(0)
        elif a.startswith("--connect="):
            connect = a[len("--connect="):]
        elif not a.startswith("-") and notebook is None:
            notebook = a
        else:
            raise ValueError(a)
    return notebook, connect


def gradscope_magic(shell, line: str) -> None:
    global _active
    try:
        try:
            args = shlex.split(line)  # paths with spaces come quoted
        except ValueError:
            args = line.split()
        cmd = args[0] if args else "status"
        if cmd == "on":
            try:
                nb_arg, connect = _parse_on(args[1:])
            except ValueError as e:
                print("%gradscope on: unexpected %r; " % (str(e),) + USAGE)
                return
            if _active is not None:
                if not connect:
                    print("GradScope is already on: run file %s" % _active.path)
                    return
                # A GradScope asks to follow the kernel: the run that is on ends (its file complete)
                # and a new one starts that streams; hooks never stack (off removes them all).
                old, _active = _active, None
                steps = old.stop("completed")
                print("GradScope: the run that was on ended (%d step(s) in %s); a new one streams to GradScope" % (steps, old.path))
            run = NotebookRun(shell, nb_arg, connect)
            try:
                run.start()
            except Exception as e:  # noqa: BLE001
                _warn("could not start (%s: %s): the notebook goes on without inspection" % (type(e).__name__, e))
                try:
                    run.stop("completed")
                except Exception:  # noqa: BLE001
                    pass
                return
            _active = run
            print("GradScope is on: writing %s%s%s" % (run.path, "" if run.notebook else " (notebook not found: " + run.how + ")",
                                                     "" if not connect else ", streaming to GradScope" if run.live else ", not streaming (GradScope not reachable)"))
        elif cmd == "off":
            if _active is None:
                print("GradScope is off")
                return
            run, _active = _active, None
            steps = run.stop("completed")
            print("GradScope is off: %d step(s) in %s" % (steps, run.path))
        elif cmd == "status":
            print(_active.status() if _active is not None else "GradScope is off")
        else:
            print(USAGE)
    except Exception as e:  # noqa: BLE001 - the kernel is never broken by the probe
        _warn("%%gradscope %s: %s: %s" % (line, type(e).__name__, e))


def load_ipython_extension(shell) -> None:
    shell.register_magic_function(lambda line: gradscope_magic(shell, line), magic_kind="line", magic_name="gradscope")


def unload_ipython_extension(shell) -> None:
    global _active
    if _active is not None:
        run, _active = _active, None
        run.stop("completed")
