// A synthetic torch 2.x run with absent gradients, encoded and decoded with the real codec: a frozen
// input layer (never a gradient) and a head used on even steps only (hasGrad 0 on odd steps).
import type { Message, StatName, TensorInfo } from '../../../src/core/protocol/messages';
import { RunStore } from '../../../src/core/store/runStore';
import { wire } from '../store/helpers';

const STATS: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm', 'hasGrad'];
// [name, layer, shape]; `frozen` (input side) never has a gradient, `head` only on even steps.
export const ABSENT_RUN_PARAMS: [string, string, number[]][] = [
  ['frozen.weight', 'frozen', [16, 8]],
  ['l1.weight', 'l1', [32, 16]],
  ['l1.bias', 'l1', [32]],
  ['l2.weight', 'l2', [32, 32]],
  ['l2.bias', 'l2', [32]],
  ['head.weight', 'head', [4, 32]],
  ['head.bias', 'head', [4]],
];

export function absentRunTensors(): TensorInfo[] {
  return ABSENT_RUN_PARAMS.map(([name, layer, shape], id) => ({ id, name, layer, layerType: 'Linear', shape, source: { file: '/t/train.py', line: 10 + id, column: 5 } }));
}

export interface AbsentRunOptions {
  steps: number;
  /** [step, tensor id]: a real NaN gradient there. */
  nanAt?: [number, number];
  /** Two optimizers: `opt` (the body) steps on odd steps, `opt_head` (id 1, the head) on even ones. */
  twoOptimizers?: boolean;
}

export function absentRunMessages(o: AbsentRunOptions): Message[] {
  const out: Message[] = [];
  const store = { ingest: (m: Message): void => void out.push(m) };
  store.ingest(wire({ type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'cpu', backendReason: '', pid: 1, rank: 0, script: '/t/train.py', detailEvery: 0 }).msg);
  store.ingest(wire({ type: 'tensors', tensors: absentRunTensors() }).msg);
  if (o.twoOptimizers) {
    store.ingest(wire({ type: 'optimizer', id: 0, name: 'opt', className: 'AdamW', mode: 'optimizer', tensorIds: [0, 1, 2, 3, 4] }).msg);
    store.ingest(wire({ type: 'optimizer', id: 1, name: 'opt_head', className: 'SGD', mode: 'optimizer', tensorIds: [5, 6] }).msg);
  } else store.ingest(wire({ type: 'optimizer', id: 0, name: 'opt', className: 'AdamW', mode: 'optimizer', tensorIds: ABSENT_RUN_PARAMS.map((_, i) => i) }).msg);
  const n = ABSENT_RUN_PARAMS.length;
  for (let step = 0; step < o.steps; step++) {
    const cols = STATS.map(() => new Float64Array(n));
    for (let t = 0; t < n; t++) {
      const absent = t === 0 || (t >= 5 && step % 2 === 1);
      const nan = o.nanAt && o.nanAt[0] === step && o.nanAt[1] === t;
      // A healthy run: norms of one order of magnitude across layers, slowly decreasing, small updates.
      const g = (0.5 + 0.1 * t) * (1 + 0.2 * Math.sin(step * 0.7 + t)) * (1 - step / (4 * o.steps));
      const p = 4 + t;
      const vals: Record<StatName, number> = {
        norm: g,
        maxAbs: g / 4,
        nanCount: nan ? 3 : 0,
        infCount: 0,
        paramNorm: p,
        updateNorm: p * 2e-3,
        hasGrad: 1,
      };
      STATS.forEach((s, k) => {
        cols[k][t] = absent ? (s === 'hasGrad' ? 0 : NaN) : vals[s];
      });
    }
    store.ingest(wire({ type: 'step', step, optimizer: o.twoOptimizers && step % 2 === 0 ? 1 : 0, loss: 2 / (1 + step / 50), wallMs: step, stats: STATS, columns: cols, nTensors: n }).msg);
  }
  store.ingest(wire({ type: 'end', reason: 'completed', steps: o.steps }).msg);
  return out;
}

export function absentRun(o: AbsentRunOptions): RunStore {
  const store = new RunStore();
  for (const m of absentRunMessages(o)) store.ingest(m);
  return store;
}
