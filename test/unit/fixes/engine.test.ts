// The fix engine's small parts: applyEdits, the unified diff, number formatting, the clip threshold
// rule, raise-lr's factor, availableRemedies, the version echo, and the `fix` argument parsing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError, parseArgs } from '../../../src/cli/args';
import type { Finding } from '../../../src/core/analysis/finding';
import { unifiedDiff } from '../../../src/core/fixes/diff';
import { lossTrend, measureRun, verdict, type RunMeasure } from '../../../src/core/fixes/measure';
import { RunStore } from '../../../src/core/store/runStore';
import { lowerFactor, maxNormFromRun, raiseFactor } from '../../../src/core/fixes/policy';
import { applyEdits, formatNumber } from '../../../src/core/fixes/text';
import { availableRemedies, computeFix } from '../../../src/process/fixEngine';

function finding(p: Partial<Finding> = {}): Finding {
  return {
    id: 'exploding-gradient:global',
    kind: 'exploding-gradient',
    severity: 'error',
    step: 0,
    stepRange: [0, 0],
    tensors: [],
    layer: null,
    source: null,
    message: '',
    evidence: {},
    remedies: [],
    ...p,
  };
}

/** Applies a unified diff produced by unifiedDiff (enough of `patch` to check the hunks). */
function applyPatch(before: string, diff: string): string {
  const a = before.split('\n');
  const out: string[] = [];
  let i = 0;
  const lines = diff.split('\n').slice(2);
  for (let k = 0; k < lines.length; k++) {
    const m = /^@@ -(\d+),(\d+) \+\d+,\d+ @@$/.exec(lines[k]);
    if (!m) continue;
    const start = Number(m[2]) === 0 ? Number(m[1]) : Number(m[1]) - 1;
    while (i < start) out.push(a[i++]);
    for (k++; k < lines.length && !lines[k].startsWith('@@'); k++) {
      const l = lines[k];
      if (l.startsWith(' ')) {
        assert.equal(a[i], l.slice(1));
        out.push(a[i++]);
      } else if (l.startsWith('-')) {
        assert.equal(a[i], l.slice(1));
        i++;
      } else if (l.startsWith('+')) out.push(l.slice(1));
    }
    k--;
  }
  while (i < a.length) out.push(a[i++]);
  return out.join('\n');
}

describe('fix engine parts', () => {
  it('applyEdits applies from the end, keeps same-offset insertions in order, rejects overlaps', () => {
    assert.equal(
      applyEdits('abcdef', [
        { start: 1, end: 2, newText: 'B' },
        { start: 4, end: 4, newText: '_' },
      ]),
      'aBcd_ef',
    );
    assert.equal(
      applyEdits('xy', [
        { start: 1, end: 1, newText: '1' },
        { start: 1, end: 1, newText: '2' },
      ]),
      'x12y',
    );
    assert.throws(
      () =>
        applyEdits('abc', [
          { start: 0, end: 2, newText: '' },
          { start: 1, end: 3, newText: '' },
        ]),
      /overlap/,
    );
    assert.throws(() => applyEdits('abc', [{ start: 2, end: 9, newText: '' }]), /outside/);
  });

  it('unifiedDiff: hunks with context that apply back to the text after', () => {
    const before = Array.from({ length: 30 }, (_, i) => `line ${i + 1}`).join('\n') + '\n';
    const after = before.replace('line 3\n', 'line three\n').replace('line 20\n', 'line 20\ninserted\n').replace('line 28\n', '');
    const d = unifiedDiff(before, after, 'a/x.js', 'b/x.js');
    assert.match(d, /^--- a\/x\.js\n\+\+\+ b\/x\.js\n@@ -1,6 \+1,6 @@\n line 1\n line 2\n-line 3\n\+line three\n/);
    assert.equal((d.match(/^@@/gm) ?? []).length, 3);
    assert.equal(applyPatch(before, d), after);
    assert.equal(unifiedDiff(before, before, 'a', 'b'), '');
    assert.match(unifiedDiff('a\nb', 'a\nc', 'x', 'y'), /-b\n\\ No newline at end of file\n\+c\n\\ No newline at end of file\n$/);
  });

  it('formats numbers readably', () => {
    assert.equal(formatNumber(0.5 / 10), '0.05');
    assert.equal(formatNumber(0.007 / 10), '0.0007');
    assert.equal(formatNumber(0.3 / 10), '0.03');
    assert.equal(formatNumber(1e-6 * 1000, '1e-6'), '1e-3');
    assert.equal(formatNumber(1e-6 / 10), '1e-7');
    assert.equal(formatNumber(0.1 * 3), '0.3');
  });

  it('clip threshold: 2 × the lower median of the early healthy norms; default 1 without norms', () => {
    assert.deepEqual(maxNormFromRun([18.76, 350.9, 1.3e8, 4.4e11, NaN], finding({ step: 1, evidence: { startStep: 0 } })).value, 37.5);
    assert.equal(maxNormFromRun([3750, 3.28e5, 4.96e4, 1070, 2.34, 1.4], finding({ step: 1 })).value, 4.68);
    assert.equal(maxNormFromRun([1, 1.2, 0.9, 1.1, 1, 50, 9000], finding({ step: 6 })).value, 2);
    assert.equal(maxNormFromRun([NaN, Infinity], finding()).derived, false);
    assert.equal(maxNormFromRun(undefined, null).value, 1);
  });

  it("raise-lr's factor brings the update ratio to about 1e-3, ×10 to ×1000", () => {
    assert.equal(raiseFactor(finding({ kind: 'update-ratio', evidence: { medianRatio: 7.464e-6 } })), 1000);
    assert.equal(raiseFactor(finding({ kind: 'update-ratio', evidence: { medianRatio: 5e-5 } })), 100);
    assert.equal(raiseFactor(finding({ kind: 'update-ratio', evidence: { medianRatio: 9e-6 } })), 1000);
    assert.equal(raiseFactor(finding({ kind: 'update-ratio', evidence: { medianRatio: 1e-12 } })), 1000);
    assert.equal(raiseFactor(finding({ kind: 'update-ratio', evidence: { medianRatio: 2e-4 } })), 10);
    assert.equal(raiseFactor(finding({ kind: 'update-ratio' })), 10);
  });

  it("lower-lr's factor brings the measured update ratio to 1e-2 or below, ÷10 to ÷1000", () => {
    // exploding_lr.py: SGD lr 0.9 moved the weights by 86.6% on the first update → ÷100 (0.009 trains; 0.09 still explodes).
    assert.equal(lowerFactor(finding({ kind: 'exploding-gradient', evidence: { firstUpdateRatio: 0.866 } })), 100);
    assert.equal(lowerFactor(finding({ kind: 'exploding-gradient', evidence: { firstUpdateRatio: 0.17 } })), 100);
    assert.equal(lowerFactor(finding({ kind: 'exploding-gradient', evidence: { firstUpdateRatio: 0.1 } })), 10);
    assert.equal(lowerFactor(finding({ kind: 'exploding-gradient', evidence: { firstUpdateRatio: 40 } })), 1000);
    assert.equal(lowerFactor(finding({ kind: 'exploding-gradient', evidence: { firstUpdateRatio: 0.001 } })), 10);
    assert.equal(lowerFactor(finding({ kind: 'exploding-gradient', evidence: { firstUpdateRatio: 'NaN' } })), 10);
    assert.equal(lowerFactor(finding({ kind: 'update-ratio', evidence: { medianRatio: 0.35 } })), 100);
    assert.equal(lowerFactor(finding({ kind: 'non-finite-gradient' })), 10);
  });

  it('availableRemedies: every ranked remedy with its result, in rank order; the version is echoed', () => {
    const text =
      "const tf = require('@tensorflow/tfjs');\nconst m = tf.sequential();\nm.add(tf.layers.dense({ units: 1, inputShape: [2], kernelInitializer: 'heNormal' }));\nm.compile({ optimizer: tf.train.sgd(0.5), loss: 'meanSquaredError' });\n";
    const f = finding({
      layer: 'd',
      source: { file: '/w/t.js', line: 3, column: 17 },
      remedies: [
        { id: 'he-init', title: '' },
        { id: 'clip-global-norm', title: '' },
        { id: 'lower-lr', title: '' },
      ],
    });
    const opts = availableRemedies(text, f, { file: '/w/t.js', version: 3 });
    assert.deepEqual(
      opts.map((o) => o.remedy.id),
      ['he-init', 'clip-global-norm', 'lower-lr'],
    );
    assert.equal(opts[0].result.ok, false);
    assert.equal(!opts[0].result.ok && opts[0].result.alreadyApplied, true);
    assert.ok(opts[1].result.ok && opts[1].result.version === 3);
    assert.ok(opts[2].result.ok && /sgd\(0\.05\)/.test(opts[2].result.after));
  });

  it('refuses a finding located in another file', () => {
    const r = computeFix('const x = 1;\n', finding({ source: { file: '/w/model.js', line: 1, column: 1 }, layer: 'l' }), 'he-init', { file: '/w/train.js' });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /points at \/w\/model\.js/);
  });

  it('verdict: cured when the kind is gone and nothing went non-finite', () => {
    const m = (p: Partial<RunMeasure>): RunMeasure => ({
      exit: { reason: 'step-limit', message: '' },
      steps: 40,
      maxNorm: 1,
      firstNonFiniteStep: null,
      loss: { first: 1, last: 0.5, trend: 'falling' },
      findings: [],
      kinds: [],
      ...p,
    });
    const before = m({ maxNorm: 1e11, firstNonFiniteStep: 4, kinds: ['exploding-gradient', 'non-finite-gradient'] });
    assert.equal(verdict('exploding-gradient', before, m({})).cured, true);
    assert.equal(verdict('exploding-gradient', before, m({ kinds: ['exploding-gradient'] })).cured, false);
    assert.equal(verdict('exploding-gradient', before, m({ firstNonFiniteStep: 9 })).cured, false);
    assert.equal(verdict('exploding-gradient', before, m({ steps: 0 })).cured, false);
    // A spike the fixed run came back from (measureRun leaves it out of kinds) cures it, with a caveat.
    const spike = { id: 'exploding-gradient:global', kind: 'exploding-gradient' as const, layer: null, source: null, step: 2, settled: true as const };
    const v = verdict('exploding-gradient', before, m({ findings: [spike] }));
    assert.equal(v.cured, true);
    assert.match(v.summary, /— a gradient spike at step 2 that settled$/);
    const exploding = (settled: boolean): Finding =>
      finding({ kind: 'exploding-gradient', id: 'exploding-gradient:global', severity: settled ? 'info' : 'error', evidence: settled ? { settled: 1 } : {} });
    const measured = measureRun(new RunStore(), [exploding(true)], { reason: 'step-limit', message: '' });
    assert.deepEqual([measured.kinds, measured.findings[0].settled], [[], true]);
    assert.deepEqual(measureRun(new RunStore(), [exploding(false)], { reason: 'step-limit', message: '' }).kinds, ['exploding-gradient']);
    assert.equal(verdict('exploding-gradient', before, m({ exit: { reason: 'crashed', message: 'crashed at x.js:3' } })).cured, false);
    assert.equal(lossTrend(10, 5), 'falling');
    assert.equal(lossTrend(10, 10.5), 'flat');
    assert.equal(lossTrend(null, 1), 'unknown');
  });

  it('parses gradscope fix arguments', () => {
    const a = parseArgs(['fix', 'train.js', '--verify', '--finding', 'dead-units', '--epochs', '2', '--remedy=lower-lr', '--dry-run', '--steps', '30']);
    assert.equal(a.command, 'fix');
    if (a.command !== 'fix') return;
    assert.equal(a.script, 'train.js');
    assert.deepEqual(a.scriptArgs, ['--epochs', '2']);
    assert.equal(a.finding, 'dead-units');
    assert.equal(a.remedy, 'lower-lr');
    assert.equal(a.verify && a.dryRun, true);
    assert.equal(a.steps, 30);
    const b = parseArgs(['fix', '--from-run', 'r.gsrun']);
    assert.ok(b.command === 'fix' && b.fromRun === 'r.gsrun' && b.script === '' && b.steps === 100);
    assert.throws(
      () => parseArgs(['fix', 'x.js', '--finding', 'slow']),
      (e: Error) => e instanceof UsageError && /--finding must be one of/.test(e.message),
    );
    assert.throws(() => parseArgs(['fix']), /fix needs a script/);
    assert.equal(parseArgs(['run', 'x.js']).command, 'run');
  });
});
