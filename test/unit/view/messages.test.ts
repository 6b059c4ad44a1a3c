import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_TEXT } from '../../../src/core/text';
import { parseWebviewMessage } from '../../../src/core/view/messages';

describe('messages from the webview are validated', () => {
  it('accepts each declared message exactly', () => {
    assert.deepEqual(parseWebviewMessage({ type: 'ready' }), { type: 'ready' });
    assert.deepEqual(parseWebviewMessage({ type: 'selectTensor', tensorId: 3, step: null }), { type: 'selectTensor', tensorId: 3, step: null });
    assert.deepEqual(parseWebviewMessage({ type: 'selectTensor', tensorId: 0, step: 12 }), { type: 'selectTensor', tensorId: 0, step: 12 });
    assert.deepEqual(parseWebviewMessage({ type: 'setHeatmapMetric', metric: 'zeroFrac' }), { type: 'setHeatmapMetric', metric: 'zeroFrac' });
    assert.deepEqual(parseWebviewMessage({ type: 'applyRemedy', findingId: 'f', remedyId: 'lower-lr' }), { type: 'applyRemedy', findingId: 'f', remedyId: 'lower-lr' });
    assert.deepEqual(parseWebviewMessage({ type: 'compareRun', runFile: null }), { type: 'compareRun', runFile: null });
    assert.deepEqual(parseWebviewMessage({ type: 'setOptimizer', optimizer: 1 }), { type: 'setOptimizer', optimizer: 1 });
    assert.deepEqual(parseWebviewMessage({ type: 'setOptimizer', optimizer: null }), { type: 'setOptimizer', optimizer: null });
  });

  it('drops extra fields: only declared fields reach the host', () => {
    assert.deepEqual(parseWebviewMessage({ type: 'stop', command: 'rm -rf /' }), { type: 'stop' });
  });

  it('rejects unknown types, wrong shapes and prototype tricks', () => {
    const bad: unknown[] = [
      null,
      undefined,
      42,
      'ready',
      [],
      ['ready'],
      {},
      { type: 'eval', code: '1' },
      { type: 'READY' },
      { type: 'selectTensor', tensorId: -1, step: null },
      { type: 'selectTensor', tensorId: 1.5, step: null },
      { type: 'selectTensor', tensorId: '1', step: null },
      { type: 'selectTensor', tensorId: 1 },
      { type: 'selectTensor', tensorId: 2 ** 40, step: null },
      { type: 'setHeatmapMetric', metric: 'constructor' },
      { type: 'setHeatmapMetric', metric: '__proto__' },
      { type: 'goToLayer', findingId: 7 },
      { type: 'setOptimizer' },
      { type: 'setOptimizer', optimizer: -1 },
      { type: 'setOptimizer', optimizer: 'opt_d' },
      { type: 'applyRemedy', findingId: 'f' },
      { type: 'openRun', runFile: 'x'.repeat(MAX_TEXT + 1) },
      { type: 'openRun', runFile: { toString: () => '/etc/passwd' } },
      JSON.parse('{"__proto__": {"type": "ready"}}'),
      Object.create({ type: 'stop' }),
    ];
    for (const m of bad) assert.equal(parseWebviewMessage(m), null, JSON.stringify(m) ?? String(m));
  });

  it('a flood of messages is handled one by one without state', () => {
    let accepted = 0;
    for (let i = 0; i < 100_000; i++) if (parseWebviewMessage(i % 2 ? { type: 'ready' } : { type: 'nope' })) accepted++;
    assert.equal(accepted, 50_000);
  });
});
