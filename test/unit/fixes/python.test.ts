// Golden before/after tests of the Python (PyTorch) fix engine over script shapes:
// test/fixtures/fixes/python/<case>/{before.py, case.json, after.<name>.py, refused.<name>.txt}.
// Findings are built by hand (kind, layer, source line/column, evidence, the run's global norms).
// The text after a fix must equal the golden file exactly and parse with no ERROR node; an
// idempotent remedy applied a second time reports alreadyApplied.
// GRADSCOPE_UPDATE_GOLDEN=1 rewrites the golden files (review the diff before committing).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { adjustForClipping } from '../../../src/core/analysis/clipping';
import type { Finding } from '../../../src/core/analysis/finding';
import { remedy } from '../../../src/core/analysis/model';
import { REMEDY_IDS } from '../../../src/core/analysis/finding';
import type { FixResult } from '../../../src/core/fixes/types';
import { availableRemedies, computeFix, prepareFixes } from '../../../src/process/fixEngine';
import { pythonParserNow, wasmDir } from '../../../src/process/pythonParser';
import { IDEMPOTENT, makeFinding, type CaseFix } from '../support/fixCases';
import { fixture } from '../support/paths';
import { pythonErrorCount } from '../support/pythonParser';

const UPDATE = process.env.GRADSCOPE_UPDATE_GOLDEN === '1';

/** An exploding-gradient finding over the whole model (global, step 0, no remedies), with `over` changed. */
function explodingFinding(over: Partial<Finding> = {}): Finding {
  return { id: 'x', kind: 'exploding-gradient', severity: 'error', step: 0, stepRange: [0, 0], tensors: [], layer: null, source: null, message: '', evidence: {}, remedies: [], ...over };
}

function checkGolden(dir: string, name: string, before: string, r: FixResult): void {
  const afterPath = join(dir, `after.${name}.py`);
  const refusedPath = join(dir, `refused.${name}.txt`);
  if (UPDATE) {
    if (r.ok) writeFileSync(afterPath, r.after);
    else writeFileSync(refusedPath, `${r.alreadyApplied ? 'already applied: ' : ''}${r.reason}\n`);
  }
  if (r.ok) {
    assert.ok(
      existsSync(afterPath),
      `${afterPath} exists (GRADSCOPE_UPDATE_GOLDEN=1 to create)${existsSync(refusedPath) ? ` — the golden says refused: ${readFileSync(refusedPath, 'utf8')}` : ''}`,
    );
    assert.equal(r.after, readFileSync(afterPath, 'utf8'), `${name}: after text equals ${afterPath}`);
    assert.notEqual(r.after, before);
    assert.equal(pythonErrorCount(r.after), 0, `${name}: the text after parses with no ERROR node`);
    assert.ok(r.title.length > 0);
  } else {
    assert.ok(existsSync(refusedPath), `${refusedPath} exists: ${r.reason}`);
    assert.equal(`${r.alreadyApplied ? 'already applied: ' : ''}${r.reason}\n`, readFileSync(refusedPath, 'utf8'));
  }
}

let goldenCount = 0;
const shapes = new Set<string>();

describe('python fix engine: script shapes', () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  const root = fixture('fixes', 'python');
  for (const dirName of readdirSync(root).sort()) {
    const dir = join(root, dirName);
    const file = join(dir, 'before.py');
    if (!existsSync(file)) continue;
    const spec = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { fixes: CaseFix[] };
    for (const c of spec.fixes) {
      it(`${dirName}: ${c.name} (${c.remedy})`, () => {
        const text = readFileSync(file, 'utf8');
        assert.equal(pythonErrorCount(text), 0, `${dirName}/before.py parses`);
        const f = makeFinding(file, c);
        const ctx = { file, globalNorms: c.globalNorms?.map((x) => x ?? NaN), version: 3 };
        const r = computeFix(text, f, c.remedy, ctx);
        checkGolden(dir, c.name, text, r);
        if (r.ok) {
          assert.equal(r.version, 3, 'the document version is echoed');
          for (let i = 1; i < r.edits.length; i++) assert.ok(r.edits[i - 1].end <= r.edits[i].start, 'edits are sorted and disjoint');
          if (IDEMPOTENT.has(c.remedy)) {
            const again = computeFix(r.after, f, c.remedy, ctx);
            assert.equal(again.ok, false, `${c.remedy} applied twice: ${again.ok ? again.title : ''}`);
            if (!again.ok) assert.equal(again.alreadyApplied, true, `${c.remedy} second time: alreadyApplied (${again.reason})`);
          }
        }
        goldenCount++;
        shapes.add(dirName);
      });
    }
  }

  it('counts the golden cases', () => {
    console.log(`# python golden fix cases checked: ${goldenCount} over ${shapes.size} script shapes`);
    assert.ok(shapes.size >= 10, `${shapes.size} shapes`);
    assert.ok(goldenCount >= 50, `${goldenCount} golden cases`);
  });
});

describe('python fix engine: dispatch and loading', () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  it('finds the wasm next to the bundle (dist/tree-sitter) when built', () => {
    const dir = wasmDir();
    for (const f of ['tree-sitter.wasm', 'tree-sitter-python.wasm']) assert.ok(existsSync(join(dir, f)), `${f} in ${dir}`);
    if (__dirname.includes(`${join('dist', 'test')}`)) assert.match(dir.replace(/\\/g, '/'), /\/dist\/tree-sitter$/);
  });

  it('routes .py files to the Python engine and .js files to the TF.js engine', () => {
    const p = pythonParserNow();
    assert.ok(p !== null && !(p instanceof Error), 'the parser is loaded');
    const py = 'import torch\nm = torch.nn.Linear(2, 2)\nopt = torch.optim.SGD(m.parameters(), lr=0.5)\n';
    const f: Finding = { id: 'x', kind: 'update-ratio', severity: 'warning', step: 0, stepRange: [0, 0], tensors: [], layer: null, source: null, message: '', evidence: {}, remedies: [] };
    const r = computeFix(py, f, 'lower-lr', { file: '/tmp/train.py' });
    assert.ok(r.ok && r.after.includes('lr=0.05'));
    const js = computeFix(py, f, 'lower-lr', { file: '/tmp/train.js' });
    assert.equal(js.ok, false, 'the TF.js engine does not see a torch optimizer');
    for (const id of REMEDY_IDS) {
      const res = computeFix(py, f, id, { file: '/tmp/train.py' });
      assert.ok(res.ok || !/no automatic edit/.test(res.reason), `${id} is handled by the Python engine`);
    }
  });

  it('refuses a finding located in another file', () => {
    const f = explodingFinding({ layer: 'fc1', source: { file: '/tmp/model.py', line: 3, column: 1 } });
    const r = computeFix('import torch\n', f, 'he-init', { file: '/tmp/train.py' });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /model\.py/);
  });

  it('keeps CRLF line endings', () => {
    const text =
      'import torch\r\nm = torch.nn.Linear(2, 2)\r\nopt = torch.optim.SGD(m.parameters(), lr=0.5)\r\nfor _ in range(2):\r\n    m(torch.ones(1, 2)).sum().backward()\r\n    opt.step()\r\n';
    const f = explodingFinding({ layer: 'm', source: { file: '/tmp/t.py', line: 2, column: 5 } });
    const clip = computeFix(text, f, 'clip-global-norm', { file: '/tmp/t.py', globalNorms: [1, 1, 1] });
    assert.ok(clip.ok);
    if (clip.ok) assert.equal(clip.after, text.replace('backward()\r\n', 'backward()\r\n    torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm=2)\r\n'));
    const he = computeFix(text, f, 'he-init', { file: '/tmp/t.py' });
    assert.ok(he.ok);
    if (he.ok) assert.equal(he.after, text.replace('Linear(2, 2)\r\n', 'Linear(2, 2)\r\ntorch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")\r\n'));
  });

  it('inserts at the end of a file without a final newline', () => {
    const text = 'import torch\nm = torch.nn.Linear(2, 2)';
    const f: Finding = {
      id: 'x',
      kind: 'vanishing-gradient',
      severity: 'warning',
      step: 0,
      stepRange: [0, 0],
      tensors: [],
      layer: 'm',
      source: { file: '/tmp/t.py', line: 2, column: 5 },
      message: '',
      evidence: {},
      remedies: [],
    };
    const r = computeFix(text, f, 'glorot-init', { file: '/tmp/t.py' });
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.after, 'import torch\nm = torch.nn.Linear(2, 2)\ntorch.nn.init.xavier_uniform_(m.weight)\n');
  });
});

describe('python fix engine: where the learning rate is written', () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  const global = explodingFinding();
  const lower = (text: string): FixResult => computeFix(text, global, 'lower-lr', { file: '/tmp/train.py' });
  const head = 'import argparse\nimport torch\nm = torch.nn.Linear(2, 2)\np = argparse.ArgumentParser()\n';

  const cases: { name: string; text: string; edited: string | RegExp; title?: RegExp }[] = [
    {
      name: 'a numeric string default keeps its quotes',
      text: `${head}p.add_argument("--lr", type=float, default="0.1")\nargs = p.parse_args()\nopt = torch.optim.SGD(m.parameters(), lr=args.lr)\n`,
      edited: 'default="0.01"',
      title: /lower the default of --lr from "0\.1" to "0\.01"/,
    },
    {
      name: 'set_defaults overrides the add_argument default',
      text: `${head}p.add_argument("--lr", type=float, default=0.1)\np.set_defaults(lr=0.3)\nargs = p.parse_args()\nopt = torch.optim.SGD(m.parameters(), lr=args.lr)\n`,
      edited: 'p.set_defaults(lr=0.03)',
      title: /set_defaults on line 6/,
    },
    {
      name: 'vars(parse_args()) and a subscript',
      text: `${head}p.add_argument("--base-lr", type=float, default=2e-3)\ncfg = vars(p.parse_args())\nopt = torch.optim.Adam(m.parameters(), lr=cfg["base_lr"])\n`,
      edited: 'default=2e-4',
    },
    {
      name: 'parse_known_args into a tuple',
      text: `${head}p.add_argument("-l", "--lr", dest="learning_rate", type=float, default=0.5)\nargs, rest = p.parse_known_args()\nopt = torch.optim.SGD(m.parameters(), lr=args.learning_rate)\n`,
      edited: 'default=0.05',
    },
    {
      name: 'a constant used as the argparse default',
      text: `${head}LR = 0.4\np.add_argument("--lr", type=float, default=LR)\nargs = p.parse_args()\nopt = torch.optim.SGD(m.parameters(), lr=args.lr)\n`,
      edited: 'LR = 0.04',
      title: /a --lr given on the command line still wins/,
    },
    {
      name: 'a dict literal config',
      text: 'import torch\nm = torch.nn.Linear(2, 2)\nconfig = {"lr": 0.2, "epochs": 3}\nopt = torch.optim.SGD(m.parameters(), lr=config["lr"])\n',
      edited: '{"lr": 0.02, "epochs": 3}',
      title: /config\["lr"\] = 0\.2 → 0\.02/,
    },
    { name: 'float() around a name', text: 'import os\nimport torch\nm = torch.nn.Linear(2, 2)\nLR = "0.3"\nopt = torch.optim.SGD(m.parameters(), lr=float(LR))\n', edited: 'LR = "0.03"' },
    {
      name: 'a parsed namespace passed into main(args)',
      text: `${head}p.add_argument("--lr", type=float, default=0.1)\n\n\ndef main(args):\n    return torch.optim.SGD(m.parameters(), lr=args.lr)\n\n\nmain(p.parse_args())\n`,
      edited: 'default=0.01',
    },
    {
      name: 'an attribute of an unknown object is divided at the use site, and the title says so',
      text: 'import torch\nimport yaml\nm = torch.nn.Linear(2, 2)\ncfg = yaml.safe_load(open("c.yaml"))\nopt = torch.optim.SGD(m.parameters(), lr=cfg.lr)\n',
      edited: 'lr=cfg.lr / 10',
      title: /scales whatever value cfg\.lr has/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = lower(c.text);
      assert.ok(r.ok, r.ok ? '' : r.reason);
      if (!r.ok) return;
      if (typeof c.edited === 'string') assert.ok(r.after.includes(c.edited), `${c.edited} in:\n${r.after}`);
      else assert.match(r.after, c.edited);
      assert.equal(r.edits.length, 1);
      if (c.title) assert.match(r.title, c.title);
    });
  }

  it('two declarations of the same destination are refused', () => {
    const r = lower(
      `${head}p.add_argument("--lr", type=float, default=0.1)\nq = argparse.ArgumentParser()\nq.add_argument("--lr", type=float, default=0.2)\nargs = p.parse_args()\nopt = torch.optim.SGD(m.parameters(), lr=args.lr)\n`,
    );
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /2 command-line arguments store into lr/);
  });
});

describe('python fix engine: a keyword added to a framework call keeps its layout', () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  const global = explodingFinding();
  const hfLower = (args: string): FixResult => computeFix(`from transformers import TrainingArguments\nargs = ${args}\n`, global, 'lower-lr', { file: '/tmp/train.py' });

  const layouts: [string, string, string][] = [
    ['empty call', 'TrainingArguments()', 'TrainingArguments(learning_rate=5e-6)'],
    ['one line', 'TrainingArguments("out", max_steps=3)', 'TrainingArguments("out", max_steps=3, learning_rate=5e-6)'],
    [
      'hanging indent closed on the last line',
      'TrainingArguments("out",\n                         max_steps=3)',
      'TrainingArguments("out",\n                         max_steps=3, learning_rate=5e-6)',
    ],
    [
      'one per line with a trailing comma and a comment',
      'TrainingArguments(\n    "out",\n    max_steps=3,  # short\n)',
      'TrainingArguments(\n    "out",\n    max_steps=3,  # short\n    learning_rate=5e-6,\n)',
    ],
    [
      'one per line without a trailing comma, a comment on the last',
      'TrainingArguments(\n    "out",\n    max_steps=3  # short\n)',
      'TrainingArguments(\n    "out",\n    max_steps=3,  # short\n    learning_rate=5e-6\n)',
    ],
  ];
  for (const [name, call, want] of layouts) {
    it(name, () => {
      const r = hfLower(call);
      assert.ok(r.ok, r.ok ? '' : r.reason);
      if (r.ok) assert.equal(r.after, `from transformers import TrainingArguments\nargs = ${want}\n`);
    });
  }

  it('a Lightning Trainer built on one line of a function body and used by a plain function elsewhere', () => {
    const text =
      'import torch\nimport pytorch_lightning as pl\n\n\ndef fit(model, lr=0.5):\n    return torch.optim.SGD(model.parameters(), lr=lr)\n\n\ndef main(model):\n    pl.Trainer(max_epochs=1).fit(model)\n';
    const clip = computeFix(text, global, 'clip-global-norm', { file: '/tmp/train.py', globalNorms: [3, 3, 3] });
    assert.ok(clip.ok, clip.ok ? '' : clip.reason);
    if (clip.ok) assert.ok(clip.after.includes('pl.Trainer(max_epochs=1, gradient_clip_val=6).fit(model)'));
    // `trainer.fit(model)` is not a call of the script's `fit`: the parameter's default is the value.
    const lr = computeFix(text, global, 'lower-lr', { file: '/tmp/train.py' });
    assert.ok(lr.ok && lr.after.includes('def fit(model, lr=0.05):'), lr.ok ? lr.after : lr.reason);
  });

  it('save_hyperparameters(ignore=[…]) does not store the ignored name', () => {
    const text =
      'import torch\nimport lightning as L\n\n\nclass M(L.LightningModule):\n    def __init__(self, lr=0.1):\n        super().__init__()\n        self.save_hyperparameters(ignore=["lr"])\n        self.f = torch.nn.Linear(2, 2)\n\n    def configure_optimizers(self):\n        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)\n';
    const r = computeFix(text, global, 'lower-lr', { file: '/tmp/train.py' });
    assert.ok(r.ok && r.after.includes('lr=self.hparams.lr / 10'), r.ok ? r.after : r.reason);
  });

  it('a module that already clips in on_before_optimizer_step is not clipped again', () => {
    const text =
      'import torch\nimport lightning as L\n\n\nclass M(L.LightningModule):\n    def on_before_optimizer_step(self, optimizer):\n        torch.nn.utils.clip_grad_norm_(self.parameters(), 1.0)\n\n\nL.Trainer().fit(M())\n';
    const r = computeFix(text, global, 'clip-global-norm', { file: '/tmp/train.py', globalNorms: [3, 3, 3] });
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.alreadyApplied, true);
      assert.match(r.reason, /already clips its gradients \(torch\.nn\.utils\.clip_grad_norm_\(…\) on line 7\)/);
    }
  });
});

describe("python fix engine: lower-clip-threshold, from the analyzer's remedy to the edit", () => {
  before(async () => {
    await prepareFixes('train.py');
  });

  const exploding = (evidence: Finding['evidence'] = {}): Finding =>
    explodingFinding({ step: 3, stepRange: [0, 3], evidence, remedies: [remedy('clip-global-norm', 'torch'), remedy('lower-lr', 'torch')] });

  it('a script clipping above every norm seen: the analyzer ranks lower-clip-threshold first, and it applies', () => {
    const file = fixture('fixes', 'python', 'clip-threshold', 'before.py');
    const f = adjustForClipping(exploding(), { maxNorm: 5, by: 'norm', step: 0 }, { global: 4.2, tensor: 3 }, 'torch');
    assert.equal(f.remedies[0].id, 'lower-clip-threshold');
    const [first] = availableRemedies(readFileSync(file, 'utf8'), f, { file, globalNorms: [0.6, 0.7, 0.65, 4.2] });
    assert.ok(first.result.ok, first.result.ok ? '' : first.result.reason);
    if (first.result.ok) {
      assert.equal(first.result.title.split(' (')[0], 'Lower the clip threshold of clip_grad_norm_ from 5 to 1.3');
      assert.match(first.result.title, /\(line 13; 2 × the median early global norm 0\.65 of the run/);
    }
  });

  const cases: { name: string; text: string; edited: string; title?: RegExp }[] = [
    { name: "FSDP's model.clip_grad_norm_(max_norm) takes the threshold first", text: 'import torch\nm = torch.nn.Linear(2, 2)\nm.clip_grad_norm_(5.0)\n', edited: 'm.clip_grad_norm_(1.3)' },
    {
      name: 'clip_grad_norm_ with norm_type keeps it',
      text: 'import torch\nm = torch.nn.Linear(2, 2)\ntorch.nn.utils.clip_grad_norm_(m.parameters(), 5, norm_type=2.0)\n',
      edited: 'clip_grad_norm_(m.parameters(), 1.3, norm_type=2.0)',
    },
    {
      name: "Lightning's manual self.clip_gradients(…, gradient_clip_val=…)",
      text: 'import lightning as L\n\n\nclass M(L.LightningModule):\n    def training_step(self, batch, i):\n        opt = self.optimizers()\n        self.manual_backward(self(batch))\n        self.clip_gradients(opt, gradient_clip_val=5, gradient_clip_algorithm="norm")\n        opt.step()\n',
      edited: 'gradient_clip_val=1.3,',
      title: /of clip_gradients from 5 to 1\.3 \(line 8;/,
    },
    {
      name: 'a threshold from an __init__ default',
      text: 'import torch\n\n\nclass Loop:\n    def __init__(self, model, max_norm=5.0):\n        self.model = model\n        self.max_norm = max_norm\n\n    def step(self):\n        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm)\n',
      edited: 'max_norm=1.3',
      title: /the default of Loop\(max_norm=…\): 5\.0 → 1\.3 \(line 5\), used on line 10/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = computeFix(c.text, exploding({ clipMaxNorm: 5 }), 'lower-clip-threshold', { file: '/tmp/train.py', globalNorms: [0.6, 0.7, 0.65, 4.2] });
      assert.ok(r.ok, r.ok ? '' : r.reason);
      if (!r.ok) return;
      assert.ok(r.after.includes(c.edited), `${c.edited} in:\n${r.after}`);
      assert.equal(r.edits.length, 1);
      if (c.title) assert.match(r.title, c.title);
    });
  }

  it('a threshold of 0 is refused: clipping is off there', () => {
    const r = computeFix('import torch\nm = torch.nn.Linear(2, 2)\nNORM = 0\ntorch.nn.utils.clip_grad_norm_(m.parameters(), NORM)\n', exploding(), 'lower-clip-threshold', {
      file: '/tmp/train.py',
      globalNorms: [1, 1, 1, 4],
    });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /has the threshold NORM = 0, which turns clipping off there/);
  });
});
