"""The probe end to end: real child processes (python -m gradscope_probe), real torch, frames read
from the channel fd and decoded with the reference decoder."""
import json
import math
import os
import re
import sys
import time
import unittest

from .helpers import TempDirMixin, line_of, run_probe

MLP = """
import torch
from torch import nn
torch.manual_seed(0)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)  # @fc1
        self.fc2 = nn.Linear(8, 1)  # @fc2
        self.scale = nn.Parameter(torch.ones(1))  # @scale

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) * self.scale

model = Net()  # @model
head = nn.Sequential(
    nn.Linear(1, 3),  # @seq0
    nn.Tanh(),
)
"""


class SourcesAndStepsTest(TempDirMixin, unittest.TestCase):
    def test_names_sources_and_statistics(self):
        path = self.script("train.py", MLP + """
opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.1)
x = torch.randn(16, 4)
for i in range(12):
    opt.zero_grad()
    loss = head(model(x)).pow(2).mean()
    loss.backward()
    opt.step()
    last = loss.item()
print("final", repr(last))
""")
        # Every statistic on every step (the sampled tier's interval fixed at 1; its schedule: SampledTest).
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "5", "GRADSCOPE_SAMPLED_EVERY": "1"})
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0, r.stderr)
        hello = r.messages[0]
        self.assertEqual((hello["framework"], hello["backend"], hello["script"]), ("torch", "cpu", path))
        self.assertTrue(hello["device"] and hello["backendReason"])
        self.assertEqual(hello["pid"] > 0, True)
        fc1 = r.tensor("model.fc1.weight")
        self.assertEqual((fc1["layer"], fc1["layerType"], fc1["shape"]), ("model.fc1", "Linear", [8, 4]))
        self.assertEqual(fc1["source"], {"file": path, "line": line_of(path, "# @fc1"), "column": 20})
        self.assertEqual(r.tensor("model.fc1.bias")["source"]["line"], line_of(path, "# @fc1"))
        self.assertEqual(r.tensor("model.fc2.weight")["source"]["line"], line_of(path, "# @fc2"))
        # A parameter created in the user's own module class: its own line.
        self.assertEqual(r.tensor("model.scale")["source"]["line"], line_of(path, "# @scale"))
        self.assertEqual(r.tensor("model.scale")["layerType"], "Net")
        seq0 = r.tensor("head.0.weight")
        self.assertEqual(seq0["source"]["line"], line_of(path, "# @seq0"))
        self.assertEqual(seq0["source"]["column"], 5)
        steps = r.of("step")
        self.assertEqual([s["step"] for s in steps], list(range(12)))
        self.assertEqual(r.of("end")[0], {"type": "end", "reason": "completed", "steps": 12})
        final = float(r.stdout.split("final ")[1])
        self.assertAlmostEqual(steps[-1]["loss"], final, places=6)
        for s in steps:
            for tid in range(s["nTensors"]):
                self.assertGreater(r.stat(s, "norm", tid), 0)
                self.assertGreater(r.stat(s, "paramNorm", tid), 0)
                self.assertTrue(0 < r.stat(s, "maxAbs", tid) <= r.stat(s, "norm", tid))
                # SGD without momentum: the update is lr · g.
                self.assertAlmostEqual(r.stat(s, "updateNorm", tid), 0.1 * r.stat(s, "norm", tid), places=5)
        details = r.of("detail")
        self.assertEqual(sorted({d["step"] for d in details}), [0, 5, 10])
        d = [x for x in details if x["tensorId"] == fc1["id"] and x["step"] == 0][0]
        self.assertEqual((d["thumbRows"], d["thumbCols"], len(d["hist"])), (8, 4, 32))
        self.assertEqual(sum(d["hist"]), 32 - round(d["zeroFrac"] * 32))

    def test_sampled_tier_schedule(self):
        """maxAbs, paramNorm and updateNorm (the sampled tier) on every step of the first 10, then on
        an interval; on the other steps all three NaN ("not measured") while norm and the counts are
        there. A fixed interval (GRADSCOPE_SAMPLED_EVERY) measures exactly every Nth step."""
        path = self.script("train.py", MLP + """
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
for i in range(60):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
""")
        for env, expect in (({}, None), ({"GRADSCOPE_SAMPLED_EVERY": "7"}, [i for i in range(60) if i % 7 == 0])):
            r = run_probe(path, env=env)
            self.assertWellFormed(r)
            measured = []
            for s in r.of("step"):
                for tid in range(s["nTensors"]):
                    norm, mx, pn, un = (r.stat(s, k, tid) for k in ("norm", "maxAbs", "paramNorm", "updateNorm"))
                    self.assertGreater(norm, 0)
                    self.assertEqual((r.stat(s, "nanCount", tid), r.stat(s, "infCount", tid)), (0, 0))
                    if math.isnan(mx):
                        self.assertTrue(math.isnan(pn) and math.isnan(un), (s["step"], tid))
                    else:
                        self.assertTrue(0 < mx <= norm and pn > 0)
                        self.assertAlmostEqual(un, 0.1 * norm, places=5)
                        if tid == 0:
                            measured.append(s["step"])
            if expect is None:
                self.assertEqual(measured[:10], list(range(10)))
                self.assertLess(len(measured), 60)  # this model's tier is cheap, but not free: sampled
            else:
                self.assertEqual(measured, expect)

    def test_update_norms_rotate_within_the_snapshot_budget(self):
        """A model larger than the snapshot pool: each sampled step measures the update of the tensors
        whose turn it is (the true one: SGD's lr·g), the others NaN; every tensor gets its turn;
        paramNorm on every sampled step. A tensor over the cap never has one, and both are said."""
        path = self.script("train.py", """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 90))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(8, 40)
for i in range(10):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
""")
        # cap 8000 bytes: a 40×40 weight (6400 B) and a few biases at a time; the 90×40 one (14400 B) never.
        r = run_probe(path, env={"GRADSCOPE_SAMPLED_EVERY": "1", "GRADSCOPE_UPDATE_NORM_MAX_BYTES": "8000"})
        self.assertWellFormed(r)
        big = r.tensor("model.3.weight")["id"]
        seen = set()
        for s in r.of("step"):
            measured = 0
            for tid in range(s["nTensors"]):
                un = r.stat(s, "updateNorm", tid)
                self.assertGreater(r.stat(s, "paramNorm", tid), 0)
                if not math.isnan(un):
                    self.assertAlmostEqual(un, 0.1 * r.stat(s, "norm", tid), places=5)
                    seen.add(tid)
                    measured += 40 * 40 * 4 if r.tensors[tid]["shape"] == [40, 40] else 0
            self.assertLessEqual(measured, 8000)
        self.assertEqual(seen, set(range(8)) - {big})
        infos = " | ".join(e["message"] for e in r.of("event") if e["kind"] == "info")
        self.assertIn("no update norm for 1 parameter tensor(s) larger than", infos)
        self.assertIn("model.3.weight", infos)

    def test_device_rows_checked_after_the_copy(self):
        """Off the CPU the fast path's rows are checked after the step's one copy (a NaN, an Inf, an
        overflow redone exactly): taken here on the CPU by making the probe treat it as a device."""
        path = self.script("train.py", """
import sys
import torch
sys.modules["gradscope_probe.stats"]._cheap_to_read = lambda device: False
w = torch.nn.Parameter(torch.ones(4))
opt = torch.optim.SGD([w], lr=0.0)
xs = [[1.0, 2.0, 2.0, 0.0], [float("nan"), 3.0, -4.0, float("inf")], [3e30, -4e30, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
for x in xs:
    opt.zero_grad()
    (w * torch.tensor(x)).sum().backward()
    opt.step()
""")
        r = run_probe(path, env={"GRADSCOPE_SAMPLED_EVERY": "1"})
        self.assertWellFormed(r)
        got = [[r.stat(s, k, 0) for k in ("norm", "maxAbs", "nanCount", "infCount")] for s in r.of("step")]
        self.assertEqual(got[0], [3.0, 2.0, 0, 0])
        self.assertEqual(got[1], [5.0, 4.0, 1, 1])
        self.assertAlmostEqual(got[2][0] / 5e30, 1.0, places=5)
        self.assertEqual(got[2][2:], [0, 0])
        self.assertEqual(got[3], [0.0, 0.0, 0, 0])

    def test_results_are_unchanged_by_the_probe(self):
        path = self.script("train.py", MLP + """
opt = torch.optim.Adam(model.parameters(), lr=0.01)
x = torch.randn(32, 4)
for i in range(20):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
print("final", repr(loss.item()), repr(float(model.fc1.weight.sum())), repr(torch.rand(1).item()))
""")
        with_probe = run_probe(path)
        without = run_probe(path, channel=False)
        self.assertWellFormed(with_probe)
        self.assertEqual(with_probe.stdout, without.stdout)
        self.assertEqual(without.rc, 0)

    def assertPreClipTotals(self, r, max_norm):
        """Each STEP's global norm is the pre-clip total the script printed ("total X", one a step),
        well over the clip's max_norm."""
        self.assertWellFormed(r)
        totals = [float(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("total")]
        self.assertEqual(len(r.of("step")), len(totals))
        for s, total in zip(r.of("step"), totals):
            norms = [r.stat(s, "norm", t) for t in range(s["nTensors"])]
            self.assertAlmostEqual(math.sqrt(sum(n * n for n in norms)) / total, 1.0, places=4)
            self.assertGreater(total, max_norm * 10)

    def test_clip_grad_norm_is_seen_before_clipping(self):
        path = self.script("clip.py", MLP + """
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 4) * 100
for i in range(3):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
    print("total", float(total))
    opt.step()
""")
        r = run_probe(path)
        self.assertPreClipTotals(r, 0.5)
        clips = [e for e in r.of("event") if e["kind"] == "clip"]
        self.assertEqual(len(clips), 1)
        self.assertEqual(clips[0]["value"], 0.5)
        self.assertEqual(clips[0]["clipBy"], "norm")
        self.assertIn("max_norm=0.5", clips[0]["message"])

    def test_clip_with_a_total_norm_of_its_own_is_seen_before_clipping(self):
        """torch 2.6+'s two halves of clip_grad_norm_: get_total_norm, then clip_grads_with_norm_ with
        that norm (or one all-reduced over shards): the STEP reports the gradients before the clip."""
        import torch.nn.utils

        if not hasattr(torch.nn.utils, "clip_grads_with_norm_"):
            self.skipTest("clip_grads_with_norm_ is torch 2.6+")
        path = self.script("clip2.py", MLP + """
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 4) * 100
for i in range(3):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    total = get_total_norm([p.grad for p in model.parameters()])
    clip_grads_with_norm_(model.parameters(), 0.5, total)
    print("total", float(total))
    opt.step()
""")
        r = run_probe(path)
        self.assertPreClipTotals(r, 0.5)
        clips = [e for e in r.of("event") if e["kind"] == "clip"]
        self.assertEqual([(e["value"], "clip_grads_with_norm_(max_norm=0.5)" in e["message"]) for e in clips], [(0.5, True)])

    def test_two_optimizers_and_super_step_counted_once(self):
        path = self.script("gan.py", """
import torch
from torch import nn
torch.manual_seed(0)
G = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
D = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))

class MyAdam(torch.optim.Adam):
    def step(self, closure=None):
        return super().step(closure)

class MySGD(torch.optim.SGD):
    pass

opt_g = MyAdam(G.parameters(), lr=1e-3)
opt_d = MySGD(D.parameters(), lr=1e-2)
plain = torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # an Adam instance: Adam.step wrapped too
for i in range(5):
    z = torch.randn(8, 2)
    opt_d.zero_grad()
    D(G(z).detach()).mean().backward()
    opt_d.step()
    opt_g.zero_grad()
    (-D(G(z)).mean()).backward()
    opt_g.step()
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        names = [t["name"] for t in r.tensors]
        self.assertEqual(sorted(names), sorted(["D.0.weight", "D.0.bias", "D.2.weight", "D.2.bias",
                                                "G.0.weight", "G.0.bias", "G.2.weight", "G.2.bias"]))
        steps = r.of("step")
        self.assertEqual(len(steps), 10)  # 5 × D + 5 × G, super().step() not counted twice
        d_ids = {t["id"] for t in r.tensors if t["name"].startswith("D.")}
        for s in steps[0::2]:
            covered = {i for i in range(s["nTensors"]) if not math.isnan(r.stat(s, "norm", i))}
            self.assertEqual(covered, d_ids)
        self.assertEqual(r.of("end")[0]["steps"], 10)

    def test_lbfgs_closure(self):
        path = self.script("lbfgs.py", MLP + """
opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
x = torch.randn(16, 4)
def closure():
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    return loss
first = [float(opt.step(closure)) for _ in range(3)]
print("losses", first)
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 3)
        losses = json.loads(r.stdout.split("losses ")[1])
        for s, want in zip(steps, losses):
            self.assertAlmostEqual(s["loss"], want, places=5)
            self.assertEqual(s["nTensors"], 5)
            self.assertGreater(r.stat(s, "norm", 0), 0)

    def test_norm_jumps_get_the_detail_tier_at_most_once_per_gap(self):
        """A norm that jumps 100x on every other step: a jump gets a detail tier only JUMP_DETAIL_GAP (10)
        steps or more after the previous one (scheduled or not); they used to get one every time."""
        path = self.script("jumps.py", MLP + """
opt = torch.optim.SGD(model.parameters(), lr=0.0)
x = torch.randn(16, 4)
for i in range(40):
    opt.zero_grad()
    (model(x).mean() * (100.0 if i % 2 else 1.0)).backward()
    opt.step()
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "1000"})
        self.assertWellFormed(r)
        steps = sorted({d["step"] for d in r.of("detail")})
        self.assertEqual(steps[0], 0)  # the schedule's
        self.assertTrue(all(b - a >= 10 for a, b in zip(steps, steps[1:])), steps)
        self.assertGreaterEqual(len(steps), 4, steps)  # jumps still get it (11, 21, 31), spaced

    def test_a_parameter_replaced_inside_its_group_is_a_new_tensor(self):
        """The per-step bookkeeping kept between steps (the optimizer's tensors and their records)
        follows a tensor swapped into a param group in place, even when it takes the old one's id."""
        path = self.script("swap.py", """
import torch
w = torch.nn.Parameter(torch.ones(3))
opt = torch.optim.SGD([w], lr=0.1)
for i in range(4):
    if i == 2:
        del w
        opt.param_groups[0]["params"][0] = None
        w = torch.nn.Parameter(torch.full((5,), 2.0))
        opt.param_groups[0]["params"][0] = w
    opt.zero_grad()
    (w * w).sum().backward()
    opt.step()
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertEqual(len(r.tensors), 2, r.tensors)
        steps = r.of("step")
        self.assertEqual(len(steps), 4)
        first, second = r.tensors[0]["id"], r.tensors[1]["id"]
        self.assertEqual(r.stat(steps[2], "hasGrad", first), 0.0)
        self.assertAlmostEqual(r.stat(steps[2], "norm", second), math.sqrt(5 * 16), places=4)  # 2·w, w = 2
        self.assertAlmostEqual(r.stat(steps[3], "norm", second), math.sqrt(5) * 3.2, places=4)  # w = 2 - 0.1·4

    def test_non_finite_gradient_event(self):
        path = self.script("nan.py", MLP + """
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
for i in range(4):
    opt.zero_grad()
    out = model(x).mean()
    loss = out * (float("nan") if i == 2 else 1.0)
    loss.backward()
    opt.step()
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "100"})
        self.assertWellFormed(r)
        ev = [e for e in r.of("event") if e["kind"] == "non-finite"]
        self.assertEqual(len(ev), 1)
        self.assertEqual(ev[0]["step"], 2)
        s2 = r.of("step")[2]
        self.assertGreater(r.stat(s2, "nanCount", ev[0]["tensorId"]), 0)
        self.assertEqual(r.stat(s2, "norm", ev[0]["tensorId"]), 0.0)  # every entry NaN: nothing finite
        self.assertTrue(math.isnan(s2["loss"]))
        self.assertEqual({d["step"] for d in r.of("detail")}, {0, 2})  # detail on the anomaly too

    def test_no_loss_is_not_a_nan_loss(self):
        # A loss NaN from the first step is sent as NaN; a step that had no loss (a second optimizer
        # after the same backward pass, the backward pass of a non-scalar) as NO_LOSS (None here),
        # and HELLO says so (marksNoLoss). They used to be the same NaN on the wire.
        path = self.script("noloss.py", MLP + """
a = torch.optim.SGD([model.fc1.weight, model.fc1.bias], lr=0.01)
b = torch.optim.SGD([model.fc2.weight, model.fc2.bias, model.scale], lr=0.01)
x = torch.randn(16, 4)
for i in range(5):
    a.zero_grad()
    b.zero_grad()
    out = model(x)
    if i == 4:
        out.backward(torch.ones_like(out))  # no scalar: no loss
    else:
        # a NaN term that no parameter depends on (log(0) · 0): NaN loss, finite gradients
        (out.mean() + (torch.zeros(()).log() * 0 if i < 2 else 0.0)).backward()
    a.step()
    b.step()
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "100"})
        self.assertWellFormed(r)
        self.assertIs(r.of("hello")[0].get("marksNoLoss"), True)
        losses = [s["loss"] for s in r.of("step")]
        self.assertEqual(len(losses), 10)
        self.assertTrue(all(isinstance(v, float) and math.isnan(v) for v in losses[0:4:2]), losses)
        self.assertTrue(all(isinstance(v, float) and math.isfinite(v) for v in losses[4:8:2]), losses)
        self.assertEqual(losses[1:8:2] + losses[8:], [None] * 6, losses)


class DataLoaderTest(TempDirMixin, unittest.TestCase):
    def test_forked_workers_write_nothing(self):
        path = self.script("loader.py", """
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
torch.manual_seed(0)

class Data(Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, i):
        # Inside a forked worker: build a module and even run an optimizer step. None of it may
        # reach the channel.
        m = nn.Linear(3, 1)
        o = torch.optim.SGD(m.parameters(), lr=0.1)
        m(torch.ones(1, 3)).sum().backward()
        o.step()
        return torch.randn(3), torch.randn(1)

model = nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loader = DataLoader(Data(), batch_size=8, num_workers=2, multiprocessing_context="fork")
n = 0
for epoch in range(2):
    for xb, yb in loader:
        opt.zero_grad()
        ((model(xb) - yb) ** 2).mean().backward()
        opt.step()
        n += 1
print("steps", n)
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("steps 16", r.stdout)
        self.assertEqual(len(r.of("step")), 16)
        self.assertEqual([t["name"] for t in r.tensors], ["model.weight", "model.bias"])
        self.assertEqual({m.get("pid") for m in r.of("hello")}, {r.messages[0]["pid"]})


class RunpyTest(TempDirMixin, unittest.TestCase):
    def test_runs_like_python_script(self):
        sub = os.path.join(self.tmp, "proj")
        os.mkdir(sub)
        self.script(os.path.join("proj", "helper.py"), """
VALUE = 42
""")
        path = self.script(os.path.join("proj", "main.py"), """
import json, os, sys
import helper
from helper import VALUE
print(json.dumps({"name": __name__, "argv": sys.argv, "path0": sys.path[0], "value": VALUE,
                  "file": __file__, "pp": os.environ.get("PYTHONPATH", ""),
                  "env": sorted(k for k in os.environ if k.startswith("GRADSCOPE_")),
                  "probe_on_path": any(p.endswith(os.path.join("src", "probe", "torch")) for p in sys.path)}))
if __name__ == "__main__":
    print("main")
""")
        r = run_probe(path, args=["--epochs", "3", "x y"], cwd=self.tmp)
        self.assertWellFormed(r)
        out = json.loads(r.stdout.splitlines()[0])
        self.assertEqual(out["name"], "__main__")
        self.assertEqual(out["argv"], [path, "--epochs", "3", "x y"])
        self.assertEqual(out["path0"], sub)
        self.assertEqual(out["value"], 42)
        self.assertEqual(out["file"], path)
        self.assertEqual(out["env"], [])
        self.assertFalse(out["probe_on_path"])
        self.assertNotIn("probe", out["pp"])
        self.assertIn("main", r.stdout.splitlines())
        self.assertEqual(r.of("end")[0]["reason"], "completed")


class LifecycleTest(TempDirMixin, unittest.TestCase):
    def test_crash_reports_the_user_frame(self):
        self.script("lib.py", """
def boom(x):
    raise ValueError("bad value %d" % x)  # @raise
""")
        path = self.script("crash.py", MLP + """
import lib
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.randn(2, 4)).sum().backward()
opt.step()
lib.boom(7)  # @call
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 1)
        end = r.of("end")[0]
        self.assertEqual((end["reason"], end["steps"]), ("crashed", 1))
        self.assertEqual(end["error"]["message"], "ValueError: bad value 7")
        lib = os.path.join(self.tmp, "lib.py")
        self.assertEqual(end["error"]["frame"], {"file": lib, "line": line_of(lib, "# @raise"), "column": 5})
        self.assertIn("ValueError: bad value 7", r.stderr)
        self.assertNotIn("runpy", r.stderr)  # the traceback starts at the script, as with `python crash.py`
        self.assertNotIn("gradscope_probe", r.stderr)

    def crashed_with_syntax_error(self, path):
        """The run of `path`: exit 1, END crashed with a SyntaxError. (run, END)"""
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 1)
        end = r.of("end")[0]
        self.assertEqual(end["reason"], "crashed")
        self.assertTrue(end["error"]["message"].startswith("SyntaxError: "), end["error"])
        return r, end

    def test_syntax_error(self):
        # The script never ran: its error is the line Python points at, as `python bad.py` shows it,
        # with no frame of GradScope's or runpy's (they were all there was).
        path = self.script("bad.py", "import torch\nx = (1,\n     2\n")
        r, end = self.crashed_with_syntax_error(path)
        self.assertEqual((end["error"]["frame"]["file"], end["error"]["frame"]["line"]), (path, 2))
        for text in (end["error"]["stack"], r.stderr):
            self.assertIn('bad.py", line 2', text)
            self.assertIn("SyntaxError", text)
            self.assertNotIn("runpy", text)
            self.assertNotIn("gradscope_probe", text)

    def test_syntax_error_in_imported_module(self):
        # The script ran up to its import of a module of the user's that does not compile: the site
        # is that module's broken line (where the editor marks it), not the import statement.
        helper = self.script("broken_helper.py", "# helper\nf = 1\ny = )\n")
        path = self.script("imports_broken.py", "import torch\nfrom broken_helper import f\nprint(f)\n")
        _r, end = self.crashed_with_syntax_error(path)
        frame = end["error"]["frame"]
        self.assertEqual((frame["file"], frame["line"], frame["column"]), (helper, 3, 5))
        self.assertIn('imports_broken.py", line 2', end["error"]["stack"])  # (the traceback still shows the import)

    def test_sys_exit(self):
        path = self.script("exit.py", "import sys\nsys.exit(3)\n")
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 3)
        end = r.of("end")[0]
        self.assertEqual(end["reason"], "crashed")
        self.assertEqual(end["error"]["frame"]["line"], 2)

    def test_step_limit(self):
        path = self.script("limit.py", MLP + """
opt = torch.optim.SGD(model.parameters(), lr=0.1)
try:
    for i in range(1000):
        opt.zero_grad()
        model(torch.randn(4, 4)).sum().backward()
        opt.step()
        print("step", i)
finally:
    print("finally ran")
print("after the loop")
""")
        r = run_probe(path, env={"GRADSCOPE_MAX_STEPS": "3"})
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0)
        self.assertEqual(r.of("end")[0], {"type": "end", "reason": "step-limit", "steps": 3})
        self.assertEqual(len(r.of("step")), 3)
        # The third optimizer step ran, and the run stopped inside it (SystemExit out of step()).
        self.assertIn("step 1", r.stdout)
        self.assertNotIn("step 2", r.stdout)
        self.assertIn("finally ran", r.stdout)
        self.assertNotIn("after the loop", r.stdout)

    def test_watchdog_exits_when_the_host_goes_away(self):
        path = self.script("forever.py", MLP + """
import time
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.randn(2, 4)).sum().backward()
opt.step()
for i in range(600):
    time.sleep(0.1)
""")
        started = {}

        def close_after_first_step(p, host, chunks):
            deadline = time.monotonic() + 30
            # HELLO, backend EVENT, TENSORS, OPTIMIZER, STEP: the first step is out.
            while time.monotonic() < deadline and b"".join(chunks).count(b"GSCP") < 5:
                time.sleep(0.05)
            started["t"] = time.monotonic()
            import socket

            host.shutdown(socket.SHUT_RDWR)

        r = run_probe(path, timeout=30, on_started=close_after_first_step)
        self.assertLess(time.monotonic() - started["t"], 10)
        self.assertEqual(r.rc, 1)
        # The watchdog sees the hang-up, or a write still queued meets the closed pipe first.
        self.assertRegex(r.stderr, "host closed the channel|write failed: EPIPE")

    def test_host_gone_stops_the_scripts_process_group(self):
        """The host is gone (killed): the probe stops what the script started too, a child that
        ignores SIGTERM included (SIGKILL after the grace), not only itself."""
        pidfile = os.path.join(self.tmp, "child.pid")
        path = self.script("spawner.py", MLP + """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
open(%r, "w").write(str(child.pid))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.randn(2, 4)).sum().backward()
opt.step()
for i in range(600):
    time.sleep(0.1)
""" % pidfile)

        def close_when_started(p, host, chunks):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not os.path.exists(pidfile) or b"".join(chunks).count(b"GSCP") < 5):
                time.sleep(0.05)
            import socket

            host.shutdown(socket.SHUT_RDWR)

        r = run_probe(path, timeout=30, on_started=close_when_started, new_session=True)
        self.assertEqual(r.rc, 1)
        child = int(open(pidfile).read())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.05)
        alive = _alive(child)
        if alive:
            os.kill(child, 9)
        self.assertFalse(alive, "the script's child survived the host")

    def test_script_reusing_the_channel_number_keeps_its_file(self):
        """The script closes the descriptor the host gave and opens a file that gets its number: the
        probe writes only to its private copy, the file holds only what the script wrote."""
        out = os.path.join(self.tmp, "mine.txt")
        path = self.script("reuse.py", MLP + """
import os, sys
fd = int(sys.argv[1])
try:
    os.close(fd)
except OSError:
    pass
g = os.open(%r, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
if g != fd:
    os.dup2(g, fd)  # the file under the host's number
    os.close(g)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(20):
    opt.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
os.write(fd, b"only mine")
os.close(fd)
""" % out)
        r = run_probe(path, args=("@CHANNEL_FD",))
        self.assertWellFormed(r)
        self.assertEqual(open(out, "rb").read(), b"only mine")
        self.assertEqual(len(r.of("step")), 20)
        self.assertEqual(r.of("end")[0]["reason"], "completed")

    def test_script_closing_every_descriptor_loses_the_channel_not_its_file(self):
        """A script that closes every descriptor (a daemon's habit) and opens a file: the probe finds
        its descriptor gone, says so and stops sending; the script runs on and its file is its own."""
        out = os.path.join(self.tmp, "mine.bin")
        path = self.script("closeall.py", MLP + """
import os, time
opt = torch.optim.SGD(model.parameters(), lr=0.1)
def step():
    opt.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
for i in range(3):
    step()
time.sleep(0.5)  # the frames so far are out
os.closerange(3, 65536)
f = open(%r, "wb")
for i in range(20):
    step()
time.sleep(0.5)
f.write(b"x" * 10)
f.close()
print("done")
""" % out)
        r = run_probe(path)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIn("done", r.stdout)
        self.assertEqual(open(out, "rb").read(), b"x" * 10)
        self.assertIn("closed the channel's descriptor", r.stderr)
        self.assertGreaterEqual(len(r.of("step")), 3)
        self.assertEqual(r.of("end"), [])  # the host sees the channel end without END

    def test_probe_errors_become_warnings(self):
        path = self.script("broken.py", MLP + """
import sys
def broken(*args, **kwargs):
    raise RuntimeError("stats exploded")
sys.modules["gradscope_probe.stats"].grad_stats_many = broken  # break the probe, not the script
sys.modules["gradscope_probe.stats"].plain_rows = broken  # (the path of plain CPU parameters)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(3):
    opt.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
print("still fine")
""")
        r = run_probe(path)
        self.assertWellFormed(r, warnings_ok=True)
        self.assertEqual(r.rc, 0)
        self.assertIn("still fine", r.stdout)
        # Reported once per place it broke (the step's measurement; the in-place check's norms after
        # the backward pass, inplace.py), not once per step.
        ws = r.warnings()
        self.assertEqual(len(ws), len(set(ws)))
        self.assertTrue(any("before optimizer.step" in w for w in ws), ws)
        self.assertTrue(all("stats exploded" in w for w in ws), ws)
        self.assertEqual(r.of("end")[0]["reason"], "completed")


# A script's handle on the probe that runs it (tests only): the one Probe object in the process.
FIND_PROBE = """
import gc, sys, threading, time
def the_probe():
    return next(o for o in gc.get_objects() if type(o).__name__ == "Probe" and type(o).__module__ == "gradscope_probe.probe")
if "gradscope_probe.detail" in sys.modules:  # small steps too: on the background thread
    sys.modules["gradscope_probe.detail"].DETAIL_INLINE_MAX_ELEMENTS = 0
"""

# The detail thread's jobs wait for `release` (the training thread's own calls go through); `where`
# collects the threads that computed a detail tier.
BLOCK_DETAIL = """
st = sys.modules["gradscope_probe.stats"]
orig = st.detail_stats_many
release = threading.Event()
where = set()
def blocking(items):
    where.add(threading.current_thread().name)
    if threading.current_thread().name == "gradscope-detail":
        release.wait(30)
    return orig(items)
st.detail_stats_many = blocking
"""


def naive_detail(values, rows, cols):
    """mean, std, zeroFrac, hist (exact decades), thumbnail means of |g| over the naive grid."""
    from fractions import Fraction
    finite = [v for v in values if math.isfinite(v)]
    mean = math.fsum(finite) / len(finite)
    std = math.sqrt(max(math.fsum(v * v for v in finite) / len(finite) - mean * mean, 0.0))
    hist = [0] * 32
    for v in finite:
        if v != 0:
            lg = math.log10(abs(v))
            k = math.floor(lg)
            if abs(lg - round(lg)) < 1e-6:  # near a power of ten: decide exactly
                a = Fraction(abs(v))
                while a < Fraction(10) ** k:
                    k -= 1
                while a >= Fraction(10) ** (k + 1):
                    k += 1
            hist[min(31, max(0, k + 20))] += 1
    thumb = []
    if rows:
        tr, tc = min(32, rows), min(32, cols)
        sums = [[0.0] * tc for _ in range(tr)]
        cnt = [[0] * tc for _ in range(tr)]
        for i, v in enumerate(values):
            r, c = divmod(i, cols)
            sums[r * tr // rows][c * tc // cols] += abs(v)
            cnt[r * tr // rows][c * tc // cols] += 1
        thumb = [sums[i][j] / cnt[i][j] for i in range(tr) for j in range(tc)]
    return mean, std, sum(1 for v in values if v == 0) / len(values), hist, thumb


class LeanStepTest(TempDirMixin, unittest.TestCase):
    """The lean path (Probe._lean_before) sends what the general path sends: the same script run with
    it and without it gives the same STEP, EVENT and DETAIL frames, through the cases it hands back to
    the general path (a zero gradient, NaN, a tensor without a gradient, clipping, a closure) and the
    ones it handles itself (a norm jump's detail tier, a scheduled detail step, a second optimizer's
    tensors), and off the CPU ("device": the general path then copies its rows to the host in one
    batch, and takes the detail steps)."""

    SCRIPT = FIND_PROBE + """
import json, math, sys, torch
from torch import nn
lean = sys.argv[1] == "lean"
two = sys.argv[3] == "two"  # a second optimizer: the first one's tensors are not all of them (not dense)
frozen = sys.argv[3] == "frozen"  # a frozen layer in the optimizer: tensors without a gradient at every step
if sys.argv[3] == "device":  # the path of a GPU's tensors (stats.plain_on_device), taken on the CPU
    sys.modules["gradscope_probe.stats"]._cheap_to_read = lambda device: False
sys.modules["gradscope_probe.probe"].LEAN_STEPS = lean
if not two:  # the detail tier every 15th step, on this thread: none skipped while a background job runs
    sys.modules["gradscope_probe.detail"].DETAIL_INLINE_MAX_ELEMENTS = 1 << 40
pr = the_probe()
took = []
orig_after = pr._lean_after
pr._lean_after = lambda ctx, t: (took.append(pr.steps), orig_after(ctx, t))
# The steps whose detail values were read tensor by tensor (stats.detail_stats_many), not in the
# step's one copy: off the CPU only an anomaly's (its gradients are read again, see _anomaly_detail).
many = []
stats_mod = sys.modules["gradscope_probe.stats"]
orig_many = stats_mod.detail_stats_many
stats_mod.detail_stats_many = lambda items: (many.append(pr.steps - 1), orig_many(items))[1]
torch.manual_seed(0)
# Six blocks of one shape (stacked by NormPlan) and a wide head (the multi-tensor norm).
body = nn.Sequential(*[nn.Linear(8, 8) for _ in range(6)])
head = nn.Linear(8, 300)
extra = nn.Parameter(torch.randn(5))  # trained by the second optimizer: not tensors 0..n-1
still = nn.Linear(8, 8).requires_grad_(False)
opt = torch.optim.Adam(list(body.parameters()) + list(still.parameters() if frozen else []) + list(head.parameters()), lr=1e-3)
opt2 = torch.optim.SGD([extra], lr=1e-2)
x = torch.randn(16, 8)
for i in range(40):
    opt.zero_grad()
    opt2.zero_grad()
    scale = 1000.0 if i == 25 else 1.0  # a norm jump: the detail tier for that step
    loss = head(still(body(x)) if frozen else body(x)).pow(2).mean() * scale + ((extra * extra).sum() if two else 0.0)
    loss.backward()
    if i == 12 and two:
        extra.grad[0] = float("nan")  # NaN: the non-finite event (extra is reset after the step)
    if i in (15, 16):
        head.bias.grad.zero_()  # a zero gradient: its exact row
    if i == 18:
        head.bias.grad = None  # a tensor without a gradient this step
    if i == 20:
        torch.nn.utils.clip_grad_norm_(body.parameters(), 0.5)
    if i == 22:
        opt.step(lambda: loss)
    else:
        opt.step()
    if two:
        opt2.step()
    if i == 12 and two:
        with torch.no_grad():
            extra.copy_(torch.ones(5))
json.dump({"took": took, "many": many}, open(sys.argv[2], "w"))
"""

    def test_the_same_frames_as_the_general_path(self):
        for optimizers in ("one", "two", "frozen", "device"):
            with self.subTest(optimizers=optimizers):
                self.check_same_frames(optimizers)

    def check_same_frames(self, optimizers):
        two = optimizers == "two"
        path = self.script("train.py", self.SCRIPT)
        runs = {}
        for mode in ("lean", "general"):
            out = os.path.join(self.tmp, mode + ".json")
            r = run_probe(path, args=[mode, out, optimizers], env={"GRADSCOPE_DETAIL_EVERY": "1000" if optimizers == "two" else "15",
                                                                   "GRADSCOPE_SAMPLED_EVERY": "7"})
            self.assertWellFormed(r)
            with open(out) as f:
                runs[mode] = (r, json.load(f))
        (lean, got), (general, got_general) = runs["lean"], runs["general"]
        took = got["took"]
        self.assertEqual(got_general["took"], [])
        n_steps = 80 if two else 40
        # Most steps went the lean way; the cases above did not.
        self.assertGreater(len(took), n_steps // 2)
        for step in ((0, 1) if two else (0,)):
            self.assertNotIn(step, took, "the first step of each optimizer takes the general path")

        def plain(v):  # NaN as None: equal to itself
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items() if k != "wallMs"}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        def comparable(r):
            # DETAIL frames come from the background thread, in their own order among the others.
            rest = [plain(m) for m in r.messages if m["type"] not in ("hello", "end", "detail")
                    and not (m["type"] == "event" and m["kind"] == "info")]
            details = sorted((plain(m) for m in r.of("detail")), key=lambda d: (d["step"], d["tensorId"]))
            return rest, details

        self.maxDiff = None
        (a, da), (b, db) = comparable(lean), comparable(general)
        self.assertEqual(len(a), len(b))
        for x, y in zip(a, b):
            self.assertEqual(x, y)
        self.assertEqual(da, db)
        self.assertEqual(len(lean.of("step")), n_steps)
        jump = 50 if two else 25  # opt at i=25, a lean step
        self.assertLessEqual({0, jump}, {d["step"] for d in lean.of("detail")}, "step 0 and the jump")
        self.assertIn(jump, took)
        if not two:
            # The scheduled detail step that is not sampled (every 7th) nor one of the cases above (15: a
            # zero gradient) went the lean way too; off the CPU ("device") the general way.
            self.assertEqual({d["step"] for d in lean.of("detail")}, {0, 15, jump, 30})
            self.assertEqual(30 in took, optimizers != "device")
            if optimizers == "device":
                # The scheduled detail steps (0, 15, 30) read their values in the step's one copy;
                # only the jump's anomaly detail reads its gradients again.
                for got_mode in (got, got_general):
                    self.assertEqual(set(got_mode["many"]), {jump})
        if two:
            self.assertIn("non-finite", {e["kind"] for e in lean.of("event")})
            self.assertIn(25, {d["step"] for d in lean.of("detail")}, "the NaN (opt2 at i=12)")


class DeviceLeanReadTest(TempDirMixin, unittest.TestCase):
    """Off the CPU (a GPU; the path taken here on the CPU) the lean step queues its norms and the loss
    for the host before the step and reads them after it: the host does not wait for the backward pass
    before it queues the optimizer's kernels. The numbers are the gradients' before the step."""

    def test_norms_are_read_after_the_step(self):
        path = self.script("train.py", FIND_PROBE + """
import json, sys, torch
stats = sys.modules["gradscope_probe.stats"]
stats._cheap_to_read = lambda device: False
order = []
read = stats.Later.read
stats.Later.read = lambda self: (order.append("read"), read(self))[1]
class Opt(torch.optim.SGD):
    def step(self, closure=None):
        order.append("step")
        return super().step(closure)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = Opt(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
want = []
for i in range(6):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    want.append({"loss": loss.item(), "norms": [p.grad.norm().item() for p in model.parameters()]})
    opt.step()
json.dump({"order": order, "want": want}, open(sys.argv[1], "w"))
""")
        out = os.path.join(self.tmp, "out.json")
        r = run_probe(path, args=[out], env={"GRADSCOPE_DETAIL_EVERY": "1000", "GRADSCOPE_SAMPLED_EVERY": "1000"})
        self.assertWellFormed(r)
        with open(out) as f:
            got = json.load(f)
        # Step 0 takes the general path; from step 1 on, each step's values are read after it.
        self.assertEqual(got["order"], ["step"] + ["step", "read"] * 5)
        steps = r.of("step")
        self.assertEqual(len(steps), 6)
        for s, w in zip(steps, got["want"]):
            self.assertAlmostEqual(s["loss"], w["loss"], places=6)
            for tid, n in enumerate(w["norms"]):
                self.assertAlmostEqual(r.stat(s, "norm", tid), n, delta=1e-6 * n)


class DetailTierTest(TempDirMixin, unittest.TestCase):
    """The detail tier of CPU gradients, computed on the probe's background thread."""

    def test_values_equal_a_naive_computation_on_the_gradients_the_script_saw(self):
        path = self.script("train.py", FIND_PROBE + """
import sys, torch
from torch import nn
background = sys.argv[2] == "background"
if not background:  # every step's detail inline, on the training thread (FIND_PROBE set 0: all in the background)
    sys.modules["gradscope_probe.detail"].DETAIL_INLINE_MAX_ELEMENTS = 1 << 40
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(40, 1000), nn.ReLU(), nn.Linear(1000, 70), nn.ReLU(), nn.Linear(70, 3))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
x = torch.randn(64, 40)
seen = []
for i in range(4):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    # Each job done before the next detail step, however loaded the machine: none is skipped as busy.
    worker = the_probe()._worker if background else None
    if worker is not None:
        worker.wait_idle(60)
    seen.append([p.grad.detach().clone().tolist() for p in model.parameters()])
torch.save({"seen": seen, "worker": the_probe()._worker is not None}, sys.argv[1])
""")
        for where in ("background", "training thread"):
            with self.subTest(where=where):
                self.check_against_naive(path, where)

    def test_the_background_thread_has_no_openmp_team_of_its_own(self):
        """The detail job's torch ops run on its thread alone (omp.py): a team of OpenMP workers of its
        own would make the training thread's parallel ops wake theirs from sleep for the rest of the run
        (x1.12 on the MLP's step, bench/torch_omp_team.py). Threads the OS runs that Python does not
        know of are OpenMP's workers: their number must not grow with the detail jobs."""
        path = self.script("teams.py", FIND_PROBE + """
import os, sys, threading, torch
from torch import nn
torch.set_num_threads(2)
def unknown_threads():
    return len(os.listdir("/proc/self/task")) - len(threading.enumerate())
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 3))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(64, 256)
torch.randn(1 << 20).abs().sum()  # (the training thread's own team first)
before = unknown_threads()
jobs = 0
for i in range(6):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    worker = the_probe()._worker
    if worker is not None:
        worker.wait_idle(60)
        jobs = worker.jobs_done
print("UNKNOWN", before, unknown_threads(), "JOBS", jobs, "MAIN", torch.get_num_threads())
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "2"})
        self.assertWellFormed(r)
        got = re.search(r"UNKNOWN (\d+) (\d+) JOBS (\d+) MAIN (\d+)", r.stdout)
        self.assertIsNotNone(got, r.stdout + r.stderr)
        before, after, jobs, main = map(int, got.groups())
        self.assertGreaterEqual(jobs, 2, "the detail tier ran in the background")
        self.assertEqual(main, 2, "the training thread keeps its thread count")
        self.assertEqual(after, before, "no OpenMP workers beyond the training thread's")

    def test_single_threaded_here_is_the_calling_threads_alone(self):
        import threading

        import torch

        from gradscope_probe import omp

        n = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            seen = []

            def job():
                seen.append(omp.single_threaded_here())
                seen.append(torch.get_num_threads())

            t = threading.Thread(target=job)
            t.start()
            t.join()
            if not sys.platform.startswith("linux"):
                self.skipTest("the OpenMP runtime is found among /proc/self/maps")
            self.assertEqual(seen, [True, 1])
            self.assertEqual(torch.get_num_threads(), 2)
        finally:
            torch.set_num_threads(n)

    def check_against_naive(self, path, where):
        import torch
        out = os.path.join(self.tmp, "grads.pt")
        r = run_probe(path, args=[out, where], env={"GRADSCOPE_DETAIL_EVERY": "2"})
        self.assertWellFormed(r)
        saved = torch.load(out)
        seen = saved["seen"]
        self.assertEqual(saved["worker"], where == "background", "the detail tier ran where the subtest says")
        details = r.of("detail")
        steps = sorted({d["step"] for d in details})
        self.assertEqual([s for s in steps if s % 2 == 0], [0, 2])  # (and any anomaly's step)
        tensors = r.tensors
        self.assertEqual(len(details), len(steps) * len(tensors))
        for d in details:
            t = tensors[d["tensorId"]]
            g = torch.tensor(seen[d["step"]][d["tensorId"]], dtype=torch.float32)
            values = g.reshape(-1).tolist()
            rows, cols = (t["shape"][0], len(values) // t["shape"][0]) if len(t["shape"]) >= 2 else (0, 0)
            mean, std, zf, hist, thumb = naive_detail(values, rows, cols)
            self.assertAlmostEqual(d["mean"], mean, delta=1e-12 + 1e-9 * abs(mean))
            self.assertAlmostEqual(d["std"] / std, 1.0, places=9)
            self.assertEqual(d["zeroFrac"], zf)
            if t["name"].endswith("2.weight"):
                self.assertGreater(zf, 0)  # ReLU: dead units give exact zeros
            self.assertEqual(d["hist"], hist)
            self.assertEqual(len(d["thumb"]), len(thumb))
            for a, b in zip(d["thumb"], thumb):
                self.assertAlmostEqual(a, b, delta=1e-6 * b + 1e-30)

    def test_detail_every_step_results_unchanged_and_frames_complete_before_end(self):
        path = self.script("train.py", FIND_PROBE + """
import torch
from torch import nn
if "gradscope_probe.stats" in sys.modules:
    st = sys.modules["gradscope_probe.stats"]
    orig = st.detail_stats_many
    def slow(items):  # the background job takes longer than the script's last step
        if threading.current_thread().name == "gradscope-detail":
            time.sleep(0.8)
        return orig(items)
    st.detail_stats_many = slow
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(30, 50), nn.Tanh(), nn.Linear(50, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x = torch.randn(32, 30)
for i in range(5):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
print("final", repr(loss.item()), repr(float(model[0].weight.sum())))
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "1"})
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0, r.stderr)
        without = run_probe(path, channel=False)
        self.assertEqual(r.stdout, without.stdout)
        details = r.of("detail")
        steps = sorted({d["step"] for d in details})
        self.assertEqual(steps[0], 0)
        for s in steps:  # every job's frames arrived whole
            self.assertEqual(sorted(d["tensorId"] for d in details if d["step"] == s), list(range(4)))
        skipped = [e for e in r.of("event") if e["kind"] == "info" and "detail tier skipped" in e["message"]]
        self.assertEqual(len(steps) + (skipped[0]["count"] if skipped else 0), 5)
        self.assertTrue(skipped)  # a job takes 0.8 s, the steps far less
        # DETAIL frames only after their own STEP frame, and all before END.
        order = [(m["type"], m.get("step")) for m in r.messages]
        for s in steps:
            self.assertLess(order.index(("step", s)), order.index(("detail", s)))
        self.assertEqual(r.messages[-1]["type"], "end")

    def test_busy_thread_skips_and_counts(self):
        path = self.script("train.py", MLP + FIND_PROBE + BLOCK_DETAIL + """
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 4)
for i in range(7):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    if i == 3:
        release.set()
    if i >= 3:
        assert the_probe()._worker.wait_idle(10)
print(sorted(where))
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "1"})
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "['gradscope-detail']")  # never on the training thread
        self.assertEqual(sorted({d["step"] for d in r.of("detail")}), [0, 4, 5, 6])
        info = [e for e in r.of("event") if e["kind"] == "info" and "detail tier skipped" in e["message"]]
        self.assertEqual(len(info), 1)
        self.assertEqual(info[0]["count"], 3)  # steps 1, 2, 3
        self.assertIn("detail tier skipped on 3 step(s)", info[0]["message"])

    def test_a_job_still_running_at_the_end_is_abandoned_cleanly(self):
        path = self.script("train.py", MLP + FIND_PROBE + """
sys.modules["gradscope_probe.detail"].DETAIL_DRAIN_S = 0.3
st = sys.modules["gradscope_probe.stats"]
orig = st.detail_stats_many
def stuck(items):
    if threading.current_thread().name == "gradscope-detail":
        time.sleep(60)
    return orig(items)
st.detail_stats_many = stuck
opt = torch.optim.SGD(model.parameters(), lr=0.01)
opt.zero_grad()
model(torch.randn(16, 4)).pow(2).mean().backward()
opt.step()
""")
        started = time.monotonic()
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "1"})
        # END did not wait for the job (60 s); the margin is for python and torch starting on a loaded
        # machine (8.7 s seen under CI with a bound of 7 s and a job of 8 s).
        self.assertLess(time.monotonic() - started, 30)
        self.assertWellFormed(r, warnings_ok=True)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.of("detail"), [])
        self.assertEqual(len(r.warnings()), 1)
        self.assertIn("detail tier of step 0 was still being computed", r.warnings()[0])

    def test_automatic_interval_spaces_detail_steps_and_puts_off_when_busy(self):
        path = self.script("train.py", MLP + FIND_PROBE + BLOCK_DETAIL + """
opt = torch.optim.SGD(model.parameters(), lr=0.001)
x = torch.randn(16, 4)
for i in range(40):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    if i == 12:
        release.set()  # the job of step 0 held the thread until now: step 10's detail waits
        assert the_probe()._worker.wait_idle(10)
""")
        r = run_probe(path)  # GRADSCOPE_DETAIL_EVERY unset: automatic
        self.assertWellFormed(r)
        self.assertEqual(r.messages[0]["detailEvery"], 10)
        steps = sorted({d["step"] for d in r.of("detail")})
        self.assertEqual(steps[:2], [0, 13])  # put off while busy, then as soon as free
        self.assertTrue(all(b - a >= 10 for a, b in zip(steps, steps[1:])), steps)
        self.assertEqual([e for e in r.of("event") if "detail tier skipped" in e["message"]], [])

    def test_anomaly_detail_waits_for_the_job_before_it(self):
        path = self.script("nan.py", MLP + """
import sys, threading, time
sys.modules["gradscope_probe.detail"].DETAIL_INLINE_MAX_ELEMENTS = 0
st = sys.modules["gradscope_probe.stats"]
orig = st.detail_stats_many
def slow(items):
    if threading.current_thread().name == "gradscope-detail":
        time.sleep(0.5)
    return orig(items)
st.detail_stats_many = slow
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
for i in range(3):
    opt.zero_grad()
    loss = model(x).mean() * (float("nan") if i == 1 else 1.0)
    loss.backward()
    opt.step()
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "100"})
        self.assertWellFormed(r)
        per_tensor = {}
        for d in r.of("detail"):
            per_tensor.setdefault(d["tensorId"], []).append(d["step"])
        self.assertEqual(set(map(tuple, per_tensor.values())), {(0, 1)})  # in step order, none skipped


class LocateNanTest(TempDirMixin, unittest.TestCase):
    """GRADSCOPE_LOCATE_NAN=1: the probe names the op that made the first non-finite value (locate.py)."""

    def located(self, r):
        from gradscope_probe.locate import LOCATE_PREFIX

        found = [e["message"] for e in r.of("event") if e["kind"] == "info" and e["message"].startswith(LOCATE_PREFIX)]
        self.assertLessEqual(len(found), 1, found)
        return json.loads(found[0][len(LOCATE_PREFIX):]) if found else None

    def test_forward_log_of_zero(self):
        path = self.script("train.py", """
import torch
w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
opt = torch.optim.SGD([w], lr=0.1)
for i in range(4):
    p = torch.sigmoid(-(200.0 if i >= 2 else 1.0) * w)
    loss = -torch.log(p).mean()  # LOG
    opt.zero_grad()
    loss.backward()
    opt.step()
""")
        r = run_probe(path, env={"GRADSCOPE_LOCATE_NAN": "1", "GRADSCOPE_MAX_STEPS": "3"})
        c = self.located(r)
        self.assertIsNotNone(c, r.stderr)
        self.assertEqual((c["op"], c["phase"], c["file"], c["line"], c["step"]), ("log", "forward", path, line_of(path, "# LOG"), 2))
        # Anomaly mode (the framework's own check) is on too: it stops the backward pass at the first NaN.
        self.assertIn("returned nan values", r.stderr)

    def test_backward_sqrt_of_zero_and_method_form(self):
        path = self.script("train.py", """
import torch
w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
opt = torch.optim.SGD([w], lr=0.1)
for i in range(3):
    d = w - w.detach() if i >= 1 else w - 2.0
    loss = (d * d).sum().sqrt()  # SQRT
    opt.zero_grad()
    loss.backward()
    opt.step()
""")
        r = run_probe(path, env={"GRADSCOPE_LOCATE_NAN": "1", "GRADSCOPE_MAX_STEPS": "2"})
        c = self.located(r)
        self.assertIsNotNone(c, r.stderr)
        self.assertEqual((c["op"], c["phase"], c["line"], c["step"]), ("SqrtBackward0", "backward", line_of(path, "# SQRT"), 1))

    def test_off_by_default_and_env_not_inherited(self):
        path = self.script("train.py", """
import os, torch
print("ENV", os.environ.get("GRADSCOPE_LOCATE_NAN"))
w = torch.nn.Parameter(torch.tensor([0.0]))
opt = torch.optim.SGD([w], lr=0.1)
loss = -torch.log(w * 0).sum()
loss.backward()
opt.step()
""")
        r = run_probe(path)
        self.assertIsNone(self.located(r))
        r = run_probe(path, env={"GRADSCOPE_LOCATE_NAN": "1"})
        self.assertIn("ENV None", r.stdout)
        self.assertEqual(self.located(r)["op"], "log")


if __name__ == "__main__":
    unittest.main()


def _alive(pid: int) -> bool:
    """Whether pid is a live process (not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
