// The CLI end to end: real `gradscope` process, real probe, real TensorFlow.js, real examples.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../../src/core/report/runJson';
import { gradscopeSync, type CliResult } from '../support/cli';
import { repoRoot } from '../support/paths';

const outDir = mkdtempSync(join(tmpdir(), 'gs-cli-'));

const gradscope = (args: string[], cwd = repoRoot): CliResult => gradscopeSync(args, { cwd });

/** 1-based lines of a file on which `needle` occurs. */
function linesOf(file: string, needle: string): number[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((l, i) => (l.includes(needle) ? [i + 1] : []));
}

describe('gradscope run --json', () => {
  it('lists every tensor of the exploding MLP with the line its layer was built on, and the first non-finite step', () => {
    const script = join(repoRoot, 'examples', 'tfjs', 'exploding-mlp.js');
    const r = gradscope(['run', 'examples/tfjs/exploding-mlp.js', '--json', '--steps', '60', '--out', outDir]);
    assert.equal(r.code, 0, r.stderr);
    // stdout is exactly one JSON document; the script's own output went to stderr.
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.match(r.stderr, /loss/);
    assert.equal(doc.schema, 'gradscope.run/1.1');
    assert.deepEqual(doc.warnings, [], 'a healthy-by-observation run has nothing GradScope could not see');
    assert.equal(doc.script, script);
    assert.equal(doc.framework, 'tfjs');
    assert.ok(doc.backend && ['wasm', 'cpu', 'tensorflow'].includes(doc.backend), String(doc.backend));
    assert.ok(doc.device);
    assert.ok(['completed', 'step-limit'].includes(doc.exit.reason), doc.exit.reason);
    assert.ok(doc.steps > 0 && doc.steps <= 60);

    const denseLines = linesOf(script, 'tf.layers.dense(');
    assert.equal(denseLines.length, 4);
    assert.equal(doc.tensors.length, 8, 'a kernel and a bias per dense layer');
    const layers = [...new Set(doc.tensors.map((t) => t.layer))];
    assert.equal(layers.length, 4);
    layers.forEach((layer, i) => {
      for (const t of doc.tensors.filter((x) => x.layer === layer)) {
        assert.equal(t.layerType, 'Dense');
        assert.equal(t.source?.file, script);
        assert.equal(t.source?.line, denseLines[i], `${t.name} built on line ${denseLines[i]}`);
        assert.ok((t.source?.column ?? 0) >= 1);
      }
    });
    const k0 = doc.tensors.find((t) => t.name.endsWith('/kernel'));
    assert.deepEqual(k0?.shape, [20, 64]);
    assert.equal(typeof doc.summary.firstNonFiniteStep, 'number', 'the exploding MLP goes non-finite');
    assert.ok(doc.summary.globalNorm.first !== null && doc.summary.globalNorm.max !== null);
    assert.ok(doc.summary.globalNorm.max > 100 * doc.summary.globalNorm.first, 'the norm grows before it goes non-finite');
    // The diagnosis: an exploding-gradient finding on one of the dense layers, flagged before the
    // first non-finite step, with remedies.
    const explode = (doc.findings as { kind: string; step: number; source: { line: number } | null; remedies: { id: string }[] }[]).find((f) => f.kind === 'exploding-gradient');
    assert.ok(explode, `findings: ${JSON.stringify(doc.findings.map((f) => (f as { kind: string }).kind))}`);
    assert.ok(explode.source && denseLines.includes(explode.source.line), 'the finding sits on a dense layer line');
    assert.ok(explode.step < (doc.summary.firstNonFiniteStep ?? Infinity), 'flagged before the first non-finite step');
    assert.ok(explode.remedies.some((r) => r.id === 'clip-global-norm'));
    assert.ok(doc.runFile?.startsWith(outDir));
  });

  it('a healthy script has no non-finite step', () => {
    const r = gradscope(['run', 'examples/tfjs/healthy-mlp.js', '--json', '--steps', '20', '--out', outDir]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.summary.firstNonFiniteStep, null);
    assert.ok(doc.steps > 0);
    assert.deepEqual(doc.findings, [], 'a healthy run gets no warning');
  });

  it('a crashing script exits 1 and names the user frame', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gs-crash-'));
    const script = join(dir, 'crash.js');
    writeFileSync(
      script,
      [
        "const tf = require('@tensorflow/tfjs');",
        'const w = tf.variable(tf.scalar(1));',
        'const opt = tf.train.sgd(0.1);',
        'for (let i = 0; i < 3; i++) opt.minimize(() => w.square());',
        "throw new Error('dataset missing');",
        '',
      ].join('\n'),
    );
    const r = gradscope(['run', script, '--json', '--out', outDir], dir);
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'crashed');
    assert.match(doc.exit.error?.message ?? '', /dataset missing/);
    assert.equal(doc.exit.error?.frame?.file, script);
    assert.equal(doc.exit.error?.frame?.line, 5);
    assert.equal(doc.steps, 3);
    assert.equal(doc.tensors[0]?.source?.line, 2, 'a tf.variable is located at its construction');
    assert.match(r.stderr, /dataset missing/, "the user's own error output is still shown");
  });

  it('without --json prints a readable summary with the source lines', () => {
    const r = gradscope(['run', 'examples/tfjs/exploding-mlp.js', '--steps', '10', '--out', outDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /GradScope · examples\/tfjs\/exploding-mlp\.js/);
    assert.match(r.stdout, /backend\s+\w+/);
    assert.match(r.stdout, /examples\/tfjs\/exploding-mlp\.js:\d+/);
    assert.match(r.stdout, /run file\s+/);
  });

  it('usage errors exit 2 with a message', () => {
    const r = gradscope(['run', 'x.js', '--steps', 'many']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--steps must be a positive integer/);
  });
});
