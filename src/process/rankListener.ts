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
//
// The same listener takes remote runs (`gradscope listen`, src/process/remoteListener.ts): TCP on a
// host and port of the caller's choice, with a token. Each connection must then open with an AUTH
// frame carrying the token (src/core/protocol/handshake.ts), compared in constant time, and is
// answered with one AUTH_REPLY (ok, or refused and closed); its HELLO may come any time after that
// (a remote probe says HELLO with its first step, which can be minutes after it connected).
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FrameDecoder, type DecodedFrame, type ProtocolError } from '../core/protocol/codec';
import { HANDSHAKE_TIMEOUT_MS, encodeAuthReply, readAuth } from '../core/protocol/handshake';
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
  /** Where it came from (`127.0.0.1:53124`; the socket's path side is empty for a Unix socket). */
  readonly peer: string;
  /** A remote connection's AUTH `job` (one distributed job's processes share it); undefined otherwise. */
  readonly job?: string;
}

/** Where and how to listen: a Unix socket (the default off Windows), TCP on loopback, or TCP on a given host and port with a token. */
export interface RankListenerOptions {
  /** true: TCP on 127.0.0.1, a free port; an object: that host and port (0: a free one). */
  tcp?: boolean | { host: string; port: number };
  /** When set, every connection must open with an AUTH frame carrying this token (constant-time compare). */
  token?: string;
}

export interface RankListenerHandlers {
  /** A connection sent its HELLO: from now on its frames (HELLO first) come to onFrame. */
  onJoin(conn: RankConnection): void;
  onFrame(conn: RankConnection, frame: DecodedFrame): void;
  /** The connection's stream broke the protocol after its HELLO (it is closed). */
  onProtocolError(conn: RankConnection, err: ProtocolError): void;
  /** The connection closed (after its HELLO). */
  onClose(conn: RankConnection): void;
  /** A connection was refused before any HELLO: why, in words, and who it was. */
  onRefused(reason: string, peer: string): void;
  /** A connection gave the right token (listeners with a token only); its HELLO comes later. */
  onAuthenticated?(peer: string, job: string | undefined): void;
}

/** Whether `given` is the token, in time that does not depend on where they differ (both hashed to 32 bytes first, so their lengths do not show either). */
export function tokenMatches(given: string, token: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(token, 'utf8').digest();
  return timingSafeEqual(a, b) && given.length === token.length;
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
    private readonly token: string | null = null,
  ) {
    server.on('connection', (s) => this.accept(s));
    server.on('error', () => undefined);
  }

  /** Listens on a fresh Unix socket (TCP on loopback on Windows). Rejects when neither can listen. */
  static async open(handlers: RankListenerHandlers, opts: RankListenerOptions = {}): Promise<RankListener> {
    const server = createServer({ allowHalfOpen: false });
    const tcp = opts.tcp ?? process.platform === 'win32';
    if (opts.token !== undefined && opts.token.length === 0) throw new Error('the token is empty');
    if (tcp) {
      const at = typeof tcp === 'object' ? tcp : { host: '127.0.0.1', port: 0 };
      await listen(server, at);
      const a = server.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      const host = at.host.includes(':') ? `[${at.host}]` : at.host;
      return new RankListener(server, `tcp:${host}:${port}`, null, handlers, opts.token ?? null);
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
    return new RankListener(server, `unix:${path}`, dir, handlers, opts.token ?? null);
  }

  /** The TCP port listened on (0 for a Unix socket). */
  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
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
    const peer = s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : 'local';
    const decoder = new FrameDecoder();
    let conn: RankConnection | null = null;
    let failed = false;
    // With a token: bytes before the AUTH frame (and the AUTH itself) are held here, never decoded as frames.
    let pendingAuth: Buffer | null = this.token === null ? null : Buffer.alloc(0);
    let job: string | undefined;
    const refuse = (why: string, reply = false): void => {
      failed = true;
      clearTimeout(timer);
      // A probe that sent its AUTH is told why (it prints it); the connection then closes.
      if (reply) s.end(Buffer.from(encodeAuthReply({ ok: false, message: why })));
      else s.destroy();
      this.handlers.onRefused(why, peer);
    };
    const timer = setTimeout(
      () => refuse(pendingAuth ? `no AUTH within ${HANDSHAKE_TIMEOUT_MS / 1000}s` : `no HELLO within ${HELLO_TIMEOUT_MS / 1000}s`),
      pendingAuth ? HANDSHAKE_TIMEOUT_MS : HELLO_TIMEOUT_MS,
    );
    timer.unref();
    const onFrames = (chunk: Buffer): void => {
      const err = decoder.push(chunk, (f) => {
        if (failed) return;
        if (!conn) {
          if (f.message.type !== 'hello') return refuse(`its first frame was ${f.message.type.toUpperCase()}, not HELLO`);
          clearTimeout(timer);
          conn = { id: this.nextId++, hello: f.message, socket: s, peer, ...(job !== undefined ? { job } : {}) };
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
    };
    s.on('data', (chunk: Buffer) => {
      if (failed) return;
      if (pendingAuth === null) return onFrames(chunk);
      pendingAuth = Buffer.concat([pendingAuth, chunk]);
      const r = readAuth(pendingAuth);
      if (r.kind === 'need-more') return;
      if (r.kind === 'bad') return refuse(r.why);
      if (!tokenMatches(r.msg.token, this.token ?? '')) return refuse(r.msg.token ? 'wrong token' : 'no token (GRADSCOPE_TOKEN is not set where the script runs)', true);
      const rest = pendingAuth.subarray(r.bytes);
      pendingAuth = null;
      job = r.msg.job;
      // Authenticated: its HELLO comes with its first step, whenever that is.
      clearTimeout(timer);
      s.write(Buffer.from(encodeAuthReply({ ok: true, message: 'connected' })));
      this.handlers.onAuthenticated?.(peer, job);
      if (rest.byteLength) onFrames(rest);
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
      } else if (!failed) this.handlers.onRefused(pendingAuth ? 'it closed before its AUTH' : 'it closed before its HELLO', peer);
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
