"""Runs scripts under the probe in a real child process, the way the host does: a socket pair, the
child's end passed as GRADSCOPE_CHANNEL_FD, the probe's folder on PYTHONPATH, and every frame
decoded with the reference decoder."""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading

from gradscope_probe.wire import decode_all

PROBE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.abspath(os.path.join(PROBE_PARENT, "..", "..", ".."))


class Run:
    def __init__(self, rc, data, stdout, stderr):
        self.rc = rc
        self.data = data
        self.frames, self.error = decode_all(data)
        self.messages = [m for _, m in self.frames]
        self.seqs = [s for s, _ in self.frames]
        self.stdout = stdout
        self.stderr = stderr

    def of(self, t):
        return [m for m in self.messages if m["type"] == t]

    @property
    def tensors(self):
        return [t for m in self.of("tensors") for t in m["tensors"]]

    def tensor(self, name):
        for t in self.tensors:
            if t["name"] == name:
                return t
        raise AssertionError("no tensor %s in %s" % (name, [t["name"] for t in self.tensors]))

    def stat(self, step_msg, stat, tid):
        return step_msg["columns"][step_msg["stats"].index(stat)][tid]

    def warnings(self):
        return [e["message"] for e in self.of("event") if e["kind"] == "warning"]


def write_script(dirpath, name, text):
    path = os.path.join(dirpath, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path, marker):
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if marker in line:
                return i
    raise AssertionError("no %r in %s" % (marker, path))


def run_probe(script, args=(), env=None, channel=True, timeout=60, cwd=None, on_started=None, new_session=False) -> Run:
    e = dict(os.environ)
    e.pop("GRADSCOPE_CHANNEL_FD", None)
    e["PYTHONPATH"] = PROBE_PARENT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the source tree
    e.update(env or {})
    host, child = socket.socketpair() if channel else (None, None)
    pass_fds = ()
    if channel:
        e["GRADSCOPE_CHANNEL_FD"] = str(child.fileno())
        pass_fds = (child.fileno(),)
    if channel:  # "@CHANNEL_FD" in args: the number the host gave (a script that closes it, tests)
        args = [e["GRADSCOPE_CHANNEL_FD"] if a == "@CHANNEL_FD" else a for a in args]
    p = subprocess.Popen([sys.executable, "-m", "gradscope_probe", script, *args], env=e, cwd=cwd or os.path.dirname(script),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=new_session)
    chunks = []
    if channel:
        child.close()

        def reader():
            while True:
                try:
                    d = host.recv(1 << 16)
                except OSError:
                    return
                if not d:
                    return
                chunks.append(d)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        if on_started is not None:
            on_started(p, host, chunks)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("%s did not finish in %ss; stderr:\n%s" % (script, timeout, err.decode(errors="replace")))
    if channel:
        t.join(5)
        host.close()
    return Run(p.returncode, b"".join(chunks), out.decode(errors="replace"), err.decode(errors="replace"))


class TempDirMixin:
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="gs-torch-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def script(self, name, text):
        return write_script(self.tmp, name, text)

    def assertWellFormed(self, r: Run, warnings_ok=False):
        self.assertIsNone(r.error, "decode error: %s; stderr:\n%s" % (r.error, r.stderr))
        self.assertGreaterEqual(len(r.messages), 2, "stderr:\n%s" % r.stderr)
        self.assertEqual(r.messages[0]["type"], "hello")
        self.assertEqual(r.messages[-1]["type"], "end")
        self.assertEqual(len(r.of("hello")), 1)
        self.assertEqual(len(r.of("end")), 1)
        self.assertEqual(r.seqs, sorted(r.seqs))
        known = 0
        last = -1
        optimizers = {}
        for m in r.messages:
            if m["type"] == "tensors":
                for t in m["tensors"]:
                    self.assertEqual(t["id"], known)
                    known += 1
            if m["type"] == "optimizer":
                self.assertTrue(all(i < known for i in m["tensorIds"]))
                optimizers[m["id"]] = m
            if m["type"] == "step":
                self.assertEqual(m["nTensors"], known)  # every known tensor, absent ones too
                self.assertGreater(m["step"], last)
                last = m["step"]
                self.assertEqual(m["stats"], ["norm", "maxAbs", "nanCount", "infCount", "paramNorm", "updateNorm", "hasGrad"])
                self.assertIn(m["optimizer"], optimizers, "STEP before its OPTIMIZER")
                has = m["columns"][6]
                self.assertTrue(all(h in (0.0, 1.0) for h in has))
                for i, h in enumerate(has):
                    if h == 1.0:
                        self.assertIn(i, optimizers[m["optimizer"]]["tensorIds"])
                    else:  # absent: NaN in every other column
                        self.assertTrue(all(math.isnan(m["columns"][c][i]) for c in range(6)))
        if not warnings_ok:
            self.assertEqual(r.warnings(), [])
