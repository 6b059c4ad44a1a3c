// Gathering a step's tensors into one float32 buffer for the stats worker, on the training thread.
//
// One buffer per step (not one per tensor) because postMessage's cost grows with the number of
// transferred buffers: on a 300-tensor model, 600 transfers a step cost about 3 ms, more than the
// statistics. On wasm the values are copied straight out of the wasm heap (dataSync would first make
// a private copy of each tensor); elsewhere dataSync's array is copied. The buffers come back from
// the worker with its reply and are reused, so a step allocates nothing big.
import type * as tfTypes from '@tensorflow/tfjs';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

/** Returns a tensor's values: a view that is only valid until the next tfjs call, or a fresh array. */
export type Reader = (t: Tensor) => ArrayLike<number>;

interface WasmBackendLike {
  dataIdMap: { get(dataId: object): { memoryOffset?: number } | undefined };
  wasm: { HEAPU8: Uint8Array };
}

/** A reader for `backendName`: views into the wasm heap where it can, dataSync otherwise. */
export function makeReader(tf: Tf, backendName: string): Reader {
  const plain: Reader = (t) => t.dataSync();
  if (backendName !== 'wasm') return plain;
  let backend: WasmBackendLike;
  let tensorInfo: WeakMap<object, { backend: unknown }>;
  try {
    backend = tf.engine().findBackend('wasm') as unknown as WasmBackendLike;
    tensorInfo = (tf.engine() as unknown as { state: { tensorInfo: WeakMap<object, { backend: unknown }> } }).state.tensorInfo;
    if (!backend?.dataIdMap || !backend.wasm?.HEAPU8 || !tensorInfo) return plain;
  } catch {
    return plain;
  }
  return (t) => {
    if (t.dtype === 'float32' && tensorInfo.get(t.dataId)?.backend === backend) {
      const off = backend.dataIdMap.get(t.dataId)?.memoryOffset;
      // (memoryOffset 0 would be a null pointer: an empty tensor, or a layout we do not know.)
      if (typeof off === 'number' && off > 0 && off % 4 === 0) return new Float32Array(backend.wasm.HEAPU8.buffer, off, t.size);
    }
    return t.dataSync();
  };
}

/** Float32 buffers by exact length, handed back by the worker after use. */
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private held = 0;
  constructor(private readonly maxBytes = 256 * 1024 * 1024) {}

  take(length: number): Float32Array {
    const buf = this.free.get(length * 4)?.pop();
    if (buf) {
      this.held -= buf.byteLength;
      return new Float32Array(buf);
    }
    return new Float32Array(length);
  }

  give(buf: ArrayBuffer): void {
    if (buf.byteLength === 0 || this.held + buf.byteLength > this.maxBytes) return;
    const list = this.free.get(buf.byteLength) ?? [];
    if (list.length >= 4) return;
    list.push(buf);
    this.free.set(buf.byteLength, list);
    this.held += buf.byteLength;
  }
}

export interface Packed {
  data: Float32Array;
  /** Element count of each tensor, in order; tensor i is data[Σ sizes[<i] …]. */
  sizes: number[];
}

/** Copies the tensors' values, in order, into one buffer (from the pool). */
export function pack(read: Reader, tensors: readonly Tensor[], pool: BufferPool): Packed {
  // All sources first (reads do not allocate in the wasm heap, so the views stay valid), then one
  // buffer of the total length.
  const srcs = tensors.map(read);
  let total = 0;
  for (const s of srcs) total += s.length;
  const data = pool.take(total);
  const sizes: number[] = [];
  let off = 0;
  for (const s of srcs) {
    data.set(s, off);
    off += s.length;
    sizes.push(s.length);
  }
  return { data, sizes };
}
