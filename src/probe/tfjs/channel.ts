// The probe's end of fd 3: frames out, hang-up detection in.
//
// Writes go straight to the fd with fs.writeSync through our own bounded queue rather than through
// net.Socket.write, for two reasons: (1) the final frames (END at a crash, at the step limit, at
// exit) must be flushed synchronously, from places where the event loop will not turn again; (2) a
// user's fully synchronous training loop never yields to the event loop, so queued socket writes
// would sit in memory until it ends. The fd is non-blocking (libuv made it so when the net.Socket
// below opened it for reading), so a full pipe gives EAGAIN rather than blocking training: the frame
// stays queued, a retry is scheduled, and while more than `maxQueuedBytes` wait, droppable frames
// (STEP, DETAIL) are dropped and counted instead of queued.
//
// Everything queued goes out in one writev: a detail step of a 300-tensor model is 300 frames, and
// one write each cost more than encoding them. Between cork() and uncork() nothing is written, so a
// burst of frames (a step's results) leaves in one call.
//
// The read side only watches for the host going away (EOF, error); the socket is unref'd so it
// never keeps a finished script alive.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { encodeMessage } from '../../core/protocol/codec';
import type { Message } from '../../core/protocol/messages';

export const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** Buffers per writev (Linux's IOV_MAX is 1024). */
const IOV_MAX = 1024;

export class Channel {
  private queue: Uint8Array[] = [];
  private headOffset = 0;
  private queuedBytes = 0;
  private seq = 0;
  private retry: NodeJS.Timeout | null = null;
  private socket: net.Socket | null = null;
  private corked = 0;
  /** Frames dropped since the last `dropped` event was queued. */
  private droppedSinceReport = 0;
  /** Frames dropped in total. */
  droppedTotal = 0;
  /** True once the host end is gone (EOF, EPIPE, error): nothing more can be delivered. */
  hostGone = false;

  constructor(
    private readonly fd: number,
    private readonly onHostGone: (why: string) => void,
    private readonly maxQueuedBytes = DEFAULT_MAX_QUEUED_BYTES,
  ) {
    try {
      const s = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
      s.on('data', () => {}); // the host sends nothing yet; drain whatever comes
      s.on('end', () => this.gone('the host closed the channel'));
      s.on('close', () => this.gone('the channel closed'));
      s.on('error', (e) => this.gone(`channel error: ${e.message}`));
      s.unref();
      this.socket = s;
    } catch {
      // Not a socket (a plain pipe or file in a test): writes still work, hang-up shows as EPIPE.
      this.socket = null;
    }
  }

  /** Queues one message. Returns false when it was dropped (queue over its bound) or the host is gone. */
  send(msg: Message): boolean {
    if (this.hostGone) return false;
    const droppable = msg.type === 'step' || msg.type === 'detail';
    if (droppable && this.queuedBytes > this.maxQueuedBytes) {
      this.droppedSinceReport++;
      this.droppedTotal++;
      this.seq++; // a dropped frame leaves a gap in the sequence numbers (docs/protocol.md)
      return false;
    }
    this.enqueue(encodeMessage(msg, this.seq++));
    if (!this.corked) this.pump();
    return true;
  }

  /** Holds writes until the matching uncork(). */
  cork(): void {
    this.corked++;
  }

  uncork(): void {
    if (this.corked > 0 && --this.corked === 0) this.pump();
  }

  /** Counts frames that were never produced (e.g. a step whose statistics were skipped) as dropped. */
  noteDropped(n: number): void {
    this.droppedSinceReport += n;
    this.droppedTotal += n;
  }

  get pendingBytes(): number {
    return this.queuedBytes;
  }

  private enqueue(frame: Uint8Array): void {
    this.queue.push(frame);
    this.queuedBytes += frame.byteLength;
  }

  /** Writes as much as the pipe takes now, without blocking. */
  pump(): void {
    while (this.queue.length && !this.hostGone) {
      const head = this.queue[0];
      const bufs = this.queue.length === 1 ? null : this.queue.slice(0, IOV_MAX);
      if (bufs) bufs[0] = head.subarray(this.headOffset);
      let n: number;
      try {
        n = bufs ? fs.writevSync(this.fd, bufs) : fs.writeSync(this.fd, head, this.headOffset, head.byteLength - this.headOffset);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          this.scheduleRetry();
          return;
        }
        this.gone(`write failed: ${code ?? (e as Error).message}`);
        return;
      }
      if (n === 0) {
        this.scheduleRetry();
        return;
      }
      this.queuedBytes -= n;
      // Drop the frames written whole; keep the offset into a frame written in part.
      let k = 0;
      while (k < this.queue.length && n > 0) {
        const left = this.queue[k].byteLength - this.headOffset;
        if (n < left) {
          this.headOffset += n;
          n = 0;
          break;
        }
        n -= left;
        this.headOffset = 0;
        k++;
      }
      if (k) this.queue.splice(0, k);
    }
    // Report drops once there is room again, so the report itself is not dropped.
    if (this.droppedSinceReport > 0 && this.queuedBytes < this.maxQueuedBytes / 2 && !this.hostGone) {
      const count = this.droppedSinceReport;
      this.droppedSinceReport = 0;
      this.enqueue(encodeMessage({ type: 'event', kind: 'dropped', count, message: `${count} frame(s) dropped: the host did not keep up` }, this.seq++));
      this.pump();
    }
  }

  private scheduleRetry(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.pump();
    }, 2);
    this.retry.unref();
  }

  /**
   * Blocks until everything queued is written, the host is gone, or `timeoutMs` passes. Only for the
   * end of a run (END must arrive), never on the training path.
   */
  flushSync(timeoutMs = 5000): boolean {
    const deadline = Date.now() + timeoutMs;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      this.pump();
      if (!this.queue.length || this.hostGone) break;
      if (Date.now() > deadline) break;
      Atomics.wait(sleeper, 0, 0, 2);
    }
    return this.queue.length === 0;
  }

  private gone(why: string): void {
    if (this.hostGone) return;
    this.hostGone = true;
    this.queue = [];
    this.queuedBytes = 0;
    if (this.retry) clearTimeout(this.retry);
    this.onHostGone(why);
  }

  /** Stops watching the socket (before a deliberate exit), so its close is not taken for a hang-up. */
  detach(): void {
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.removeAllListeners();
      s.on('error', () => {});
    }
  }
}
