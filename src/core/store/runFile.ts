// Run files: every run is written as it happens, so it can be reopened after a restart and a host
// that dies mid-run loses at most the last ~100 ms. docs/run-file.md is the specification.
//
//   <runDir>/<runId>.gsrun =
//     "GSRUN 1 " + JSON(meta) + "\n"            one ASCII line (non-ASCII is \u-escaped)
//     protocol frames, byte for byte as they came off the wire (header + payload each)
//     trailer, written once by the host when the run ends (absent if the host died):
//       u32 magic "GSEX" | u16 version 1 | u16 0 | u32 L | u32 0 | L bytes UTF-8 JSON(exit) | u32 L | u32 "GSEX"
//
// The trailer's closing 8 bytes let a reader find the exit record from the end of the file without
// reading the frames (listRuns reads only the first line and the last bytes of each file). Its
// magic differs from the protocol's, so it can never be mistaken for a frame.
import { closeSync, constants, fdatasync, mkdirSync, fstatSync, ftruncateSync, openSync, readdirSync, readSync, unlinkSync, write, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FrameDecoder, ProtocolError, type DecodedFrame } from '../protocol/codec';
import { HEADER_BYTES, type Framework, type SourceLocation } from '../protocol/messages';
import { describeFsError } from '../util/fsErrors';
import { Emitter } from '../util/emitter';
import { RunStore } from './runStore';

export const RUN_FILE_EXT = '.gsrun';
export const RUN_FILE_VERSION = 1;
const LINE_PREFIX = 'GSRUN ';
/** Bytes "GSEX" read as a little-endian u32. */
export const TRAILER_MAGIC = 0x58455347;
const TRAILER_HEAD = HEADER_BYTES;
const TRAILER_FOOT = 8;
const MAX_HEADER_LINE = 64 * 1024;
const MAX_TRAILER_JSON = 1024 * 1024;
/** Pending bytes that start a write at once instead of waiting for the timer. */
const FLUSH_BYTES = 1024 * 1024;
const FLUSH_MS = 100;
/** Pending bytes beyond which append() writes synchronously (the disk is not keeping up). */
const MAX_PENDING_BYTES = 32 * 1024 * 1024;
const READ_CHUNK = 4 * 1024 * 1024;

export interface RunMeta {
  /** File-name safe: letters, digits, '.', '_', '-'. */
  runId: string;
  /** Absolute path of the training script. */
  script: string;
  args: string[];
  cwd: string;
  /** ISO 8601. */
  startedAt: string;
  framework: Framework;
}

/**
 * How a run ended. `probe-lost`: the probe's channel closed without an END frame while the script
 * went on (or exited 0): the steps after the last one seen were not observed.
 */
export const RUN_EXIT_REASONS = ['completed', 'crashed', 'stopped', 'step-limit', 'time-limit', 'protocol-error', 'probe-lost'] as const;
export type RunExitReason = (typeof RUN_EXIT_REASONS)[number];
const EXIT_REASONS: readonly string[] = RUN_EXIT_REASONS;

export interface RunExitRecord {
  reason: RunExitReason;
  code: number | null;
  signal: string | null;
  error: { message: string; stack?: string; frame?: SourceLocation } | null;
  /** ISO 8601. */
  endedAt: string;
  steps: number;
}

export type RunFileErrorCode = 'io' | 'bad-header' | 'bad-version' | 'bad-trailer';

/** A run file that cannot be read as one (as opposed to a ProtocolError inside its frames). */
export class RunFileError extends Error {
  override readonly name = 'RunFileError';
  constructor(
    readonly code: RunFileErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface ReadRunResult {
  meta: RunMeta;
  store: RunStore;
  exit: RunExitRecord | null;
  /** The file ends inside a frame (or inside the trailer): the host died mid-write. */
  truncated: boolean;
  /** What stopped the read early; every frame before it is in the store. Never thrown. */
  error: ProtocolError | RunFileError | null;
  /** The file's size in bytes (0 when it could not be opened). */
  size: number;
  /** Where the complete frames end (a file offset): bytes from here to `sectionEnd` were not read as frames. */
  framesEnd: number;
  /** Where the frame section ends: the exit record's first byte, or the end of the file. */
  sectionEnd: number;
  /** The read was cancelled (readRunFileAsync's signal): the store holds what was read before. */
  cancelled?: boolean;
}

export interface RunListing {
  path: string;
  meta: RunMeta;
  exit: RunExitRecord | null;
}

const RUN_ID = /^[A-Za-z0-9._-]{1,200}$/;

/** A sortable, file-name safe id: the UTC start time plus a random suffix. */
export function makeRunId(now: Date = new Date()): string {
  const t = now.toISOString().replace(/[:.]/g, '-');
  return `${t}-${Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0')}`;
}

export function runFilePath(runDir: string, runId: string): string {
  return join(runDir, runId + RUN_FILE_EXT);
}

function headerLine(meta: RunMeta): Uint8Array {
  const json = JSON.stringify(meta).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  return Buffer.from(`${LINE_PREFIX}${RUN_FILE_VERSION} ${json}\n`, 'ascii');
}

function trailerBytes(exit: RunExitRecord): Buffer {
  const json = Buffer.from(JSON.stringify(exit), 'utf8');
  const out = Buffer.alloc(TRAILER_HEAD + json.length + TRAILER_FOOT);
  out.writeUInt32LE(TRAILER_MAGIC, 0);
  out.writeUInt16LE(RUN_FILE_VERSION, 4);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(json.length, 8);
  out.writeUInt32LE(0, 12);
  json.copy(out, TRAILER_HEAD);
  out.writeUInt32LE(json.length, TRAILER_HEAD + json.length);
  out.writeUInt32LE(TRAILER_MAGIC, TRAILER_HEAD + json.length + 4);
  return out;
}

function writeAll(fd: number, buf: Uint8Array, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number): void => {
      write(fd, buf, off, buf.byteLength - off, pos + off, (err, n) => {
        if (err) reject(err);
        else if (off + n < buf.byteLength) step(off + n);
        else resolve();
      });
    };
    step(0);
  });
}

function writeAllSync(fd: number, buf: Uint8Array, pos: number): void {
  let off = 0;
  while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off, pos + off);
}

/** The writer stopped: what the file holds from then on. */
export interface RunFileFailure {
  error: Error;
  /** One line: "no space left on device (ENOSPC)". */
  reason: string;
  /** Bytes the file keeps: its first line and every whole frame written before the failure. */
  bytes: number;
  /** The `mark` of the last frame kept (RunSession: the steps recorded). */
  mark: number;
}

/**
 * Appends a run's frames to its run file without blocking the host: frames are buffered and
 * written with one asynchronous fs.write per batch (every 100 ms, or at once past 1 MiB).
 * Writes carry explicit positions, so a synchronous catch-up write (past 32 MiB pending, when the
 * disk does not keep up) cannot reorder bytes. A write error (a full disk, a removed medium) stops
 * writing: the file is cut back to the end of the last whole frame written, so what it holds stays
 * readable; `error`/`failure` say what happened and `onDidFail` fires once. append() never throws.
 */
export class RunFileWriter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private pendingMark = 0;
  private pos: number;
  private inflight: Promise<void> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closing: Promise<void> | null = null;
  private _error: Error | null = null;
  private _failure: RunFileFailure | null = null;
  private salvaging: Promise<void> | null = null;
  private fdOpen = true;
  /** The file's whole-frame prefix known to be written, and the mark of its last frame. */
  private durable: { end: number; mark: number };
  /** Batches written after a gap (a catch-up write that overtook the one in flight). */
  private written: { start: number; end: number; mark: number }[] = [];
  private readonly failed = new Emitter<RunFileFailure>();
  /** Fires once, when a write fails and the file has been cut back to its last whole frame. */
  readonly onDidFail = this.failed.event;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    headerBytes: number,
  ) {
    this.pos = headerBytes;
    this.durable = { end: headerBytes, mark: 0 };
  }

  /**
   * Creates `<runDir>/<runId>.gsrun` (and `runDir` itself, not its parents: a recursive mkdir spins
   * under /proc, so callers check deeper paths with src/process/files.ts ensureDir) and writes its
   * first line. Throws RunFileError('io') with one line if the file cannot be created or its first
   * line written (then no file is left behind).
   */
  static create(runDir: string, meta: RunMeta): RunFileWriter {
    if (!RUN_ID.test(meta.runId)) throw new RunFileError('bad-header', `run id "${meta.runId}" is not file-name safe`);
    const path = runFilePath(runDir, meta.runId);
    let fd: number;
    try {
      try {
        mkdirSync(runDir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      fd = openSync(path, 'wx');
    } catch (e) {
      throw new RunFileError('io', `cannot create the run file in ${runDir}: ${describeFsError(e)}`);
    }
    const line = headerLine(meta);
    try {
      writeAllSync(fd, line, 0);
    } catch (e) {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // nothing readable was left anyway
      }
      throw new RunFileError('io', `cannot write the run file ${path}: ${describeFsError(e)}`);
    }
    return new RunFileWriter(path, fd, line.byteLength);
  }

  /** The first write error, after which nothing more is written. */
  get error(): Error | null {
    return this._error;
  }

  /** What the file holds after a write error (set once the file has been cut back; null while writing works). */
  get failure(): RunFileFailure | null {
    return this._failure;
  }

  /** Bytes in the file once everything appended so far is written. */
  get size(): number {
    return this.pos + this.pendingBytes;
  }

  /**
   * Queues one raw frame. `mark` is the caller's count after this frame (RunSession passes the
   * steps seen), reported back in `failure.mark`. The writer keeps a reference until it is
   * written: do not reuse `raw`.
   */
  append(raw: Uint8Array, mark?: number): void {
    if (this.closing || this._error) return;
    this.pending.push(raw);
    this.pendingBytes += raw.byteLength;
    if (mark !== undefined) this.pendingMark = mark;
    if (this.pendingBytes >= MAX_PENDING_BYTES && this.inflight) {
      const { buf, mark: m } = this.takePending();
      const start = this.pos;
      try {
        writeAllSync(this.fd, buf, start);
        this.pos += buf.byteLength;
        this.wrote(start, start + buf.byteLength, m);
      } catch (e) {
        this.fail(e);
      }
      return;
    }
    if (this.pendingBytes >= FLUSH_BYTES) this.kick();
    else this.schedule();
  }

  /**
   * Writes everything appended, then the exit trailer (if given), syncs and closes. Idempotent,
   * never rejects (check `error`/`failure`). After a write error no trailer is written: the file
   * ends with its last whole frame, which a reader reports as a run without an exit record.
   */
  close(exit?: RunExitRecord): Promise<void> {
    this.closing ??= this.finish(exit);
    return this.closing;
  }

  private async finish(exit: RunExitRecord | undefined): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.inflight) await this.inflight;
    try {
      if (!this._error) {
        // The last frames first, then the trailer: a disk that fills on the trailer keeps every frame.
        const { buf, mark } = this.takePending();
        const start = this.pos;
        if (buf.byteLength > 0) await writeAll(this.fd, buf, start);
        this.pos += buf.byteLength;
        this.wrote(start, start + buf.byteLength, mark);
        if (exit) {
          const trailer = trailerBytes(exit);
          await writeAll(this.fd, trailer, this.pos);
          this.pos += trailer.byteLength;
        }
        await new Promise<void>((resolve, reject) => fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
      }
    } catch (e) {
      this.fail(e);
    } finally {
      if (this.salvaging) await this.salvaging;
      if (this.fdOpen) {
        this.fdOpen = false;
        try {
          closeSync(this.fd);
        } catch {
          // already gone
        }
      }
    }
  }

  private schedule(): void {
    if (this.timer || this.inflight) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.kick();
    }, FLUSH_MS);
    this.timer.unref?.();
  }

  private kick(): void {
    if (this.inflight || this.pendingBytes === 0 || this._error) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const { buf, mark } = this.takePending();
    const pos = this.pos;
    this.pos += buf.byteLength;
    this.inflight = writeAll(this.fd, buf, pos).then(
      () => {
        this.inflight = null;
        this.wrote(pos, pos + buf.byteLength, mark);
        if (this.closing || this._error) return;
        if (this.pendingBytes >= FLUSH_BYTES) this.kick();
        else if (this.pendingBytes > 0) this.schedule();
      },
      (e: unknown) => {
        this.inflight = null;
        this.fail(e);
      },
    );
  }

  private takePending(): { buf: Buffer; mark: number } {
    const buf = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return { buf, mark: this.pendingMark };
  }

  /** A batch [start, end) is on disk: extend the durable prefix through every batch that now joins it. */
  private wrote(start: number, end: number, mark: number): void {
    if (end <= start) return;
    this.written.push({ start, end, mark });
    this.written.sort((a, b) => a.start - b.start);
    while (this.written.length && this.written[0].start === this.durable.end) {
      const w = this.written.shift()!;
      this.durable = { end: w.end, mark: w.mark };
    }
  }

  private fail(e: unknown): void {
    if (this._error) return;
    this._error = e instanceof Error ? e : new Error(String(e));
    this.pending = [];
    this.pendingBytes = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Cut the file back to its last whole frame once no write is in flight (one may still land).
    this.salvaging = (async () => {
      while (this.inflight) await this.inflight.catch(() => undefined);
      try {
        if (this.fdOpen) ftruncateSync(this.fd, this.durable.end);
      } catch {
        // The frames before durable.end are whole; a reader stops at the partial one anyway.
      }
      this._failure = { error: this._error!, reason: describeFsError(this._error), bytes: this.durable.end, mark: this.durable.mark };
      this.failed.fire(this._failure);
    })();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

function readAt(fd: number, pos: number, len: number): Buffer {
  const buf = Buffer.alloc(len);
  let off = 0;
  while (off < len) {
    const n = readSync(fd, buf, off, len - off, pos + off);
    if (n === 0) break;
    off += n;
  }
  return off === len ? buf : buf.subarray(0, off);
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseMeta(o: unknown): RunMeta | null {
  if (!isObj(o)) return null;
  const { runId, script, args, cwd, startedAt, framework } = o;
  if (typeof runId !== 'string' || typeof script !== 'string' || typeof cwd !== 'string' || typeof startedAt !== 'string') return null;
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) return null;
  if (framework !== 'tfjs' && framework !== 'torch') return null;
  return { runId, script, args, cwd, startedAt, framework };
}

function parseExit(o: unknown): RunExitRecord | null {
  if (!isObj(o)) return null;
  const { reason, code, signal, error, endedAt, steps } = o;
  if (typeof reason !== 'string' || !EXIT_REASONS.includes(reason)) return null;
  if (!(code === null || typeof code === 'number') || !(signal === null || typeof signal === 'string')) return null;
  if (typeof endedAt !== 'string' || typeof steps !== 'number') return null;
  let err: RunExitRecord['error'] = null;
  if (error !== null && error !== undefined) {
    if (!isObj(error) || typeof error.message !== 'string') return null;
    err = { message: error.message };
    if (typeof error.stack === 'string') err.stack = error.stack;
    const f = error.frame;
    if (isObj(f) && typeof f.file === 'string' && typeof f.line === 'number' && typeof f.column === 'number') {
      err.frame = { file: f.file, line: f.line, column: f.column };
    }
  }
  return { reason: reason as RunExitReason, code, signal, error: err, endedAt, steps };
}

/** Reads and checks the first line. Throws RunFileError. */
function readHeader(fd: number, size: number): { meta: RunMeta; end: number } {
  const head = readAt(fd, 0, Math.min(size, MAX_HEADER_LINE));
  const nl = head.indexOf(0x0a);
  if (head.length < LINE_PREFIX.length || head.subarray(0, LINE_PREFIX.length).toString('latin1') !== LINE_PREFIX) {
    throw new RunFileError('bad-header', 'not a GradScope run file (it does not start with "GSRUN ")');
  }
  if (nl < 0) throw new RunFileError('bad-header', `the first line of the run file is not terminated within ${MAX_HEADER_LINE} bytes`);
  const line = head.subarray(0, nl).toString('latin1');
  const m = /^GSRUN (\S+) (.*)$/.exec(line);
  if (!m) throw new RunFileError('bad-header', 'the first line must be "GSRUN <version> <json>"');
  // The version is written as a plain decimal ("1"): "01", "1.0" or "+1" is not a file we wrote.
  if (m[1] !== String(RUN_FILE_VERSION)) {
    const what = /^(0|[1-9]\d*)$/.test(m[1]) ? `run file version ${m[1]} is not supported` : `"${m[1].slice(0, 20)}" is not a run file version`;
    throw new RunFileError('bad-version', `${what} (this GradScope reads version ${RUN_FILE_VERSION}, written "GSRUN ${RUN_FILE_VERSION} ")`);
  }
  let o: unknown;
  try {
    o = JSON.parse(m[2]);
  } catch (e) {
    throw new RunFileError('bad-header', `the run file's metadata is not valid JSON: ${(e as Error).message}`);
  }
  const meta = parseMeta(o);
  if (!meta) throw new RunFileError('bad-header', "the run file's metadata lacks runId, script, args, cwd, startedAt or framework");
  return { meta, end: nl + 1 };
}

/** Finds the exit trailer from the end. `start` is where the frames end. */
function readTrailer(fd: number, size: number, framesStart: number): { exit: RunExitRecord | null; start: number; error: RunFileError | null } {
  const none = { exit: null, start: size, error: null };
  if (size - framesStart < TRAILER_HEAD + TRAILER_FOOT) return none;
  const foot = readAt(fd, size - TRAILER_FOOT, TRAILER_FOOT);
  if (foot.length !== TRAILER_FOOT || foot.readUInt32LE(4) !== TRAILER_MAGIC) return none;
  const len = foot.readUInt32LE(0);
  const start = size - TRAILER_FOOT - len - TRAILER_HEAD;
  if (len > MAX_TRAILER_JSON || start < framesStart) return none;
  const body = readAt(fd, start, TRAILER_HEAD + len);
  if (body.length !== TRAILER_HEAD + len || body.readUInt32LE(0) !== TRAILER_MAGIC || body.readUInt32LE(8) !== len) return none;
  let exit: RunExitRecord | null = null;
  try {
    exit = parseExit(JSON.parse(body.subarray(TRAILER_HEAD).toString('utf8')));
  } catch {
    exit = null;
  }
  if (!exit) return { exit: null, start, error: new RunFileError('bad-trailer', `the run's exit record at byte ${start} is not valid`) };
  return { exit, start, error: null };
}

function fallbackMeta(path: string): RunMeta {
  return { runId: basename(path).replace(/\.gsrun$/, ''), script: '', args: [], cwd: '', startedAt: '', framework: 'tfjs' };
}

/** Moves a ProtocolError's offset from the frame section to the file. */
function atFileOffset(e: ProtocolError, framesStart: number): ProtocolError {
  const detail = e.message.replace(/^protocol error \([^)]*\) at byte \d+: /, '');
  return new ProtocolError(e.code, `${detail} (in the run file)`, e.offset + framesStart);
}

/**
 * Opens a run file for reading, refusing anything but a regular file: opening a FIFO would block
 * until a writer appears (with the event loop stuck), a device could stream forever. Throws RunFileError('io').
 */
function openRunFile(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw new RunFileError('io', `cannot open ${path}: ${describeFsError(e)}`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    const kind = st.isDirectory()
      ? 'a folder'
      : st.isFIFO()
        ? 'a named pipe (FIFO)'
        : st.isCharacterDevice() || st.isBlockDevice()
          ? 'a device'
          : st.isSocket()
            ? 'a socket'
            : 'not a regular file';
    throw new RunFileError('io', `${path} is ${kind}, not a run file`);
  }
  return fd;
}

/**
 * Reopens a run: every complete frame goes into `store` (a new one by default). Never throws: a
 * file cut mid-frame gives truncated=true; garbage gives `error` with every frame before it read;
 * anything but a regular file is refused unopened (`error`, code 'io'). describeRunRead() says in
 * words what was read and what was not.
 * Synchronous: a large run blocks its caller (about 40,000 STEP frames of 200 tensors per second);
 * the extension host and the CLI use readRunFileAsync.
 */
export function readRunFile(path: string, store: RunStore = new RunStore()): ReadRunResult {
  const it = readSteps(path, store);
  let r = it.next();
  while (!r.done) r = it.next();
  return r.value;
}

/** readRunFile that yields to the event loop between 4 MiB chunks; aborting `signal` stops it there (`cancelled`). */
export async function readRunFileAsync(path: string, store: RunStore = new RunStore(), opts: { signal?: AbortSignal } = {}): Promise<ReadRunResult> {
  const it = readSteps(path, store, opts.signal);
  let r = it.next();
  while (!r.done) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    r = it.next();
  }
  return r.value;
}

/** The reader, one chunk per iteration. */
function* readSteps(path: string, store: RunStore, signal?: AbortSignal): Generator<void, ReadRunResult, void> {
  let fd: number;
  try {
    fd = openRunFile(path);
  } catch (e) {
    return { meta: fallbackMeta(path), store, exit: null, truncated: false, error: e as RunFileError, size: 0, framesEnd: 0, sectionEnd: 0 };
  }
  let meta = fallbackMeta(path);
  let size = 0;
  let framesEnd = 0;
  try {
    size = fstatSync(fd).size;
    const header = readHeader(fd, size);
    meta = header.meta;
    framesEnd = header.end;
    const trailer = readTrailer(fd, size, header.end);
    const decoder = new FrameDecoder();
    const onFrame = (f: DecodedFrame): void => store.ingest(f.message);
    let err: ProtocolError | null = null;
    let cancelled = false;
    for (let pos = header.end; pos < trailer.start && !err;) {
      const chunk = readAt(fd, pos, Math.min(READ_CHUNK, trailer.start - pos));
      if (chunk.length === 0) break;
      pos += chunk.length;
      err = decoder.push(chunk, onFrame);
      if (!err && pos < trailer.start) {
        yield;
        if (signal?.aborted) {
          cancelled = true;
          break;
        }
      }
    }
    framesEnd = header.end + decoder.bytesConsumed;
    if (cancelled) return { meta, store, exit: trailer.exit, truncated: false, error: null, size, framesEnd, sectionEnd: trailer.start, cancelled };
    let truncated = false;
    if (!err) {
      const endErr = decoder.end();
      if (endErr) truncated = true;
    } else if (err.code === 'bad-magic') {
      // The host died while writing the trailer: the frames before it are complete.
      const at = header.end + err.offset;
      const b = readAt(fd, at, 4);
      if (b.length === 4 && b.readUInt32LE(0) === TRAILER_MAGIC) {
        truncated = true;
        err = null;
      }
    }
    return { meta, store, exit: trailer.exit, truncated, error: err ? atFileOffset(err, header.end) : trailer.error, size, framesEnd, sectionEnd: trailer.start };
  } catch (e) {
    const error = e instanceof RunFileError ? e : new RunFileError('io', `cannot read ${path}: ${describeFsError(e)}`);
    return { meta, store, exit: null, truncated: false, error, size, framesEnd, sectionEnd: size };
  } finally {
    closeSync(fd);
  }
}

/** What a read of a run file found, in words: for the CLI's `--from-run` and the extension's Open Run. */
export interface RunReadReport {
  /** False when the file is not a run file (or cannot be opened): nothing of it may be used. */
  usable: boolean;
  /** Every byte was read and the run's end is recorded. */
  complete: boolean;
  /** One line: what was read ("4,000 steps (0–3,999), the run's end: completed"). */
  read: string;
  /** What was not read, one sentence each (empty when complete). */
  notRead: string[];
}

const n = (x: number): string => x.toLocaleString('en-US');

/** Says what a read gave and what it could not: a damaged file is never used without a word. */
export function describeRunRead(r: ReadRunResult): RunReadReport {
  const isFileError = r.error instanceof RunFileError && r.error.code !== 'bad-trailer';
  if (isFileError && r.store.stepCount === 0 && !r.store.hello) {
    return { usable: false, complete: false, read: 'nothing', notRead: [r.error!.message] };
  }
  const steps = r.store.stepCount;
  const first = steps > 0 ? r.store.lastStep - steps + 1 : 0;
  const range = steps === 0 ? 'no steps' : `${n(steps)} step${steps === 1 ? '' : 's'}` + (steps > 1 ? ` (up to step ${n(r.store.lastStep)})` : ` (step ${n(first)})`);
  const end = r.exit ? `the run's end: ${r.exit.reason}${r.exit.steps !== steps ? ` after ${n(r.exit.steps)} steps` : ''}` : null;
  const notRead: string[] = [];
  if (r.cancelled) notRead.push(`the read was cancelled at byte ${n(r.framesEnd)} of ${n(r.sectionEnd)}`);
  if (r.error && !(r.error instanceof RunFileError && r.error.code === 'bad-trailer')) {
    const at = r.error instanceof ProtocolError ? r.error.offset : r.framesEnd;
    const rest = Math.max(0, r.sectionEnd - at);
    const why = r.error.message.replace(/^protocol error \([^)]*\) at byte \d+: /, '').replace(/ \(in the run file\)$/, '');
    notRead.push(`the file is damaged at byte ${n(at)} (${why}): the ${n(rest)} bytes of frames from there on were not read`);
  }
  if (r.error instanceof RunFileError && r.error.code === 'bad-trailer') notRead.push(`${r.error.message}: how the run ended is unknown`);
  if (r.truncated) notRead.push(`the file ends inside a frame or its exit record (${n(Math.max(0, r.size - r.framesEnd))} bytes at the end are incomplete): its writer stopped mid-write`);
  if (!r.exit && !(r.error instanceof RunFileError && r.error.code === 'bad-trailer')) {
    notRead.push(
      r.store.end
        ? "no exit record (the host did not record the run's end; the probe's END is there)"
        : "no exit record: the run's end was not recorded (the host stopped, or could not write, before the run ended)",
    );
  }
  if (steps === 0) notRead.push('no optimizer step is in the file: there is nothing to diagnose');
  const read = [range, r.store.hello ? null : 'no HELLO', end].filter(Boolean).join(', ');
  return { usable: true, complete: notRead.length === 0, read, notRead };
}

/** Lists the runs in `runDir`, newest first, reading only each file's first line and trailer. */
export function listRuns(runDir: string): RunListing[] {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return [];
  }
  const out: RunListing[] = [];
  for (const name of names) {
    if (!name.endsWith(RUN_FILE_EXT)) continue;
    const path = join(runDir, name);
    let fd: number;
    try {
      fd = openRunFile(path); // never a FIFO named *.gsrun: the listing must not hang
    } catch {
      continue;
    }
    try {
      const size = fstatSync(fd).size;
      const { meta, end } = readHeader(fd, size);
      out.push({ path, meta, exit: readTrailer(fd, size, end).exit });
    } catch {
      // Not a readable run file: leave it out of the list.
    } finally {
      closeSync(fd);
    }
  }
  const t = (r: RunListing): number => Date.parse(r.meta.startedAt) || 0;
  return out.sort((a, b) => t(b) - t(a) || (a.path < b.path ? 1 : a.path > b.path ? -1 : 0));
}
