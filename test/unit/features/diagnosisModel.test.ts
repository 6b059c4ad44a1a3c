import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Finding } from '../../../src/core/analysis/finding';
import { RunStore } from '../../../src/core/store/runStore';
import { concernsLayer, diagnosticMessage, fmt, hoverMarkdown, layerEvidence, layerStats, levelOf, relatedMessage } from '../../../src/features/diagnosisModel';
import { stepMsg, wire } from '../store/helpers';

function finding(over: Partial<Finding>): Finding {
  return {
    id: 'exploding-gradient:d1',
    kind: 'exploding-gradient',
    severity: 'error',
    step: 3,
    stepRange: [0, 3],
    tensors: ['d1/kernel'],
    layer: 'd1',
    source: { file: '/x/train.js', line: 4, column: 11 },
    message: 'Exploding gradients in d1.',
    evidence: { growthFactor: 123.456, normAtDetection: 8993, firstNonFiniteStep: 6, cause: 'initialisation', heGain: 1.41 },
    remedies: [{ id: 'he-init', title: 'Use He initialisation (heNormal) for this layer' }],
    ...over,
  };
}

describe('diagnosis model', () => {
  it('maps kinds to severities', () => {
    assert.equal(levelOf(finding({})), 'error');
    assert.equal(levelOf(finding({ kind: 'non-finite-gradient' })), 'error');
    assert.equal(levelOf(finding({ kind: 'vanishing-gradient', severity: 'warning' })), 'warning');
    assert.equal(levelOf(finding({ kind: 'update-ratio', severity: 'warning', evidence: { direction: 'high' } })), 'warning');
    assert.equal(levelOf(finding({ kind: 'update-ratio', severity: 'info', evidence: { direction: 'low' } })), 'info');
  });
  it('writes the message with the key evidence, and notes guessed placements', () => {
    assert.equal(diagnosticMessage(finding({}), 'layer'), 'Exploding gradients in d1. [growthFactor 123, normAtDetection 8993, firstNonFiniteStep 6, cause initialisation]');
    assert.match(diagnosticMessage(finding({ layer: null, source: null }), 'optimizer'), /shown where the optimizer is built/);
    assert.match(diagnosticMessage(finding({ layer: null, source: null }), 'fallback'), /shown on line 1/);
  });
  it('formats numbers for people', () => {
    assert.equal(fmt(2.1697e27), '2.17e+27');
    assert.equal(fmt(0.0769), '0.0769');
    assert.equal(fmt(NaN), 'NaN');
    assert.equal(fmt(-Infinity), '-Inf');
    assert.equal(fmt(null), '–');
    assert.equal(fmt(12), '12');
  });
  it("reads a layer's norm history, max, first non-finite step and update ratio from the store", () => {
    const store = new RunStore();
    store.ingest(
      wire({
        type: 'tensors',
        tensors: [0, 1].map((id) => ({ id, name: `d1/${id ? 'bias' : 'kernel'}`, layer: 'd1', layerType: 'Dense', shape: [2], source: { file: '/x/train.js', line: 4, column: 11 } })),
      }).msg,
    );
    const norms = [1, 10, 100, NaN];
    for (let s = 0; s < 4; s++) {
      store.ingest(
        wire(
          stepMsg(s, 2, s, (_o, t, stat) =>
            stat === 'norm' ? (t === 0 ? norms[s] : 0) : stat === 'nanCount' ? (s === 3 && t === 0 ? 5 : 0) : stat === 'infCount' ? 0 : stat === 'paramNorm' ? 10 : 1,
          ),
        ).msg,
      );
    }
    const st = layerStats(store, 'd1')!;
    assert.deepEqual(st.steps, [0, 1, 2, 3]);
    assert.deepEqual(st.norms.slice(0, 3), [1, 10, 100]);
    assert.ok(Number.isNaN(st.norms[3]));
    assert.deepEqual(st.max, { step: 2, norm: 100 });
    assert.equal(st.firstNonFiniteStep, 3);
    assert.ok(st.updateRatio && Math.abs(st.updateRatio.ratio - 0.1) < 1e-6 && st.updateRatio.step === 3);
    assert.equal(layerStats(store, 'nope'), null);
    const md = hoverMarkdown({ stats: st, findings: [finding({})], runLabel: 'train.js, run ended at step 3', panelLink: 'command:gradscope.showPanel?x', svg: true });
    assert.match(md, /‖g‖ last \*\*NaN\*\* \(step 3\) · max \*\*100\*\* \(step 2\) · first non-finite step \*\*3\*\* · update ratio ‖Δw‖\/‖w‖ \*\*0\.1\*\* \(step 3\)/);
    assert.match(md, /!\[‖g‖ ▁▅█×\]\(data:image\/svg\+xml;base64,/);
    assert.match(hoverMarkdown({ stats: st, findings: [], runLabel: 'x', panelLink: null, svg: false }), /`▁▅█×` ‖g‖ steps 0–3, log scale \(× non-finite\)/);
    assert.match(md, /\[\$\(graph\) Open in the GradScope panel\]\(command:gradscope\.showPanel\?x\)/);
    assert.match(md, /\$\(error\) \*\*exploding-gradient\*\*/);
  });

  it('a finding about several layers: each line says its own numbers, the primary says how many', () => {
    const dead = finding({
      id: 'dead-units:d3',
      kind: 'dead-units',
      severity: 'warning',
      layer: 'd3',
      source: { file: '/x/train.js', line: 6, column: 11 },
      locations: [
        { file: '/x/train.js', line: 4, column: 11, layer: 'd1', tensors: ['d1/kernel', 'd1/bias'] },
        { file: '/x/train.js', line: 5, column: 11, layer: 'd10', tensors: ['d10/kernel'] },
        { file: '/x/train.js', line: 6, column: 11, layer: 'd3', tensors: ['d3/kernel'] },
      ],
      message: 'Dead units in d3.',
      evidence: { zeroFraction: 1, byLayer: 'd1 99.4% zero (zero-fraction, since step 3); d10 100% zero (zero-norm, since step 0); d3 100% zero (zero-norm, since step 1)' },
    });
    // By whole name: d1 is not d10's prefix match.
    assert.equal(layerEvidence(dead, 'd1'), '99.4% zero (zero-fraction, since step 3)');
    assert.equal(layerEvidence(dead, 'd10'), '100% zero (zero-norm, since step 0)');
    assert.equal(layerEvidence(dead, 'd2'), null);
    assert.equal(layerEvidence(finding({}), 'd1'), null);
    assert.ok(concernsLayer(dead, 'd1') && concernsLayer(dead, 'd3') && !concernsLayer(dead, 'd2'));
    assert.match(diagnosticMessage(dead, 'layer'), /^Dead units in d3\. .*\(3 affected layers, each marked on its line; d3: 100% zero \(zero-norm, since step 1\)\)$/);
    assert.match(diagnosticMessage(dead, 'location', 'd1'), /^d1 \(affected layer, 1 of 3\): 99\.4% zero \(zero-fraction, since step 3\)\. Dead units in d3\./);
    assert.equal(relatedMessage(dead, 'd3'), 'dead-units in d3 (primary): 100% zero (zero-norm, since step 1)');
    assert.equal(relatedMessage(dead, 'd1'), 'dead-units in d1: 99.4% zero (zero-fraction, since step 3)');
    const global = finding({
      layer: null,
      source: null,
      locations: [{ file: '/x/train.js', line: 4, column: 1, layer: 'rnn', tensors: ['rnn/kernel'] }],
      evidence: { byLayer: 'rnn growth ×129' },
    });
    assert.match(diagnosticMessage(global, 'location', 'rnn'), /^rnn \(where it starts\): growth ×129\. /);
    const store = new RunStore();
    store.ingest(wire({ type: 'tensors', tensors: [{ id: 0, name: 'd1/kernel', layer: 'd1', layerType: 'Dense', shape: [2, 2], source: null }] }).msg);
    store.ingest(wire(stepMsg(0, 1)).msg);
    const st = layerStats(store, 'd1')!;
    const md = hoverMarkdown({ stats: st, findings: [dead], runLabel: 'x', panelLink: null, svg: false, layer: 'd1' });
    assert.match(md, /_This layer \(d1, 1 of 3 affected\):_ 99\\\.4% zero \\\(zero\\-fraction, since step 3\\\)/);
    assert.doesNotMatch(hoverMarkdown({ stats: st, findings: [dead], runLabel: 'x', panelLink: null, svg: false }), /This layer/);
  });
});
