// Locate mode (GRADSCOPE_LOCATE_NAN=1): finds the kernel that made the first non-finite value, for the
// host's bounded re-run (src/process/locateNan.ts); never on in a normal run (it reads every output).
//
// TF.js's own check is the DEBUG flag: in tfjs-core 4.x it profiles every kernel, prints each one to
// the console, and checks float32 outputs with `isNaN(v) || !isFinite(v)` asynchronously
// (`output.data().then(…)`, profiler.ts checkComputationForErrors), logging "Found NaN in the result
// of 'Log'" with no stack. Neither the flood of kernel lines nor a check without a stack can name the
// user's line, so this module runs the same check synchronously, per kernel, with the stack:
// - forward: a kernel (engine.runKernel) whose float32 output holds NaN/±Inf while its float32 inputs
//   were finite (Log of 0 → -Infinity);
// - backward: a tape node's input gradient that went non-finite while the gradients it received were
//   finite (Sqrt of 0: its gradient divides by 0); reported as `<Kernel>Grad` at the line of the
//   forward op, whose stack is kept when the op is recorded on the tape.
// The report is one `info` EVENT: LOCATE_PREFIX + JSON {op, phase, file, line, column}
// (src/core/analysis/nanCause.ts reads it).
import { dirname, join, sep } from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { LOCATE_PREFIX } from '../../core/analysis/nanCause';
import type { SourceLocation } from '../../core/protocol/messages';
import { isUserFile, parseStack } from './sourceSite';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

const PROBE_DIRS = [dirname(__filename), join(dirname(__filename), '..', '..', '..', 'src', 'probe', 'tfjs')].map((d) => d + sep);
const isProbe = (file: string): boolean => PROBE_DIRS.some((d) => file.startsWith(d));
const OURS = /gsLocate|deepStack/;

// The probe's own statistics (its tf ops must not be taken for the user's): with source maps on (the
// host runs the runner with --enable-source-maps) these are the frames of its statistics modules.
const PROBE_STATS = /[\\/](deviceStats|stats|statsJob|packing)\.ts$/;

/**
 * The user's line in a stack captured inside the probe; 'probe' when the probe's statistics ran the
 * op; null when no frame of the user's code is on the stack (model.fit trains in promise
 * continuations: its stacks end inside tfjs). The probe's hooks (optimizer, layer.call) are
 * transparent: the op they wrap is the user's.
 */
export function siteOf(stack: string | undefined): SourceLocation | 'probe' | null {
  let outside = false; // past the first frame outside tfjs and this module
  for (const f of parseStack(stack)) {
    if (OURS.test(f.fn)) continue; // this module's wrappers (named so: the whole probe is one bundle)
    const probe = isProbe(f.file);
    if (probe && !outside && PROBE_STATS.test(f.file)) return 'probe';
    if (!f.file.includes(`${sep}node_modules${sep}`)) outside = true;
    if (probe) continue;
    if (isUserFile(f.file)) return { file: f.file, line: f.line, column: f.column };
  }
  return null;
}

function floatTensors(x: unknown, out: Tensor[] = []): Tensor[] {
  if (!x) return out;
  if (Array.isArray(x)) {
    for (const y of x) floatTensors(y, out);
    return out;
  }
  const t = x as Partial<Tensor>;
  if (typeof t.dataSync === 'function' && typeof t.dtype === 'string') {
    if (t.dtype === 'float32' && !t.isDisposed) out.push(x as Tensor);
    return out;
  }
  if (typeof x === 'object') for (const y of Object.values(x as Record<string, unknown>)) floatTensors(y, out);
  return out;
}

function allFinite(ts: readonly Tensor[]): boolean {
  for (const t of ts) {
    const v = t.dataSync();
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return false;
  }
  return true;
}

interface EngineLike {
  runKernel: (...a: unknown[]) => unknown;
  addTapeNode: (...a: unknown[]) => void;
  state: { activeTape?: TapeNode[] | null };
}

interface TapeNode {
  kernelName: string;
  gradient?: (dys: (Tensor | null)[]) => Record<string, () => Tensor>;
}

/**
 * A stack deep enough to get out of tfjs-layers' nesting (V8 keeps 10 frames by default). V8 records
 * the frames now and formats them (source maps applied) only when `.stack` is read: on a report.
 */
function deepStack(): Error {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 200;
  try {
    return new Error();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Patches tf's engine for the rest of the process; `report` gets the locate EVENT's message once. */
export function installLocate(tf: Tf, report: (message: string) => void): void {
  const engine = tf.engine() as unknown as EngineLike;
  let found = false;
  let inGrad = 0;
  let busy = false;
  const fire = (op: string, phase: 'forward' | 'backward', site: SourceLocation | 'probe' | null): void => {
    if (found || site === 'probe') return;
    found = true;
    // Without a line of the user's code on the stack, the operation is still worth naming.
    report(LOCATE_PREFIX + JSON.stringify(site ? { op, phase, file: site.file, line: site.line, column: site.column } : { op, phase }));
    process.stderr.write(`[gradscope] first non-finite value: ${op} (${phase})${site ? ` at ${site.file}:${site.line}` : ''}\n`);
  };

  const runKernel = engine.runKernel;
  engine.runKernel = function gsLocateRunKernel(this: unknown, ...args: unknown[]): unknown {
    const out = runKernel.apply(this, args);
    if (found || busy || inGrad > 0) return out;
    busy = true;
    try {
      const outs = floatTensors(out);
      if (outs.length && !allFinite(outs) && allFinite(floatTensors(args[1]))) fire(String(args[0]), 'forward', siteOf(deepStack().stack));
    } catch {
      // never break the script
    } finally {
      busy = false;
    }
    return out;
  };

  const addTapeNode = engine.addTapeNode;
  engine.addTapeNode = function gsLocateAddTapeNode(this: EngineLike, ...args: unknown[]): void {
    addTapeNode.apply(this, args);
    if (found) return;
    const tape = this.state.activeTape;
    const node = tape?.[tape.length - 1];
    const gradient = node?.gradient;
    if (!node || !gradient || node.kernelName !== args[0]) return;
    const stack = deepStack();
    node.gradient = function gsLocateGradient(dys) {
      const grads = gradient(dys);
      if (found) return grads;
      let dysFinite: boolean | null = null;
      const wrapped: Record<string, () => Tensor> = {};
      for (const [name, fn] of Object.entries(grads)) {
        wrapped[name] = function gsLocateGrad() {
          inGrad++;
          let dx: Tensor;
          try {
            dx = fn();
          } finally {
            inGrad--;
          }
          if (!found && !busy) {
            busy = true;
            try {
              if (!allFinite(floatTensors(dx))) {
                dysFinite ??= allFinite(floatTensors(dys));
                if (dysFinite) fire(`${node.kernelName}Grad`, 'backward', siteOf(stack.stack));
              }
            } catch {
              // never break the script
            } finally {
              busy = false;
            }
          }
          return dx;
        };
      }
      return wrapped;
    };
  };
}
