"""The input-scale EVENT (inputs.py): the first parameterised layer's input, measured on real runs."""
import unittest

from .helpers import TempDirMixin, run_probe

SCRIPT = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-6)
x = torch.rand(32, 4) * {scale}
y = torch.randn(32, 1)
for i in range(60):
    with torch.no_grad():
        model(x * 1e6)  # an evaluation pass: not what the gradients come from
    opt.zero_grad()
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    opt.step()
"""


class InputScaleTest(TempDirMixin, unittest.TestCase):
    def events(self, scale):
        r = run_probe(self.script("train.py", SCRIPT.format(scale=scale)))
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.warnings(), [])
        return r, [e for e in r.of("event") if e["kind"] == "input-scale"]

    def test_reports_the_first_layers_input_on_sampled_forwards(self):
        r, evs = self.events(1000)
        # Forward passes 0, 1, 2 and 50 (the no_grad passes are not counted).
        self.assertEqual(len(evs), 4)
        # x ~ U(0, 1000): RMS ≈ 1000/√3 ≈ 577, max |x| just under 1000.
        for e in evs:
            self.assertTrue(400 < e["value"] < 750, e)
            self.assertTrue(900 < e["max"] <= 1000, e)
        # From the first step on, the layer's first tensor is named (0.weight).
        self.assertEqual(evs[-1]["tensorId"], r.tensor("model.0.weight")["id"])

    def test_unit_scale_input(self):
        _, evs = self.events(1)
        self.assertTrue(all(e["value"] < 1 for e in evs))

    def test_compiled_model_is_left_alone(self):
        import torch
        if not hasattr(torch, "compile"):
            self.skipTest("torch.compile is 2.x only")
        path = self.script("compiled.py", '''
import torch
from torch import nn
model = torch.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), backend="eager")
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.rand(16, 4) * 100
for i in range(8):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
print("ok")
''')
        r = run_probe(path)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("ok", r.stdout)
        self.assertEqual(r.warnings(), [])
        self.assertEqual(len(r.of("step")), 8)

    def test_integer_input_is_not_measured(self):
        path = self.script("emb.py", '''
import torch
from torch import nn
model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
ids = torch.randint(0, 10, (8,))
for i in range(5):
    opt.zero_grad()
    model(ids).pow(2).mean().backward()
    opt.step()
''')
        r = run_probe(path)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual([e for e in r.of("event") if e["kind"] == "input-scale"], [])


class InstallAgainTest(unittest.TestCase):
    """install(), uninstall(), install() in one process (the bench's in-process ab does it every block;
    the notebook's ``on``/``off`` uninstalls): one input hook at a time, and none after uninstall()."""

    def test_hooks_are_not_piled_up(self):
        import os
        import tempfile

        import torch
        from torch import nn
        from torch.nn.modules import module as module_mod

        from gradscope_probe.channel import Channel
        from gradscope_probe.probe import Probe

        fd, path = tempfile.mkstemp()
        self.addCleanup(os.remove, path)
        probe = Probe(Channel(fd, watch=False), path)
        sent = []
        probe.send = lambda msg: sent.append(msg) or True
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        x = torch.rand(16, 4) * 100
        n_global = len(module_mod._global_forward_pre_hooks)

        def forward():
            model(x).sum().backward()

        try:
            probe.install()
            probe.install()  # (twice: still one global hook)
            self.assertEqual(len(module_mod._global_forward_pre_hooks), n_global + 1)
            forward()  # the first layer found, read: forward 0
            self.assertEqual(len(module_mod._global_forward_pre_hooks), n_global)
            self.assertEqual(len(model[0]._forward_pre_hooks), 1)
            probe.uninstall()
            self.assertEqual(len(model[0]._forward_pre_hooks), 0)
            self.assertEqual(len(module_mod._global_forward_pre_hooks), n_global)
            forward()  # not installed: not counted
            for _ in range(3):
                probe.install()
                forward()  # forwards 1, 2, 3: read, read, not read
                self.assertEqual(len(model[0]._forward_pre_hooks), 1)
                probe.uninstall()
        finally:
            probe.uninstall()
            probe.finish("completed")
        self.assertEqual(len(model[0]._forward_pre_hooks), 0)
        self.assertEqual(len(module_mod._global_forward_pre_hooks), n_global)
        reads = [e for e in sent if e.get("type") == "event" and e.get("kind") == "input-scale"]
        self.assertEqual(len(reads), 3)
