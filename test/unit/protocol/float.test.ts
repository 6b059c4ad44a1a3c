import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeFloat, encodeFloat, formatNumber, isWireFloat, WIRE_NAMES } from '../../../src/core/protocol/float';
import { fmt as cliFmt } from '../../../src/cli/summary';
import { fmt as hoverFmt } from '../../../src/features/diagnosisModel';
import { ev } from '../../../src/core/analysis/model';

const ABSENT = -1;
const MISSING = -2;

describe('the float codec (finite / NaN / ±Inf / absent / none)', () => {
  it('round-trips every value through JSON', () => {
    for (const v of [0, -0.5, 1e-30, 3.4e38, NaN, Infinity, -Infinity]) {
      const back = decodeFloat(JSON.parse(JSON.stringify(encodeFloat(v))) as ReturnType<typeof encodeFloat>, ABSENT, MISSING);
      assert.ok(Object.is(back, v) || (v === 0 && back === 0), `${v} → ${String(back)}`);
    }
    assert.equal(decodeFloat('absent', ABSENT, MISSING), ABSENT);
    assert.equal(decodeFloat(null, ABSENT, MISSING), MISSING);
  });

  it('accepts only its own encodings', () => {
    for (const w of [...WIRE_NAMES, null, 0, 1.5]) assert.ok(isWireFloat(w), String(w));
    for (const w of ['Infinity', 'nan', undefined, NaN, Infinity, '<img>', {}, []]) assert.ok(!isWireFloat(w), JSON.stringify(w) ?? 'undefined');
  });

  it('evidence carries non-finite values by the same names', () => {
    assert.equal(ev(NaN), 'NaN');
    assert.equal(ev(Infinity), 'Inf');
    assert.equal(ev(-Infinity), '-Inf');
  });
});

describe('formatNumber: one format for the CLI, the hover and the panel', () => {
  it('reads steps and counts whole, 3 significant digits otherwise, an exponent outside [1e-3, 1e5)', () => {
    const cases: [number | null | undefined, string][] = [
      [null, '–'],
      [undefined, '–'],
      [0, '0'],
      [3, '3'],
      [120, '120'],
      [99_999, '99999'],
      [100_000, '1.00e+5'],
      [1.5, '1.5'],
      [12.345, '12.3'],
      [0.0123456, '0.0123'],
      [0.000999, '9.99e-4'],
      [-2.5e-7, '-2.50e-7'],
      [12_345.6, '12300'],
      [NaN, 'NaN'],
      [Infinity, 'Inf'],
      [-Infinity, '-Inf'],
    ];
    for (const [v, want] of cases) assert.equal(formatNumber(v), want, String(v));
  });

  it('is the CLI’s and the hover’s formatter, and reads an evidence value the same as the number it encodes', () => {
    for (const v of [0.0123456, 1234.5, 3e-9, NaN, Infinity, 7]) {
      assert.equal(cliFmt(v), formatNumber(v));
      assert.equal(hoverFmt(v), formatNumber(v));
      assert.equal(formatNumber(ev(v)), formatNumber(Number(ev(v)) || v));
    }
  });
});
