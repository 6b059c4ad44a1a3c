// Waits for remote runs (issue 17): probes on other machines that connect over TCP with a token
// (`python -m gradscope_probe --connect HOST:PORT train.py`, `node dist/probe/tfjs/runner.js
// --connect HOST:PORT train.js`, GRADSCOPE_TOKEN in their environment). Each connection that gives
// the token and then its HELLO becomes a RemoteRun (./remoteRun.ts) with its own run file; the
// processes of one distributed job (the same AUTH `job`) become one run with rank files. Used by
// `gradscope listen` (src/cli/listen.ts) and the extension's "Listen for a Remote Run"; anything
// else that receives runs over TCP (a notebook kernel attached from elsewhere) can use it as is.
//
// The sockets are ./rankListener.ts's, on TCP with a token: loopback by default (reach it through an
// SSH tunnel, README "Remote training"); any other address needs a token of at least
// MIN_EXPOSED_TOKEN_LENGTH characters, because the token is then all that stands between the
// network and the run folder (the stream is not encrypted: prefer the tunnel).
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { Emitter, type Disposable } from '../core/util/emitter';
import { ensureDir } from './files';
import { RankListener, type RankConnection } from './rankListener';
import { RemoteRun } from './remoteRun';

export const DEFAULT_REMOTE_PORT = 7865;
/** The environment variable the probe reads the token from (and the CLI's `listen`, when no --token is given). */
export const TOKEN_ENV = 'GRADSCOPE_TOKEN';
export const MIN_EXPOSED_TOKEN_LENGTH = 16;

export interface RemoteListenerOptions {
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** TCP port (0: a free one). */
  port: number;
  /** The token every connection must give; see generateToken. */
  token: string;
  /** Folder for the run files. */
  runDir: string;
  /** The local file for a remote source path, or null (see RemoteRun); none: paths stay the remote machine's. */
  mapPath?: (remote: string) => string | null;
}

/** A fresh token: 24 random bytes, base64url (32 characters, safe in a shell and an environment variable). */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/**
 * The command lines to show a user: the SSH tunnel to open from this machine (a reverse tunnel: port
 * `port` on the remote machine leads here), and the run to start on the remote machine.
 */
export function connectHints(port: number, token: string): { tunnel: string; python: string; tfjs: string } {
  return {
    tunnel: `ssh -R ${port}:127.0.0.1:${port} user@gpu-box`,
    python: `GRADSCOPE_TOKEN=${token} python -m gradscope_probe --connect localhost:${port} train.py`,
    tfjs: `GRADSCOPE_TOKEN=${token} node <gradscope>/dist/probe/tfjs/runner.js --connect localhost:${port} train.js`,
  };
}

export class RemoteListener implements Disposable {
  private readonly started = new Emitter<RemoteRun>();
  /** A run began (its first HELLO came). */
  readonly onDidStartRun = this.started.event;
  private readonly refused = new Emitter<{ why: string; peer: string }>();
  /** A connection was refused (wrong or missing token, not a probe, silence): nothing of it is recorded. */
  readonly onDidRefuse = this.refused.event;
  private readonly authenticated = new Emitter<{ peer: string; job: string | undefined }>();
  /** A probe gave the token; its run starts with its HELLO (its first step). */
  readonly onDidConnect = this.authenticated.event;
  private readonly byConn = new Map<number, RemoteRun>();
  private readonly byJob = new Map<string, RemoteRun>();
  private readonly all: RemoteRun[] = [];

  private constructor(
    private readonly listener: RankListener,
    readonly host: string,
    readonly token: string,
    private readonly runDir: string,
    private readonly mapPath: ((remote: string) => string | null) | null,
  ) {}

  /**
   * Listens. Rejects with one line when it cannot: the port is taken (EADDRINUSE), the host cannot
   * be bound, the token is empty or too short for a non-loopback address, the run folder cannot be made.
   */
  static async open(opts: RemoteListenerOptions): Promise<RemoteListener> {
    const host = opts.host ?? '127.0.0.1';
    if (!opts.token) throw new Error('a token is required');
    if (!isLoopback(host) && opts.token.length < MIN_EXPOSED_TOKEN_LENGTH) {
      throw new Error(`listening on ${host} (not loopback) needs a token of at least ${MIN_EXPOSED_TOKEN_LENGTH} characters; leave --token out to have one generated`);
    }
    ensureDir(opts.runDir);
    let self: RemoteListener | null = null;
    const l = await RankListener.open(
      {
        onJoin: (c) => self?.onJoin(c),
        onFrame: (c, f) => self?.byConn.get(c.id)?.frame(c, f),
        onProtocolError: (c, e) => self?.byConn.get(c.id)?.protocolFailure(c, e),
        onClose: (c) => self?.onClose(c),
        onRefused: (why, peer) => self?.refused.fire({ why, peer }),
        onAuthenticated: (peer, job) => self?.authenticated.fire({ peer, job }),
      },
      { tcp: { host, port: opts.port }, token: opts.token },
    ).catch((e: NodeJS.ErrnoException) => {
      throw new Error(e.code === 'EADDRINUSE' ? `port ${opts.port} on ${host} is already in use` : `cannot listen on ${host}:${opts.port}: ${e.message}`);
    });
    self = new RemoteListener(l, host, opts.token, opts.runDir, opts.mapPath ?? null);
    return self;
  }

  /** The port listened on (the one chosen when 0 was asked). */
  get port(): number {
    return this.listener.port;
  }

  /** Every run received so far, in the order they started. */
  get runs(): readonly RemoteRun[] {
    return this.all;
  }

  /** Runs still being received. */
  get liveRuns(): readonly RemoteRun[] {
    return this.all.filter((r) => !r.exited);
  }

  private onJoin(c: RankConnection): void {
    const existing = c.job !== undefined ? this.byJob.get(c.job) : undefined;
    if (existing && existing.accepting) {
      existing.join(c);
      this.byConn.set(c.id, existing);
      return;
    }
    let run: RemoteRun;
    try {
      run = new RemoteRun(c, this.runDir, this.mapPath);
    } catch (e) {
      this.refused.fire({ why: `its run cannot be recorded: ${(e as Error).message}`, peer: c.peer });
      c.socket.destroy();
      return;
    }
    this.byConn.set(c.id, run);
    if (c.job !== undefined) this.byJob.set(c.job, run);
    this.all.push(run);
    this.started.fire(run);
  }

  private onClose(c: RankConnection): void {
    const run = this.byConn.get(c.id);
    this.byConn.delete(c.id);
    run?.closed(c);
  }

  /** Stops listening and stops watching every live run (their remote scripts go on); resolves when their run files are closed. */
  async close(): Promise<void> {
    // stop() first, so that the connections' ends read as "stopped watching", not as lost.
    const stopped = this.liveRuns.map((r) => r.stop());
    this.listener.close();
    await Promise.all(stopped);
  }

  dispose(): void {
    void this.close();
  }
}
