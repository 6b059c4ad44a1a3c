import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DisposableStore } from '../../../src/core/util/disposableStore';

/** A disposable that records its name in `log` when disposed (and throws if told to). */
function item(log: string[], name: string, fail = false): { dispose(): void } {
  return {
    dispose: () => {
      log.push(name);
      if (fail) throw new Error(`${name} failed`);
    },
  };
}

describe('DisposableStore', () => {
  it('disposes in reverse order of add(), once', () => {
    const log: string[] = [];
    const s = new DisposableStore();
    const a = item(log, 'a');
    assert.equal(s.add(a), a, 'add returns what it was given');
    s.add(item(log, 'b'));
    s.add(item(log, 'c'));
    s.dispose();
    assert.deepEqual(log, ['c', 'b', 'a']);
    assert.equal(s.isDisposed, true);
    s.dispose();
    assert.deepEqual(log, ['c', 'b', 'a'], 'a second dispose() does nothing');
  });

  it('disposes at once what is added after dispose()', () => {
    const log: string[] = [];
    const s = new DisposableStore();
    s.dispose();
    s.add(item(log, 'late'));
    assert.deepEqual(log, ['late']);
    s.dispose();
    assert.deepEqual(log, ['late'], 'and not again');
  });

  it('clear() disposes what it holds and stays usable', () => {
    const log: string[] = [];
    const s = new DisposableStore();
    s.add(item(log, 'a'));
    s.add(item(log, 'b'));
    s.clear();
    assert.deepEqual(log, ['b', 'a']);
    assert.equal(s.isDisposed, false);
    s.add(item(log, 'c'));
    assert.deepEqual(log, ['b', 'a'], 'an add after clear() is held, not disposed');
    s.clear();
    s.clear();
    assert.deepEqual(log, ['b', 'a', 'c'], 'each item disposed once');
  });

  it('one that throws does not stop the others; its error is rethrown after all are disposed', () => {
    const log: string[] = [];
    const s = new DisposableStore();
    s.add(item(log, 'a'));
    s.add(item(log, 'b', true));
    s.add(item(log, 'c'));
    assert.throws(() => s.dispose(), /b failed/);
    assert.deepEqual(log, ['c', 'b', 'a']);
  });

  it('several that throw: an AggregateError with each error', () => {
    const log: string[] = [];
    const s = new DisposableStore();
    s.add(item(log, 'a', true));
    s.add(item(log, 'b', true));
    assert.throws(
      () => s.dispose(),
      (e: unknown) => e instanceof AggregateError && e.errors.map((x: Error) => x.message).join() === 'b failed,a failed',
    );
    assert.deepEqual(log, ['b', 'a']);
  });

  it('with onError, errors go there instead and dispose() returns', () => {
    const log: string[] = [];
    const seen: string[] = [];
    const s = new DisposableStore((e) => seen.push((e as Error).message));
    s.add(item(log, 'a', true));
    s.add(item(log, 'b'));
    s.dispose();
    assert.deepEqual(log, ['b', 'a']);
    assert.deepEqual(seen, ['a failed']);
  });
});
