// Backprop kernels the wasm backend does not ship (4.22: Conv2DBackpropFilter, the depthwise
// backprop kernels, UnsortedSegmentSum — the gradient of gather, so of Embedding layers), composed
// from kernels it has or written as plain loops, and registered for 'wasm' only where missing.
// Conv2DBackpropInput, MaxPoolGrad, AvgPoolGrad and the 3-D variants are shipped by wasm.
//
// A kernel here calls other wasm kernels' functions directly (never tf ops: a kernel runs inside
// the engine, whose tape and scopes must not see our intermediates) and frees every intermediate
// with backend.disposeData.
import type * as tfTypes from '@tensorflow/tfjs';

type Tf = typeof tfTypes;

interface TensorInfo {
  dataId: object;
  shape: number[];
  dtype: string;
}
interface WasmBackend {
  readSync(dataId: object): ArrayLike<number>;
  makeOutput(shape: number[], dtype: string, memoryOffset?: number, values?: ArrayLike<number>): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}
interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: WasmBackend;
  attrs: Record<string, unknown>;
}
type Pad = 'valid' | 'same' | number | number[][];
interface ConvInfo {
  batchSize: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  filterHeight: number;
  filterWidth: number;
  padInfo: { top: number; left: number; bottom: number; right: number; type: string };
  dataFormat: string;
}

export function registerMissingWasmKernels(tf: Tf): string[] {
  const registered: string[] = [];
  const bu = tf.backend_util as unknown as {
    computeConv2DInfo(
      inShape: number[],
      filterShape: number[],
      strides: number | [number, number],
      dilations: number | [number, number],
      pad: Pad,
      roundingMode?: string,
      depthwise?: boolean,
      dataFormat?: string,
    ): ConvInfo;
    convertConv2DDataFormat(f: string): string;
  };
  const kernel = (name: string): ((a: KernelArgs) => TensorInfo) => {
    const k = tf.getKernel(name, 'wasm');
    if (!k) throw new Error(`the wasm backend has no ${name} kernel`);
    return k.kernelFunc as unknown as (a: KernelArgs) => TensorInfo;
  };
  const has = (name: string): boolean => tf.getKernel(name, 'wasm') != null;
  const register = (kernelName: string, kernelFunc: (a: KernelArgs) => TensorInfo): void => {
    if (has(kernelName)) return; // a future tfjs-backend-wasm ships it: use theirs
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tfTypes.KernelFunc });
    registered.push(kernelName);
  };

  register('Conv2DBackpropFilter', (args) => {
    const { backend } = args;
    let { x, dy } = args.inputs;
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as {
      strides: number | [number, number];
      pad: Pad;
      dataFormat: string;
      dimRoundingMode?: string;
      filterShape: number[];
    };
    const temps: TensorInfo[] = [];
    const run = (name: string, inputs: Record<string, TensorInfo>, attrs: Record<string, unknown>, keep = false): TensorInfo => {
      const out = kernel(name)({ inputs, backend, attrs });
      if (!keep) temps.push(out);
      return out;
    };
    try {
      if (bu.convertConv2DDataFormat(dataFormat ?? 'NHWC') === 'channelsFirst') {
        x = run('Transpose', { x }, { perm: [0, 2, 3, 1] });
        dy = run('Transpose', { x: dy }, { perm: [0, 2, 3, 1] });
      }
      const info = bu.computeConv2DInfo(x.shape, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const { padInfo, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
      const outH = info.inHeight + padInfo.top + padInfo.bottom - (info.outHeight - 1) * sh;
      const outW = info.inWidth + padInfo.left + padInfo.right - (info.outWidth - 1) * sw;
      if (outH < kh || outW < kw || padInfo.top < 0 || padInfo.left < 0) {
        return conv2dFilterLoops(backend, x, dy, info);
      }
      // dW[i,j,c,o] = Σ_b,p,q x[b, p·s + i − pad, q·s + j − pad, c] · dy[b, p, q, o]: a convolution
      // of x (channels as the batch, the batch as channels) with dy as the filter, dilated by the
      // forward stride. Its output starts with the kh × kw taps we want.
      const xt = run('Transpose', { x }, { perm: [3, 1, 2, 0] }); // [C, H, W, B]
      const dyt = run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] }); // [OH, OW, B, O]
      const conv = run(
        'Conv2D',
        { x: xt, filter: dyt },
        {
          strides: [1, 1],
          pad: [
            [0, 0],
            [padInfo.top, padInfo.bottom],
            [padInfo.left, padInfo.right],
            [0, 0],
          ],
          dataFormat: 'NHWC',
          dilations: [sh, sw],
          dimRoundingMode: undefined,
        },
      ); // [C, outH, outW, O]
      let cut = conv;
      if (conv.shape[1] !== kh || conv.shape[2] !== kw) {
        cut = run('Slice', { x: conv }, { begin: [0, 0, 0, 0], size: [conv.shape[0], kh, kw, conv.shape[3]] });
      }
      return run('Transpose', { x: cut }, { perm: [1, 2, 0, 3] }, true); // [kh, kw, C, O]
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  });

  register('DepthwiseConv2dNativeBackpropFilter', (args) => {
    const { x, dy } = args.inputs;
    const { strides, dilations, pad, dimRoundingMode, filterShape } = args.attrs as {
      strides: number | [number, number];
      dilations: number | [number, number];
      pad: Pad;
      dimRoundingMode?: string;
      filterShape: number[];
    };
    const info = bu.computeConv2DInfo(x.shape, filterShape, strides, dilations ?? 1, pad, dimRoundingMode, true);
    const xs = args.backend.readSync(x.dataId);
    const g = args.backend.readSync(dy.dataId);
    const { inChannels: C, outChannels: CO } = info;
    const M = CO / C;
    const [kh, kw] = [filterShape[0], filterShape[1]];
    const out = new Float32Array(kh * kw * C * M);
    forEachTap(info, kh, kw, (xo, go, tap) => {
      const fo = tap * C * M;
      for (let c = 0; c < C; c++) {
        const xv = xs[xo + c];
        for (let m = 0; m < M; m++) out[fo + c * M + m] += xv * g[go + c * M + m];
      }
    });
    return args.backend.makeOutput([kh, kw, C, M], 'float32', undefined, out);
  });

  register('DepthwiseConv2dNativeBackpropInput', (args) => {
    const { dy, filter } = args.inputs;
    const { strides, dilations, pad, dimRoundingMode, inputShape } = args.attrs as {
      strides: number | [number, number];
      dilations: number | [number, number];
      pad: Pad;
      dimRoundingMode?: string;
      inputShape: number[];
    };
    const info = bu.computeConv2DInfo(inputShape, filter.shape, strides, dilations ?? 1, pad, dimRoundingMode, true);
    const f = args.backend.readSync(filter.dataId);
    const g = args.backend.readSync(dy.dataId);
    const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outChannels: CO } = info;
    const M = CO / C;
    const [kh, kw] = [filter.shape[0], filter.shape[1]];
    const out = new Float32Array(B * H * W * C);
    forEachTap(info, kh, kw, (xo, go, tap) => {
      const fo = tap * C * M;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let m = 0; m < M; m++) acc += g[go + c * M + m] * f[fo + c * M + m];
        out[xo + c] += acc;
      }
    });
    return args.backend.makeOutput([B, H, W, C], 'float32', undefined, out);
  });

  register('UnsortedSegmentSum', (args) => {
    const { backend } = args;
    const { x, segmentIds } = args.inputs;
    const numSegments = Number(args.attrs.numSegments);
    const n = x.shape[0];
    const rest = x.shape.slice(1);
    const inner = rest.reduce((a, b) => a * b, 1);
    if (segmentIds.shape.length !== 1 || segmentIds.shape[0] !== n || x.dtype !== 'float32') {
      // Not the form gather's gradient produces: plain loop.
      const xs = backend.readSync(x.dataId);
      const ids = backend.readSync(segmentIds.dataId);
      const rows = ids.length;
      const per = xs.length / rows;
      const out = new Float32Array(numSegments * per);
      for (let r = 0; r < rows; r++) {
        const s = ids[r];
        if (s < 0 || s >= numSegments) continue;
        for (let k = 0; k < per; k++) out[s * per + k] += xs[r * per + k];
      }
      return backend.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype, undefined, out);
    }
    // out = onehot(ids)ᵀ · x: one matrix product (ids out of range give an all-zero row: dropped, as in TF).
    const temps: TensorInfo[] = [];
    try {
      // wasm's OneHot writes int32 whatever dtype it is asked for: make int32, then cast.
      const ohInt = kernel('OneHot')({ inputs: { indices: segmentIds }, backend, attrs: { depth: numSegments, onValue: 1, offValue: 0, dtype: 'int32' } });
      temps.push(ohInt);
      const oh = kernel('Cast')({ inputs: { x: ohInt }, backend, attrs: { dtype: 'float32' } });
      temps.push(oh);
      const a = kernel('Reshape')({ inputs: { x: oh }, backend, attrs: { shape: [1, n, numSegments] } });
      temps.push(a);
      const b = kernel('Reshape')({ inputs: { x }, backend, attrs: { shape: [1, n, inner] } });
      temps.push(b);
      const prod = kernel('BatchMatMul')({ inputs: { a, b }, backend, attrs: { transposeA: true, transposeB: false } });
      temps.push(prod);
      return kernel('Reshape')({ inputs: { x: prod }, backend, attrs: { shape: [numSegments, ...rest] } });
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  });

  return registered;
}

/** Reference loops for Conv2DBackpropFilter (NHWC), used where the composition does not apply (exported for its test). */
export function conv2dFilterLoops(backend: WasmBackend, x: TensorInfo, dy: TensorInfo, info: ConvInfo): TensorInfo {
  const xs = backend.readSync(x.dataId);
  const g = backend.readSync(dy.dataId);
  const { inChannels: C, outChannels: O, filterHeight: kh, filterWidth: kw } = info;
  const out = new Float32Array(kh * kw * C * O);
  forEachTap(info, kh, kw, (xo, go, tap) => {
    const fo = tap * C * O;
    for (let c = 0; c < C; c++) {
      const xv = xs[xo + c];
      for (let o = 0; o < O; o++) out[fo + c * O + o] += xv * g[go + o];
    }
  });
  return backend.makeOutput([kh, kw, C, O], 'float32', undefined, out);
}

/**
 * Every (input pixel, output pixel, filter tap) a 2-D convolution pairs (NHWC; stride, dilation and
 * padding applied, taps that fall in the padding skipped): `xo` is the input pixel's offset (times
 * the input channels), `go` the output pixel's (times the output channels), `tap` the filter
 * position i·kw + j. The kernels above differ only in what they do per pair.
 */
function forEachTap(info: ConvInfo, kh: number, kw: number, visit: (xo: number, go: number, tap: number) => void): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CO } = info;
  for (let b = 0; b < B; b++)
    for (let p = 0; p < OH; p++)
      for (let i = 0; i < kh; i++) {
        const ih = p * info.strideHeight + i * info.dilationHeight - info.padInfo.top;
        if (ih < 0 || ih >= H) continue;
        for (let q = 0; q < OW; q++)
          for (let j = 0; j < kw; j++) {
            const iw = q * info.strideWidth + j * info.dilationWidth - info.padInfo.left;
            if (iw < 0 || iw >= W) continue;
            visit(((b * H + ih) * W + iw) * C, ((b * OH + p) * OW + q) * CO, i * kw + j);
          }
      }
}
