"""Step capture as people train with torch today: absent gradients, several optimizers, torch.compile,
closures with clipping (Lightning), GradScaler, accumulation, DTensor, loops without torch.optim,
child processes. Real child processes and real torch, as test_probe.py; features missing from the
running torch (1.13) are skipped, nothing else."""
import json
import math
import os
import unittest

import torch

from .helpers import TempDirMixin, run_probe

HAS_COMPILE = hasattr(torch, "compile") and hasattr(torch, "compiler")
try:
    from torch.amp import GradScaler as AmpGradScaler  # noqa: F401
    HAS_CPU_SCALER = True
except Exception:  # noqa: BLE001 - torch 1.13: torch.cuda.amp's only, which disables itself without CUDA
    HAS_CPU_SCALER = False
try:
    import lightning  # noqa: F401
    HAS_LIGHTNING = True
except Exception:  # noqa: BLE001
    HAS_LIGHTNING = False
try:
    from torch.distributed.tensor import DTensor  # noqa: F401
    HAS_DTENSOR = True
except Exception:  # noqa: BLE001
    HAS_DTENSOR = False

NORMS = """
import json, math, torch
def total_norm(params):
    return math.sqrt(sum(float(p.grad.detach().double().norm()) ** 2 for p in params if p.grad is not None))
def report(**kw):
    print("REPORT " + json.dumps(kw))
"""

LIGHTNING_HEAD = """
import lightning as L
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
"""
# Trains a LightningModule `Lit` 4 steps on inputs large enough that a clip at 0.5 acts. {clip}: more
# Trainer arguments (gradient_clip_val).
LIGHTNING_FIT = """
data = TensorDataset(torch.randn(64, 4) * 20, torch.randn(64, 1) * 50)
trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False,{clip}
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Lit(), DataLoader(data, batch_size=16))
"""


def reports(r):
    return [json.loads(l[len("REPORT "):]) for l in r.stdout.splitlines() if l.startswith("REPORT ")]


def global_norm(r, s):
    present = [i for i in range(s["nTensors"]) if r.stat(s, "hasGrad", i) == 1.0]
    return math.sqrt(sum(r.stat(s, "norm", i) ** 2 for i in present))


class AbsentGradientTest(TempDirMixin, unittest.TestCase):
    def test_none_gradients_are_absent_not_nan(self):
        path = self.script("absent.py", NORMS + """
from torch import nn
torch.manual_seed(0)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head_a = nn.Linear(8, 1)
        self.head_b = nn.Linear(8, 1)  # used on odd steps only
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
    def forward(self, x, i):
        h = self.frozen(torch.relu(self.body(x)))
        return (self.head_b if i % 2 else self.head_a)(h)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)  # the frozen layer too: it never has a gradient
x = torch.randn(16, 4)
for i in range(4):
    opt.zero_grad(set_to_none=True)
    model(x, i).pow(2).mean().backward()
    opt.step()
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 4)
        names = {t["name"]: t["id"] for t in r.tensors}
        self.assertEqual(len(names), 8)  # every tensor of the optimizer is described, absent ones too
        for i, s in enumerate(steps):
            self.assertEqual(s["nTensors"], 8)
            present = {n for n, tid in names.items() if r.stat(s, "hasGrad", tid) == 1.0}
            head = "model.head_b" if i % 2 else "model.head_a"
            self.assertEqual(present, {"model.body.weight", "model.body.bias", head + ".weight", head + ".bias"})
            for n, tid in names.items():
                if n in present:
                    self.assertGreater(r.stat(s, "norm", tid), 0)
                    self.assertEqual(r.stat(s, "nanCount", tid), 0)
                else:
                    self.assertTrue(math.isnan(r.stat(s, "norm", tid)))
        self.assertEqual([e for e in r.of("event") if e["kind"] == "non-finite"], [])
        opt_msgs = r.of("optimizer")
        self.assertEqual(len(opt_msgs), 1)
        self.assertEqual(sorted(opt_msgs[0]["tensorIds"]), list(range(8)))


class OptimizersTest(TempDirMixin, unittest.TestCase):
    def test_each_optimizer_named_announced_and_given_the_detail_tier(self):
        path = self.script("gan.py", """
import torch
from torch import nn
torch.manual_seed(0)
G = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
D = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
extra = nn.Linear(2, 2)

def make_opt(params):
    return torch.optim.SGD(params, lr=1e-2)

class Trainer:
    def __init__(self):
        self.optimizer = torch.optim.Adam(G.parameters(), lr=1e-3)

trainer = Trainer()
opt_g = trainer.optimizer
opt_d = make_opt(D.parameters())
for i in range(6):
    z = torch.randn(8, 2)
    opt_d.zero_grad()
    D(G(z).detach()).mean().backward()
    opt_d.step()
    opt_g.zero_grad()
    (-D(G(z)).mean()).backward()
    opt_g.step()
    if i == 3:
        opt_d.add_param_group({"params": extra.parameters()})
        (extra(z).sum() + D(z).sum()).backward()
        opt_d.step()
        opt_d.zero_grad()
""")
        for every in ("2", ""):
            with self.subTest(detail_every=every or "automatic"):
                r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": every} if every else {})
                self.assertWellFormed(r)
                opts = r.of("optimizer")
                self.assertEqual([(o["id"], o["name"], o["className"], o["mode"]) for o in opts[:2]],
                                 [(0, "opt_d", "SGD", "optimizer"), (1, "self.optimizer", "Adam", "optimizer")])
                ids = {t["name"]: t["id"] for t in r.tensors}
                self.assertEqual(sorted(opts[0]["tensorIds"]), sorted(ids[n] for n in ids if n.startswith("D.")))
                # add_param_group: OPTIMIZER again with the same id and the new tensors.
                self.assertEqual(len(opts), 3)
                self.assertEqual(opts[2]["id"], 0)
                self.assertEqual(sorted(opts[2]["tensorIds"]),
                                 sorted(ids[n] for n in ids if n.startswith("D.") or n.startswith("extra.")))
                steps = r.of("step")
                self.assertEqual(len(steps), 13)
                self.assertEqual([s["optimizer"] for s in steps[:8]], [0, 1] * 4)
                for s in steps:
                    present = {i for i in range(s["nTensors"]) if r.stat(s, "hasGrad", i) == 1.0}
                    mine = [o for o in opts if o["id"] == s["optimizer"]][-1]["tensorIds"]
                    self.assertTrue(present and present <= set(mine))
                # The detail tier reaches both optimizers' tensors, at each one's first step.
                detail_tensors = {d["tensorId"] for d in r.of("detail")}
                self.assertEqual(detail_tensors, {ids[n] for n in ids if not n.startswith("extra.")} |
                                 ({ids["extra.weight"], ids["extra.bias"]} if every == "2" else set()))
                by_opt = {s["step"]: s["optimizer"] for s in steps}
                self.assertEqual({by_opt[d["step"]] for d in r.of("detail")}, {0, 1})


@unittest.skipUnless(HAS_COMPILE, "torch.compile needs torch 2.x")
class CompileTest(TempDirMixin, unittest.TestCase):
    def test_compiled_model_and_optimizer_step_every_step_no_extra_breaks(self):
        path = self.script("compiled.py", """
import json, torch
from torch import nn
from torch._dynamo.utils import counters
torch.manual_seed(0)
def snapshot(phase):
    return {"phase": phase, "breaks": sum(counters["graph_break"].values()),
            "graphs": counters["stats"]["unique_graphs"], "recompiles": sum(counters["recompiles"].values())}
out = []
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
cmodel = torch.compile(model, backend="eager")
opt = torch.optim.Adam(model.parameters(), lr=0.01)
step = torch.compile(opt.step, backend="eager")  # the compiled optimizer step
x = torch.randn(16, 4)
norms = []
for i in range(3):
    opt.zero_grad()
    cmodel(x).pow(2).mean().backward()
    norms.append(sum(float(p.grad.norm()) ** 2 for p in model.parameters()) ** 0.5)
    step()
out.append(snapshot("model+step"))
opt2 = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
@torch.compile(fullgraph=False, backend="eager")  # PyTorch's "compiling the optimizer" recipe
def fn():
    opt2.step()
for i in range(3):
    opt2.zero_grad()
    model(x).pow(2).mean().backward()
    norms.append(sum(float(p.grad.norm()) ** 2 for p in model.parameters()) ** 0.5)
    fn()
out.append(snapshot("recipe"))
print(json.dumps({"counters": out, "norms": norms, "w": float(model[0].weight.sum())}))
""")
        r = run_probe(path)
        bare = run_probe(path, channel=False)
        self.assertEqual(bare.rc, 0, bare.stderr)
        self.assertWellFormed(r)
        got, want = json.loads(r.stdout), json.loads(bare.stdout)
        self.assertEqual(got["counters"], want["counters"])  # no graph break, graph or recompile added
        self.assertEqual(got["w"], want["w"])
        steps = r.of("step")
        self.assertEqual(len(steps), 6)
        for s, n in zip(steps, got["norms"]):
            self.assertAlmostEqual(global_norm(r, s) / n, 1.0, places=5)
        self.assertEqual([o["name"] for o in r.of("optimizer")], ["opt", "opt2"])


class ClosureClipTest(TempDirMixin, unittest.TestCase):
    def test_clip_inside_a_closure_reports_the_norm_before_clipping(self):
        path = self.script("closure.py", NORMS + """
from torch import nn
from torch.nn.utils import clip_grad_norm_
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 4) * 30
for i in range(3):
    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        report(norm=total_norm(model.parameters()), loss=float(loss))
        clip_grad_norm_(parameters=model.parameters(), max_norm=0.5)
        torch.nn.utils.clip_grad_value_(model.parameters(), clip_value=10.0)
        return loss
    opt.step(closure)
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        seen = reports(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 3)
        for s, want in zip(steps, seen):
            self.assertGreater(want["norm"], 0.5 * 2)  # clipped: the probe must not show 0.5
            self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
            self.assertAlmostEqual(s["loss"], want["loss"], places=4)
        clips = sorted((e["value"], e["message"], e.get("clipBy")) for e in r.of("event") if e["kind"] == "clip")
        self.assertEqual([v for v, _, _ in clips], [0.5, 10.0])
        self.assertIn("clip_grad_norm_(max_norm=0.5", clips[0][1])
        self.assertIn("clip_grad_value_(clip_value=10)", clips[1][1])
        # What each threshold bounds: the global norm, each element (the analysis words them apart).
        self.assertEqual([by for _, _, by in clips], ["norm", "value"])

    def test_lbfgs_step_reports_its_first_closure_evaluation(self):
        """LBFGS evaluates the closure at each of its inner iterations (max_iter) inside one step; the
        loss step() returns is the first evaluation's, at the parameters the step starts from. The
        STEP pairs it with that evaluation's gradient (it used to carry the last evaluation's), and
        the detail tier describes that gradient too, even when later evaluations zero it in place."""
        path = self.script("lbfgs.py", NORMS + """
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
x = torch.randn(32, 4)
y = torch.randn(32, 1)
for i in range(3):
    def closure():
        opt.zero_grad(set_to_none=False)
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        w = model[0].weight.grad
        report(step=i, norm=total_norm(model.parameters()), loss=float(loss), mean=float(w.double().mean()))
        return loss
    print("RETURNED", float(opt.step(closure)))
""")
        r = run_probe(path, env={"GRADSCOPE_DETAIL_EVERY": "1"})
        self.assertWellFormed(r)
        seen = reports(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 3)
        returned = [float(l.split()[1]) for l in r.stdout.splitlines() if l.startswith("RETURNED")]
        w0 = next(t["id"] for t in r.tensors if t["name"] == "model.0.weight")
        details = {d["step"]: d for d in r.of("detail") if d["tensorId"] == w0}
        for s, want_loss in zip(steps, returned):
            evals = [e for e in seen if e["step"] == s["step"]]
            self.assertGreater(len(evals), 1)  # inner iterations: the test tells first from last
            first, last = evals[0], evals[-1]
            self.assertGreater(abs(last["norm"] / first["norm"] - 1), 0.01)
            self.assertAlmostEqual(global_norm(r, s) / first["norm"], 1.0, places=5)
            self.assertAlmostEqual(s["loss"], first["loss"], places=5)
            self.assertAlmostEqual(s["loss"], want_loss, places=5)
            self.assertAlmostEqual(details[s["step"]]["mean"], first["mean"], places=6)

    def test_a_step_whose_first_argument_is_no_closure_gets_it_unchanged(self):
        """A custom step(scale) (first positional argument not callable) gets its own argument, not the
        closure wrapper; its gradients are read after it, as those of a step(closure) whose optimizer
        never calls the closure."""
        path = self.script("custom.py", NORMS + """
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
class Scaled(torch.optim.SGD):
    def step(self, scale):
        assert isinstance(scale, float), type(scale)
        for g in self.param_groups:
            for p in g["params"]:
                p.data.add_(p.grad, alpha=-g["lr"] * scale)
opt = Scaled(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
for i in range(3):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    report(norm=total_norm(model.parameters()), loss=loss.item())
    opt.step(0.5)
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertNotIn("Traceback", r.stderr)
        steps = r.of("step")
        self.assertEqual(len(steps), 3)
        for s, want in zip(steps, reports(r)):
            self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
            self.assertAlmostEqual(s["loss"], want["loss"], places=5)

    def test_a_clip_before_a_step_whose_closure_runs_no_backward(self):
        """Lightning's manual optimization: the script clips (clip_gradients) after its backward pass,
        then optimizer.step() hands torch a closure that does nothing. The step applies the gradients
        that clip saw, so it reports them before clipping (it used to report the clipped ones: exactly
        max_norm). A closure that runs a backward pass after such a clip steps with new gradients."""
        path = self.script("manualclip.py", NORMS + """
import sys
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(16, 4) * 30
for i in range(4):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    report(norm=total_norm(model.parameters()), loss=float(loss))
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
    if i < 2:
        opt.step(lambda: None)
    else:
        def closure():
            opt.zero_grad()
            l = model(x * 0.5).pow(2).mean()
            l.backward()
            report(norm=total_norm(model.parameters()), loss=float(l), inside=True)
            return l
        opt.step(closure)
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        seen = reports(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 4)
        # Steps 0 and 1: the gradients of the backward pass before the clip; 2 and 3: those of the
        # closure's backward pass, unclipped (its loss is the closure's: the earlier pass's gradients
        # were thrown away by its zero_grad).
        want = [seen[0], seen[1], seen[3], seen[5]]
        self.assertTrue(seen[3].get("inside") and seen[5].get("inside"))
        for s, w in zip(steps, want):
            self.assertGreater(w["norm"], 0.5 * 2)  # the probe must not show the clipped 0.5
            self.assertAlmostEqual(global_norm(r, s) / w["norm"], 1.0, places=5)
        for s, w in zip(steps[:2], want[:2]):
            self.assertAlmostEqual(s["loss"], w["loss"], places=4)

    @unittest.skipUnless(HAS_LIGHTNING, "lightning is not installed")
    def test_lightning_manual_optimization_with_clip_gradients(self):
        path = self.script("litmanual.py", NORMS + LIGHTNING_HEAD + """
class Lit(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    def training_step(self, batch, i):
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad()
        loss = (self.net(x) - y).pow(2).mean()
        self.manual_backward(loss)
        report(norm=total_norm(self.parameters()), loss=float(loss))
        self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        opt.step()
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)
""" + LIGHTNING_FIT.format(clip=""))
        self.assertLightningPreClip(run_probe(path, timeout=120), with_loss=True)

    def test_clip_before_the_first_step_sends_a_true_hello(self):
        path = self.script("clipfirst.py", """
import torch
model = torch.nn.Linear(3, 1)
model(torch.randn(4, 3)).sum().backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
""")
        r = run_probe(path)
        self.assertWellFormed(r)
        self.assertEqual(r.messages[0]["type"], "hello")
        self.assertNotIn("no optimizer step ran", r.messages[0]["backendReason"])
        self.assertEqual(r.messages[0]["backend"], "cpu")

    @unittest.skipUnless(HAS_LIGHTNING, "lightning is not installed")
    def test_lightning_gradient_clip_val(self):
        path = self.script("lit.py", NORMS + LIGHTNING_HEAD + """
class Lit(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    def training_step(self, batch, i):
        x, y = batch
        return (self.net(x) - y).pow(2).mean()
    def on_before_optimizer_step(self, optimizer):  # before Lightning clips
        report(norm=total_norm(self.parameters()))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)
""" + LIGHTNING_FIT.format(clip=" gradient_clip_val=0.5,"))
        r = run_probe(path, timeout=120)
        self.assertLightningPreClip(r, with_loss=False)
        self.assertEqual(r.of("optimizer")[0]["name"], "SGD#0")

    def assertLightningPreClip(self, r, with_loss: bool):
        """A LightningModule's 4 steps (LIGHTNING_FIT) clipped at 0.5: each reports the norm its
        script saw before clipping (and its loss, where the script reported one), and one clip event."""
        self.assertWellFormed(r, warnings_ok=True)
        steps = r.of("step")
        self.assertEqual(len(steps), 4)
        for s, want in zip(steps, reports(r)):
            self.assertGreater(want["norm"], 1.0)
            self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
            if with_loss:
                self.assertAlmostEqual(s["loss"], want["loss"], places=4)
        self.assertEqual([e["value"] for e in r.of("event") if e["kind"] == "clip"], [0.5])


@unittest.skipUnless(HAS_CPU_SCALER, "a CPU GradScaler needs torch.amp (2.x); torch.cuda.amp's needs CUDA")
class GradScalerTest(TempDirMixin, unittest.TestCase):
    SCRIPT = NORMS + """
import sys
from torch import nn
torch.manual_seed(0)
mode = sys.argv[1]
fused = len(sys.argv) > 2 and sys.argv[2] == "fused"
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
# fused: an optimizer that unscales inside its own step (GradScaler hands it grad_scale and found_inf
# instead of unscaling its gradients, and calls its step on an overflow too)
opt = torch.optim.SGD(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
x = torch.randn(16, 4) * 10
for i in range(5):
    opt.zero_grad()
    loss = model(x).pow(2).mean() * (float("inf") if i == 2 else 1.0)  # step 2 overflows
    scaler.scale(loss).backward()
    if mode == "unscale":
        scaler.unscale_(opt)
        true = total_norm(model.parameters())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    else:  # clips the scaled gradients (a common mistake), or does not clip
        true = total_norm(model.parameters()) / scaler.get_scale()
        if mode == "clip-scaled":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    report(norm=true, loss=float(loss), scale=scaler.get_scale())
    scaler.step(opt)
    scaler.update()
"""

    def test_unscaled_loss_and_norms_skipped_steps_and_clip_on_scaled_gradients(self):
        self.check_modes("plain")

    def test_an_optimizer_that_unscales_in_its_step(self):
        try:
            torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, fused=True)
        except (TypeError, RuntimeError) as e:
            self.skipTest("no fused SGD on the CPU here: %s" % e)
        self.check_modes("fused")

    def check_modes(self, kind):
        path = self.script("amp.py", self.SCRIPT)
        for mode in ("unscale", "clip-scaled", "no-clip"):
            with self.subTest(mode=mode):
                r = run_probe(path, args=[mode, kind])
                self.assertWellFormed(r, warnings_ok=True)
                self.assertEqual(r.rc, 0, r.stderr)
                seen = reports(r)
                steps = r.of("step")
                self.assertEqual(len(steps), 4)  # 5 iterations, one skipped
                kept = [w for i, w in enumerate(seen) if i != 2]
                for s, want in zip(steps, kept):
                    self.assertAlmostEqual(s["loss"], want["loss"], places=3)  # unscaled
                    self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=4)
                skipped = [e for e in r.of("event") if e["kind"] == "skipped-step"]
                self.assertEqual([(e["step"], e["count"], e["value"]) for e in skipped], [(2, 1, 2.0 ** 15)])
                # Without a clip (the detail tier reads what the optimizer applied: a clipped gradient)
                # its values are the unscaled gradient's too: mean² + std² = ||g||² / n.
                by_step = {s["step"]: s for s in steps}
                details = [d for d in r.of("detail") if d["step"] in by_step] if mode == "no-clip" else []
                self.assertTrue(details or mode != "no-clip")
                for d in details:
                    n = math.prod(r.tensors[d["tensorId"]]["shape"])
                    ms = r.stat(by_step[d["step"]], "norm", d["tensorId"]) ** 2 / n
                    self.assertAlmostEqual((d["mean"] ** 2 + d["std"] ** 2) / max(ms, 1e-30), 1.0 if ms > 0 else 0.0, places=3, msg=d)
                warnings = r.warnings()
                if mode == "clip-scaled":
                    self.assertEqual(len(warnings), 1)
                    self.assertIn("scaler.unscale_(optimizer) before clipping", warnings[0])
                    self.assertIn("65536", warnings[0])
                else:
                    self.assertEqual(warnings, [])


class AccumulationTest(TempDirMixin, unittest.TestCase):
    def assertStepsAsReported(self, r, n):
        """n STEPs, each with the loss (and, where reported, the global norm) the script reported."""
        self.assertWellFormed(r)
        steps = r.of("step")
        self.assertEqual(len(steps), n)
        seen = reports(r)
        self.assertEqual(len(seen), n)
        for s, want in zip(steps, seen):
            self.assertAlmostEqual(s["loss"], want["loss"], places=5)
            if "norm" in want:
                self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)

    def test_loss_of_a_step_is_the_sum_over_its_micro_batches(self):
        path = self.script("accum.py", NORMS + """
from torch import nn
torch.manual_seed(0)
model = nn.Linear(4, 1)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(3):
    total = 0.0
    for micro in range(4):
        loss = model(torch.randn(8, 4)).pow(2).mean() / 4
        loss.backward()
        total += float(loss)
    report(loss=total)
    opt.step()
    opt.zero_grad()
""")
        self.assertStepsAsReported(run_probe(path), 3)

    def test_a_backward_pass_after_the_parameters_moved_starts_the_loss_again(self):
        """SAM: a backward pass at w, the parameters moved in place to w+e (first_step), a second
        backward pass there, then the base optimizer's step. That is not accumulation: the step's loss
        is the second pass's (the one whose gradient the step applies), not the sum of both; from the
        first step on (before it, the optimizer built last gives the mark)."""
        path = self.script("sam.py", NORMS + """
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
base = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for step in range(4):
    l1 = (model(x) - y).pow(2).mean()
    l1.backward()
    with torch.no_grad():
        g = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
        es = [p.grad * (0.05 / g) for p in model.parameters()]
        for p, e in zip(model.parameters(), es):
            p.add_(e)
    base.zero_grad()
    l2 = (model(x) - y).pow(2).mean()
    l2.backward()
    report(first=l1.item(), loss=l2.item(), norm=total_norm(model.parameters()))
    with torch.no_grad():
        for p, e in zip(model.parameters(), es):
            p.sub_(e)
    base.step()
    base.zero_grad()
""")
        self.assertStepsAsReported(run_probe(path), 4)

    def test_sam_as_a_step_with_a_closure_reports_the_closures_loss(self):
        """SAM written as step(closure) (first_step, the closure at w+e, the base step): the backward
        pass before step() is not added to the closure's loss, as accumulated passes would be."""
        path = self.script("samclosure.py", NORMS + """
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
x, y = torch.randn(32, 8), torch.randn(32, 1)

class SAM(torch.optim.Optimizer):
    def __init__(self, params, rho=0.05, lr=0.1):
        super().__init__(params, dict(rho=rho, lr=lr))
        self.base = torch.optim.SGD(self.param_groups, lr=lr)

    @torch.no_grad()
    def step(self, closure):
        ps = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        n = torch.norm(torch.stack([p.grad.norm() for p in ps]))
        es = [p.grad * (self.param_groups[0]["rho"] / n) for p in ps]
        for p, e in zip(ps, es):
            p.add_(e)
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        for p, e in zip(ps, es):
            p.sub_(e)
        self.base.step()
        return loss

opt = SAM(model.parameters())
def closure():
    l2 = (model(x) - y).pow(2).mean()
    l2.backward()
    report(loss=l2.item(), norm=total_norm(model.parameters()))
    return l2
for step in range(4):
    opt.zero_grad()
    (model(x) - y).pow(2).mean().backward()
    opt.step(closure)
""")
        self.assertStepsAsReported(run_probe(path), 4)


@unittest.skipUnless(HAS_DTENSOR, "DTensor needs torch 2.x")
class DTensorTest(TempDirMixin, unittest.TestCase):
    def test_fsdp2_or_dtensor_gradients_on_one_rank(self):
        path = self.script("fsdp.py", NORMS + """
import os, sys, tempfile
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
torch.manual_seed(0)
init = "file://" + os.path.join(tempfile.mkdtemp(), "pg")
dist.init_process_group("gloo", init_method=init, rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
try:
    from torch.distributed.fsdp import fully_shard
except ImportError:
    from torch.distributed._composable.fsdp import fully_shard
fully_shard(model, mesh=mesh)
what = "fsdp2"
from torch.distributed.tensor import DTensor
assert all(isinstance(p, DTensor) for p in model.parameters())
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
for i in range(3):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    report(norm=math.sqrt(sum(float(p.grad.to_local().norm()) ** 2 for p in model.parameters())), loss=float(loss))
    opt.step()
dist.destroy_process_group()
""")
        r = run_probe(path, timeout=120)
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0, r.stderr)
        steps = r.of("step")
        self.assertEqual(len(steps), 3)
        for s, want in zip(steps, reports(r)):
            self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
            self.assertAlmostEqual(s["loss"], want["loss"], places=5)
            for i in range(s["nTensors"]):
                self.assertGreater(r.stat(s, "updateNorm", i), 0)
        self.assertEqual([t["shape"] for t in r.tensors], [[8, 4], [8], [1, 8], [1]])
        # A mesh of one rank holds every tensor whole: no `shard` block in TENSORS.
        self.assertEqual([t.get("shard") for t in r.tensors], [None] * 4)


class BackwardPassesTest(TempDirMixin, unittest.TestCase):
    SCRIPT = NORMS + """
import sys
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
w = torch.zeros(1, requires_grad=True)  # a raw tensor, not in any module
lr = 0.05
x, y = torch.randn(32, 4), torch.randn(32, 1)
for i in range(int(sys.argv[1])):
    loss = ((model(x) + w - y) ** 2).mean()
    model.zero_grad()
    w.grad = None
    loss.backward()
    report(norm=total_norm(list(model.parameters()) + [w]), loss=float(loss),
           update=[lr * float(p.grad.norm()) for p in model.parameters()])
    with torch.no_grad():
        for p in list(model.parameters()) + [w]:
            p.data.add_(p.grad, alpha=-lr)
    print("iteration", i, flush=True)
if len(sys.argv) > 2:  # an optimizer after all
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(2):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
"""

    def test_each_backward_pass_is_a_step_without_an_optimizer(self):
        path = self.script("manual.py", self.SCRIPT)
        r = run_probe(path, args=["4"])
        self.assertWellFormed(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 4)
        self.assertEqual(r.of("end")[0]["steps"], 4)
        opts = r.of("optimizer")
        self.assertEqual([(o["name"], o["className"], o["mode"]) for o in opts],
                         [("backward passes", "backward", "backward")])
        self.assertEqual(sorted(opts[0]["tensorIds"]), list(range(5)))
        info = [e for e in r.of("event") if e["kind"] == "info" and "backward pass" in e["message"]]
        self.assertEqual(len(info), 1)
        names = [t["name"] for t in r.tensors]
        self.assertEqual(names[:4], ["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"])
        for s, want in zip(steps, reports(r)):
            self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
            self.assertAlmostEqual(s["loss"], want["loss"], places=5)
            for tid, u in enumerate(want["update"]):  # the update the script applied by hand
                self.assertAlmostEqual(r.stat(s, "updateNorm", tid) / u, 1.0, places=4)
        self.assertTrue(r.of("detail"))

    def test_step_limit_and_a_later_optimizer(self):
        path = self.script("manual.py", self.SCRIPT)
        r = run_probe(path, args=["50"], env={"GRADSCOPE_MAX_STEPS": "3"})
        self.assertWellFormed(r)
        self.assertEqual(r.rc, 0)
        self.assertEqual(r.of("end")[0], {"type": "end", "reason": "step-limit", "steps": 3})
        self.assertIn("iteration 2", r.stdout)
        self.assertNotIn("iteration 3", r.stdout)  # stopped in the 4th backward pass, which ends step 2
        r = run_probe(path, args=["2", "then-an-optimizer"])
        self.assertWellFormed(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 4)
        opts = r.of("optimizer")
        self.assertEqual([o["mode"] for o in opts], ["backward", "optimizer"])
        self.assertEqual([s["optimizer"] for s in steps], [opts[0]["id"]] * 2 + [opts[1]["id"]] * 2)
        switch = [e for e in r.of("event") if e["kind"] == "info" and "from step 2 on" in e["message"]]
        self.assertEqual(len(switch), 1)


class InPlaceChangeTest(TempDirMixin, unittest.TestCase):
    """Gradients changed in place between backward() and step() by the script's own code (inplace.py):
    a clip written by hand, through the gradient or its .data, is said once, with the norm backward()
    left; torch's clip, accumulation and a plain step say nothing."""
    SCRIPT = NORMS + """
import sys
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-4)
x = torch.randn(32, 4) * 30
way = sys.argv[1]
for i in range(6):
    opt.zero_grad()
    for k in range(2 if way == "accumulate" else 1):
        loss = model(x + k).pow(2).mean()
        loss.backward()
    total = total_norm(model.parameters())
    report(norm=total)
    if way in ("by-hand", "by-hand-data") and total > 0.5:
        for p in model.parameters():
            (p.grad.data if way == "by-hand-data" else p.grad).mul_(0.5 / total)
        report(clipped=total_norm(model.parameters()))
    elif way == "torch-clip":
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
"""

    def test_a_clip_written_by_hand_is_said(self):
        for way in ("by-hand", "by-hand-data"):
            with self.subTest(way=way):
                path = self.script("byhand.py", self.SCRIPT)
                r = run_probe(path, args=[way])
                self.assertWellFormed(r, warnings_ok=True)
                seen = [x for x in reports(r) if "norm" in x]
                self.assertGreater(seen[0]["norm"], 1.0)
                warnings = [e for e in r.of("event") if e["kind"] == "warning"]
                self.assertEqual(len(warnings), 1, warnings)
                w = warnings[0]
                self.assertIn("changed in place between backward() and optimizer.step()", w["message"])
                self.assertEqual(w["step"], 0)
                self.assertAlmostEqual(w["value"] / seen[0]["norm"], 1.0, places=5)
                # The steps report what the step applied: the clipped gradients.
                self.assertAlmostEqual(global_norm(r, r.of("step")[0]), 0.5, places=5)

    def test_torch_clip_accumulation_and_a_plain_step_say_nothing(self):
        for way in ("torch-clip", "accumulate", "plain"):
            with self.subTest(way=way):
                path = self.script("byhand.py", self.SCRIPT)
                r = run_probe(path, args=[way])
                self.assertWellFormed(r)
                self.assertEqual([e for e in r.of("event") if e["kind"] == "warning"], [])
                for s, want in zip(r.of("step"), reports(r)):
                    self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)


class InPlaceTwoOptimizersTest(TempDirMixin, unittest.TestCase):
    """pytorch/examples' DCGAN loop with its gradients zeroed in place (torch 1.13's default): the
    discriminator's passes come after the generator's last step, and the generator's gradients are
    then zeroed and made again by its own pass. Neither is a change the step did not see: a backward
    pass that is not marked drops the marks of the one before (they said "changed in place" at a
    sampled step of G, from norms taken after D's pass)."""
    SCRIPT = NORMS + """
import sys
from torch import nn
torch.manual_seed(0)
G = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))
D = nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1), nn.Sigmoid())
optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
bce = nn.BCELoss()
for i in range(int(sys.argv[1])):
    real = torch.randn(16, 16)
    D.zero_grad(set_to_none=False)
    bce(D(real), torch.ones(16, 1)).backward()
    fake = G(torch.randn(16, 8))
    bce(D(fake.detach()), torch.zeros(16, 1)).backward()
    optD.step()
    G.zero_grad(set_to_none=False)
    bce(D(fake), torch.ones(16, 1)).backward()
    if i == int(sys.argv[2]):
        for p in G.parameters():
            p.grad.mul_(0.5)  # a change the step does not see: still said
    optG.step()
"""

    def test_a_gan_with_gradients_zeroed_in_place_says_nothing_but_a_real_change(self):
        path = self.script("gan.py", self.SCRIPT)
        # (the automatic schedules: D's and G's sampled steps drift apart, as in the real example)
        r = run_probe(path, args=["200", "-1"])
        self.assertWellFormed(r)
        self.assertEqual(len(r.of("step")), 400)
        self.assertEqual([e["message"] for e in r.of("event") if e["kind"] == "warning"], [])
        r = run_probe(path, args=["80", "60"], env={"GRADSCOPE_SAMPLED_EVERY": "1"})
        self.assertWellFormed(r, warnings_ok=True)
        warnings = [e for e in r.of("event") if e["kind"] == "warning"]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("changed in place", warnings[0]["message"])
        self.assertEqual(warnings[0]["step"], 121)  # (G's step of iteration 60: D's and G's alternate)


class SeveralLossesTest(TempDirMixin, unittest.TestCase):
    """torch.autograd.backward([l1, l2], grad_tensors): one backward pass of several scalars at once
    (multi-task heads). Its loss is their sum, weighted where grad_tensors weighs them: the objective
    whose gradient the pass computes (it used to be no loss at all)."""
    SCRIPT = NORMS + """
import sys
from torch import nn
torch.manual_seed(0)
body, h1, h2 = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 1)
params = list(body.parameters()) + list(h1.parameters()) + list(h2.parameters())
opt = torch.optim.SGD(params, lr=0.05) if sys.argv[1] == "optimizer" else None
x = torch.randn(16, 4)
for i in range(3):
    for p in params:
        p.grad = None
    f = torch.tanh(body(x))
    l1, l2 = h1(f).pow(2).mean(), h2(f).abs().mean()
    if i == 1:
        torch.autograd.backward([l1, l2], [torch.tensor(0.5), torch.tensor(2.0)])
        want = 0.5 * float(l1) + 2.0 * float(l2)
    else:
        torch.autograd.backward((l1, l2))
        want = float(l1) + float(l2)
    report(norm=total_norm(params), loss=want)
    if opt is not None:
        opt.step()
    else:
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-0.05)
"""

    def test_the_loss_is_the_sum_of_the_scalars(self):
        for mode in ("optimizer", "backward"):
            with self.subTest(mode=mode):
                path = self.script("losses.py", self.SCRIPT)
                r = run_probe(path, args=[mode])
                self.assertWellFormed(r)
                steps = r.of("step")
                self.assertEqual(len(steps), 3)
                for s, want in zip(steps, reports(r)):
                    self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
                    self.assertAlmostEqual(s["loss"], want["loss"], places=5)
                if mode == "backward":  # every leaf of both heads, found from both roots
                    self.assertEqual(len(r.tensors), 6)


class AutogradGradLossTest(TempDirMixin, unittest.TestCase):
    """torch.autograd.grad(loss, model.parameters()), the gradients set as p.grad by the script, then
    opt.step() (a functional loop, a meta-learner's outer step): the step's loss is that scalar (it
    used to be none). The other uses of autograd.grad add nothing: an adversarial example's gradient
    (FGSM, with respect to the input) and a gradient penalty (create_graph=True), whose step's loss is
    the one its backward pass back-propagates."""
    SCRIPT = NORMS + """
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(16, 4), torch.randn(16, 1)
for i in range(6):
    opt.zero_grad()
    xa = x.clone().requires_grad_(True)
    gx, = torch.autograd.grad(((model(xa) - y) ** 2).mean(), xa)  # FGSM: not the step's loss
    xa = (x + 0.01 * gx.sign()).detach()
    loss = ((model(xa) - y) ** 2).mean()
    if i < 4:
        grads = torch.autograd.grad(loss, model.parameters())  # (a generator)
        for p, g in zip(model.parameters(), grads):
            p.grad = g
        want = float(loss)
    else:
        xp = x.clone().requires_grad_(True)
        gp, = torch.autograd.grad(model(xp).sum(), xp, create_graph=True)  # a penalty: not the loss
        total = loss + 0.1 * gp.pow(2).sum()
        total.backward()
        want = float(total)
    report(norm=total_norm(list(model.parameters())), loss=want)
    opt.step()
"""

    def test_the_loss_of_a_gradient_applied_by_hand(self):
        path = self.script("grad_loss.py", self.SCRIPT)
        r = run_probe(path)
        self.assertWellFormed(r)
        steps = r.of("step")
        self.assertEqual(len(steps), 6)
        for s, want in zip(steps, reports(r)):
            self.assertAlmostEqual(global_norm(r, s) / want["norm"], 1.0, places=5)
            self.assertIsNotNone(s["loss"], s["step"])
            self.assertAlmostEqual(s["loss"], want["loss"], places=5)


class ChildProcessTest(TempDirMixin, unittest.TestCase):
    def test_child_processes_are_said(self):
        path = self.script("children.py", """
import multiprocessing as mp
import torch
import torch.multiprocessing as tmp

def train(rank=0):
    m = torch.nn.Linear(2, 1)
    o = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.ones(1, 2)).sum().backward()
    o.step()

if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=train)
    p.start()
    p.join()
    tmp.spawn(train, nprocs=1, start_method="fork")
    print("done")
""")
        r = run_probe(path, timeout=120)
        self.assertWellFormed(r, warnings_ok=True)
        self.assertIn("done", r.stdout)
        w = r.warnings()
        self.assertEqual(len(w), 2, w)
        self.assertIn("multiprocessing.Process(target=train).start()", w[0])
        self.assertIn("children.py:", w[0])
        self.assertIn("torch.multiprocessing.spawn(train, nprocs=1)", w[1])
        self.assertEqual(r.of("step"), [])


if __name__ == "__main__":
    unittest.main()
