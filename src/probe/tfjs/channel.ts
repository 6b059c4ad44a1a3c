// The probe's end of the channel: frames out, hang-up detection in.
//
// Writes go straight to the fd with fs.writeSync through our own bounded queue rather than through
// net.Socket.write, for two reasons: (1) the final frames (END at a crash, at the step limit, at
// exit) must be flushed synchronously, from places where the event loop will not turn again; (2) a
// user's fully synchronous training loop never yields to the event loop, so queued socket writes
// would sit in memory until it ends. The fd is non-blocking (libuv makes it so when the net.Socket
// below opens it), so a full pipe gives EAGAIN rather than blocking training: the frame
// stays queued, a retry is scheduled, and while more than `maxQueuedBytes` wait, droppable frames
// (STEP, DETAIL) are dropped and counted instead of queued.
//
// Everything queued goes out in one writev: a detail step of a 300-tensor model is 300 frames, and
// one write each cost more than encoding them. Between cork() and uncork() nothing is written, so a
// burst of frames (a step's results) leaves in one call.
//
// The read side only watches for the host going away: every WATCH_MS an (unref'd) timer reads the
// non-blocking fd once; EAGAIN while the host holds its end, end-of-file or an error once it is gone.
// Not a libuv read watcher: that would keep the descriptor's number registered in the event loop after
// a script closed it, so a socket the script opened later under that number would be refused (EEXIST)
// or read by the watcher (seen: the script's own server socket taken for a broken channel).
//
// The descriptor is the script's to close: the probe never writes to a descriptor that is no longer
// the host's channel. Node cannot dup() a descriptor (nor open a socket's /proc/self/fd entry: ENXIO)
// nor set close-on-exec, so the probe cannot move the channel itself as the torch probe does. The
// host hands it over out of the way instead (GRADSCOPE_CHANNEL_FD, 15: src/process/channelFd.ts says
// why that number, which Node makes close-on-exec at start-up), and every write is preceded by an
// fstat that checks the descriptor is still the one the probe started with (same device and inode).
// A script that closes it, even one that then opens a file of its own under that number, loses the
// channel, never its file: the probe prints a warning, sends nothing more, and the script goes on
// uninstrumented (the host sees the channel end without END: probe-lost). The check and the write
// run on this thread, so no script code runs between them. One fstat is ~0.5 µs, once per write (one
// writev per step).
import * as fs from 'node:fs';
import * as net from 'node:net';
import { encodeMessage } from '../../core/protocol/codec';
import type { Message } from '../../core/protocol/messages';

export const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** Buffers per writev (Linux's IOV_MAX is 1024). */
const IOV_MAX = 1024;
/** How often the read side looks for the host's hang-up, ms (one fstat and one read: a few µs). */
const WATCH_MS = 100;

export class Channel {
  private queue: Uint8Array[] = [];
  private headOffset = 0;
  private queuedBytes = 0;
  private seq = 0;
  private retry: NodeJS.Timeout | null = null;
  /** Holds the libuv handle that made the fd non-blocking; never read through, written through or closed. */
  private socket: net.Socket | null = null;
  private watch: NodeJS.Timeout | null = null;
  private corked = 0;
  /** Frames dropped since the last `dropped` event was queued. */
  private droppedSinceReport = 0;
  /** Frames dropped in total. */
  droppedTotal = 0;
  /** True once the host end is gone (EOF, EPIPE, error): nothing more can be delivered. */
  hostGone = false;
  /** Why the channel was lost to the script (it closed or replaced the descriptor); null while it is ours. */
  lost: string | null = null;
  /** The descriptor's file at start (device, inode). */
  private readonly identity: { dev: number; ino: number };
  private readonly scratch = Buffer.alloc(4096);
  /** Opened as a socket or pipe (so libuv made it non-blocking): it can be read without blocking. */
  private readonly readable: boolean = false;

  constructor(
    private readonly fd: number,
    private readonly onHostGone: (why: string) => void,
    private readonly maxQueuedBytes = DEFAULT_MAX_QUEUED_BYTES,
  ) {
    // Throws EBADF when there is no such descriptor: no channel (the runner says so).
    const st = fs.fstatSync(fd);
    this.identity = { dev: st.dev, ino: st.ino };
    try {
      // Opening it makes the fd non-blocking. Neither side is used through the stream (readable and
      // writable false: libuv never watches the fd, and the stream never ends or closes it).
      const s = new net.Socket({ fd, readable: false, writable: false });
      s.on('error', () => {});
      s.unref();
      this.socket = s;
      this.readable = true;
      this.watch = setInterval(() => this.look(), WATCH_MS);
      this.watch.unref();
    } catch {
      // Not a socket or pipe (a file in a test): writes still work, nothing to watch.
      this.socket = null;
    }
  }

  /** The read side, from the timer: is the host still there? */
  private look(): void {
    if (!this.open) return this.stopWatching();
    if (!this.stillOurs()) return;
    const r = this.readNow();
    if (r === 'eof') this.gone('the host closed the channel');
    else if (r !== 'alive' && r !== 'unreadable') this.gone(`channel error: ${r}`);
    if (r === 'unreadable') this.stopWatching(); // a write-only pipe (tests): a hang-up shows as EPIPE
  }

  /** One non-blocking read: 'alive' (EAGAIN, or data: the host sends nothing in v1), 'eof', 'unreadable' (EBADF on a descriptor that is still ours) or an error code. */
  private readNow(): string {
    try {
      return fs.readSync(this.fd, this.scratch, 0, this.scratch.byteLength, null) === 0 ? 'eof' : 'alive';
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR' ? 'alive' : code === 'EBADF' ? 'unreadable' : code;
    }
  }

  private stopWatching(): void {
    if (this.watch) clearInterval(this.watch);
    this.watch = null;
  }

  /** False once nothing more can be delivered: the host is gone, or the script took the descriptor. */
  get open(): boolean {
    return !this.hostGone && this.lost === null;
  }

  /** Queues one message. Returns false when it was dropped (queue over its bound) or the channel is not open. */
  send(msg: Message): boolean {
    if (!this.open) return false;
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
    if (this.queue.length && this.open && !this.stillOurs()) return;
    while (this.queue.length && this.open) {
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
        if (code === 'EBADF') {
          this.lose(`the script closed the channel's descriptor (fd ${this.fd})`);
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
    if (this.droppedSinceReport > 0 && this.queuedBytes < this.maxQueuedBytes / 2 && this.open) {
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
      if (!this.queue.length || !this.open) break;
      if (Date.now() > deadline) break;
      Atomics.wait(sleeper, 0, 0, 2);
    }
    return this.queue.length === 0;
  }

  /**
   * Whether the descriptor is still the host's channel: the same file (device, inode) as at start.
   * When not, the channel is lost (below) and nothing is written.
   */
  private stillOurs(): boolean {
    let st: fs.Stats;
    try {
      st = fs.fstatSync(this.fd);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      this.lose(`the script closed the channel's descriptor (fd ${this.fd}${code === 'EBADF' ? '' : `, ${code ?? (e as Error).message}`})`);
      return false;
    }
    if (st.dev === this.identity.dev && st.ino === this.identity.ino) return true;
    this.lose(`the script closed the channel's descriptor (fd ${this.fd}) and opened something else under its number`);
    return false;
  }

  private drop(): void {
    this.queue = [];
    this.headOffset = 0;
    this.queuedBytes = 0;
    if (this.retry) clearTimeout(this.retry);
    this.stopWatching();
  }

  private gone(why: string): void {
    if (!this.open) return;
    this.hostGone = true;
    this.drop();
    this.onHostGone(why);
  }

  /**
   * The script closed (and maybe reused) the descriptor: the host is still there, only the channel
   * is gone. Nothing more is sent, the script goes on without inspection, and the host sees the
   * channel end without END (probe-lost). Said on stderr, the only way left to say it.
   */
  private lose(why: string): void {
    if (!this.open) return;
    this.lost = why;
    this.drop();
    try {
      fs.writeSync(2, `[gradscope] warning: ${why}: GradScope sees nothing more of this run; the script goes on without inspection\n`);
    } catch {
      // no stderr either
    }
  }

  /**
   * Whether the host is gone, asked now rather than at the watch timer's next look (at exit, which
   * may come before the timer saw the hang-up): end-of-file on the channel means it is. When it is,
   * the channel is closed as by the watch (nothing more is queued or written), but the hang-up
   * callback is left to the caller, which acts on the answer.
   */
  hostGoneNow(): boolean {
    if (this.hostGone) return true;
    // Never read a descriptor that is not the channel any more (it may be the script's file now).
    if (this.lost !== null || !this.readable || !this.stillOurs()) return false;
    const r = this.readNow();
    if (r === 'alive' || r === 'unreadable') return false;
    this.hostGone = true;
    this.drop();
    return true;
  }

  /** Stops watching for the hang-up (before a deliberate exit), so the end of the run is not taken for one. */
  detach(): void {
    this.stopWatching();
  }
}
