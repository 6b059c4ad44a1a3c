"""Where things happen in the user's own code: construction sites of modules, crash frames.

A file is the user's when it is not part of torch, of this probe, of the standard library or of an
installed package (site-/dist-packages), and is a real file (not "<stdin>", "<frozen ...>"), or a
Jupyter cell: ipykernel compiles each cell as ``/tmp/ipykernel_<pid>/<hash>.py`` (a real-looking
path, often never written to disk), older IPython as ``<ipython-input-N-<hash>>``.
While a notebook run is on (notebook.py), ``set_cell_locator`` maps those cell files to the
notebook and the cell's index: frame_location then gives ``{file: <notebook.ipynb>, line, column,
cell}``, the line counted within the cell.
Columns are 1-based, in characters, from the position table of the calling instruction where the
interpreter has one (Python 3.11+: co_positions), else 1.
"""
from __future__ import annotations

import linecache
import os
import sys
import sysconfig

_PROBE_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_dirs():
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            p = sysconfig.get_paths().get(key)
        except Exception:  # noqa: BLE001 - odd interpreters
            p = None
        if p:
            dirs.add(os.path.realpath(p))
    try:
        import torch  # noqa: F401

        dirs.add(os.path.realpath(os.path.dirname(torch.__file__)))
    except Exception:  # noqa: BLE001
        pass
    dirs.add(os.path.realpath(_PROBE_DIR))
    return tuple(sorted(dirs))


_LIB_DIRS = None
_user_cache = {}
# filename -> {"file", "cell"} or None, set while a notebook run is on (notebook.py).
_cell_locator = None


def set_cell_locator(fn) -> None:
    """fn(co_filename) -> {"file": notebook path, "cell": index} or None; None turns mapping off."""
    global _cell_locator
    _cell_locator = fn


def is_ipython_input(filename: str) -> bool:
    """A cell of an older IPython (``<ipython-input-3-5f1e2c...>``): code the user typed."""
    return filename.startswith("<ipython-input-")


def is_user_file(filename: str) -> bool:
    r = _user_cache.get(filename)
    if r is not None:
        return r
    global _LIB_DIRS
    if _LIB_DIRS is None:
        _LIB_DIRS = _library_dirs()
    if is_ipython_input(filename or ""):
        r = True
    elif not filename or filename.startswith("<"):
        r = False
    else:
        real = os.path.realpath(filename)
        r = not (
            any(real == d or real.startswith(d + os.sep) for d in _LIB_DIRS)
            or os.sep + "site-packages" + os.sep in real
            or os.sep + "dist-packages" + os.sep in real
        )
    _user_cache[filename] = r
    return r


# Top-level directories of installed packages that are never a "library" site of a module: torch builds
# its own submodules (MultiheadAttention's out_proj), which says nothing the user's line does not.
_NOT_LIBRARIES = frozenset(("torch", "functorch", "torchgen", "gradscope_probe"))
_package_cache = {}


def library_package(filename: str):
    """Top-level package name of a file of an installed third-party library (``transformers``,
    ``timm``), or None for the user's code, torch, this probe and the standard library."""
    r = _package_cache.get(filename, False)
    if r is not False:
        return r
    r = None
    if filename and not filename.startswith("<") and not is_user_file(filename):
        real = os.path.realpath(filename)
        if not real.startswith(os.path.realpath(_PROBE_DIR) + os.sep):
            for marker in (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep):
                i = real.rfind(marker)
                if i >= 0:
                    top = real[i + len(marker):].split(os.sep, 1)[0]
                    if top.endswith(".py"):
                        top = top[:-3]
                    if top and top not in _NOT_LIBRARIES and not top.endswith((".dist-info", ".egg-info")):
                        r = top
                    break
    _package_cache[filename] = r
    return r


def construction_sites(frame, obj=None):
    """(user site, library site) of the code that is constructing ``obj``, walking out from ``frame``.

    The user site is the innermost frame in the user's code; the library site, the innermost frame
    of a third-party library (see library_package) inside it, as ``{file, line, column, package}``,
    or None when the user's code built ``obj`` itself. Frames of ``obj``'s own constructors
    (``Net.__init__`` → ``super().__init__()``) are skipped, so a module's site is the line that
    called its class, not the ``super().__init__()`` line.
    """
    built = None
    f = frame
    while f is not None:
        code = f.f_code
        user = is_user_file(code.co_filename)
        pkg = None if user or built is not None else library_package(code.co_filename)
        # Only frames that could be the answer pay for f_locals (a dict built per call on 3.11-3.12).
        if (user or pkg is not None) and not (
                obj is not None and code.co_name == "__init__" and code.co_argcount
                and f.f_locals.get(code.co_varnames[0]) is obj):
            if user:
                return frame_location(f), built
            built = frame_location(f)
            built["package"] = pkg
        f = f.f_back
    return None, built


_positions = {}  # code object -> its co_positions(), one entry per 2-byte instruction


def frame_location(frame, lasti=None, lineno=None):
    """{file, line, column} of the instruction a frame is executing (or of `lasti` in it)."""
    code = frame.f_code
    if lasti is None:
        lasti = frame.f_lasti
    line = lineno if lineno is not None else frame.f_lineno
    column = 1
    if lasti >= 0 and hasattr(code, "co_positions"):
        try:
            table = _positions.get(code)
            if table is None:
                # Once per code object: modules are built by the thousand from the same few lines.
                table = _positions[code] = tuple(code.co_positions())
            i = lasti // 2
            pos = table[i] if i < len(table) else None
            if pos is not None:
                start_line, _end_line, col, _end_col = pos
                if start_line is not None:
                    line = start_line
                if col is not None:
                    column = _char_column(code.co_filename, line, col) + 1
        except Exception:  # noqa: BLE001
            column = 1
    loc = {"file": code.co_filename if is_ipython_input(code.co_filename) else os.path.abspath(code.co_filename),
           "line": int(line or 1), "column": int(column)}
    cells = _cell_locator
    if cells is not None:
        try:
            hit = cells(code.co_filename)
        except Exception:  # noqa: BLE001 - a location without its cell, never an error in the user's code
            hit = None
        if hit is not None:
            loc["file"] = hit["file"]
            loc["cell"] = int(hit["cell"])
    return loc


def _char_column(filename: str, line: int, byte_col: int) -> int:
    """co_positions gives UTF-8 byte offsets; editors count characters."""
    text = linecache.getline(filename, line)
    if not text or text.isascii():
        return byte_col
    return len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))


def user_call_site(start_depth: int = 1):
    """Location of the innermost frame of the current stack that is in the user's code, or None."""
    try:
        f = sys._getframe(start_depth + 1)
    except ValueError:
        return None
    while f is not None:
        if is_user_file(f.f_code.co_filename):
            return frame_location(f)
        f = f.f_back
    return None


def user_frame_of_traceback(tb):
    """The innermost traceback entry in the user's code (where their code was when it failed)."""
    found = None
    while tb is not None:
        if is_user_file(tb.tb_frame.f_code.co_filename):
            found = tb
        tb = tb.tb_next
    if found is None:
        return None
    return frame_location(found.tb_frame, lasti=found.tb_lasti, lineno=found.tb_lineno)


def attribute_site(parent, child):
    """{file, line, column} of ``self.<attr> = …`` in the ``__init__`` of ``parent``'s class, where
    ``child`` is ``parent.<attr>`` and that class is the user's; None otherwise. For modules whose
    construction this process did not see (unpickled: a spawn child's copy of the parent's model)."""
    if parent is None:
        return None
    attr = next((a for a, c in getattr(parent, "_modules", {}).items() if c is child), None)
    fn = getattr(type(parent), "__init__", None)
    code = getattr(fn, "__code__", None)
    if attr is None or code is None or not is_user_file(code.co_filename):
        return None
    import inspect
    import re

    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return None
    pat = re.compile(r"\s*self\.%s\s*(:[^=]*)?=(?!=)" % re.escape(attr))
    for i, text in enumerate(lines):
        if pat.match(text):
            return {"file": code.co_filename, "line": start + i, "column": len(text) - len(text.lstrip()) + 1}
    return None
