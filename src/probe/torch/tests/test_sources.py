"""Parameter names and construction sites on real models: library-built models (Hugging Face), modules
torch copies (nn.TransformerEncoder), user classes instantiated several times, tied weights, wrappers
(torch.compile, DataParallel, activation checkpointing) and optimizers built inside methods."""
import importlib.util
import os
import unittest

import torch
from torch import nn

from gradscope_probe import names, wire

from .helpers import TempDirMixin, line_of, run_probe

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_COMPILE = hasattr(torch, "compile")
HAS_LIGHTNING = importlib.util.find_spec("lightning") is not None

TRAIN = """
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for i in range(2):
    opt.zero_grad()
    loss = model(torch.randn(3, 5, 8)).pow(2).mean()
    loss.backward()
    opt.step()
"""


def library_text(path, line):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()[line - 1].strip()


class ModuleSitesTest(TempDirMixin, unittest.TestCase):
    def run_ok(self, path):
        r = run_probe(path, timeout=240)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertIsNone(r.error, r.stderr)
        self.assertEqual(r.warnings(), [])
        self.assertEqual([t["id"] for t in r.tensors], list(range(len(r.tensors))))
        return r

    def test_copies_and_instances_of_user_classes_get_their_own_lines(self):
        path = self.script("train.py", """
import torch
from torch import nn
torch.manual_seed(0)

class CustomLN(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))  # @ln-param
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias)

class Attn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, d)  # @qkv
        self.gain = nn.Parameter(torch.ones(1))  # @attn-gain

    def forward(self, x):
        return self.qkv(x) * self.gain

class Head(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, 1) * 0.1)  # @head-w

    def forward(self, x):
        return x @ self.w

class Net(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.ln1 = CustomLN(d)  # @ln1
        self.ln2 = CustomLN(d)  # @ln2
        self.ln3 = CustomLN(d)  # @ln3
        self.lns = nn.ModuleList([CustomLN(d) for _ in range(2)])  # @lns
        self.attn1 = Attn(d)  # @attn1
        self.attn2 = Attn(d)  # @attn2
        layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=16)  # @layer
        self.enc = nn.TransformerEncoder(layer, num_layers=2)  # @enc
        self.head = Head(d)  # @head

    def forward(self, x):
        x = self.ln3(self.ln2(self.ln1(x)))
        for ln in self.lns:
            x = ln(x)
        x = self.attn2(self.attn1(x))
        return self.head(self.enc(x))

model = Net()  # @model
import copy
ema = copy.deepcopy(model)  # another model: Head has still one instance in each
""" + TRAIN)
        r = self.run_ok(path)

        def line(name):
            return r.tensor(name)["source"]["line"]

        for ln in ("ln1", "ln2", "ln3"):
            self.assertEqual(line("model.%s.weight" % ln), line_of(path, "# @" + ln))
            self.assertEqual(line("model.%s.bias" % ln), line_of(path, "# @" + ln))
        self.assertEqual(line("model.lns.1.weight"), line_of(path, "# @lns"))
        for a in ("attn1", "attn2"):
            self.assertEqual(line("model.%s.gain" % a), line_of(path, "# @" + a))
            # A module the class builds has a construction line of its own.
            self.assertEqual(line("model.%s.qkv.weight" % a), line_of(path, "# @qkv"))
        # A user-written layer inside the model: on the line that builds it, like nn.Linear (its
        # findings belong to that layer; the nn.Parameter line is shown as related in the editor).
        self.assertEqual(line("model.head.w"), line_of(path, "# @head\n"))  # (not "# @head-w")
        # Layers nn.TransformerEncoder deep-copies (Module.__init__ never runs for them).
        for name in ("model.enc.layers.0.linear1.weight", "model.enc.layers.1.self_attn.in_proj_weight",
                     "model.enc.layers.1.self_attn.out_proj.weight", "model.enc.layers.1.norm2.bias"):
            self.assertEqual(line(name), line_of(path, "# @enc"), name)
        for t in r.tensors:
            self.assertIsNotNone(t["source"], t["name"])
            self.assertNotIn("builtIn", t)  # torch's own submodules are not a library site
            self.assertNotIn("aliases", t)

    def test_tied_and_shared_parameters_are_listed_once_with_aliases(self):
        path = self.script("train.py", """
import torch
from torch import nn
torch.manual_seed(0)

class TinyLM(nn.Module):
    def __init__(self, v=11, d=8):
        super().__init__()
        self.wte = nn.Embedding(v, d)
        self.block = nn.Linear(d, d)  # @block
        self.again = self.block
        self.lm_head = nn.Linear(d, v, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, x):
        return self.lm_head(self.again(self.block(self.wte(x))))

model = TinyLM()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for i in range(2):
    opt.zero_grad()
    model(torch.randint(0, 11, (2, 5))).logsumexp(-1).mean().backward()
    opt.step()
""")
        r = self.run_ok(path)
        self.assertEqual([t["name"] for t in r.tensors], ["model.wte.weight", "model.block.weight", "model.block.bias"])
        self.assertEqual(r.tensor("model.wte.weight")["aliases"], ["model.lm_head.weight"])
        self.assertEqual(r.tensor("model.block.weight")["aliases"], ["model.again.weight"])
        self.assertEqual(r.tensor("model.block.bias")["source"]["line"], line_of(path, "# @block"))

    def test_optimizer_built_in_a_method_names_without_self(self):
        path = self.script("train.py", """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc1(x)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

class Loop:
    def __init__(self):
        self.model = Net()
        self.bias = torch.zeros(3, requires_grad=True)
        self.optimizer = torch.optim.SGD(list(self.model.parameters()) + [self.bias], lr=0.1)

    def run(self, opt, model):
        for _ in range(2):
            opt.zero_grad()
            (model(torch.randn(2, 4)) + self.bias).pow(2).sum().backward()
            opt.step()

loop = Loop()
loop.run(loop.optimizer, loop.model)
lit = Net()
loop.run(lit.configure_optimizers(), lit)
""")
        r = self.run_ok(path)
        self.assertEqual([t["name"] for t in r.tensors],
                         ["model.fc1.weight", "model.fc1.bias", "bias", "fc1.weight", "fc1.bias"])

    def test_modules_with_their_own_optimizers_in_a_plain_list_are_named_by_the_scripts_path(self):
        # pytorch/examples' Forward-Forward: each layer builds `self.opt` in its __init__, and the net
        # keeps its layers in a plain list (no ModuleList): both layers' parameters were `weight` and
        # `bias`, both optimizers `self.opt`.
        path = self.script("train.py", """
import torch
from torch import nn

class Layer(nn.Linear):
    def __init__(self, a, b):
        super().__init__(a, b)
        self.opt = torch.optim.Adam(self.parameters(), lr=0.03)

    def train_on(self, x):
        for _ in range(2):
            self.opt.zero_grad()
            self.forward(x).pow(2).mean().backward()
            self.opt.step()
        return self.forward(x).detach()

class Net:
    def __init__(self, dims):
        self.layers = []
        for d in range(len(dims) - 1):
            self.layers += [Layer(dims[d], dims[d + 1])]

    def train(self, x):
        for i, layer in enumerate(self.layers):
            x = layer.train_on(x)

net = Net([4, 3, 2])
net.train(torch.randn(5, 4))
""")
        r = self.run_ok(path)
        self.assertEqual([t["name"] for t in r.tensors],
                         ["net.layers.0.weight", "net.layers.0.bias", "net.layers.1.weight", "net.layers.1.bias"])
        self.assertEqual([o["name"] for o in r.of("optimizer")], ["net.layers.0.opt", "net.layers.1.opt"])

    def test_wrappers_add_nothing_to_names(self):
        path = self.script("train.py", """
import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 1)  # @fc2

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))

net = Net()
net.fc2 = checkpoint_wrapper(net.fc2)  # its input requires grad: reentrant checkpointing works on 1.13
model = nn.DataParallel(net)
""" + TRAIN)
        r = self.run_ok(path)
        self.assertEqual([t["name"] for t in r.tensors],
                         ["model.fc1.weight", "model.fc1.bias", "model.fc2.weight", "model.fc2.bias"])
        self.assertEqual(r.tensor("model.fc2.weight")["layer"], "model.fc2")
        self.assertEqual(r.tensor("model.fc2.weight")["source"]["line"], line_of(path, "# @fc2"))

    @unittest.skipUnless(HAS_COMPILE, "torch.compile is torch 2.x")
    def test_torch_compile_adds_nothing_to_names(self):
        path = self.script("train.py", """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 1)  # @fc1

    def forward(self, x):
        return self.fc1(x)

model = torch.compile(Net(), backend="eager")
other = Net()
opt2 = torch.optim.SGD(other.parameters(), lr=0.1)  # named before it is compiled
""" + TRAIN + """
compiled_later = torch.compile(other, backend="eager")
for i in range(2):
    opt2.zero_grad()
    compiled_later(torch.randn(3, 8)).sum().backward()
    opt2.step()
""")
        r = self.run_ok(path)
        self.assertEqual([t["name"] for t in r.tensors],
                         ["model.fc1.weight", "model.fc1.bias", "other.fc1.weight", "other.fc1.bias"])
        self.assertEqual(r.tensor("model.fc1.weight")["source"]["line"], line_of(path, "# @fc1"))

    @unittest.skipUnless(HAS_TRANSFORMERS, "transformers is not installed for this interpreter")
    def test_hugging_face_models_built_from_a_config(self):
        path = self.script("train.py", """
import torch
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
torch.manual_seed(0)
cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=16, max_position_embeddings=16, num_labels=2)
clf = BertForSequenceClassification(cfg)  # @bert
gpt = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=16, n_embd=8, n_layer=1, n_head=2))  # @gpt

class Trainer:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def train(self):
        ids = torch.randint(0, 40, (2, 6))
        for _ in range(2):
            self.opt.zero_grad()
            self.model(input_ids=ids, labels=ids).loss.backward()
            self.opt.step()

Trainer(gpt).train()
opt = torch.optim.SGD(clf.parameters(), lr=0.1)
ids = torch.randint(0, 50, (2, 6))
for i in range(2):
    opt.zero_grad()
    clf(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    opt.step()
""")
        r = self.run_ok(path)
        spec = importlib.util.find_spec("transformers")
        tf_dir = os.path.dirname(spec.origin)
        bert_py = os.path.join(tf_dir, "models", "bert", "modeling_bert.py")
        gpt2_py = os.path.join(tf_dir, "models", "gpt2", "modeling_gpt2.py")
        bert_line = line_of(path, "# @bert")
        names_ = [t["name"] for t in r.tensors]
        self.assertIn("clf.bert.encoder.layer.0.attention.self.query.weight", names_)
        for t in r.tensors:
            if t["name"].startswith("clf."):
                self.assertEqual(t["source"], {"file": path, "line": bert_line, "column": t["source"]["column"]}, t["name"])
                self.assertEqual(t["builtIn"]["package"], "transformers", t["name"])
        q = r.tensor("clf.bert.encoder.layer.1.attention.self.query.weight")
        self.assertEqual(q["layerType"], "Linear")
        self.assertEqual(q["builtIn"]["file"], bert_py)
        self.assertTrue(library_text(bert_py, q["builtIn"]["line"]).startswith("self.query = nn.Linear("))
        self.assertGreater(q["builtIn"]["column"], 1)
        self.assertTrue(library_text(bert_py, r.tensor("clf.classifier.bias")["builtIn"]["line"])
                        .startswith("self.classifier = nn.Linear("))
        # GPT-2: optimizer built in a method on self.model (no "self."), tied embeddings listed once.
        wte = r.tensor("model.transformer.wte.weight")
        self.assertEqual(wte["aliases"], ["model.lm_head.weight"])
        self.assertEqual(wte["source"]["line"], line_of(path, "# @gpt"))
        self.assertEqual(wte["builtIn"]["file"], gpt2_py)
        self.assertTrue(library_text(gpt2_py, wte["builtIn"]["line"]).startswith("self.wte = nn.Embedding("))
        self.assertNotIn("model.lm_head.weight", names_)
        self.assertFalse([n for n in names_ if n.startswith("self.")])

    @unittest.skipUnless(HAS_LIGHTNING, "lightning is not installed for this interpreter")
    def test_lightning_module_names_have_no_self_prefix(self):
        path = self.script("train.py", """
import torch
from torch import nn
import lightning as L

class Lit(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU())  # @encoder
        self.head = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.head(self.encoder(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu", devices=1)
trainer.fit(Lit(), torch.utils.data.DataLoader(data, batch_size=8))
""")
        r = run_probe(path, timeout=240)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual([t["name"] for t in r.tensors], ["encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"])
        self.assertEqual(r.tensor("encoder.0.weight")["source"]["line"], line_of(path, "# @encoder"))


class IndexTest(unittest.TestCase):
    """names.index_parameters on module trees built here (FSDP needs a process group: its wrapper
    attribute is reproduced by name)."""

    def test_wrapper_segments_variables_and_cycles(self):
        class Wrapper(nn.Module):
            def __init__(self, inner, attr):
                super().__init__()
                self.add_module(attr, inner)

        inner = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        root = Wrapper(Wrapper(inner, "_checkpoint_wrapped_module"), "_fsdp_wrapped_module")
        inner[1].add_module("back", inner)  # a cycle: walked once
        index = names.index_parameters([root], lambda m: None)
        p = inner[0].weight
        self.assertEqual([o.name for o in index.owners[id(p)]], ["0.weight"])
        index = names.index_parameters([root], lambda m: "enc" if m is inner else None)
        self.assertEqual(index.owners[id(p)][0].name, "enc.0.weight")
        self.assertEqual(index.owners[id(p)][0].layer, "enc.0")
        owner = index.owners[id(p)][0]
        self.assertIs(owner.root, root)
        self.assertEqual(index.count(owner), 2)
        self.assertEqual(index.instances[(id(root), Wrapper)], 2)
        other = nn.Linear(2, 2)
        index = names.index_parameters([root, other], lambda m: None)
        self.assertEqual(index.count(index.owners[id(other.weight)][0]), 1)  # another model


class WireFieldsTest(unittest.TestCase):
    """The reference decoder keeps TENSORS' optional aliases / builtIn and rejects wrong types."""

    BASE = {"id": 0, "name": "transformer.wte.weight", "layer": "transformer.wte", "layerType": "Embedding",
            "shape": [40, 8], "source": {"file": "/w/train.py", "line": 6, "column": 7}}

    def decode(self, t):
        return wire.decode_all(wire.encode({"type": "tensors", "tensors": [t]}, 0))

    def test_present_absent_and_wrong_types(self):
        built = {"file": "/x/transformers/models/gpt2/modeling_gpt2.py", "line": 492, "column": 20, "package": "transformers"}
        frames, err = self.decode(dict(self.BASE, aliases=["lm_head.weight"], builtIn=built))
        self.assertIsNone(err)
        self.assertEqual(frames[0][1]["tensors"], [dict(self.BASE, aliases=["lm_head.weight"], builtIn=built)])
        for t in (self.BASE, dict(self.BASE, aliases=None, builtIn=None)):
            frames, err = self.decode(t)
            self.assertIsNone(err)
            self.assertEqual(frames[0][1]["tensors"], [self.BASE])
        for bad in ({"aliases": "lm_head.weight"}, {"aliases": ["a", 3]}, {"builtIn": "transformers"},
                    {"builtIn": {"file": "/x.py", "line": 1, "column": 1}},
                    {"builtIn": {"file": "/x.py", "line": -1, "column": 1, "package": "timm"}}):
            frames, err = self.decode(dict(self.BASE, **bad))
            self.assertEqual((frames, err.code if err else None), ([], "bad-field"), bad)


if __name__ == "__main__":
    unittest.main()
