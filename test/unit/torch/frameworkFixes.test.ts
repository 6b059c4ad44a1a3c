// The framework-idiom fixes run: each golden Lightning / Hugging Face script
// (test/fixtures/fixes/python/<case>/before.py) is fixed by computeFix, and the text after is run
// with the test interpreter for its few steps (Trainer(max_steps=3), TrainingArguments(max_steps=3,
// report_to=[]), models built from configs: no download). The trainer the script leaves behind must
// hold the value the fix wrote (Trainer.gradient_clip_val, TrainingArguments.max_grad_norm, the
// optimizer's lr). Skipped when the interpreter has no lightning / transformers (Debian's torch 1.13).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { computeFix, prepareFixes } from '../../../src/process/fixEngine';
import { makeFinding, type CaseFix } from '../support/fixCases';
import { fixture } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

const RUNNER = `
import json, runpy, sys, warnings
warnings.filterwarnings("ignore")
asked = []  # the thresholds LightningModule.clip_gradients was called with (None: no clipping)
try:
    import lightning
    clip = lightning.LightningModule.clip_gradients
    def counting(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if [gradient_clip_val, str(gradient_clip_algorithm)] not in asked:
            asked.append([gradient_clip_val, str(gradient_clip_algorithm)])
        return clip(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
    lightning.LightningModule.clip_gradients = counting
except ImportError:
    pass
g = runpy.run_path(sys.argv[1], run_name="__main__")
t = g["trainer"]
if hasattr(t, "gradient_clip_val"):
    out = {"steps": t.global_step, "clip": t.gradient_clip_val, "algorithm": t.gradient_clip_algorithm, "lr": t.optimizers[0].param_groups[0]["lr"], "asked": asked}
else:
    out = {"steps": t.state.global_step, "clip": t.args.max_grad_norm, "lr": t.args.learning_rate}
print("GS-RESULT " + json.dumps(out))
`;

function has(modules: string[]): boolean {
  const r = spawnSync(PYTHON, ['-c', `import importlib.util, sys; sys.exit(0 if all(importlib.util.find_spec(m) for m in ${JSON.stringify(modules)}) else 1)`], { timeout: 60_000 });
  return r.status === 0;
}

function skipWithout(modules: string[]): false | string {
  const t = torchSkip();
  if (t) return t;
  return has(modules) ? false : `skipped: ${PYTHON} has no ${modules.join('/')}`;
}

const outDir = mkdtempSync(join(tmpdir(), 'gs-framework-fixes-'));

type Result = Record<string, number | string | null | [number | null, string][]>;

function fixAndRun(dirName: string, caseName: string): Result {
  const dir = fixture('fixes', 'python', dirName);
  const file = join(dir, 'before.py');
  const spec = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { fixes: CaseFix[] };
  const c = spec.fixes.find((x) => x.name === caseName)!;
  const r = computeFix(readFileSync(file, 'utf8'), makeFinding(file, c), c.remedy, { file, globalNorms: c.globalNorms?.map((x) => x ?? NaN) });
  assert.ok(r.ok, `${dirName}/${caseName} fixes: ${r.ok ? '' : r.reason}`);
  const fixed = join(outDir, `${dirName}.${caseName}.py`);
  writeFileSync(fixed, r.after);
  const run = spawnSync(PYTHON, ['-B', '-c', RUNNER, fixed], { cwd: outDir, encoding: 'utf8', timeout: 300_000, env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' } });
  const line = (run.stdout ?? '').split('\n').find((l) => l.startsWith('GS-RESULT '));
  assert.ok(line, `${fixed} ran (exit ${run.status}): ${(run.stderr ?? '').slice(-2000)}`);
  return JSON.parse(line.slice('GS-RESULT '.length)) as Result;
}

describe('framework-idiom fixes run: Lightning', { skip: skipWithout(['lightning']) }, () => {
  before(() => prepareFixes('train.py'));

  it('Trainer(gradient_clip_val=…) added: the Trainer clips by norm at the run-derived threshold', () => {
    const r = fixAndRun('lightning-basic', 'clip');
    assert.deepEqual(r, { steps: 3, clip: 2.4, algorithm: null, lr: 1e-3, asked: [[2.4, 'None']] }); // algorithm None: Lightning's default, by norm
  });

  it('manual optimization: self.clip_gradients(opt, …) before each opt.step() in training_step', () => {
    const r = fixAndRun('lightning-manual', 'clip-manual');
    assert.deepEqual(r.asked, [[2, 'norm']]);
    assert.equal(r.clip, null, 'the Trainer is left alone (it refuses gradient_clip_val under manual optimization)');
  });

  it('lower-clip-threshold: Trainer(gradient_clip_val=50) lowered to the run-derived threshold', () => {
    const r = fixAndRun('lightning-clip-threshold', 'lower');
    assert.deepEqual(r, { steps: 3, clip: 2.4, algorithm: null, lr: 1e-3, asked: [[2.4, 'None']] });
  });

  it('lr lowered in configure_optimizers', () => {
    const r = fixAndRun('lightning-basic', 'lower-lr');
    assert.equal(r.steps, 3);
    assert.equal(r.lr, 1e-4);
    assert.equal(r.clip, null);
    assert.deepEqual(r.asked, [[null, 'None']], 'Lightning asks with no threshold: no clipping');
  });
});

describe('framework-idiom fixes run: Hugging Face Trainer', { skip: skipWithout(['transformers', 'accelerate']) }, () => {
  before(() => prepareFixes('train.py'));

  it('TrainingArguments(max_grad_norm=…) below the default 1.0', () => {
    const r = fixAndRun('hf-trainer', 'clip-below-default');
    assert.deepEqual(r, { steps: 3, clip: 0.5, lr: 5e-5 });
  });

  it('lower-clip-threshold: max_grad_norm added below the default 1.0 the Trainer clipped at', () => {
    const r = fixAndRun('hf-trainer', 'lower-clip-default');
    assert.deepEqual(r, { steps: 3, clip: 0.5, lr: 5e-5 });
  });

  it('TrainingArguments(learning_rate=…) added at the default ÷ 10', () => {
    const r = fixAndRun('hf-trainer', 'lower-lr-default');
    assert.deepEqual(r, { steps: 3, clip: 1, lr: 5e-6 });
  });
});
