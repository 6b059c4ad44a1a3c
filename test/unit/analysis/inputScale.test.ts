// inputScale.ts: `normalize-inputs` leads an explosion's remedies when the probe saw large inputs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Finding, RemedyId } from '../../../src/core/analysis/finding';
import { adjustForInputScale, INPUT_SCALE, inputScaleOf } from '../../../src/core/analysis/inputScale';
import { remedies } from '../../../src/core/analysis/model';
import type { EventMsg } from '../../../src/core/protocol/messages';

const finding = (kind: Finding['kind'], ids: RemedyId[]): Finding => ({
  id: kind,
  kind,
  severity: 'error',
  step: 5,
  stepRange: [0, 5],
  tensors: [],
  layer: null,
  source: null,
  message: 'The gradient norm grew.',
  evidence: { growth: 1e4 },
  remedies: remedies(ids, 'torch'),
});
const ev = (value: number, max: number, step: number, tensorId?: number): EventMsg => ({
  type: 'event',
  kind: 'input-scale',
  message: '',
  value,
  max,
  step,
  ...(tensorId === undefined ? {} : { tensorId }),
});

describe('input scale', () => {
  it('reads the largest RMS and max |x| the probe reported', () => {
    assert.equal(inputScaleOf([]), null);
    assert.equal(inputScaleOf([{ type: 'event', kind: 'clip', message: '', value: 5 }]), null);
    const s = inputScaleOf([ev(500, 990, 0), ev(577, 999, 1, 0), ev(560, 1000, 50, 0)]);
    assert.deepEqual(s, { rms: 577, maxAbs: 1000, step: 1, tensorId: 0 });
  });

  it('puts normalize-inputs first on an explosion with large inputs, with the evidence', () => {
    const f = adjustForInputScale(finding('exploding-gradient', ['clip-global-norm', 'lower-lr']), { rms: 577, maxAbs: 1000, step: 0, tensorId: 0 }, 'torch');
    assert.deepEqual(
      f.remedies.map((r) => r.id),
      ['normalize-inputs', 'clip-global-norm', 'lower-lr'],
    );
    assert.equal(f.evidence.inputRms, 577);
    assert.equal(f.evidence.inputMaxAbs, 1000);
    assert.equal(f.evidence.growth, 1e4, 'the detector evidence stays');
    assert.match(f.message, /not normalised \(first layer's input: RMS 577, max \|x\| 1000\)/);
    assert.match(f.remedies[0].title, /x\.std\(0\)/, 'the torch title');
  });

  it('leaves unit-scale inputs, loss-made NaN and other kinds alone', () => {
    const e = finding('exploding-gradient', ['clip-global-norm']);
    const small = { rms: INPUT_SCALE.largeRms * 0.9, maxAbs: 30, step: 0, tensorId: 0 };
    assert.equal(adjustForInputScale(e, small, 'torch'), e);
    assert.equal(adjustForInputScale(e, null, 'torch'), e);
    const big = { rms: 577, maxAbs: 1000, step: 0, tensorId: 0 };
    const loss = finding('non-finite-gradient', ['guard-loss', 'lower-lr']);
    assert.equal(adjustForInputScale(loss, big, 'torch'), loss);
    const grown = finding('non-finite-gradient', ['clip-global-norm', 'lower-lr']);
    assert.equal(adjustForInputScale(grown, big, 'tfjs').remedies[0].id, 'normalize-inputs');
    const dead = finding('dead-units', ['he-init']);
    assert.equal(adjustForInputScale(dead, big, 'torch'), dead);
  });
});
