"""Notebook runs (gradscope_probe/notebook.py) in a real Jupyter kernel: a notebook executed through
nbclient with ipykernel, ``%load_ext gradscope_probe`` / ``%gradscope on`` / ``off``, and the run file
it writes read back with the reference decoder."""
from __future__ import annotations

import glob
import json
import os
import shutil
import struct
import sys
import tempfile
import unittest

from gradscope_probe import notebook
from gradscope_probe.wire import decode_all

from .helpers import PROBE_PARENT, REPO

try:
    import ipykernel  # noqa: F401
    import nbclient
    import nbformat

    _SKIP = None
except ImportError as e:
    # Debian's python3-torch (1.13, the oldest row of the matrix) has no ipykernel. The repository's
    # .venv-torch2 must have it (scripts/requirements-torch2.txt): there a missing kernel fails.
    if os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(REPO, ".venv-torch2")):
        raise
    _SKIP = "ipykernel, nbclient and nbformat are needed to run a notebook (%s)" % e


def read_run_file(path):
    """(meta, messages, exit record or None) of a run file (docs/run-file.md)."""
    with open(path, "rb") as f:
        data = f.read()
    head, _, rest = data.partition(b"\n")
    assert head.startswith(b"GSRUN 1 "), head[:20]
    meta = json.loads(head[len(b"GSRUN 1 "):])
    exit_record = None
    if len(rest) >= 24:
        n, magic = struct.unpack_from("<II", rest, len(rest) - 8)
        if magic == notebook.TRAILER_MAGIC:
            start = len(rest) - 8 - n - 16
            m2, ver, _z, n2, _z2 = struct.unpack_from("<IHHII", rest, start)
            assert (m2, ver, n2) == (notebook.TRAILER_MAGIC, 1, n)
            exit_record = json.loads(rest[start + 16:start + 16 + n])
            rest = rest[:start]
    frames, err = decode_all(rest)
    assert err is None, err
    return meta, [m for _, m in frames], exit_record


SETUP = """\
import torch
torch.manual_seed(0)
before = torch.nn.Linear(4, 1)
before_opt = torch.optim.SGD(before.parameters(), lr=0.01)
hooked = (torch.optim.Optimizer.__init__, torch.nn.Module.__init__, torch.optim.SGD.step, torch.autograd.backward)
"""

# Cell 3: the deep MLP that explodes; its first layer is built on line 4 of the cell.
EXPLODE = """\
torch.manual_seed(1)
layers = []
for i in range(8):
    layers += [torch.nn.Linear(16, 16), torch.nn.ReLU()]
net = torch.nn.Sequential(*layers, torch.nn.Linear(16, 1))
with torch.no_grad():
    for p in net.parameters():
        p.mul_(4.0)
opt = torch.optim.SGD(net.parameters(), lr=1.0)
x, y = torch.randn(32, 16), torch.randn(32, 1)
for _ in range(6):
    opt.zero_grad()
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
"""

BEFORE_STEPS = """\
for _ in range(3):
    before_opt.zero_grad()
    before(torch.randn(2, 4)).sum().backward()
    before_opt.step()
"""

CHECK_UNHOOKED = """\
now = (torch.optim.Optimizer.__init__, torch.nn.Module.__init__, torch.optim.SGD.step, torch.autograd.backward)
print("UNHOOKED", all(a is b for a, b in zip(now, hooked)))
"""


@unittest.skipIf(_SKIP is not None, _SKIP or "")
class NotebookRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gs-nb-")
        cls.path = os.path.join(cls.dir, "train.ipynb")
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell("# Training"),  # 0
            nbformat.v4.new_code_cell(SETUP),  # 1
            nbformat.v4.new_code_cell("%load_ext gradscope_probe\n%gradscope on"),  # 2
            nbformat.v4.new_code_cell(EXPLODE),  # 3
            nbformat.v4.new_code_cell(BEFORE_STEPS),  # 4
            nbformat.v4.new_code_cell("%gradscope status\n%gradscope off\n" + CHECK_UNHOOKED),  # 5
            nbformat.v4.new_code_cell("%gradscope on"),  # 6
            nbformat.v4.new_code_cell(BEFORE_STEPS),  # 7
            nbformat.v4.new_code_cell("%gradscope off\n" + CHECK_UNHOOKED),  # 8
            nbformat.v4.new_code_cell("%gradscope on\n" + BEFORE_STEPS),  # 9: never turned off: the kernel's exit ends it
        ]
        nbformat.write(nb, cls.path)
        env = {"PYTHONPATH": PROBE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""), "JPY_SESSION_NAME": cls.path}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": cls.dir}})
            client.execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        cls.nb = nb
        cls.runs = sorted(glob.glob(os.path.join(cls.dir, ".gradscope", "runs", "*.gsrun")))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def output(self, cell):
        return "".join(o.get("text", "") for o in self.nb.cells[cell].get("outputs", []) if o.get("output_type") == "stream")

    def test_three_runs_each_with_a_trailer(self):
        self.assertEqual(len(self.runs), 3, self.runs)
        meta, msgs, exit_record = read_run_file(self.runs[0])
        self.assertEqual(meta["script"], self.path)
        self.assertEqual(meta["framework"], "torch")
        self.assertEqual(msgs[0]["type"], "hello")
        # HELLO goes out with the first step's frames (the run's own EVENTs wait): the device trained on.
        self.assertEqual(msgs[0]["script"], self.path)
        self.assertNotIn("no optimizer step ran", msgs[0]["backendReason"])
        self.assertEqual(msgs[-1], {"type": "end", "reason": "completed", "steps": 9})
        self.assertEqual(exit_record["reason"], "completed")
        self.assertEqual(exit_record["steps"], 9)
        self.assertIn("GradScope is on: 9 step(s)", self.output(5))

    def test_the_exploding_layer_is_on_its_cell_line(self):
        _meta, msgs, _ = read_run_file(self.runs[0])
        tensors = {t["name"]: t for m in msgs if m["type"] == "tensors" for t in m["tensors"]}
        first = tensors["net.0.weight"]
        self.assertEqual(first["source"]["file"], self.path)
        self.assertEqual(first["source"]["cell"], 3)
        self.assertEqual(first["source"]["line"], 4)
        self.assertEqual(EXPLODE.splitlines()[first["source"]["line"] - 1][first["source"]["column"] - 1:].split("(")[0],
                         "torch.nn.Linear")
        self.assertEqual(tensors["net.16.weight"]["source"]["line"], 5)  # the last Linear: built in Sequential's line
        # It explodes: a huge gradient at the first step, then NaN, which the probe reports on that layer.
        steps = [m for m in msgs if m["type"] == "step" and m["columns"][m["stats"].index("hasGrad")][first["id"]] == 1]
        norms = [s["columns"][s["stats"].index("norm")][first["id"]] for s in steps]
        nans = [s["columns"][s["stats"].index("nanCount")][first["id"]] for s in steps]
        self.assertGreater(norms[0], 1e3)
        self.assertEqual(nans[0], 0)
        self.assertTrue(all(n > 0 for n in nans[1:]), nans)
        nonfinite = [m for m in msgs if m["type"] == "event" and m["kind"] == "non-finite"]
        self.assertEqual(len(nonfinite), 1)

    def test_the_kernels_exit_ends_a_run_left_on(self):
        _meta, msgs, exit_record = read_run_file(self.runs[2])
        self.assertEqual(len([m for m in msgs if m["type"] == "step"]), 3)
        self.assertEqual(msgs[-1], {"type": "end", "reason": "completed", "steps": 3})
        self.assertEqual(exit_record["reason"], "completed")

    def test_a_model_built_before_on_still_has_its_steps(self):
        _meta, msgs, _ = read_run_file(self.runs[0])
        opts = {m["id"]: m for m in msgs if m["type"] == "optimizer"}
        by_name = {o["name"]: o for o in opts.values()}
        self.assertEqual(set(by_name), {"opt", "before_opt"})
        steps = [m for m in msgs if m["type"] == "step"]
        self.assertEqual(sum(1 for s in steps if s["optimizer"] == by_name["before_opt"]["id"]), 3)
        self.assertEqual(sum(1 for s in steps if s["optimizer"] == by_name["opt"]["id"]), 6)
        tensors = {t["name"]: t for m in msgs if m["type"] == "tensors" for t in m["tensors"]}
        self.assertIn("before.weight", tensors)
        self.assertIsNone(tensors["before.weight"]["source"])
        events = [m["message"] for m in msgs if m["type"] == "event"]
        self.assertTrue(any("built before %gradscope on" in e and "before_opt" in e for e in events), events)

    def test_on_off_on_does_not_stack_hooks(self):
        _meta, msgs, exit_record = read_run_file(self.runs[1])
        steps = [m for m in msgs if m["type"] == "step"]
        self.assertEqual([s["step"] for s in steps], [0, 1, 2])  # one STEP per optimizer step, not two
        self.assertEqual(exit_record["steps"], 3)
        self.assertIn("UNHOOKED True", self.output(5))
        self.assertIn("UNHOOKED True", self.output(8))

    def test_the_kernel_never_failed(self):
        for i, c in enumerate(self.nb.cells):
            for o in c.get("outputs", []):
                self.assertNotEqual(o.get("output_type"), "error", (i, o))
                if o.get("name") == "stderr":
                    self.assertNotIn("[gradscope] warning", o.get("text", ""), i)
                    self.assertNotIn("gradscope_probe", o.get("text", ""), i)  # no Python warning raised in the probe


@unittest.skipIf(_SKIP is not None, _SKIP or "")
class UnsavedNotebookTest(unittest.TestCase):
    """Cells edited since the notebook was saved: their locations keep the kernel's file, said once."""

    def test_cells_not_in_the_saved_notebook(self):
        d = tempfile.mkdtemp(prefix="gs-nb-unsaved-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "draft.ipynb")
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("%load_ext gradscope_probe\n%gradscope on " + path),
                    nbformat.v4.new_code_cell("import torch"), nbformat.v4.new_code_cell("%gradscope off")]
        nbformat.write(nb, path)
        # Edited in the editor, not saved: the kernel runs this text, the file has "import torch".
        nb.cells[1].source = ("import torch\nm = torch.nn.Linear(2, 1)\nk = torch.nn.Linear(1, 1)\n"
                              "o = torch.optim.SGD(list(m.parameters()) + list(k.parameters()), lr=0.1)\n"
                              "o.zero_grad(); k(m(torch.randn(3, 2))).sum().backward(); o.step()")
        env = {"PYTHONPATH": PROBE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        saved = os.environ.get("PYTHONPATH")
        os.environ.update(env)
        try:
            nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": d}}).execute()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        runs = glob.glob(os.path.join(d, ".gradscope", "runs", "*.gsrun"))
        self.assertEqual(len(runs), 1)
        meta, msgs, _ = read_run_file(runs[0])
        self.assertEqual(meta["script"], path)  # named on the magic's line
        tensors = [t for m in msgs if m["type"] == "tensors" for t in m["tensors"]]
        self.assertEqual(len(tensors), 4)
        for t in tensors:
            self.assertNotIn("cell", t["source"])
            self.assertRegex(t["source"]["file"], r"ipykernel_\d+")
        self.assertEqual([t["source"]["line"] for t in tensors], [2, 2, 3, 3])
        missed = [m for m in msgs if m["type"] == "event" and "is not in" in m["message"]]
        self.assertEqual(len(missed), 1, missed)
        self.assertIn(path, missed[0]["message"])


class CellLocatorTest(unittest.TestCase):
    """The cell of a compiled cell file, without a kernel: the text linecache keeps, and the notebook."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gs-cells-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.nb = os.path.join(self.dir, "a.ipynb")
        cells = [{"cell_type": "markdown", "source": ["x = 1\n"]}, {"cell_type": "code", "source": ["%matplotlib inline\n", "x = 1\n"]},
                 {"cell_type": "code", "source": "y = 2\nz = 3"}]
        with open(self.nb, "w") as f:
            json.dump({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}, f)

    def locate(self, filename, text, on_miss=None):
        import linecache

        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        self.addCleanup(linecache.cache.pop, filename, None)
        return notebook.CellLocator(self.nb, None, on_miss)(filename)

    def test_finds_code_cells_by_their_text(self):
        self.assertEqual(self.locate("/tmp/ipykernel_1/11.py", "y = 2\nz = 3\n"), {"file": self.nb, "cell": 2})
        # A magic line compiled by IPython still matches its cell; the markdown cell with the same text is not a code cell.
        self.assertEqual(self.locate("<ipython-input-2-ab>", "get_ipython().run_line_magic('matplotlib', 'inline')\nx = 1\n"),
                         {"file": self.nb, "cell": 1})

    def test_a_cell_not_saved_is_reported(self):
        missed = []
        self.assertIsNone(self.locate("/tmp/ipykernel_1/12.py", "w = 4\n", missed.append))
        self.assertEqual(missed, ["/tmp/ipykernel_1/12.py"])

    def test_plain_files_are_not_cells(self):
        self.assertIsNone(notebook.CellLocator(self.nb)("/home/me/helpers.py"))

    def test_ipython_inputs_are_the_users_code(self):
        from gradscope_probe import sources

        self.assertTrue(sources.is_user_file("<ipython-input-3-5f1e2c>"))
        self.assertFalse(sources.is_user_file("<stdin>"))


class FindNotebookTest(unittest.TestCase):
    def test_where_the_notebook_is_found(self):
        d = tempfile.mkdtemp(prefix="gs-find-")
        self.addCleanup(shutil.rmtree, d, True)
        a, b = os.path.join(d, "a.ipynb"), os.path.join(d, "b.ipynb")
        open(a, "w").close()
        self.assertEqual(notebook.find_notebook({"__vsc_ipynb_file__": a}, {}, d), (a, "__vsc_ipynb_file__ (VS Code)"))
        # Jupyter's session name is relative to the server's root: the name in the kernel's folder.
        self.assertEqual(notebook.find_notebook({"__session__": "work/a.ipynb"}, {}, d)[0], a)
        self.assertEqual(notebook.find_notebook({}, {"JPY_SESSION_NAME": a}, d), (a, "JPY_SESSION_NAME"))
        self.assertEqual(notebook.find_notebook({"__vsc_ipynb_file__": "/nowhere/Untitled-1.ipynb"}, {}, d)[0], a)  # the only one
        open(b, "w").close()
        nb, how = notebook.find_notebook({}, {}, d)
        self.assertIsNone(nb)
        self.assertIn("2 notebooks", how)


class RunFilePieces(unittest.TestCase):
    def test_run_id_and_trailer(self):
        import datetime
        import re

        rid = notebook.make_run_id(datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc))
        self.assertRegex(rid, r"^2025-01-02T03-04-05-678Z-[0-9a-f]{4}$")
        self.assertTrue(re.fullmatch(r"[A-Za-z0-9._-]{1,200}", rid))
        t = notebook.trailer({"reason": "completed", "steps": 2})
        n = len(t) - 24
        self.assertEqual(struct.unpack_from("<IHHII", t), (0x58455347, 1, 0, n, 0))
        self.assertEqual(struct.unpack_from("<II", t, len(t) - 8), (n, 0x58455347))


if __name__ == "__main__":
    unittest.main()


class OnArguments(unittest.TestCase):
    """``%gradscope on [NOTEBOOK] [--connect ADDRESS]``: what the extension and the pasted lines send."""

    def test_parse(self):
        self.assertEqual(notebook._parse_on([]), (None, None))
        self.assertEqual(notebook._parse_on(["nb.ipynb"]), ("nb.ipynb", None))
        self.assertEqual(notebook._parse_on(["--connect", "unix:/tmp/gs-x/s"]), (None, "unix:/tmp/gs-x/s"))
        self.assertEqual(notebook._parse_on(["a b.ipynb", "--connect=unix:/s"]), ("a b.ipynb", "unix:/s"))
        for bad in (["--connect"], ["--port", "1"], ["a.ipynb", "b.ipynb"]):
            with self.assertRaises(ValueError, msg=bad):
                notebook._parse_on(bad)

    def test_quoted_paths_reach_the_magic_whole(self):
        seen = []

        class Shell:
            user_ns = {}

        orig = notebook.NotebookRun
        try:
            class Fake:
                def __init__(self, shell, nb, connect):
                    seen.append((nb, connect))
                    raise RuntimeError("stop here")

            notebook.NotebookRun = Fake
            with open(os.devnull, "w") as devnull:
                old, sys.stderr = sys.stderr, devnull
                try:
                    notebook.gradscope_magic(Shell(), "on '/tmp/my notebooks/it'\"'\"'s.ipynb' --connect 'unix:/tmp/gs-a/s'")
                finally:
                    sys.stderr = old
        finally:
            notebook.NotebookRun = orig
        self.assertEqual(seen, [("/tmp/my notebooks/it's.ipynb", "unix:/tmp/gs-a/s")])
