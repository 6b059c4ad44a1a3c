// Packing a step's tensors into one buffer for the stats worker: the wasm reader's heap views give
// the tensors' values, pack concatenates them, and pooled buffers are reused by length.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { BufferPool, makeReader, pack } from '../../../src/probe/tfjs/packing';

describe('packing tensors for the stats worker', () => {
  before(async () => {
    await tf.setBackend('wasm');
  });

  it('wasm: reads the heap in place, and packs float32 and other dtypes in order', () => {
    const a = tf.tensor([1, 2, 3, 4], [2, 2]);
    const b = tf.variable(tf.tensor([5, -6, 7]));
    const c = tf.tensor([8, 9], [2], 'int32');
    const read = makeReader(tf, 'wasm');
    const va = read(a) as Float32Array;
    assert.ok(va instanceof Float32Array);
    assert.equal(va.buffer, (tf.engine().findBackend('wasm') as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer, 'a view of the wasm heap');
    const pool = new BufferPool();
    const p = pack(read, [a, b, c], pool);
    assert.deepEqual([...p.data], [1, 2, 3, 4, 5, -6, 7, 8, 9]);
    assert.deepEqual(p.sizes, [4, 3, 2]);
    // A variable after an update: its new values.
    b.assign(tf.tensor([0, 1, 0]));
    assert.deepEqual([...pack(read, [b], pool).data], [0, 1, 0]);
    tf.dispose([a, b, c]);
  });

  it('other backends read through dataSync', async () => {
    await tf.setBackend('cpu');
    const a = tf.tensor([1, 2]);
    assert.deepEqual([...pack(makeReader(tf, 'cpu'), [a], new BufferPool()).data], [1, 2]);
    a.dispose();
    await tf.setBackend('wasm');
  });

  it('the pool hands back a buffer of the same length, and makes a new one otherwise', () => {
    const pool = new BufferPool();
    const x = pool.take(8);
    pool.give(x.buffer as ArrayBuffer);
    const y = pool.take(8);
    assert.equal(y.buffer, x.buffer);
    assert.notEqual(pool.take(8).buffer, x.buffer, 'taken already');
    assert.equal(pool.take(4).length, 4);
  });
});
