// One object per child process (after vscode-js-debug `targets/node/program.ts` and vscode-jupyter
// `kernelProcess.node.ts`): spawn it in its own process group, keep the tail of its stderr, report
// its end exactly once, and stop the whole tree (SIGTERM, then SIGKILL after a grace period).
//
// Lifecycle, in order:
//   start()  → spawn (detached: the child leads group pgid === pid) and register for the host's exit hook.
//   running  → stdout/stderr chunks go to the emitters; the channel (fd 3, or `channelFd`) is
//              `channel`, owned by the caller.
//   end      → the child's 'exit' event, then its stdout and stderr closing (bounded by a drain
//              timeout, since a grandchild may hold them open), then a last SIGKILL to whatever
//              is left in the group, then `exited` resolves and the program leaves the registry.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { statSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { Emitter } from '../core/util/emitter';
import { killProcessGroup } from './killTree';

export interface ProgramOptions {
  command: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** ms between SIGTERM and SIGKILL on stop (default 3000). */
  graceMs?: number;
  /** Open a bidirectional pipe to the child (default true), on fd `channelFd`. */
  channel?: boolean;
  /**
   * The child's descriptor number for the channel (default 3). Above 3, the numbers in between are
   * left closed in the child ('ignore').
   */
  channelFd?: number;
  /** What the child's stdin is (default 'ignore'). */
  stdin?: 'ignore' | 'pipe' | 'inherit';
  /**
   * After the child exits, how long to wait for its stdout/stderr to close before giving up on
   * them (a grandchild that inherited them can keep them open). Default 1000.
   */
  drainMs?: number;
}

export interface ProgramExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** we asked it to stop */
  stopRequested: boolean;
  /** last ~64 KiB of stderr */
  stderrTail: string;
  spawnError?: Error;
}

export const DEFAULT_GRACE_MS = 3000;
export const STDERR_TAIL_BYTES = 64 * 1024;
const DEFAULT_DRAIN_MS = 1000;

// Programs whose group may still be alive. The host's 'exit' hook SIGKILLs their groups, so a
// normal host exit (including `process.exit()` in deactivate) leaves no children behind. A host
// that is SIGKILLed runs no code at all; the child side covers that case with its fd-3 watchdog.
const live = new Set<Program>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' listeners must be synchronous; process.kill is.
  process.on('exit', () => {
    for (const p of live) p.kill();
  });
}

/** Number of programs whose end has not been reported yet (for tests and diagnostics). */
export function liveProgramCount(): number {
  return live.size;
}

/** Keeps the last `limit` bytes of a stream without holding everything it ever wrote. */
class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    // Drop whole chunks from the front while what remains still covers the limit.
    while (this.chunks.length > 1 && this.size - this.chunks[0].length >= this.limit) {
      this.size -= this.chunks.shift()!.length;
    }
  }

  toString(): string {
    const all = Buffer.concat(this.chunks, this.size);
    const tail = all.length > this.limit ? all.subarray(all.length - this.limit) : all;
    // A cut through a multi-byte character decodes to U+FFFD at the start; drop it.
    return tail.toString('utf8').replace(/^\uFFFD+/, '');
  }
}

function describeSpawnError(opts: ProgramOptions, err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as NodeJS.ErrnoException).code;
  let message: string;
  if (code === 'ENOENT') {
    // Node reports a missing cwd as "spawn <command> ENOENT" too; tell the two apart.
    let cwdOk = false;
    try {
      cwdOk = statSync(opts.cwd).isDirectory();
    } catch {
      cwdOk = false;
    }
    message = cwdOk
      ? `Cannot start "${opts.command}": executable not found (ENOENT). Check the path or that it is on PATH.`
      : `Cannot start "${opts.command}": working directory "${opts.cwd}" does not exist.`;
  } else if (code === 'EACCES') {
    message = `Cannot start "${opts.command}": permission denied (EACCES). Is it executable?`;
  } else {
    message = `Cannot start "${opts.command}": ${e.message}`;
  }
  const out = new Error(message, { cause: e }) as NodeJS.ErrnoException;
  if (code !== undefined) out.code = code;
  return out;
}

export class Program {
  readonly pid: number | undefined;
  /** The channel (the child's fd 3 or `channelFd`), host side; null when `channel: false` or the spawn failed. */
  readonly channel: Socket | null;
  /** The child's stdin when `stdin: 'pipe'`, else null. */
  readonly stdin: Writable | null;
  readonly exited: Promise<ProgramExit>;

  private readonly stdoutEmitter = new Emitter<Buffer>();
  private readonly stderrEmitter = new Emitter<Buffer>();
  readonly onStdout = this.stdoutEmitter.event;
  readonly onStderr = this.stderrEmitter.event;

  private readonly stderrTail = new TailBuffer(STDERR_TAIL_BYTES);
  private readonly graceMs: number;
  private readonly drainMs: number;
  private child: ChildProcess | undefined;
  private resolveExited!: (e: ProgramExit) => void;
  private done = false;
  private stopRequested = false;
  private killTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private openStreams = 0;

  /** Never throws: a failed spawn is reported through `exited` with `spawnError`. */
  static start(opts: ProgramOptions): Program {
    return new Program(opts);
  }

  private constructor(opts: ProgramOptions) {
    this.graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS;
    this.exited = new Promise<ProgramExit>((resolve) => (this.resolveExited = resolve));

    const stdio: StdioOptions = [opts.stdin ?? 'ignore', 'pipe', 'pipe'];
    const channelFd = (opts.channel ?? true) ? Math.max(3, Math.floor(opts.channelFd ?? 3)) : -1;
    if (channelFd >= 3) {
      while (stdio.length < channelFd) stdio.push('ignore');
      stdio.push('pipe');
    }

    let child: ChildProcess;
    try {
      child = spawn(opts.command, opts.args, {
        cwd: opts.cwd,
        env: opts.env,
        stdio,
        // Own process group (pgid === pid), so stop() reaches grandchildren and a Ctrl+C in a
        // terminal that started the host does not hit the child separately.
        detached: true,
        windowsHide: true,
      });
    } catch (e) {
      // spawn() throws synchronously for invalid arguments (e.g. a NUL byte in an argument).
      this.pid = undefined;
      this.channel = null;
      this.stdin = null;
      this.finish({ code: null, signal: null }, describeSpawnError(opts, e));
      return;
    }

    this.child = child;
    this.pid = child.pid;
    const spawned = child.pid !== undefined;
    // A failed spawn (ENOENT, EACCES) still creates handle-less stdio sockets; hide them.
    this.channel = spawned && channelFd >= 3 ? ((child.stdio[channelFd] as Socket | null) ?? null) : null;
    this.stdin = spawned ? child.stdin : null;

    // 'error' is emitted for spawn failures (then 'exit' never comes) and, in principle, for a
    // failed child.kill() (which we never call). Only the former ends the program.
    child.on('error', (err) => {
      if (this.pid === undefined) this.finish({ code: null, signal: null }, describeSpawnError(opts, err));
    });
    if (!spawned) return;

    live.add(this);
    installExitHook();

    // No 'error' may go unhandled: EPIPE/ECONNRESET on a pipe whose other end died is expected.
    // Callers that care add their own listeners.
    this.channel?.on('error', () => undefined);
    child.stdin?.on('error', () => undefined);

    this.watchStream(child.stdout, this.stdoutEmitter);
    this.watchStream(child.stderr, this.stderrEmitter, this.stderrTail);

    child.on('exit', (code, signal) => {
      this.exitStatus = { code, signal };
      if (this.openStreams === 0) {
        this.finish(this.exitStatus);
      } else {
        // A grandchild that inherited stdout/stderr can keep them open after the child is gone.
        this.drainTimer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          this.finish(this.exitStatus!);
        }, this.drainMs);
      }
    });
  }

  private watchStream(stream: Readable | null, emitter: Emitter<Buffer>, tail?: TailBuffer): void {
    if (!stream) return;
    this.openStreams++;
    stream.on('data', (chunk: Buffer) => {
      tail?.push(chunk);
      emitter.fire(chunk);
    });
    stream.on('error', () => undefined);
    stream.once('close', () => {
      this.openStreams--;
      if (this.openStreams === 0 && this.exitStatus) this.finish(this.exitStatus);
    });
  }

  /**
   * Stops the whole process group: SIGTERM now, SIGKILL after `graceMs` (default: the one given
   * to start). Idempotent; once a stop is under way or the program has ended, later calls just
   * return `exited`.
   */
  stop(graceMs?: number): Promise<ProgramExit> {
    if (this.done || this.stopRequested || this.pid === undefined) return this.exited;
    this.stopRequested = true;
    killProcessGroup(this.pid, 'SIGTERM');
    // The timer stays armed after the leader exits: group members that ignored SIGTERM still get
    // their SIGKILL (finish() also SIGKILLs leftovers, whichever comes first).
    this.killTimer = setTimeout(() => killProcessGroup(this.pid, 'SIGKILL'), graceMs ?? this.graceMs);
    return this.exited;
  }

  /** SIGKILLs the whole process group now. */
  kill(): void {
    if (this.done || this.pid === undefined) return;
    this.stopRequested = true;
    killProcessGroup(this.pid, 'SIGKILL');
  }

  private finish(status: { code: number | null; signal: NodeJS.Signals | null }, spawnError?: Error): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.killTimer);
    clearTimeout(this.drainTimer);
    if (this.pid !== undefined) {
      // The leader is gone and reaped; anything still in its group is a straggler of this run
      // (a worker, a `sleep` from a shell script). The run is over, so they go too. The pgid
      // cannot have been reused while members remain, so this cannot hit an unrelated group.
      killProcessGroup(this.pid, 'SIGKILL');
    }
    live.delete(this);
    const exit: ProgramExit = {
      code: status.code,
      signal: status.signal,
      stopRequested: this.stopRequested,
      stderrTail: this.stderrTail.toString(),
    };
    if (spawnError) exit.spawnError = spawnError;
    this.resolveExited(exit);
    this.stdoutEmitter.dispose();
    this.stderrEmitter.dispose();
  }
}
