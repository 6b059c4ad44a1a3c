// Frame codec for protocol v1 (docs/protocol.md). Used by the tfjs probe to write frames and by the
// host to read them; pure TypeScript (Uint8Array/DataView, no Buffer) so it runs anywhere.
//
// Frame = 16-byte little-endian header + payload:
//   u32 magic "GSCP" | u16 version | u16 type | u32 payload length | u32 sequence number
import {
  HEADER_BYTES,
  MAGIC,
  MAX_PAYLOAD_BYTES,
  EVENT_KINDS,
  CLIP_BY,
  MSG_TYPE_NAMES,
  MsgType,
  NO_LOSS_WORDS,
  OPTIMIZER_MODES,
  PROTOCOL_VERSION,
  STAT_BY_ID,
  STAT_IDS,
  type DetailMsg,
  type EndMsg,
  type EventMsg,
  type HelloMsg,
  type Message,
  type OptimizerMsg,
  type SourceLocation,
  type StatName,
  type StepMsg,
  type ShardInfo,
  type TensorInfo,
  type TensorsMsg,
} from './messages';

export type ProtocolErrorCode = 'bad-magic' | 'bad-version' | 'unknown-type' | 'oversize' | 'truncated' | 'shape-mismatch' | 'bad-json' | 'bad-field';

/** A violation of the wire format. The stream cannot be trusted after one: the run ends. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
    /** Byte offset in the stream of the frame that failed. */
    readonly offset: number,
  ) {
    super(`protocol error (${code}) at byte ${offset}: ${message}`);
  }
}

export const STEP_FIXED_BYTES = 32;
export const DETAIL_FIXED_BYTES = 48;
export const MAX_HIST_BINS = 256;
export const MAX_THUMB_SIDE = 64;

const pad8 = (n: number): number => (n + 7) & ~7;
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------------------------
// Encoding

/** One frame: the protocol's header (magic, version, type, length, seq) and the payload. */
export function frame(type: number, payload: Uint8Array, seq: number): Uint8Array {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new RangeError(`payload of ${payload.byteLength} bytes exceeds the ${MAX_PAYLOAD_BYTES}-byte cap`);
  }
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint16(4, PROTOCOL_VERSION, true);
  dv.setUint16(6, type, true);
  dv.setUint32(8, payload.byteLength, true);
  dv.setUint32(12, seq >>> 0, true);
  out.set(payload, HEADER_BYTES);
  return out;
}

function jsonPayload(msg: Message): Uint8Array {
  const { type: _t, ...body } = msg as unknown as Record<string, unknown>;
  return utf8Encoder.encode(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)));
}

export function encodeStep(msg: Omit<StepMsg, 'type'>, seq: number): Uint8Array {
  const nStats = msg.stats.length;
  const n = msg.nTensors;
  const idsBytes = pad8(nStats);
  const payload = new Uint8Array(STEP_FIXED_BYTES + idsBytes + 8 * nStats * n);
  const dv = new DataView(payload.buffer);
  dv.setUint32(0, msg.step, true);
  dv.setUint32(4, n, true);
  dv.setUint32(8, nStats, true);
  dv.setUint32(12, msg.optimizer, true);
  if (msg.loss === null) {
    dv.setUint32(16, NO_LOSS_WORDS[0], true);
    dv.setUint32(20, NO_LOSS_WORDS[1], true);
  } else dv.setFloat64(16, msg.loss, true);
  dv.setFloat64(24, msg.wallMs, true);
  for (let s = 0; s < nStats; s++) payload[STEP_FIXED_BYTES + s] = STAT_IDS[msg.stats[s]];
  const base = STEP_FIXED_BYTES + idsBytes;
  for (let s = 0; s < nStats; s++) {
    const col = msg.columns[s];
    if (col.length !== n) throw new RangeError(`column ${msg.stats[s]} has ${col.length} values for ${n} tensors`);
    for (let i = 0; i < n; i++) dv.setFloat64(base + 8 * (s * n + i), col[i], true);
  }
  return frame(MsgType.Step, payload, seq);
}

export function encodeDetail(msg: Omit<DetailMsg, 'type'>, seq: number): Uint8Array {
  const nBins = msg.hist.length;
  const cells = msg.thumbRows * msg.thumbCols;
  if (msg.thumb.length !== cells) throw new RangeError(`thumbnail has ${msg.thumb.length} cells, declared ${cells}`);
  const payload = new Uint8Array(DETAIL_FIXED_BYTES + 4 * nBins + 4 * cells);
  const dv = new DataView(payload.buffer);
  dv.setUint32(0, msg.step, true);
  dv.setUint32(4, msg.tensorId, true);
  dv.setUint16(8, nBins, true);
  dv.setUint16(10, msg.thumbRows, true);
  dv.setUint16(12, msg.thumbCols, true);
  dv.setUint16(14, 0, true);
  dv.setFloat32(16, msg.histLo, true);
  dv.setFloat32(20, msg.histHi, true);
  dv.setFloat64(24, msg.mean, true);
  dv.setFloat64(32, msg.std, true);
  dv.setFloat64(40, msg.zeroFrac, true);
  let o = DETAIL_FIXED_BYTES;
  for (let i = 0; i < nBins; i++, o += 4) dv.setUint32(o, msg.hist[i], true);
  for (let i = 0; i < cells; i++, o += 4) dv.setFloat32(o, msg.thumb[i], true);
  return frame(MsgType.Detail, payload, seq);
}

/** Encodes any message as one frame. */
export function encodeMessage(msg: Message, seq: number): Uint8Array {
  switch (msg.type) {
    case 'step':
      return encodeStep(msg, seq);
    case 'detail':
      return encodeDetail(msg, seq);
    case 'hello':
      return frame(MsgType.Hello, jsonPayload(msg), seq);
    case 'tensors':
      return frame(MsgType.Tensors, jsonPayload(msg), seq);
    case 'event':
      return frame(MsgType.Event, jsonPayload(msg), seq);
    case 'end':
      return frame(MsgType.End, jsonPayload(msg), seq);
    case 'optimizer':
      return frame(MsgType.Optimizer, jsonPayload(msg), seq);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

type Obj = Record<string, unknown>;

class FieldError extends Error {}

function req<T>(o: Obj, k: string, check: (v: unknown) => v is T, what: string): T {
  const v = o[k];
  if (!check(v)) throw new FieldError(`field "${k}" must be ${what}`);
  return v;
}
function opt<T>(o: Obj, k: string, check: (v: unknown) => v is T, what: string): T | undefined {
  return o[k] === undefined || o[k] === null ? undefined : req(o, k, check, what);
}
const isStr = (v: unknown): v is string => typeof v === 'string';
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isNum = (v: unknown): v is number => typeof v === 'number';
const isUint = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isArr = (v: unknown): v is unknown[] => Array.isArray(v);
const oneOf =
  <T extends string>(...vals: readonly T[]) =>
  (v: unknown): v is T =>
    typeof v === 'string' && (vals as readonly string[]).includes(v);

function source(v: unknown): SourceLocation | null {
  if (v === null || v === undefined) return null;
  if (!isObj(v)) throw new FieldError('source must be an object or null');
  const loc: SourceLocation = {
    file: req(v, 'file', isStr, 'a string'),
    line: req(v, 'line', isUint, 'a non-negative integer'),
    column: req(v, 'column', isUint, 'a non-negative integer'),
  };
  return withCell(loc, v);
}

/** A location's optional notebook cell index (absent or null: a plain file). */
function withCell<T extends SourceLocation>(loc: T, v: Obj): T {
  const cell = opt(v, 'cell', isUint, 'a non-negative integer');
  if (cell !== undefined) loc.cell = cell;
  return loc;
}

const isStrArr = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);

/** TENSORS' optional fields: absent (or null) leaves them out; present with a wrong type is bad-field. */
function optionalTensorFields(t: Obj, shape: readonly number[]): Pick<TensorInfo, 'aliases' | 'builtIn' | 'shard'> {
  const out: Pick<TensorInfo, 'aliases' | 'builtIn' | 'shard'> = {};
  const aliases = opt(t, 'aliases', isStrArr, 'an array of strings');
  if (aliases !== undefined) out.aliases = [...aliases];
  const b = opt(t, 'builtIn', isObj, 'an object');
  if (b !== undefined) {
    out.builtIn = withCell(
      {
        file: req(b, 'file', isStr, 'a string'),
        line: req(b, 'line', isUint, 'a non-negative integer'),
        column: req(b, 'column', isUint, 'a non-negative integer'),
        package: req(b, 'package', isStr, 'a string'),
      },
      b,
    );
  }
  const sh = opt(t, 'shard', isObj, 'an object');
  if (sh !== undefined) out.shard = shardInfo(sh, shape);
  return out;
}

/** A shard's block: one offset and one local extent per dimension of the tensor, inside it. */
function shardInfo(sh: Obj, shape: readonly number[]): ShardInfo {
  const isUintArr = (v: unknown): v is number[] => Array.isArray(v) && v.every(isUint);
  const offset = req(sh, 'offset', isUintArr, 'an array of non-negative integers');
  const localShape = req(sh, 'localShape', isUintArr, 'an array of non-negative integers');
  if (offset.length !== shape.length || localShape.length !== shape.length) throw new FieldError('shard offset and localShape must have one entry per dimension of shape');
  if (shape.some((n, d) => offset[d] + localShape[d] > n)) throw new FieldError('shard block must lie inside shape');
  return { offset: [...offset], localShape: [...localShape] };
}

function decodeJson(type: number, bytes: Uint8Array): Message {
  let o: unknown;
  try {
    o = JSON.parse(utf8Decoder.decode(bytes));
  } catch (e) {
    throw new SyntaxError(`${MSG_TYPE_NAMES[type]} payload is not UTF-8 JSON: ${(e as Error).message}`);
  }
  if (!isObj(o)) throw new FieldError(`${MSG_TYPE_NAMES[type]} payload must be a JSON object`);
  switch (type) {
    case MsgType.Hello: {
      const m: HelloMsg = {
        type: 'hello',
        probeVersion: req(o, 'probeVersion', isStr, 'a string'),
        framework: req(o, 'framework', oneOf('tfjs', 'torch'), '"tfjs" or "torch"'),
        backend: req(o, 'backend', isStr, 'a string'),
        device: req(o, 'device', isStr, 'a string'),
        backendReason: opt(o, 'backendReason', isStr, 'a string') ?? '',
        pid: req(o, 'pid', isUint, 'a non-negative integer'),
        rank: opt(o, 'rank', isUint, 'a non-negative integer') ?? 0,
        script: req(o, 'script', isStr, 'a string'),
        detailEvery: opt(o, 'detailEvery', isUint, 'a non-negative integer') ?? 0,
      };
      // A process of a distributed job says where it is (absent or null: a single process).
      const localRank = opt(o, 'localRank', isUint, 'a non-negative integer');
      if (localRank !== undefined) m.localRank = localRank;
      const worldSize = opt(o, 'worldSize', isUint, 'a non-negative integer');
      if (worldSize !== undefined) m.worldSize = worldSize;
      const host = opt(o, 'host', isStr, 'a string');
      if (host !== undefined) m.host = host;
      const marks = opt(o, 'marksNoLoss', isBool, 'a boolean');
      if (marks !== undefined) m.marksNoLoss = marks;
      return m;
    }
    case MsgType.Tensors: {
      const list = req(o, 'tensors', isArr, 'an array');
      const tensors: TensorInfo[] = list.map((t) => {
        if (!isObj(t)) throw new FieldError('each tensor must be an object');
        const shape = req(t, 'shape', isArr, 'an array');
        if (!shape.every(isUint)) throw new FieldError('shape must hold non-negative integers');
        return {
          id: req(t, 'id', isUint, 'a non-negative integer'),
          name: req(t, 'name', isStr, 'a string'),
          layer: req(t, 'layer', isStr, 'a string'),
          layerType: req(t, 'layerType', isStr, 'a string'),
          shape,
          source: source(t['source']),
          ...optionalTensorFields(t, shape),
        };
      });
      const m: TensorsMsg = { type: 'tensors', tensors };
      return m;
    }
    case MsgType.Event: {
      const m: EventMsg = {
        type: 'event',
        kind: req(o, 'kind', oneOf(...EVENT_KINDS), 'a known event kind'),
        message: req(o, 'message', isStr, 'a string'),
      };
      const step = opt(o, 'step', isUint, 'a non-negative integer');
      const tensorId = opt(o, 'tensorId', isUint, 'a non-negative integer');
      const count = opt(o, 'count', isUint, 'a non-negative integer');
      if (step !== undefined) m.step = step;
      if (tensorId !== undefined) m.tensorId = tensorId;
      if (count !== undefined) m.count = count;
      const value = opt(o, 'value', isNum, 'a number');
      if (value !== undefined) m.value = value;
      const max = opt(o, 'max', isNum, 'a number');
      if (max !== undefined) m.max = max;
      const clipBy = opt(o, 'clipBy', oneOf(...CLIP_BY), 'norm or value');
      if (clipBy !== undefined) m.clipBy = clipBy;
      return m;
    }
    case MsgType.Optimizer: {
      const ids = req(o, 'tensorIds', isArr, 'an array');
      if (!ids.every(isUint)) throw new FieldError('tensorIds must hold non-negative integers');
      const m: OptimizerMsg = {
        type: 'optimizer',
        id: req(o, 'id', isUint, 'a non-negative integer'),
        name: req(o, 'name', isStr, 'a string'),
        className: req(o, 'className', isStr, 'a string'),
        mode: req(o, 'mode', oneOf(...OPTIMIZER_MODES), '"optimizer" or "backward"'),
        tensorIds: ids,
      };
      return m;
    }
    case MsgType.End: {
      const m: EndMsg = {
        type: 'end',
        reason: req(o, 'reason', oneOf('completed', 'crashed', 'step-limit'), '"completed", "crashed" or "step-limit"'),
        steps: req(o, 'steps', isUint, 'a non-negative integer'),
      };
      const err = o['error'];
      if (err !== undefined && err !== null) {
        if (!isObj(err)) throw new FieldError('error must be an object');
        m.error = { message: req(err, 'message', isStr, 'a string') };
        const stack = opt(err, 'stack', isStr, 'a string');
        if (stack !== undefined) m.error.stack = stack;
        const fr = source(err['frame']);
        if (fr) m.error.frame = fr;
      }
      return m;
    }
  }
  throw new FieldError(`type ${type} is not a JSON message`);
}

function decodeStep(p: Uint8Array): StepMsg {
  if (p.byteLength < STEP_FIXED_BYTES) {
    throw new RangeError(`STEP payload of ${p.byteLength} bytes is shorter than its ${STEP_FIXED_BYTES}-byte fixed part`);
  }
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const step = dv.getUint32(0, true);
  const nTensors = dv.getUint32(4, true);
  const nStats = dv.getUint32(8, true);
  if (nStats > 64) throw new RangeError(`STEP declares ${nStats} statistics (at most 64)`);
  const idsBytes = pad8(nStats);
  const expected = STEP_FIXED_BYTES + idsBytes + 8 * nStats * nTensors;
  if (p.byteLength !== expected) {
    throw new RangeError(`STEP declares ${nTensors} tensors × ${nStats} statistics (${expected} bytes) but its payload has ${p.byteLength}`);
  }
  const stats: StatName[] = [];
  for (let s = 0; s < nStats; s++) {
    const id = p[STEP_FIXED_BYTES + s];
    const name = STAT_BY_ID.get(id);
    if (!name) throw new FieldError(`STEP names unknown statistic id ${id}`);
    stats.push(name);
  }
  const base = STEP_FIXED_BYTES + idsBytes;
  const columns: Float64Array[] = [];
  // Copy into aligned storage; on little-endian hosts this is one memcpy per column.
  const all = new Float64Array(nStats * nTensors);
  if (LITTLE_ENDIAN) {
    new Uint8Array(all.buffer).set(p.subarray(base, base + 8 * nStats * nTensors));
  } else {
    for (let i = 0; i < all.length; i++) all[i] = dv.getFloat64(base + 8 * i, true);
  }
  for (let s = 0; s < nStats; s++) columns.push(all.subarray(s * nTensors, (s + 1) * nTensors));
  return {
    type: 'step',
    step,
    optimizer: dv.getUint32(12, true),
    nTensors,
    loss: dv.getUint32(16, true) === NO_LOSS_WORDS[0] && dv.getUint32(20, true) === NO_LOSS_WORDS[1] ? null : dv.getFloat64(16, true),
    wallMs: dv.getFloat64(24, true),
    stats,
    columns,
  };
}

function decodeDetail(p: Uint8Array): DetailMsg {
  if (p.byteLength < DETAIL_FIXED_BYTES) {
    throw new RangeError(`DETAIL payload of ${p.byteLength} bytes is shorter than its ${DETAIL_FIXED_BYTES}-byte fixed part`);
  }
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const nBins = dv.getUint16(8, true);
  const rows = dv.getUint16(10, true);
  const cols = dv.getUint16(12, true);
  if (nBins > MAX_HIST_BINS) throw new RangeError(`DETAIL declares ${nBins} histogram bins (at most ${MAX_HIST_BINS})`);
  if (rows > MAX_THUMB_SIDE || cols > MAX_THUMB_SIDE) {
    throw new RangeError(`DETAIL declares a ${rows}×${cols} thumbnail (at most ${MAX_THUMB_SIDE}×${MAX_THUMB_SIDE})`);
  }
  const expected = DETAIL_FIXED_BYTES + 4 * nBins + 4 * rows * cols;
  if (p.byteLength !== expected) {
    throw new RangeError(`DETAIL declares ${nBins} bins and a ${rows}×${cols} thumbnail (${expected} bytes) but its payload has ${p.byteLength}`);
  }
  const hist = new Uint32Array(nBins);
  let o = DETAIL_FIXED_BYTES;
  for (let i = 0; i < nBins; i++, o += 4) hist[i] = dv.getUint32(o, true);
  const thumb = new Float32Array(rows * cols);
  for (let i = 0; i < thumb.length; i++, o += 4) thumb[i] = dv.getFloat32(o, true);
  return {
    type: 'detail',
    step: dv.getUint32(0, true),
    tensorId: dv.getUint32(4, true),
    histLo: dv.getFloat32(16, true),
    histHi: dv.getFloat32(20, true),
    mean: dv.getFloat64(24, true),
    std: dv.getFloat64(32, true),
    zeroFrac: dv.getFloat64(40, true),
    hist,
    thumbRows: rows,
    thumbCols: cols,
    thumb,
  };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decodes one payload of a known type. Throws a ProtocolError on any violation. */
export function decodePayload(type: number, payload: Uint8Array, offset = 0): Message {
  try {
    switch (type) {
      case MsgType.Step:
        return decodeStep(payload);
      case MsgType.Detail:
        return decodeDetail(payload);
      case MsgType.Hello:
      case MsgType.Tensors:
      case MsgType.Event:
      case MsgType.End:
      case MsgType.Optimizer:
        return decodeJson(type, payload);
      default:
        throw new ProtocolError('unknown-type', `unknown message type ${type}`, offset);
    }
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    if (e instanceof SyntaxError) throw new ProtocolError('bad-json', e.message, offset);
    if (e instanceof RangeError) throw new ProtocolError('shape-mismatch', e.message, offset);
    if (e instanceof FieldError) throw new ProtocolError('bad-field', `${MSG_TYPE_NAMES[type]}: ${e.message}`, offset);
    throw new ProtocolError('bad-field', `${MSG_TYPE_NAMES[type]}: ${(e as Error).message}`, offset);
  }
}

export interface DecodedFrame {
  seq: number;
  /** Byte offset of the frame in the stream. */
  offset: number;
  /** Raw frame bytes (header + payload), for writing the run file without re-encoding. */
  raw: Uint8Array;
  message: Message;
}

/**
 * Streaming decoder. Feed it chunks as they arrive; it joins chunks only once a whole frame has
 * arrived. It never throws: the first violation is returned, and the decoder stays failed after it
 * (a byte stream cannot be resynchronised safely).
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private consumed = 0;
  private header: { type: number; length: number; seq: number; offset: number; raw: Uint8Array } | null = null;
  private failed: ProtocolError | null = null;

  constructor(private readonly maxPayload = MAX_PAYLOAD_BYTES) {}

  get error(): ProtocolError | null {
    return this.failed;
  }

  /** Bytes received but not yet part of a complete frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Total bytes consumed as complete frames. */
  get bytesConsumed(): number {
    return this.consumed;
  }

  push(chunk: Uint8Array, onFrame: (f: DecodedFrame) => void): ProtocolError | null {
    if (this.failed) return this.failed;
    if (chunk.byteLength === 0) return null;
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    try {
      for (;;) {
        if (!this.header) {
          if (this.buffered < HEADER_BYTES) break;
          const offset = this.consumed;
          const h = this.take(HEADER_BYTES);
          const dv = new DataView(h.buffer, h.byteOffset, HEADER_BYTES);
          const magic = dv.getUint32(0, true);
          if (magic !== MAGIC) {
            throw new ProtocolError('bad-magic', `expected magic 0x${MAGIC.toString(16)}, got 0x${magic.toString(16).padStart(8, '0')}`, offset);
          }
          const version = dv.getUint16(4, true);
          if (version !== PROTOCOL_VERSION) {
            throw new ProtocolError('bad-version', `this host speaks protocol version ${PROTOCOL_VERSION}, the probe sent version ${version}`, offset);
          }
          const type = dv.getUint16(6, true);
          if (!(type in MSG_TYPE_NAMES)) throw new ProtocolError('unknown-type', `unknown message type ${type}`, offset);
          const length = dv.getUint32(8, true);
          if (length > this.maxPayload) {
            throw new ProtocolError('oversize', `${MSG_TYPE_NAMES[type]} frame declares ${length} payload bytes, over the ${this.maxPayload}-byte cap`, offset);
          }
          this.header = { type, length, seq: dv.getUint32(12, true), offset, raw: h };
        }
        if (this.buffered < this.header.length) break;
        const { type, length, seq, offset, raw: headerBytes } = this.header;
        const payload = this.take(length);
        this.header = null;
        const message = decodePayload(type, payload, offset);
        const raw = new Uint8Array(HEADER_BYTES + length);
        raw.set(headerBytes, 0);
        raw.set(payload, HEADER_BYTES);
        onFrame({ seq, offset, raw, message });
      }
    } catch (e) {
      this.failed = e instanceof ProtocolError ? e : new ProtocolError('bad-field', String((e as Error)?.message ?? e), this.consumed);
      this.chunks = [];
      this.buffered = 0;
      return this.failed;
    }
    return null;
  }

  /** Call when the stream ends: a partly received frame is a `truncated` error. */
  end(): ProtocolError | null {
    if (this.failed) return this.failed;
    if (this.header || this.buffered > 0) {
      const have = this.buffered + (this.header ? HEADER_BYTES : 0);
      const want = this.header ? `${HEADER_BYTES + this.header.length}-byte ${MSG_TYPE_NAMES[this.header.type]} frame` : 'frame header';
      this.failed = new ProtocolError('truncated', `stream ended after ${have} bytes of a ${want}`, this.consumed - (this.header ? HEADER_BYTES : 0));
      return this.failed;
    }
    return null;
  }

  /** Removes and returns the first n buffered bytes; copies only if they span chunks. */
  private take(n: number): Uint8Array {
    this.buffered -= n;
    this.consumed += n;
    const first = this.chunks[0];
    if (first.byteLength === n) {
      this.chunks.shift();
      return first;
    }
    if (first.byteLength > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0];
      const k = Math.min(c.byteLength, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (k === c.byteLength) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** Decodes a complete byte buffer (a run file's frame section, a golden file). */
export function decodeAll(bytes: Uint8Array): { messages: DecodedFrame[]; error: ProtocolError | null } {
  const d = new FrameDecoder();
  const messages: DecodedFrame[] = [];
  const error = d.push(bytes, (f) => messages.push(f)) ?? d.end();
  return { messages, error };
}
