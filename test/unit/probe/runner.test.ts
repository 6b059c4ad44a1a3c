// The tfjs probe end to end: real child processes running the real runner on the real tfjs, frames
// decoded from fd 3 with FrameDecoder. Step counts are kept small (GRADSCOPE_MAX_STEPS) for time.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import type { Message, StepMsg, TensorInfo } from '../../../src/core/protocol/messages';
import { EXAMPLES, SCRIPTS, runProbe, siteLine, type ProbeRun } from './runProbe';
import { repoRoot } from '../support/paths';

const tmp = mkdtempSync(join(tmpdir(), 'gradscope-probe-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function tensorsOf(r: ProbeRun): TensorInfo[] {
  return r.of('tensors').flatMap((m) => m.tensors);
}

function byName(r: ProbeRun, name: string): TensorInfo {
  const t = tensorsOf(r).find((x) => x.name === name);
  assert.ok(
    t,
    `tensor ${name} in ${tensorsOf(r)
      .map((x) => x.name)
      .join(',')}`,
  );
  return t;
}

function stat(s: StepMsg, name: StepMsg['stats'][number], id: number): number {
  return s.columns[s.stats.indexOf(name)][id];
}

/** The info EVENT that gradients reached applyGradients changed since they were computed (probe.ts checkTransformed). */
function transformNotes(r: ProbeRun): string[] {
  return r
    .of('event')
    .filter((e) => e.kind === 'info' && /applyGradients received other tensors than the gradients computed/.test(e.message))
    .map((e) => e.message);
}

/** Protocol invariants every run must satisfy. */
function assertWellFormed(r: ProbeRun): void {
  assert.equal(r.decodeError, null, `decoder: ${r.decodeError?.message}`);
  assert.ok(r.messages.length >= 2, `frames: ${r.messages.map((m) => m.type).join(',')}; stderr ${r.stderr}`);
  assert.equal(r.messages[0].type, 'hello');
  assert.equal(r.messages[r.messages.length - 1].type, 'end');
  assert.equal(r.of('end').length, 1);
  let known = 0;
  let last = -1;
  for (const m of r.messages) {
    if (m.type === 'tensors') {
      for (const t of m.tensors) assert.equal(t.id, known++, 'tensor ids dense from 0');
    }
    if (m.type === 'step') {
      assert.ok(m.nTensors <= known, 'a STEP only covers announced tensors');
      assert.ok(m.step > last, 'steps increase');
      last = m.step;
      assert.deepEqual(m.stats, ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm']);
    }
  }
  assert.ok(!/warning/.test(r.stderr), `no probe warnings on stderr: ${r.stderr}`);
  for (const e of r.of('event')) assert.notEqual(e.kind, 'warning', `probe warning: ${e.message}`);
}

function assertSite(t: TensorInfo, file: string, tag: string): void {
  assert.ok(t.source, `${t.name} has a source`);
  assert.equal(t.source.file, file);
  assert.equal(t.source.line, siteLine(file, tag), `${t.name} line`);
  assert.ok(t.source.column >= 1);
}

describe('tfjs probe: script styles', () => {
  it('Sequential model.fit (CommonJS example): names, shapes, source lines, loss, completed', async () => {
    const file = join(EXAMPLES, 'healthy-mlp.js');
    const r = await runProbe(file, { env: { GRADSCOPE_MAX_STEPS: '6' } });
    assertWellFormed(r);
    const hello = r.of('hello')[0];
    assert.equal(hello.backend, 'wasm');
    assert.equal(hello.script, file);
    assert.match(hello.backendReason, /tfjs-node-gpu is not installed.*running on wasm/);
    assert.match(r.stderr, /\[gradscope\] .*running on wasm/);
    assert.equal(r.of('event').filter((e) => e.kind === 'backend').length, 1);
    assert.deepEqual(transformNotes(r), []); // model.fit applies what it computed
    const ts = tensorsOf(r);
    assert.deepEqual(
      ts.map((t) => t.name),
      ['dense_Dense1/kernel', 'dense_Dense1/bias', 'dense_Dense2/kernel', 'dense_Dense2/bias', 'dense_Dense3/kernel', 'dense_Dense3/bias'],
    );
    assert.deepEqual(
      ts.map((t) => t.shape),
      [[8, 32], [32], [32, 32], [32], [32, 1], [1]],
    );
    assert.ok(ts.every((t) => t.layerType === 'Dense'));
    assert.equal(ts[0].layer, 'dense_Dense1');
    assert.equal(ts[0].source?.file, file);
    // model.add(tf.layers.dense(...)) lines 15, 16, 17 of the example
    assert.deepEqual(
      ts.map((t) => t.source?.line),
      [15, 15, 16, 16, 17, 17],
    );
    const steps = r.of('step');
    assert.equal(steps.length, 6);
    assert.ok(
      steps.every((s) => s.loss !== null && Number.isFinite(s.loss) && s.loss > 0 && s.loss < 5),
      `losses ${steps.map((s) => s.loss).join(',')}`,
    );
    assert.ok(steps.every((s) => s.nTensors === 6 && s.columns[0].every((v) => v > 0)));
    assert.ok(
      steps.every((s) => s.columns[4].every((v) => v > 0) && s.columns[5].every((v) => v > 0)),
      'param and update norms',
    );
    assert.equal(r.of('end')[0].reason, 'step-limit');
    assert.equal(r.of('end')[0].steps, 6);
    assert.equal(r.code, 0);
    assert.ok(r.of('detail').length > 0);
  });

  it('functional model: layer names and lines', async () => {
    const file = join(SCRIPTS, 'functional-fit.js');
    const r = await runProbe(file);
    assertWellFormed(r);
    assert.match(r.stdout, /functional done/);
    assertSite(byName(r, 'hidden/kernel'), file, 'hidden');
    assertSite(byName(r, 'hidden/bias'), file, 'hidden');
    assertSite(byName(r, 'head/kernel'), file, 'head');
    assert.deepEqual(byName(r, 'head/kernel').shape, [5, 2]);
    assert.equal(byName(r, 'head/kernel').layer, 'head');
    assert.equal(r.of('step').length, 8); // 2 epochs × 4 batches
    assert.equal(r.of('end')[0].reason, 'completed');
  });

  it('fitDataset', async () => {
    const file = join(SCRIPTS, 'fit-dataset.js');
    const r = await runProbe(file);
    assertWellFormed(r);
    assertSite(byName(r, 'dense_Dense1/kernel'), file, 'first');
    assertSite(byName(r, 'dense_Dense2/bias'), file, 'second');
    assert.equal(r.of('step').length, 8);
    assert.ok(r.of('step').every((s) => Number.isFinite(s.loss)));
  });

  for (const mode of ['inline', 'host', 'device'] as const) {
    it(`variableGrads + applyGradients with a map: statistics of a known gradient (${mode} path)`, async () => {
      const file = join(SCRIPTS, 'variable-grads-map.js');
      const env: Record<string, string> = { GRADSCOPE_DETAIL_EVERY: '1', GRADSCOPE_STATS: mode };
      if (mode === 'device') env.GRADSCOPE_BACKEND = 'cpu';
      const r = await runProbe(file, { env });
      assertWellFormed(r);
      assert.deepEqual(transformNotes(r), []); // variableGrads' own tensors applied
      if (mode === 'device') {
        assert.equal(r.of('hello')[0].backend, 'cpu');
        assert.match(r.of('hello')[0].backendReason, /GRADSCOPE_BACKEND=cpu/);
      }
      const w = byName(r, 'w');
      const v = byName(r, 'v');
      assertSite(w, file, 'w');
      assertSite(v, file, 'v');
      assert.equal(w.layerType, 'Variable');
      const [s0, s1, s2] = r.of('step');
      // Step 0: ∂/∂w Σ w⊙C = C = [[3,−4],[0,12]]; SGD(0.5) moves w by 0.5·C.
      assert.equal(s0.nTensors, 1);
      assert.equal(s0.loss, 43); // Σ [[1,2],[3,4]] ⊙ C
      assert.ok(Math.abs(stat(s0, 'norm', w.id) - 13) < 1e-6);
      assert.equal(stat(s0, 'maxAbs', w.id), 12);
      assert.equal(stat(s0, 'nanCount', w.id), 0);
      assert.ok(Math.abs(stat(s0, 'updateNorm', w.id) - 6.5) < 1e-6);
      assert.ok(Math.abs(stat(s0, 'paramNorm', w.id) - Math.sqrt(29.25)) < 1e-6); // ‖[[−0.5,4],[3,−2]]‖
      // Step 1: D = [1, NaN, Inf, −2, 0]: NaN and Inf counted, kept out of norm and max.
      assert.equal(s1.nTensors, 2);
      assert.ok(Number.isNaN(stat(s1, 'norm', w.id)), 'w is not in step 1');
      assert.ok(Math.abs(stat(s1, 'norm', v.id) - Math.sqrt(5)) < 1e-6);
      assert.equal(stat(s1, 'maxAbs', v.id), 2);
      assert.equal(stat(s1, 'nanCount', v.id), 1);
      assert.equal(stat(s1, 'infCount', v.id), 1);
      assert.ok(s1.loss !== null && Number.isNaN(s1.loss), 'a NaN loss');
      // Step 2 applied a gradient no computation made: no loss, which is not a NaN loss.
      assert.equal(s2.loss, null);
      assert.equal(r.of('hello')[0].marksNoLoss, true);
      const nf = r.of('event').filter((e) => e.kind === 'non-finite');
      assert.equal(nf.length, 1);
      assert.equal(nf[0].step, 1);
      assert.equal(nf[0].tensorId, v.id);
      const d0 = r.of('detail').find((d) => d.step === 0 && d.tensorId === w.id);
      assert.ok(d0, 'detail of w at step 0');
      assert.equal(d0.mean, 2.75);
      assert.ok(Math.abs(d0.std - Math.sqrt(34.6875)) < 1e-9);
      assert.equal(d0.zeroFrac, 0.25);
      assert.equal(d0.hist[20], 2); // |3|, |−4|: decade 10⁰ (bin 0 is 10⁻²⁰)
      assert.equal(d0.hist[21], 1); // 12
      assert.deepEqual([d0.thumbRows, d0.thumbCols], [2, 2]);
      assert.deepEqual([...d0.thumb], [3, 4, 0, 12]);
    });
  }

  for (const mode of ['inline', 'host', 'device'] as const) {
    it(`paramNorm/updateNorm on their schedule: true values on measured steps and a tensor's first, NaN (unknown) between (${mode} path)`, async () => {
      const file = join(SCRIPTS, 'weights-schedule.js');
      const env: Record<string, string> = { GRADSCOPE_SAMPLED_EVERY: '4', GRADSCOPE_STATS: mode };
      if (mode === 'device') env.GRADSCOPE_BACKEND = 'cpu';
      const r = await runProbe(file, { env });
      assertWellFormed(r);
      const w = byName(r, 'w');
      const u = byName(r, 'u');
      const steps = r.of('step');
      assert.equal(steps.length, 30);
      const W0 = [1, 2, 3, 4];
      const C = [3, -4, 0, 12];
      for (const s of steps) {
        const k = s.step;
        // The gradient tier is there on every step.
        assert.ok(Math.abs(stat(s, 'norm', w.id) - 13) < 1e-5, `norm at ${k}`);
        const measured = k % 4 === 0;
        if (measured) {
          const after = Math.hypot(...W0.map((x, i) => x - 0.5 * (k + 1) * C[i]));
          assert.ok(Math.abs(stat(s, 'paramNorm', w.id) / after - 1) < 1e-5, `paramNorm of w at ${k}: ${stat(s, 'paramNorm', w.id)} vs ${after}`);
          assert.ok(Math.abs(stat(s, 'updateNorm', w.id) - 6.5) < 1e-4, `updateNorm of w at ${k}`);
        } else {
          assert.ok(Number.isNaN(stat(s, 'paramNorm', w.id)) && Number.isNaN(stat(s, 'updateNorm', w.id)), `w unmeasured at ${k}: NaN`);
        }
        if (k < 25) continue;
        // u's first step (25, off the schedule) is measured all the same; then the schedule.
        if (k === 25 || measured) {
          const after = Math.hypot(2 - 0.5 * (k - 24), -0.5 * (k - 24));
          assert.ok(Math.abs(stat(s, 'paramNorm', u.id) / after - 1) < 1e-5, `paramNorm of u at ${k}`);
          assert.ok(Math.abs(stat(s, 'updateNorm', u.id) - 0.5 * Math.SQRT2) < 1e-5, `updateNorm of u at ${k}`);
        } else {
          assert.ok(Number.isNaN(stat(s, 'updateNorm', u.id)), `u unmeasured at ${k}`);
        }
      }
    });
  }

  it('paramNorm/updateNorm, automatic schedule: every one of the first 20 steps has them, and every value given is true', async () => {
    const r = await runProbe(join(SCRIPTS, 'weights-schedule.js'));
    assertWellFormed(r);
    const w = byName(r, 'w');
    const W0 = [1, 2, 3, 4];
    const C = [3, -4, 0, 12];
    for (const s of r.of('step')) {
      const u = stat(s, 'updateNorm', w.id);
      if (s.step < 20) assert.ok(Number.isFinite(u), `step ${s.step} has updateNorm`);
      if (Number.isNaN(u)) continue;
      assert.ok(Math.abs(u - 6.5) < 1e-4);
      assert.ok(Math.abs(stat(s, 'paramNorm', w.id) / Math.hypot(...W0.map((x, i) => x - 0.5 * (s.step + 1) * C[i])) - 1) < 1e-5);
    }
  });

  it('optimizer subclass calling super counts one step per batch', async () => {
    const file = join(SCRIPTS, 'optimizer-subclass.js');
    const r = await runProbe(file);
    assertWellFormed(r);
    assert.equal(r.of('step').length, 8); // 2 epochs × 4 batches, not 16
    assert.equal(r.of('end')[0].steps, 8);
    // The subclass clips each gradient to ±0.1 before super: the steps report the gradients as
    // computed, before that clip (changedGrads.ts), and say so once.
    const steps = r.of('step');
    assert.ok(
      steps.some((s) => stat(s, 'maxAbs', 0) > 0.1 + 1e-3),
      steps.map((s) => stat(s, 'maxAbs', 0)).join(', '),
    );
    const notes = transformNotes(r);
    assert.equal(notes.length, 1, notes.join('\n'));
    assert.match(notes[0], /for 2 tensor\(s\) \(dense_Dense1\/kernel, dense_Dense1\/bias\): global norm (\S+) computed, (\S+) applied/);
    assert.match(notes[0], /GradScope reports the gradients as computed, before that change/);
    // Step 0's global norm is the one computed, not the one the subclass applied.
    const [, before, applied] = /global norm (\S+) computed, (\S+) applied/.exec(notes[0])!;
    const s0 = steps[0];
    assert.ok(Math.abs(Number(before) / Math.hypot(stat(s0, 'norm', 0), stat(s0, 'norm', 1)) - 1) < 1e-2, notes[0]); // (3 digits)
    assert.ok(Number(before) > Number(applied), notes[0]);
    // A clip by value (every entry saturated: one global norm applied at every step, 0.1·√9, but in
    // another direction than computed) is recognised as one, not as a clip to a global norm of 0.3.
    const clips = r.of('event').filter((e) => e.kind === 'clip');
    assert.equal(clips.length, 1, JSON.stringify(clips));
    assert.equal(clips[0].clipBy, 'value');
    assert.ok(clips[0].value !== undefined && Math.abs(clips[0].value - 0.1) < 1e-6, JSON.stringify(clips[0]));
    assert.match(clips[0].message, /clips its gradients by value, each element to ±0\.1 by hand/);
    assertSite(byName(r, 'dense_Dense1/kernel'), file, 'dense');
  });

  it('a clip to a global norm written by hand: the norms before clipping, and the threshold found (every stats path)', async () => {
    for (const mode of ['host', 'inline', 'device']) {
      const r = await runProbe(join(SCRIPTS, 'clip-global-norm.js'), { env: { GRADSCOPE_STATS: mode } });
      assertWellFormed(r);
      const want = [...r.stdout.matchAll(/^NORM (\d+) (\S+)$/gm)].map((m) => Number(m[2]));
      const steps = r.of('step');
      assert.equal(want.length, 6);
      assert.equal(steps.length, 6);
      // Each step's global norm is the script's own, before clipping (well above the 1.0 applied).
      steps.forEach((s, i) => {
        const got = Math.hypot(stat(s, 'norm', 0), stat(s, 'norm', 1));
        assert.ok(want[i] > 1.5 && Math.abs(got / want[i] - 1) < 1e-5, `${mode}, step ${i}: ${got}, the script's ${want[i]}`);
      });
      const notes = transformNotes(r);
      assert.equal(notes.length, 1, notes.join('\n'));
      assert.match(notes[0], /as computed, before that change/);
      // The threshold, from two steps that applied 1.0 from different norms: the clip EVENT.
      const clips = r.of('event').filter((e) => e.kind === 'clip');
      assert.equal(clips.length, 1, JSON.stringify(clips));
      assert.ok(clips[0].value !== undefined && Math.abs(clips[0].value - 1) < 1e-5, JSON.stringify(clips[0]));
      assert.equal(clips[0].clipBy, 'norm');
      assert.match(clips[0].message, /clips its gradients to a global norm of 1(\.0+)? by hand/);
    }
  });

  it('gradients disposed before applyGradients: reported as applied, and said', async () => {
    const r = await runProbe(join(SCRIPTS, 'clip-global-norm.js'), { env: { DISPOSE_FIRST: '1' } });
    assertWellFormed(r);
    const steps = r.of('step');
    assert.equal(steps.length, 6);
    steps.forEach((s) => assert.ok(Math.abs(Math.hypot(stat(s, 'norm', 0), stat(s, 'norm', 1)) - 1) < 1e-5));
    const notes = transformNotes(r);
    assert.equal(notes.length, 1, notes.join('\n'));
    assert.match(notes[0], /disposed the computed ones before applyGradients/);
    assert.equal(r.of('event').filter((e) => e.kind === 'clip').length, 0);
  });

  it('gradients accumulated over micro-batches: the loss of the step is the sum of what was differentiated', async () => {
    // Both ways the loss is read: a number on this thread (host, inline), a tensor kept on the device.
    for (const mode of ['inline', 'device']) {
      const r = await runProbe(join(SCRIPTS, 'accumulate-grads.js'), { env: { GRADSCOPE_STATS: mode } });
      assertWellFormed(r);
      const want = [...r.stdout.matchAll(/^LOSS (\d+) (\S+)$/gm)].map((m) => Number(m[2]));
      const steps = r.of('step');
      assert.equal(want.length, 3);
      assert.equal(steps.length, 3);
      // (it was the second micro-batch's loss alone)
      steps.forEach((s, i) => assert.ok(s.loss !== null && Math.abs(s.loss / want[i] - 1) < 1e-6, `${mode}, step ${i}: loss ${s.loss}, the script's ${want[i]}`));
      // The sum applied is not what either computation gave: said once, and reported as applied.
      const notes = transformNotes(r);
      assert.equal(notes.length, 1);
      assert.match(notes[0], /2 gradient computations fed this step \(an accumulation\): GradScope reports their result as applied/);
    }
  });

  it('custom Layer subclass built with new: its class and the `new` line', async () => {
    const file = join(SCRIPTS, 'custom-layer.js');
    const r = await runProbe(file);
    assertWellFormed(r);
    const t = byName(r, 'scaler/scale');
    assert.equal(t.layer, 'scaler');
    assert.equal(t.layerType, 'Scale');
    assert.deepEqual(t.shape, [4]);
    assertSite(t, file, 'scale');
    assert.equal(r.of('step').length, 2);
  });

  it('TypeScript: runs, and sources point at the .ts lines', async () => {
    const file = join(SCRIPTS, 'ts-script.ts');
    const r = await runProbe(file);
    assertWellFormed(r);
    assert.match(r.stdout, /ts done/);
    assertSite(byName(r, 'dense_Dense1/kernel'), file, 'ts-dense');
    assert.equal(r.of('step').length, 4);
  });

  it('.cjs script runs as the main module with node-like argv', async () => {
    const file = join(SCRIPTS, 'cjs-script.cjs');
    const r = await runProbe(file, { args: ['--epochs', '3'] });
    assertWellFormed(r);
    assert.match(r.stdout, /argv \["--epochs","3"\] script cjs-script\.cjs/);
    assertSite(byName(r, 'dense_Dense1/kernel'), file, 'cjs-dense');
    assert.equal(r.of('step').length, 3);
  });

  it('ESM custom loop with optimizer.minimize (example): raw variables, their lines, the loss', async () => {
    const file = join(EXAMPLES, 'healthy-custom-loop.mjs');
    const r = await runProbe(file, { env: { GRADSCOPE_MAX_STEPS: '5' } });
    assertWellFormed(r);
    assert.deepEqual(
      tensorsOf(r).map((t) => t.name),
      ['hidden/w', 'hidden/b', 'out/w', 'out/b'],
    );
    assert.deepEqual(
      tensorsOf(r).map((t) => t.source?.line),
      [10, 11, 12, 13],
    );
    const steps = r.of('step');
    assert.equal(steps.length, 5);
    const [first, last] = [steps[0].loss, steps[4].loss];
    assert.ok(first !== null && last !== null && first > last, 'loss falls');
    assert.equal(r.of('end')[0].reason, 'step-limit');
    assert.deepEqual(transformNotes(r), []); // minimize applies what it computed
  });

  it('a fully synchronous loop still gets every step', async () => {
    const r = await runProbe(join(SCRIPTS, 'sync-loop.js'));
    assertWellFormed(r);
    assert.equal(r.of('step').length, 30);
    assert.ok(!r.of('event').some((e) => e.kind === 'dropped'));
  });
});

describe('tfjs probe: run endings and backends', () => {
  it('a script that throws at step 5: END crashed with the user frame, Node prints the error, exit 1', async () => {
    const file = join(SCRIPTS, 'throws-at-step-5.js');
    const r = await runProbe(file);
    assertWellFormed(r);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error: boom at step 5\n\s+at checkStep/);
    const end = r.of('end')[0];
    assert.equal(end.reason, 'crashed');
    assert.equal(end.steps, 5);
    assert.equal(end.error?.message, 'boom at step 5');
    assert.deepEqual(end.error?.frame && { file: end.error.frame.file, line: end.error.frame.line }, { file, line: siteLine(file, 'throw') });
    assert.equal(r.of('step').length, 5);
  });

  for (const [name, head] of [
    ['bad-syntax.js', "const tf = require('@tensorflow/tfjs');"],
    ['bad-syntax.mjs', "import * as tf from '@tensorflow/tfjs';"],
  ]) {
    it(`a script that does not compile: END crashed at the line Node points at, said a SyntaxError (${name})`, async () => {
      const file = join(tmp, name);
      writeFileSync(file, `${head}\nconst x = ;\n`);
      // Node's stack has no frame of the script: the site comes from its "file:line" head and caret
      // (CommonJS), or from `node --check` (an ES module's stack has no location at all).
      await assertSyntaxErrorAt(file, "Unexpected token ';'", { file, line: 2, column: 11 });
    });
  }

  for (const [entry, mod, head, use] of [
    ['imports-broken.mjs', 'broken-lib.mjs', "import * as tf from '@tensorflow/tfjs';", "import { helper } from './broken-lib.mjs';"],
    ['imports-broken-deep.mjs', 'broken-deep.mjs', "import * as tf from '@tensorflow/tfjs';", "export { helper } from './ok-middle.mjs';"],
    ['requires-broken.js', 'broken-lib.cjs', "const tf = require('@tensorflow/tfjs');", "const { helper } = require('./broken-lib.cjs');"],
  ]) {
    it(`a module that does not compile, imported by the script: END at the module's line, not the import (${entry})`, async () => {
      const file = join(tmp, entry);
      const broken = join(tmp, mod);
      writeFileSync(file, `${head}\n${use}\nconsole.log(tf.version, helper);\n`);
      if (entry.includes('deep')) writeFileSync(join(tmp, 'ok-middle.mjs'), `// fine itself\nexport { helper } from './${mod}';\n`);
      writeFileSync(broken, `// a helper\n${mod.endsWith('.cjs') ? 'exports.helper = 1;' : 'export const helper = 1;'}\nconst y = );\n`);
      await assertSyntaxErrorAt(file, "Unexpected token ')'", { file: broken, line: 3, column: 11 });
    });
  }

  /** Runs `file`, which does not compile: exit 1, END crashed with the SyntaxError `message` at `frame`. */
  async function assertSyntaxErrorAt(file: string, message: string, frame: { file: string; line: number; column: number }): Promise<void> {
    const r = await runProbe(file);
    assertWellFormed(r);
    assert.equal(r.code, 1);
    const end = r.of('end')[0];
    assert.equal(end.reason, 'crashed');
    assert.equal(end.error?.message, `SyntaxError: ${message}`);
    assert.deepEqual(end.error?.frame, frame);
  }

  it('the exploding example reports a non-finite gradient within its first steps', async () => {
    const r = await runProbe(join(EXAMPLES, 'exploding-mlp.js'), { env: { GRADSCOPE_MAX_STEPS: '30' } });
    assertWellFormed(r);
    const nf = r.of('event').filter((e) => e.kind === 'non-finite');
    assert.equal(nf.length, 1);
    assert.ok(nf[0].step! < 30);
    const steps = r.of('step');
    const global = (s: StepMsg) => Math.hypot(...s.columns[0]);
    assert.ok(global(steps[nf[0].step! - 1]) > 100 * global(steps[0]), 'the norm grew before going non-finite');
    assert.ok(
      r.of('detail').some((d) => d.step === nf[0].step),
      'a detail tier at the anomaly',
    );
    assert.equal(r.of('end')[0].reason, 'step-limit');
    assert.equal(r.of('end')[0].steps, 30);
  });

  it('a script requiring tfjs-node-gpu runs where it is absent and says why', async () => {
    const file = join(SCRIPTS, 'requires-node-gpu.js');
    const r = await runProbe(file);
    assertWellFormed(r);
    assert.match(r.stdout, /gpu script done on wasm/);
    assert.match(r.of('hello')[0].backendReason, /tfjs-node-gpu is not installed/);
    assert.match(r.stderr, /tfjs-node-gpu is not installed.*running on wasm/);
    assertSite(byName(r, 'dense_Dense1/kernel'), file, 'gpu-dense');
  });

  it('an installed tfjs-node-gpu whose native binding fails to load counts as absent, with the reason (ESM, no tfjs of its own)', async () => {
    // A project folder with no tfjs of its own (the extension's copy is used) and a tfjs-node-gpu
    // whose binding is missing, as an install script that did not run (or could not download) leaves it.
    const proj = join(tmp, 'proj');
    const pkg = join(proj, 'node_modules', '@tensorflow', 'tfjs-node-gpu');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@tensorflow/tfjs-node-gpu', version: '4.22.0', main: 'index.js' }));
    writeFileSync(join(pkg, 'index.js'), 'throw new Error("Cannot find module \'/x/lib/napi-v8/tfjs_binding.node\'");\n');
    const script = join(proj, 'train.mjs');
    writeFileSync(
      script,
      [
        "import * as tf from '@tensorflow/tfjs-node-gpu';",
        'const w = tf.variable(tf.scalar(3), true, "w");',
        'const opt = tf.train.sgd(0.1);',
        'for (let i = 0; i < 3; i++) opt.minimize(() => w.square());',
        "console.log('esm gpu done', tf.getBackend());",
        '',
      ].join('\n'),
    );
    const r = await runProbe(script, { cwd: proj });
    assertWellFormed(r);
    assert.match(r.stdout, /esm gpu done wasm/);
    // (not even loaded: without its binding file it would only register its kernels and fail)
    assert.match(r.of('hello')[0].backendReason, /tfjs-node-gpu is installed without its native binding \(lib\/napi-v\*\/tfjs_binding\.node\).*npm rebuild/);
    const [s0] = r.of('step');
    assert.ok(Math.abs(stat(s0, 'norm', 0) - 6) < 1e-6); // d/dw w² = 2w = 6
    assert.equal(s0.loss, 9);
    assert.equal(byName(r, 'w').source?.line, 2);
  });

  it('both tfjs-node packages present but failing after registering their kernels: no "already registered" flood, both reasons given', async () => {
    // As a real tfjs-node(-gpu) whose binding file is there but does not load (wrong platform, a
    // missing libtensorflow): its kernels are registered in the shared tfjs-core first. Loading the
    // second one registered them again, and tfjs-core printed one warning per kernel (155 measured
    // with the real 4.22 packages).
    const proj = join(tmp, 'proj-both');
    const core = createRequire(__filename).resolve('@tensorflow/tfjs-core');
    for (const name of ['tfjs-node-gpu', 'tfjs-node']) {
      const pkg = join(proj, 'node_modules', '@tensorflow', name);
      mkdirSync(join(pkg, 'lib', 'napi-v8'), { recursive: true });
      writeFileSync(join(pkg, 'lib', 'napi-v8', 'tfjs_binding.node'), 'not a shared object');
      writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: `@tensorflow/${name}`, version: '4.22.0', main: 'index.js' }));
      writeFileSync(
        join(pkg, 'index.js'),
        [
          `const tfc = require(${JSON.stringify(core)});`,
          "for (const k of ['GsFakeA', 'GsFakeB', 'GsFakeC']) tfc.registerKernel({ kernelName: k, backendName: 'tensorflow', kernelFunc: () => null });",
          `throw new Error(${JSON.stringify(`${name}: tfjs_binding.node: invalid ELF header`)});`,
          '',
        ].join('\n'),
      );
    }
    const script = join(proj, 'train.js');
    writeFileSync(
      script,
      "const tf = require('@tensorflow/tfjs-node');\nconst w = tf.variable(tf.scalar(2));\ntf.train.sgd(0.1).minimize(() => w.square());\nconsole.log('both done', tf.getBackend());\n",
    );
    const r = await runProbe(script, { cwd: proj });
    assertWellFormed(r);
    assert.match(r.stdout, /both done wasm/);
    assert.doesNotMatch(r.stderr, /already registered/);
    const reason = r.of('hello')[0].backendReason;
    assert.match(reason, /tfjs-node-gpu is installed but failed to load \(tfjs-node-gpu: tfjs_binding\.node: invalid ELF header\)/);
    assert.match(reason, /tfjs-node is installed but failed to load \(tfjs-node: tfjs_binding\.node: invalid ELF header\)/);
  });

  // A project pinned to tfjs 3.x with its matching wasm backend (scripts/setup-tests.sh installs it;
  // `npm test` always does, so there it never skips). That wasm backend's Emscripten glue fetched its
  // .wasm by file path through Node's global fetch and aborted before the script started.
  const TFJS3 = join(repoRoot, 'test', 'fixtures', 'tfjs-published', 'tfjs3');
  const tfjs3Installed = existsSync(join(TFJS3, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'package.json'));
  it(
    'a project pinned to tfjs 3.x trains on its own matching wasm backend',
    { skip: !tfjs3Installed && !process.env.GRADSCOPE_REQUIRE_TORCH && 'tfjs 3.x fixture not installed (bash scripts/setup-tests.sh)' },
    async () => {
      const file = join(TFJS3, 'train.js');
      const r = await runProbe(file, { cwd: TFJS3, env: { GRADSCOPE_MAX_STEPS: '8' } });
      assertWellFormed(r);
      const hello = r.of('hello')[0];
      assert.equal(hello.backend, 'wasm', hello.backendReason);
      assert.doesNotMatch(r.stderr, /Failed to parse URL|RuntimeError/);
      assert.match(r.of('event').find((e) => e.kind === 'backend')?.message ?? '', /running on wasm \(tfjs 3\.6\.0\)/);
      const ts = tensorsOf(r);
      assert.deepEqual(
        ts.map((t) => t.name),
        ['dense_Dense1/kernel', 'dense_Dense1/bias', 'dense_Dense2/kernel', 'dense_Dense2/bias'],
      );
      assertSite(ts[0], file, 'hidden');
      assertSite(ts[3], file, 'out');
      assert.equal(r.of('step').length, 8);
      assert.ok(r.of('step').every((s) => s.columns[0].every((v) => v > 0)));
      assert.equal(r.of('end')[0].reason, 'step-limit');
    },
  );

  it('a script written for tfjs-node, on the fallback: tf.node.tensorBoard writes event files TensorBoard reads, file:// save and load work (CommonJS and ESM)', async () => {
    const proj = join(tmp, 'tfnode');
    mkdirSync(proj, { recursive: true });
    const body = (logs: string, ckpt: string): string[] => [
      'const model = tf.sequential();',
      "model.add(tf.layers.dense({ units: 8, inputShape: [4], activation: 'relu' })); // @site:hidden",
      'model.add(tf.layers.dense({ units: 1 }));',
      "model.compile({ optimizer: 'adam', loss: 'meanSquaredError', metrics: ['mse'] });",
      'const x = tf.randomNormal([64, 4], 0, 1, "float32", 3), y = tf.randomNormal([64, 1], 0, 1, "float32", 4);',
      // A checkpoint each epoch, as published scripts save them (file:// from inside fit).
      `const each = new tf.CustomCallback({ onEpochEnd: async (epoch) => { await model.save(${JSON.stringify(`file://${ckpt}-epoch`)} + epoch); } });`,
      `await model.fit(x, y, { epochs: 3, batchSize: 16, validationSplit: 0.25, verbose: 0, callbacks: [tf.node.tensorBoard(${JSON.stringify(logs)}, { updateFreq: 'batch' }), each] });`,
      `await model.save(${JSON.stringify(`file://${ckpt}`)});`,
      `const back = await tf.loadLayersModel(${JSON.stringify(`file://${ckpt}/model.json`)});`,
      'const a = model.predict(x).dataSync(), b = back.predict(x).dataSync();',
      "console.log('round trip', a.every((v, i) => v === b[i]) ? 'equal' : 'differs');",
    ];
    const cjs = join(proj, 'train.js');
    writeFileSync(cjs, ["const tf = require('@tensorflow/tfjs-node');", '(async () => {', ...body(join(proj, 'logs'), join(proj, 'ckpt')), '})();', ''].join('\n'));
    const esm = join(proj, 'train.mjs');
    writeFileSync(esm, ["import * as tf from '@tensorflow/tfjs-node';", ...body(join(proj, 'logs-esm'), join(proj, 'ckpt-esm')), ''].join('\n'));
    for (const [file, logs] of [
      [cjs, 'logs'],
      [esm, 'logs-esm'],
    ] as const) {
      const r = await runProbe(file, { cwd: proj });
      assertWellFormed(r);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /round trip equal/);
      assert.equal(r.of('step').length, 9); // 3 epochs of 48 training rows in batches of 16
      assertSite(byName(r, 'dense_Dense1/kernel'), file, 'hidden');
      const ckpt = join(proj, logs === 'logs' ? 'ckpt' : 'ckpt-esm');
      for (const e of [0, 1, 2]) assert.ok(existsSync(join(`${ckpt}-epoch${e}`, 'weights.bin')), `checkpoint of epoch ${e}`);
      // TensorBoard's own reader, where the torch 2.x venv has it (scripts/setup-torch.sh installs it)
      const py = join(repoRoot, '.venv-torch2', 'bin', 'python');
      const read = spawnSync(
        py,
        [
          '-c',
          'import sys\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n' +
            'for d in sys.argv[1:]:\n e = E(d); e.Reload(); print(d.rsplit("/", 1)[1], sorted(e.Tags()["scalars"]), len(e.Scalars("epoch_loss")), len(e.Scalars(e.Tags()["scalars"][0])))',
          join(proj, logs, 'train'),
          join(proj, logs, 'val'),
        ],
        { encoding: 'utf8' },
      );
      if (read.status === 0 || process.env.GRADSCOPE_REQUIRE_TORCH) {
        assert.equal(read.stdout, "train ['batch_loss', 'batch_mse', 'epoch_loss', 'epoch_mse'] 3 9\nval ['epoch_loss', 'epoch_mse'] 3 3\n", read.stderr);
      }
    }
  });

  it('a Babel project (import and require mixed, extension-less imports): its files compiled to CommonJS, sites on their own lines', async () => {
    // As the official tfjs-examples are laid out for `babel-node`: plain Node runs train.js as ESM
    // and fails on `import './data'` (Cannot find module).
    const proj = join(tmp, 'babel-project');
    mkdirSync(proj, { recursive: true });
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'babel-example', private: true, babel: { presets: [['@babel/preset-env', { targets: { node: 'current' } }]] } }));
    writeFileSync(
      join(proj, 'data.js'),
      "import * as tf from '@tensorflow/tfjs';\nexport const NUM_FEATURES = 4;\nexport function batch(n) {\n  return { xs: tf.randomNormal([n, NUM_FEATURES], 0, 1, 'float32', 1), ys: tf.randomNormal([n, 1], 0, 1, 'float32', 2) };\n}\n",
    );
    const model = join(proj, 'model.js');
    writeFileSync(
      model,
      [
        "const tf = require('@tensorflow/tfjs-node');",
        'export function build(features) {',
        '  const m = tf.sequential();',
        "  m.add(tf.layers.dense({ units: 8, inputShape: [features], activation: 'relu' })); // @site:hidden",
        '  m.add(tf.layers.dense({ units: 1 }));',
        "  m.compile({ optimizer: 'adam', loss: 'meanSquaredError' });",
        '  return m;',
        '}',
        '',
      ].join('\n'),
    );
    const script = join(proj, 'train.js');
    writeFileSync(
      script,
      "import { NUM_FEATURES, batch } from './data';\nimport { build } from './model';\n\nconst model = build(NUM_FEATURES);\nconst { xs, ys } = batch(64);\nmodel.fit(xs, ys, { epochs: 3, batchSize: 16, verbose: 0 }).then(() => console.log('babel script trained'));\n",
    );
    const r = await runProbe(script, { cwd: proj });
    assertWellFormed(r);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /babel script trained/);
    assert.match(r.stderr, /Babel project \(.*package\.json#babel\) without @babel\/register installed/);
    assert.equal(r.of('step').length, 12);
    assertSite(byName(r, 'dense_Dense1/kernel'), model, 'hidden');
  });

  // The native backend (tfjs-node), built from source by scripts/build-tfjs-node.sh (setup-tests.sh
  // runs it; `npm test` never skips this). The probe's native statistics path runs on it.
  const NATIVE = process.env.GRADSCOPE_TFJS_NODE_DIR || join(homedir(), '.cache', 'gradscope', 'tfjs-node-native');
  const nativeBuilt = existsSync(join(NATIVE, 'node_modules', '@tensorflow', 'tfjs-node', 'lib', 'napi-v8', 'tfjs_binding.node'));
  it(
    'tfjs-node (native TensorFlow): trains on backend tensorflow, statistics as on the other backends',
    { skip: !nativeBuilt && !process.env.GRADSCOPE_REQUIRE_TORCH && 'tfjs-node not built (bash scripts/build-tfjs-node.sh)' },
    async () => {
      const proj = join(tmp, 'native');
      mkdirSync(proj, { recursive: true });
      symlinkSync(join(NATIVE, 'node_modules'), join(proj, 'node_modules'));
      const file = join(proj, 'train.js');
      writeFileSync(
        file,
        [
          "const tf = require('@tensorflow/tfjs-node');",
          'const w = tf.variable(tf.tensor2d([[1, 2], [3, 4]]), true, "w"); // @site:w',
          'const opt = tf.train.sgd(0.01);',
          'const x = tf.tensor2d([[1, 0], [0, 1]]);',
          'for (let i = 0; i < 4; i++) opt.minimize(() => tf.matMul(x, w).square().sum());',
          "console.log('native done', tf.getBackend());",
          '',
        ].join('\n'),
      );
      const r = await runProbe(file, { cwd: proj, env: { TF_CPP_MIN_LOG_LEVEL: '2' } });
      assertWellFormed(r);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /native done tensorflow/);
      assert.equal(r.of('hello')[0].backend, 'tensorflow');
      assert.match(r.of('hello')[0].device, /tfjs-node, TensorFlow/);
      const [s0] = r.of('step');
      // d/dw Σ (x·w)² with x = I: 2w, norm 2·‖w‖ = 2·√30
      assert.ok(Math.abs(stat(s0, 'norm', 0) - 2 * Math.sqrt(30)) < 1e-4, String(stat(s0, 'norm', 0)));
      assert.equal(stat(s0, 'maxAbs', 0), 8);
      assert.equal(r.of('step').length, 4);
      assertSite(byName(r, 'w'), file, 'w');
    },
  );

  it('without a channel the script runs plainly on the same backend', async () => {
    const r = await runProbe(join(SCRIPTS, 'cjs-script.cjs'), { noChannel: true });
    assert.equal(r.code, 0);
    assert.equal(r.messages.length, 0);
    assert.match(r.stdout, /cjs done/);
    assert.match(r.stderr, /running on wasm/);
  });

  it('watchdog: the child exits promptly when the host end of the channel closes', async () => {
    let closedAt = 0;
    const r = await runProbe(join(SCRIPTS, 'endless.js'), {
      timeoutMs: 20000,
      onMessage: (m: Message, child) => {
        if (m.type === 'step' && m.step === 3 && !closedAt) {
          closedAt = Date.now();
          (child.stdio[3] as Readable).destroy();
        }
      },
    });
    assert.ok(closedAt > 0, 'steps arrived');
    assert.ok(Date.now() - closedAt < 5000, 'exited soon after the host went away');
    assert.notEqual(r.code, 0);
  });
});
