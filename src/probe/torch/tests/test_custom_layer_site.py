"""Where a user-written layer's parameters are placed: a custom nn.Module built inside the model is a
layer like nn.Linear, on the line that builds it; the model's own nn.Parameters keep their own line."""
import unittest

from .helpers import TempDirMixin, line_of, run_probe

SCRIPT = """
import torch
from torch import nn

class Gate(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n, n))  # @w
        self.b = nn.Parameter(torch.full((n,), -6.0))  # @b

    def forward(self, x):
        return torch.relu(x @ self.w + self.b)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = Gate(4)  # @gate
        self.scale = nn.Parameter(torch.ones(1))  # @scale

    def forward(self, x):
        return self.gate(x).sum() * self.scale

model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(2):
    opt.zero_grad()
    model(torch.rand(3, 4)).backward()
    opt.step()
"""


class CustomLayerSiteTest(TempDirMixin, unittest.TestCase):
    def test_custom_layer_on_its_construction_line(self):
        path = self.script("train.py", SCRIPT)
        r = run_probe(path)
        self.assertEqual(r.rc, 0, r.stderr)
        for name in ("model.gate.w", "model.gate.b"):
            t = r.tensor(name)
            self.assertEqual((t["layer"], t["layerType"]), ("model.gate", "Gate"))
            self.assertEqual(t["source"]["line"], line_of(path, "# @gate"), name)
        # The model's own parameter: its construction line would cover everything, so its own line.
        self.assertEqual(r.tensor("model.scale")["source"]["line"], line_of(path, "# @scale"))


if __name__ == "__main__":
    unittest.main()
