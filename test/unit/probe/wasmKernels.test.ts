// The backprop kernels GradScope adds to the wasm backend, checked numerically against the cpu
// backend's gradients (which tfjs ships) on the real tfjs.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type * as tfTypes from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { conv2dFilterLoops, registerMissingWasmKernels } from '../../../src/probe/tfjs/wasmKernels';

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(a[i]));
  }
  return m / (s || 1);
}

async function gradsOn(backend: string, f: (...x: tfTypes.Tensor[]) => tfTypes.Tensor, inputs: tfTypes.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const gs = tf.grads(f)(inputs);
  const out = await Promise.all(gs.map((g) => g.data() as Promise<Float32Array>));
  tf.dispose(gs);
  return out;
}

describe('wasm backprop kernels', () => {
  let added: string[] = [];
  before(async () => {
    added = registerMissingWasmKernels(tf);
    await tf.setBackend('cpu');
  });

  it('registers only kernels wasm lacks, and the conv-net ones it needs', () => {
    assert.ok(added.includes('Conv2DBackpropFilter'), `added ${added.join(',')}`);
    for (const k of ['Conv2DBackpropInput', 'MaxPoolGrad', 'AvgPoolGrad']) {
      assert.ok(tf.getKernel(k, 'wasm'), `wasm ships ${k}`);
      assert.ok(!added.includes(k));
    }
    assert.deepEqual(registerMissingWasmKernels(tf), [], 'a second call registers nothing');
  });

  const cases = [
    { x: [2, 9, 9, 3], k: [3, 3, 3, 4], s: 1, p: 'same' },
    { x: [2, 9, 9, 3], k: [3, 3, 3, 4], s: 2, p: 'same' },
    { x: [2, 10, 7, 3], k: [3, 2, 3, 5], s: [2, 3], p: 'valid' },
    { x: [3, 12, 12, 4], k: [4, 4, 4, 6], s: 3, p: 'same' },
    {
      x: [1, 7, 7, 2],
      k: [2, 2, 2, 3],
      s: 1,
      p: [
        [0, 0],
        [1, 2],
        [2, 0],
        [0, 0],
      ],
    },
  ] as const;

  for (const c of cases) {
    it(`conv2d and depthwiseConv2d gradients match cpu: x ${c.x.join(',')} k ${c.k.join(',')} stride ${String(c.s)} pad ${JSON.stringify(c.p)}`, async () => {
      await tf.setBackend('cpu');
      const x = tf.randomNormal<tfTypes.Rank.R4>([...c.x], 0, 1, 'float32', 1);
      const k = tf.randomNormal<tfTypes.Rank.R4>([...c.k], 0, 1, 'float32', 2);
      const dk = tf.randomNormal<tfTypes.Rank.R4>([c.k[0], c.k[1], c.x[3], 2], 0, 1, 'float32', 3);
      const pad = c.p as 'same';
      const conv = (a: tfTypes.Tensor, b: tfTypes.Tensor) =>
        tf
          .conv2d(a as tfTypes.Tensor4D, b as tfTypes.Tensor4D, c.s as number, pad)
          .square()
          .sum();
      const [cx, ck] = await gradsOn('cpu', conv, [x, k]);
      const [wx, wk] = await gradsOn('wasm', conv, [x, k]);
      assert.ok(relErr(cx, wx) < 1e-5, `conv dx error ${relErr(cx, wx)}`);
      assert.ok(relErr(ck, wk) < 1e-5, `conv dW error ${relErr(ck, wk)}`);
      if (Array.isArray(c.p)) return; // depthwise takes no explicit padding
      const dw = (a: tfTypes.Tensor, b: tfTypes.Tensor) =>
        tf
          .depthwiseConv2d(a as tfTypes.Tensor4D, b as tfTypes.Tensor4D, c.s as number, pad)
          .square()
          .sum();
      const [cdx, cdk] = await gradsOn('cpu', dw, [x, dk]);
      const [wdx, wdk] = await gradsOn('wasm', dw, [x, dk]);
      assert.ok(relErr(cdx, wdx) < 1e-5, `depthwise dx error ${relErr(cdx, wdx)}`);
      assert.ok(relErr(cdk, wdk) < 1e-5, `depthwise dW error ${relErr(cdk, wdk)}`);
    });
  }

  it('the reference loops for Conv2DBackpropFilter (the fallback) match cpu', async () => {
    for (const c of cases) {
      await tf.setBackend('cpu');
      const x = tf.randomNormal<tfTypes.Rank.R4>([...c.x], 0, 1, 'float32', 5);
      const k = tf.randomNormal<tfTypes.Rank.R4>([...c.k], 0, 1, 'float32', 6);
      const pad = c.p as 'same';
      const dy = tf.randomNormal(tf.conv2d(x, k, c.s as number, pad).shape, 0, 1, 'float32', 7);
      // d/dk Σ conv(x, k)·dy is the filter gradient for the output gradient dy.
      const want = await tf
        .grad((kk: tfTypes.Tensor) =>
          tf
            .conv2d(x, kk as tfTypes.Tensor4D, c.s as number, pad)
            .mul(dy)
            .sum(),
        )(k)
        .data();
      await tf.setBackend('wasm');
      const [xw, dyw] = [tf.tensor(await x.data(), x.shape), tf.tensor(await dy.data(), dy.shape)];
      const info = tf.backend_util.computeConv2DInfo(x.shape, [...c.k] as [number, number, number, number], c.s as number, 1, pad, undefined, false, 'channelsLast');
      const backend = tf.backend() as unknown as Parameters<typeof conv2dFilterLoops>[0];
      const out = conv2dFilterLoops(backend, xw, dyw, info);
      const got = backend.readSync(out.dataId) as Float32Array;
      backend.disposeData(out.dataId);
      tf.dispose([xw, dyw]);
      assert.deepEqual(out.shape, [...c.k]);
      assert.ok(relErr(want, got) < 1e-5, `loops dW error ${relErr(want, got)} for ${JSON.stringify(c)}`);
    }
  });

  it('gather (embedding) gradient, via UnsortedSegmentSum, matches cpu', async () => {
    await tf.setBackend('cpu');
    const emb = tf.randomNormal([10, 4], 0, 1, 'float32', 4);
    const ids = tf.tensor1d([1, 3, 3, 9, 0, 1], 'int32');
    const f = (e: tfTypes.Tensor) => tf.gather(e, ids).square().sum();
    const [c] = await gradsOn('cpu', f, [emb]);
    const [w] = await gradsOn('wasm', f, [emb]);
    assert.ok(relErr(c, w) < 1e-6, `error ${relErr(c, w)}`);
  });

  it('frees its intermediates', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal<tfTypes.Rank.R4>([2, 8, 8, 3]);
    const k = tf.randomNormal<tfTypes.Rank.R4>([3, 3, 3, 4]);
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const before = backend.numDataIds();
    for (let i = 0; i < 3; i++) tf.tidy(() => void tf.grads((a: tfTypes.Tensor, b: tfTypes.Tensor) => tf.conv2d(a as tfTypes.Tensor4D, b as tfTypes.Tensor4D, 2, 'same').sum())([x, k]));
    assert.equal(backend.numDataIds(), before);
  });
});
