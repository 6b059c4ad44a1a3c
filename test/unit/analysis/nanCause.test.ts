// The locate-nan parser: the probes' locate EVENT, PyTorch anomaly mode's text, and how the cause is
// put on the non-finite finding (source moved, original kept, the matching guard first).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Finding } from '../../../src/core/analysis/finding';
import { LOCATE_PREFIX, findNanCause, findNanOp, guardKindOf, parseAnomalyText, parseLocateEvent, withCause } from '../../../src/core/analysis/nanCause';

const finding: Finding = {
  id: 'non-finite-gradient:global',
  kind: 'non-finite-gradient',
  severity: 'error',
  step: 3,
  stepRange: [3, 3],
  tensors: ['w'],
  layer: null,
  source: { file: '/p/train.py', line: 6, column: 7 },
  message: 'Non-finite gradients (NaN/Inf) from step 3.',
  evidence: { firstStep: 3 },
  remedies: [
    { id: 'guard-loss', title: 'Guard log/sqrt/division in the loss with a small epsilon' },
    { id: 'lower-lr', title: 'Lower the learning rate' },
  ],
};

describe('nanCause', () => {
  it('reads the locate EVENT and ignores other info events and malformed ones', () => {
    const ok = `${LOCATE_PREFIX}{"op":"log","phase":"forward","file":"/p/train.py","line":10,"column":13,"step":3}`;
    assert.deepEqual(parseLocateEvent(ok), { op: 'log', phase: 'forward', file: '/p/train.py', line: 10, column: 13, step: 3 });
    assert.equal(parseLocateEvent(`${LOCATE_PREFIX}{"op":"log"}`), null);
    assert.equal(parseLocateEvent(`${LOCATE_PREFIX}not json`), null);
    assert.equal(parseLocateEvent('detail tier skipped on 3 steps'), null);
    const events = [
      { type: 'event' as const, kind: 'info' as const, message: 'something else' },
      { type: 'event' as const, kind: 'warning' as const, message: ok },
      { type: 'event' as const, kind: 'info' as const, message: ok.replace('"line":10', '"line":11') },
    ];
    assert.equal(findNanCause(events)!.line, 11, 'only info events count');
    // A report without a line (TF.js under model.fit) names the operation only.
    const opOnly = [{ type: 'event' as const, kind: 'info' as const, message: `${LOCATE_PREFIX}{"op":"BatchMatMul","phase":"forward"}` }];
    assert.equal(findNanCause(opOnly), null);
    assert.deepEqual(findNanOp(opOnly), { op: 'BatchMatMul', phase: 'forward' });
  });

  it("reads PyTorch anomaly mode's forward traceback: innermost user frame", () => {
    const text = [
      '/usr/lib/python3/dist-packages/torch/autograd/__init__.py:197: UserWarning: Error detected in LogBackward0. Traceback of forward call that caused the error:',
      '  File "/usr/lib/python3.11/runpy.py", line 291, in run_path',
      '  File "/p/train.py", line 20, in <module>',
      '    main()',
      '  File "/p/train.py", line 12, in main',
      '    loss = -torch.log(p).mean()',
      '  File "/usr/lib/python3/dist-packages/torch/nn/modules/module.py", line 1501, in _call_impl',
      ' (Triggered internally at ../torch/csrc/autograd/python_anomaly_mode.cpp:114.)',
      "RuntimeError: Function 'LogBackward0' returned nan values in its 0th output.",
    ].join('\n');
    assert.deepEqual(parseAnomalyText(text), { op: 'LogBackward0', file: '/p/train.py', line: 12, column: 1, phase: 'anomaly' });
    assert.equal(findNanCause([], text)!.op, 'LogBackward0');
    assert.equal(parseAnomalyText('RuntimeError: something else'), null);
  });

  it('maps operations to the guard they need', () => {
    assert.equal(guardKindOf('log'), 'log');
    assert.equal(guardKindOf('LogBackward0'), 'log');
    assert.equal(guardKindOf('SqrtBackward0'), 'sqrt');
    assert.equal(guardKindOf('Sqrt'), 'sqrt');
    assert.equal(guardKindOf('truediv'), 'div');
    assert.equal(guardKindOf('RealDiv'), 'div');
    assert.equal(guardKindOf('DivBackward0'), 'div');
    assert.equal(guardKindOf('SigmoidBackward0'), 'other');
  });

  it('moves the finding to the cause, keeps the original site, puts the matching guard first', () => {
    const f = withCause(finding, { op: 'SqrtBackward0', phase: 'backward', file: '/p/train.py', line: 9, column: 12 });
    assert.deepEqual(f.cause, { op: 'SqrtBackward0', file: '/p/train.py', line: 9, column: 12 });
    assert.deepEqual(f.source, { file: '/p/train.py', line: 9, column: 12 });
    assert.equal(f.evidence.originalSource, '/p/train.py:6:7');
    assert.deepEqual(
      f.remedies.map((r) => r.id),
      ['guard-loss', 'lower-lr'],
    );
    assert.match(f.remedies[0].title, /Clamp the argument of the sqrt/);
    // An op with no matching guard keeps the detector's ranking.
    const g = withCause({ ...finding, remedies: [...finding.remedies].reverse() }, { op: 'SigmoidBackward0', phase: 'anomaly', file: '/p/t.py', line: 3, column: 1 });
    assert.deepEqual(
      g.remedies.map((r) => r.id),
      ['lower-lr', 'guard-loss'],
    );
    assert.equal(finding.source!.line, 6, 'the input finding is not mutated');
    // After growth (an explosion that overflowed), the layer stays the place; the op is evidence.
    const h = withCause({ ...finding, evidence: { cause: 'after-growth' } }, { op: 'pow', phase: 'forward', file: '/p/train.py', line: 28, column: 17 });
    assert.equal(h.source!.line, 6);
    assert.equal(h.cause!.line, 28);
    assert.equal(h.evidence.causeAt, '/p/train.py:28:17');
  });
});
