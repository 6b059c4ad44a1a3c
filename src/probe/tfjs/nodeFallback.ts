// What a script written for tfjs-node uses beyond tfjs, provided when GradScope runs it on wasm or
// cpu because tfjs-node could not be loaded (absent, no native binding): without these a script
// trains and then crashes at `model.save('file://…')` or at `tf.node.tensorBoard(…)`.
// - `file://` save and load handlers, in tfjs-node's layout (a folder with model.json and
//   weights.bin; load from …/model.json), so checkpoints written here load under tfjs-node and back;
// - `tf.node.tensorBoard(logdir, {updateFreq})`: a callback writing real TensorBoard event files
//   (logdir/train and logdir/val, as tfjs-node does), `tf.node.summaryFileWriter(logdir)` with
//   `scalar`; anything else of `tf.node` (image codecs, SavedModel) throws saying that it needs
//   tfjs-node, and why that did not load.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Tf } from './backend';

/** Where ESM shims find the namespace (the module object of a CommonJS tfjs gets it as `node`). */
export const TF_NODE_KEY = Symbol.for('gradscope.tfjs-node');

type Artifacts = {
  modelTopology?: unknown;
  weightSpecs?: unknown[];
  weightData?: ArrayBuffer | ArrayBuffer[];
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  trainingConfig?: unknown;
  userDefinedMetadata?: unknown;
  modelInitializer?: unknown;
};

/** A file:// URL (or path after the scheme) as an absolute path. */
function pathOf(url: string): string {
  const rest = url.slice('file://'.length);
  if (rest.startsWith('/')) {
    try {
      return fileURLToPath(url);
    } catch {
      return rest;
    }
  }
  return resolvePath(rest); // file://./models/x: relative to the working folder, as tfjs-node takes it
}

function concat(data: ArrayBuffer | ArrayBuffer[] | undefined): Buffer {
  if (!data) return Buffer.alloc(0);
  return Array.isArray(data) ? Buffer.concat(data.map((b) => Buffer.from(b))) : Buffer.from(data);
}

/** tfjs-node's file system handler, for save (folder) and load (…/model.json). */
export function fileHandler(tf: Tf, url: string): { save(a: Artifacts): Promise<unknown>; load(): Promise<Artifacts> } {
  const path = pathOf(url);
  return {
    async save(a) {
      if (a.modelTopology instanceof ArrayBuffer) throw new Error('saving a graph model to file:// is not supported here (it needs @tensorflow/tfjs-node)');
      await mkdir(path, { recursive: true });
      const weights = concat(a.weightData);
      await writeFile(join(path, 'weights.bin'), weights);
      const modelJson: Record<string, unknown> = {
        modelTopology: a.modelTopology,
        format: a.format,
        generatedBy: a.generatedBy,
        convertedBy: a.convertedBy,
        weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs ?? [] }],
      };
      if (a.trainingConfig != null) modelJson.trainingConfig = a.trainingConfig;
      if (a.userDefinedMetadata != null) modelJson.userDefinedMetadata = a.userDefinedMetadata;
      if (a.modelInitializer != null) modelJson.modelInitializer = a.modelInitializer;
      const text = JSON.stringify(modelJson);
      await writeFile(join(path, 'model.json'), text);
      const io = tf.io as unknown as { getModelArtifactsInfoForJSON?: (x: Artifacts) => unknown };
      const info = io.getModelArtifactsInfoForJSON?.({ ...a, weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer }) ?? {
        dateSaved: new Date(),
        modelTopologyType: 'JSON',
        weightDataBytes: weights.byteLength,
      };
      return { modelArtifactsInfo: info };
    },
    async load() {
      const file = path.endsWith('.json') ? path : join(path, 'model.json');
      const modelJson = JSON.parse(await readFile(file, 'utf8')) as Artifacts & { weightsManifest?: { paths: string[]; weights: unknown[] }[] };
      const dir = dirname(file);
      const specs: unknown[] = [];
      const parts: Buffer[] = [];
      for (const group of modelJson.weightsManifest ?? []) {
        specs.push(...group.weights);
        for (const p of group.paths) parts.push(await readFile(join(dir, p)));
      }
      const all = Buffer.concat(parts);
      const out: Artifacts = {
        modelTopology: modelJson.modelTopology,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        format: modelJson.format,
        generatedBy: modelJson.generatedBy,
        convertedBy: modelJson.convertedBy,
      };
      if (modelJson.trainingConfig != null) out.trainingConfig = modelJson.trainingConfig;
      if (modelJson.userDefinedMetadata != null) out.userDefinedMetadata = modelJson.userDefinedMetadata;
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// TensorBoard event files: TFRecord framing (length, masked CRC-32C of it, data, masked CRC-32C of
// the data) around Event protocol buffers, written by hand (a few fields of two messages).

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC32C_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function maskedCrc(b: Uint8Array): number {
  const c = crc32c(b);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(Math.max(0, Math.floor(n)));
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v) byte |= 0x80;
    out.push(byte);
  } while (v);
  return out;
}

function lenDelimited(field: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(bytes.length)]), bytes]);
}

/** An Event {wall_time, step, file_version | summary {value {tag, simple_value}}} encoded. */
export function encodeEvent(e: { wallTime: number; step?: number; fileVersion?: string; scalars?: [string, number][] }): Buffer {
  const parts: Buffer[] = [];
  const wt = Buffer.alloc(9);
  wt[0] = (1 << 3) | 1;
  wt.writeDoubleLE(e.wallTime, 1);
  parts.push(wt);
  if (e.step !== undefined) parts.push(Buffer.from([2 << 3, ...varint(e.step)]));
  if (e.fileVersion !== undefined) parts.push(lenDelimited(3, Buffer.from(e.fileVersion, 'utf8')));
  if (e.scalars?.length) {
    const values = e.scalars.map(([tag, v]) => {
      const f = Buffer.alloc(5);
      f[0] = (2 << 3) | 5;
      f.writeFloatLE(v, 1);
      return lenDelimited(1, Buffer.concat([lenDelimited(1, Buffer.from(tag, 'utf8')), f]));
    });
    parts.push(lenDelimited(5, Buffer.concat(values)));
  }
  return Buffer.concat(parts);
}

export function tfRecord(data: Uint8Array): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(data.length));
  const c1 = Buffer.alloc(4);
  c1.writeUInt32LE(maskedCrc(len));
  const c2 = Buffer.alloc(4);
  c2.writeUInt32LE(maskedCrc(data));
  return Buffer.concat([len, c1, Buffer.from(data), c2]);
}

/** A TensorBoard summary writer for one folder: one events file, scalars appended as they come. */
export class SummaryFileWriter {
  readonly file: string;
  constructor(logdir: string) {
    mkdirSync(logdir, { recursive: true });
    this.file = join(logdir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}`);
    writeFileSync(this.file, tfRecord(encodeEvent({ wallTime: Date.now() / 1000, fileVersion: 'brain.Event:2' })));
  }
  scalar(name: string, value: number | { dataSync(): ArrayLike<number> }, step: number): void {
    const v = typeof value === 'number' ? value : value.dataSync()[0];
    appendFileSync(this.file, tfRecord(encodeEvent({ wallTime: Date.now() / 1000, step, scalars: [[name, v]] })));
  }
  histogram(): void {
    warnOnce('tf.node.summaryFileWriter().histogram is not written without @tensorflow/tfjs-node (scalars are)');
  }
  flush(): void {
    // (written synchronously)
  }
}

const warned = new Set<string>();
function warnOnce(msg: string): void {
  if (warned.has(msg)) return;
  warned.add(msg);
  process.stderr.write(`[gradscope] warning: ${msg}\n`);
}

type Logs = Record<string, number | { dataSync(): ArrayLike<number> } | undefined>;

/** tfjs-node's `tf.node.tensorBoard(logdir, {updateFreq})`, built on tfjs's CustomCallback. */
function tensorBoard(tf: Tf, logdir = './logs', args: { updateFreq?: 'batch' | 'epoch'; histogramFreq?: number } = {}): unknown {
  const updateFreq = args.updateFreq ?? 'epoch';
  if (updateFreq !== 'batch' && updateFreq !== 'epoch') throw new Error(`Expected updateFreq to be 'batch' or 'epoch', but got ${String(updateFreq)}`);
  if (args.histogramFreq) warnOnce('tf.node.tensorBoard: histograms are not written without @tensorflow/tfjs-node (scalars are)');
  let train: SummaryFileWriter | null = null;
  let val: SummaryFileWriter | null = null;
  let batches = 0;
  let epochs = 0;
  const log = (logs: Logs | undefined, prefix: string, step: number): void => {
    for (const [k, v] of Object.entries(logs ?? {})) {
      if (v === undefined || k === 'batch' || k === 'size') continue;
      if (k.startsWith('val_')) (val ??= new SummaryFileWriter(join(logdir, 'val'))).scalar(prefix + k.slice(4), v, step);
      else (train ??= new SummaryFileWriter(join(logdir, 'train'))).scalar(prefix + k, v, step);
    }
  };
  const Custom = (tf as unknown as { CustomCallback: new (a: Record<string, unknown>) => unknown }).CustomCallback;
  return new Custom({
    onBatchEnd: (_batch: number, logs?: Logs): Promise<void> => {
      batches++;
      if (updateFreq === 'batch') log(logs, 'batch_', batches);
      return Promise.resolve();
    },
    onEpochEnd: (_epoch: number, logs?: Logs): Promise<void> => {
      epochs++;
      log(logs, 'epoch_', epochs);
      return Promise.resolve();
    },
  });
}

/** The `tf.node` namespace of the fallback: what can be done without TensorFlow's C library. */
export function nodeNamespace(tf: Tf, why: string): Record<string, unknown> {
  const missing = (name: string) => (): never => {
    throw new Error(`tf.node.${name} needs @tensorflow/tfjs-node, which GradScope could not load here (${why})`);
  };
  const ns: Record<string, unknown> = {
    tensorBoard: (logdir?: string, args?: { updateFreq?: 'batch' | 'epoch'; histogramFreq?: number }) => tensorBoard(tf, logdir, args),
    summaryFileWriter: (logdir = './logs') => new SummaryFileWriter(logdir),
    TensorBoardCallback: undefined,
  };
  for (const name of [
    'decodeImage',
    'decodeJpeg',
    'decodePng',
    'decodeBmp',
    'decodeGif',
    'encodeJpeg',
    'encodePng',
    'loadSavedModel',
    'getMetaGraphsFromSavedModel',
    'getNumOfSavedModels',
  ]) {
    ns[name] = missing(name);
  }
  delete ns.TensorBoardCallback;
  return ns;
}

/**
 * Installs the fallback on the tfjs the script gets in place of tfjs-node: file:// handlers, and
 * `tf.node` on its module object (CommonJS) and under TF_NODE_KEY (the ESM shim's export).
 */
export function installNodeFallback(tf: Tf, why: string): void {
  const io = tf.io as unknown as {
    registerSaveRouter(r: (url: string | string[]) => unknown): void;
    registerLoadRouter(r: (url: string | string[]) => unknown): void;
  };
  const route = (url: string | string[]): unknown => (typeof url === 'string' && url.startsWith('file://') ? fileHandler(tf, url) : null);
  io.registerSaveRouter(route);
  io.registerLoadRouter(route);
  const ns = nodeNamespace(tf, why);
  (globalThis as Record<symbol, unknown>)[TF_NODE_KEY] = ns;
  const mod = tf as unknown as Record<string, unknown>;
  if (mod.node === undefined && Object.isExtensible(mod)) {
    try {
      Object.defineProperty(mod, 'node', { value: ns, enumerable: true, configurable: true, writable: true });
    } catch {
      /* a frozen module object: CommonJS scripts then miss tf.node, ESM ones get it from the shim */
    }
  }
}

/** The ESM module a script importing tfjs-node gets in the fallback: tfjs's exports plus `node`. */
export const ESM_SHIM_SOURCE = [
  "export * from '@tensorflow/tfjs';",
  "export { default } from '@tensorflow/tfjs';",
  "export const node = globalThis[Symbol.for('gradscope.tfjs-node')];",
  '',
].join('\n');
