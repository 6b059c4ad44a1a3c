// One run's listener for the processes that join it over a local socket (issue 17): the ranks of a
// torchrun job, the children of mp.spawn, each on its own connection, each announced by its HELLO.
// The single process of an ordinary run keeps the fd channel (./channelFd.ts): this is the
// transport any number of processes can join, with the same frames (docs/protocol.md, "Several
// processes").
//
// A Unix domain socket in a private temporary folder (mode 0700, so only this user can connect),
// whose address the probe reads from GS_PROBE_SOCKET (`unix:/path`); TCP on 127.0.0.1 only where
// Unix sockets are not available (Windows: `tcp:127.0.0.1:PORT`). Each connection has its own frame
// decoder; its first frame must be a HELLO, within HELLO_TIMEOUT_MS: anything else (another frame,
// bytes that are no frame, silence) and the connection is refused (closed, and said once).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FrameDecoder, type DecodedFrame, type ProtocolError } from '../core/protocol/codec';
import type { HelloMsg } from '../core/protocol/messages';

/** Where a process of the run connects (`unix:/path` or `tcp:127.0.0.1:PORT`). Not a GRADSCOPE_ variable: it must reach every process the script starts. */
export const PROBE_SOCKET_ENV = 'GS_PROBE_SOCKET';
/** The probe's settings for the processes that join over the socket: `steps=N,detail=K,sampled=S,script=PATH`. */
export const PROBE_SETTINGS_ENV = 'GS_PROBE_SETTINGS';
export const HELLO_TIMEOUT_MS = 10_000;

/** One process that joined the run: its HELLO, and its socket (host side). */
export interface RankConnection {
  /** Dense from 0 in the order the processes joined. */
  readonly id: number;
  readonly hello: HelloMsg;
  readonly socket: Socket;
}

export interface RankListenerHandlers {
  /** A connection sent its HELLO: from now on its frames (HELLO first) come to onFrame. */
  onJoin(conn: RankConnection): void;
  onFrame(conn: RankConnection, frame: DecodedFrame): void;
  /** The connection's stream broke the protocol after its HELLO (it is closed). */
  onProtocolError(conn: RankConnection, err: ProtocolError): void;
  /** The connection closed (after its HELLO). */
  onClose(conn: RankConnection): void;
  /** A connection was refused before any HELLO: why, in words. */
  onRefused(reason: string): void;
}

export class RankListener {
  private readonly sockets = new Set<Socket>();
  private readonly closedAll: Promise<void>[] = [];
  private nextId = 0;
  private closed = false;

  private constructor(
    private readonly server: Server,
    /** What GS_PROBE_SOCKET says. */
    readonly address: string,
    private readonly dir: string | null,
    private readonly handlers: RankListenerHandlers,
  ) {
    server.on('connection', (s) => this.accept(s));
    server.on('error', () => undefined);
  }

  /** Listens on a fresh Unix socket (TCP on loopback on Windows). Rejects when neither can listen. */
  static async open(handlers: RankListenerHandlers, opts: { tcp?: boolean } = {}): Promise<RankListener> {
    const server = createServer({ allowHalfOpen: false });
    const tcp = opts.tcp ?? process.platform === 'win32';
    if (tcp) {
      await listen(server, { host: '127.0.0.1', port: 0 });
      const a = server.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      return new RankListener(server, `tcp:127.0.0.1:${port}`, null, handlers);
    }
    // mkdtemp makes the folder 0700: only this user reaches the socket. Short path: a Unix socket's is limited to ~104 bytes.
    const dir = mkdtempSync(join(tmpdir(), 'gs-'));
    const path = join(dir, 's');
    try {
      await listen(server, { path });
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return new RankListener(server, `unix:${path}`, dir, handlers);
  }

  /** Processes connected now (after their HELLO or not). */
  get connectionCount(): number {
    return this.sockets.size;
  }

  private accept(s: Socket): void {
    if (this.closed) return void s.destroy();
    this.sockets.add(s);
    this.closedAll.push(new Promise((r) => s.once('close', () => r())));
    s.once('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    const decoder = new FrameDecoder();
    let conn: RankConnection | null = null;
    let failed = false;
    const refuse = (why: string): void => {
      failed = true;
      clearTimeout(timer);
      s.destroy();
      this.handlers.onRefused(why);
    };
    const timer = setTimeout(() => refuse(`no HELLO within ${HELLO_TIMEOUT_MS / 1000}s`), HELLO_TIMEOUT_MS);
    timer.unref();
    s.on('data', (chunk: Buffer) => {
      if (failed) return;
      const err = decoder.push(chunk, (f) => {
        if (failed) return;
        if (!conn) {
          if (f.message.type !== 'hello') return refuse(`its first frame was ${f.message.type.toUpperCase()}, not HELLO`);
          clearTimeout(timer);
          conn = { id: this.nextId++, hello: f.message, socket: s };
          this.handlers.onJoin(conn);
        }
        this.handlers.onFrame(conn, f);
      });
      if (err && !failed) {
        if (!conn) return refuse(`not a GradScope probe: ${err.message}`);
        failed = true;
        s.destroy();
        this.handlers.onProtocolError(conn, err);
      }
    });
    s.once('close', () => {
      clearTimeout(timer);
      if (conn) {
        if (!failed) {
          const err = decoder.end();
          if (err) {
            failed = true;
            this.handlers.onProtocolError(conn, err);
          }
        }
        this.handlers.onClose(conn);
      } else if (!failed) this.handlers.onRefused('it closed before its HELLO');
    });
  }

  /** Resolves once every connection made so far has closed, or after `ms`. */
  async drained(ms: number): Promise<void> {
    await Promise.race([Promise.all(this.closedAll), new Promise((r) => setTimeout(r, ms).unref())]);
  }

  /** Ends every connection: the probes on the other side see end-of-file and stop their process (the "host is gone" watchdog). */
  disconnectAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** Stops listening, ends every connection, removes the socket's folder. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.disconnectAll();
    this.server.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

function listen(server: Server, at: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
