// Synthetic runs for the store tests, built and decoded with the real codec.
import { decodeAll, encodeMessage } from '../../../src/core/protocol/codec';
import { STAT_NAMES, type DetailMsg, type HelloMsg, type Message, type StatName, type StepMsg, type TensorInfo } from '../../../src/core/protocol/messages';

/** Encodes a message and decodes it again, as the host would receive it. */
export function wire<M extends Message>(m: M, seq = 0): { raw: Uint8Array; msg: M } {
  const raw = encodeMessage(m, seq);
  const { messages, error } = decodeAll(raw);
  if (error || messages.length !== 1) throw new Error(`codec round trip failed: ${error?.message}`);
  return { raw, msg: messages[0].message as M };
}

/** A torch probe's HELLO (one process, on the CPU), with `extra` fields (marksNoLoss, …). */
export function helloMsg(extra: Partial<HelloMsg> = {}): HelloMsg {
  return { type: 'hello', probeVersion: '0.1.0', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: '/x.py', detailEvery: 10, ...extra };
}

export type ValueFn = (ordinal: number, tensor: number, stat: StatName) => number;

/** A deterministic, tensor- and step-dependent value; counts are 0. */
export const defaultValue: ValueFn = (o, t, s) => {
  if (s === 'nanCount' || s === 'infCount') return 0;
  if (s === 'hasGrad') return 1;
  const base = s === 'norm' ? 1 : s === 'maxAbs' ? 0.1 : s === 'paramNorm' ? 10 : 0.01;
  return base * (1 + t) * (1 + 0.5 * Math.sin(o * 0.37 + t));
};

export function stepMsg(
  step: number,
  nTensors: number,
  ordinal = step,
  value: ValueFn = defaultValue,
  stats: readonly StatName[] = STAT_NAMES,
  loss: number | null = 1 / (1 + ordinal),
): StepMsg {
  return {
    type: 'step',
    optimizer: 0,
    step,
    loss,
    wallMs: ordinal * 10,
    nTensors,
    stats: [...stats],
    columns: stats.map((s) => Float64Array.from({ length: nTensors }, (_, t) => value(ordinal, t, s))),
  };
}

export function tensorInfos(from: number, to: number): TensorInfo[] {
  const out: TensorInfo[] = [];
  for (let id = from; id < to; id++) {
    out.push({ id, name: `dense_${id}/kernel`, layer: `dense_${id}`, layerType: 'Dense', shape: [4, 4], source: { file: '/tmp/train.js', line: 10 + id, column: 3 } });
  }
  return out;
}

export function detailMsg(step: number, tensorId: number, thumb = true): DetailMsg {
  return {
    type: 'detail',
    step,
    tensorId,
    mean: 0.5,
    std: 0.25,
    zeroFrac: 0.125,
    histLo: -20,
    histHi: 12,
    hist: Uint32Array.from({ length: 32 }, (_, i) => (i + step) % 7),
    thumbRows: thumb ? 4 : 0,
    thumbCols: thumb ? 4 : 0,
    thumb: thumb ? Float32Array.from({ length: 16 }, (_, i) => i / 16) : new Float32Array(0),
  };
}

export const f32 = Math.fround;
