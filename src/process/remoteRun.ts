// One run that a probe on another machine streams to a listening GradScope (`python -m
// gradscope_probe --connect HOST:PORT train.py`, `gradscope listen`, the extension's "Listen for a
// Remote Run"): a RunHandle and LiveRun like a RunSession's, without a child process. Its frames come
// over the listener's connections (./remoteListener.ts): one connection for a single process; for a
// distributed job (the AUTH frames share a `job`), one per rank, rank 0 being the run's own stream
// and every other rank recorded in a rank file (./rankRecorder.ts), as under a local launcher.
//
// The host cannot stop a remote script, only stop watching it: stop() closes the connections, and
// the remote probe goes on training unobserved (it says so on its stderr). A connection that closes
// without END is `probe-lost`, never `completed`: the script may still be training, unobserved.
import type { Analyzer } from '../core/analysis/analyzer';
import { ProtocolError, type DecodedFrame } from '../core/protocol/codec';
import type { EndMsg, ErrorInfo, HelloMsg, Message } from '../core/protocol/messages';
import { RunFileWriter, makeRunId, type RunExitRecord } from '../core/store/runFile';
import { RunStore } from '../core/store/runStore';
import { Emitter } from '../core/util/emitter';
import type { RankConnection } from './rankListener';
import { ranksSeenNote } from '../core/view/ranks';
import { RankRecorder } from './rankRecorder';
import { analyzerFor, type LiveRun, type RunExit, type RunHandle, type RunRank } from './runHandle';

interface Joined {
  conn: RankConnection;
  rank: number;
  worldSize: number | null;
  end: EndMsg | null;
  open: boolean;
}

export class RemoteRun implements RunHandle, LiveRun {
  readonly id = makeRunId();
  readonly store = new RunStore();
  /** The script's path on the remote machine (its HELLO's `script`). */
  readonly script: string;
  readonly cwd: string;
  readonly args: readonly string[] = [];
  readonly runFile: string;
  readonly live: LiveRun = this;
  readonly analyzer: Analyzer;
  /** The AUTH `job` of a distributed remote run; undefined for one process. */
  readonly job: string | undefined;
  /** Where the first connection came from (`10.0.0.5:41234`, or `127.0.0.1:…` through a tunnel). */
  readonly peer: string;
  /** The remote machine's name, when its HELLO said it. */
  readonly host: string | undefined;
  /** The HELLO of the connection that opened the run (the store has it once its frame is ingested, right after). */
  readonly hello: HelloMsg;

  private readonly ended = new Emitter<RunExit>();
  readonly onDidEnd = this.ended.event;
  /** Every message of the run's own stream, in order. */
  private readonly messages = new Emitter<Message>();
  readonly onMessage = this.messages.event;
  /** The run's warnings as they happen, one line each (the CLI prints them, the extension logs them). */
  private readonly warnings = new Emitter<string>();
  readonly onWarning = this.warnings.event;
  readonly done: Promise<RunExit>;

  private readonly writer: RunFileWriter;
  private readonly joined = new Map<number, Joined>();
  private readonly recorders = new Map<number, RankRecorder>();
  private primary: RankConnection | null = null;
  private protocolError: ProtocolError | null = null;
  private stopRequested = false;
  private exitValue: RunExit | null = null;
  private finishing = false;
  private settle!: (e: RunExit) => void;

  /** Remote source files that `mapPath` found no local copy of (the views say "the file is not here"). */
  readonly unmappedFiles = new Set<string>();

  /**
   * Starts recording the run that `first` (its HELLO received) opens. Throws RunFileError when the
   * run file cannot be created. `mapPath` (the extension's): the local file for a remote path, or
   * null when there is none; the store then holds local paths where found (the run file keeps the
   * frames as they came).
   */
  constructor(
    first: RankConnection,
    runDir: string,
    private readonly mapPath: ((remote: string) => string | null) | null = null,
  ) {
    const h = first.hello;
    this.script = this.local(h.script);
    this.cwd = h.script.slice(0, Math.max(h.script.lastIndexOf('/'), h.script.lastIndexOf('\\'), 0)) || '/';
    this.job = first.job;
    this.peer = first.peer;
    this.host = h.host;
    this.hello = h;
    this.done = new Promise((r) => (this.settle = r));
    this.writer = RunFileWriter.create(runDir, { runId: this.id, script: this.script, args: [], cwd: this.cwd, startedAt: new Date().toISOString(), framework: h.framework });
    this.runFile = this.writer.path;
    this.writer.onDidFail((f) => {
      this.store.noteRecordingFailure({ reason: f.reason, steps: f.mark, file: this.runFile });
      if (!this.finishing) this.warnings.fire(`the run file could not be written (${f.reason}): recording stopped after ${f.mark} step(s); the run goes on, observed in memory only`);
    });
    this.analyzer = analyzerFor(this.store);
    this.store.onDidChange(() => this.analyzer.update());
    this.join(first);
  }

  get exited(): boolean {
    return this.exitValue !== null;
  }

  get exit(): RunExit | null {
    return this.exitValue;
  }

  /** The processes that joined, by rank (empty for a single process). */
  get ranks(): readonly RunRank[] {
    if (this.job === undefined) return [];
    const out: RunRank[] = [...this.recorders.values()];
    if (this.primary) out.push({ rank: this.primary.hello.rank, store: this.store, runFile: this.runFile });
    return out.sort((a, b) => a.rank - b.rank);
  }

  /** The largest world size a HELLO gave (0 for a single process). */
  get expectedRanks(): number {
    let n = 0;
    for (const j of this.joined.values()) n = Math.max(n, j.worldSize ?? 0);
    return this.job === undefined ? 0 : n;
  }

  /** Whether a connection of this job may still join (the run has not ended). */
  get accepting(): boolean {
    return !this.finishing;
  }

  /** A connection (its HELLO received) joins: the first rank 0 (or the only process) is the run's own stream; any other rank gets a rank file. */
  join(c: RankConnection): void {
    this.joined.set(c.id, { conn: c, rank: c.hello.rank, worldSize: c.hello.worldSize ?? null, end: null, open: true });
    if (!this.primary && (this.job === undefined || c.hello.rank === 0)) {
      this.primary = c;
      return;
    }
    try {
      const meta = { runId: this.id, script: this.script, args: [], cwd: this.cwd, startedAt: new Date().toISOString(), framework: c.hello.framework };
      this.recorders.set(c.id, new RankRecorder(this.runFile, meta, c.hello));
    } catch (e) {
      this.warnings.fire(`rank ${c.hello.rank} (pid ${c.hello.pid}) cannot be recorded: ${(e as Error).message}`);
    }
  }

  frame(c: RankConnection, f: DecodedFrame): void {
    const j = this.joined.get(c.id);
    if (j && f.message.type === 'end') j.end = f.message;
    if (c === this.primary) {
      try {
        this.writer.append(f.raw, this.store.stepCount + (f.message.type === 'step' ? 1 : 0));
        const m = this.mapPath ? this.localised(f.message) : f.message;
        this.store.ingest(m);
        this.messages.fire(m);
      } catch (e) {
        this.warnings.fire(`internal error handling a ${f.message.type} frame: ${(e as Error).message}`);
      }
      return;
    }
    try {
      this.recorders.get(c.id)?.ingest(f);
    } catch (e) {
      this.warnings.fire(`internal error handling rank ${c.hello.rank}'s ${f.message.type} frame: ${(e as Error).message}`);
    }
  }

  /** A remote path as the views show it: the local copy `mapPath` found, else the remote path (noted in unmappedFiles). */
  private local(remote: string): string {
    if (!this.mapPath) return remote;
    const l = this.mapPath(remote);
    if (l === null) this.unmappedFiles.add(remote);
    return l ?? remote;
  }

  /** The message with its source files mapped (TENSORS' sources, END's error frame); other messages as they are. */
  private localised(m: Message): Message {
    const loc = <T extends { file: string }>(x: T): T => ({ ...x, file: this.local(x.file) });
    if (m.type === 'tensors') return { ...m, tensors: m.tensors.map((t) => ({ ...t, source: t.source ? loc(t.source) : null })) };
    if (m.type === 'end' && m.error?.frame) return { ...m, error: { ...m.error, frame: loc(m.error.frame) } };
    return m;
  }

  protocolFailure(c: RankConnection, err: ProtocolError): void {
    this.protocolError ??= this.job === undefined ? err : new ProtocolError(err.code, `rank ${c.hello.rank}: ${err.message}`, err.offset);
    // The stream cannot be trusted any more: stop watching every process of the run.
    for (const j of this.joined.values()) j.conn.socket.destroy();
  }

  /** A connection closed; the run ends when the last one has. */
  closed(c: RankConnection): void {
    const j = this.joined.get(c.id);
    if (j) j.open = false;
    if ([...this.joined.values()].every((x) => !x.open)) void this.finish();
  }

  /** Stops watching: closes the connections (the remote script goes on training, unobserved). Idempotent. */
  stop(): Promise<RunExit> {
    if (!this.finishing) {
      this.stopRequested = true;
      for (const j of this.joined.values()) j.conn.socket.destroy();
    }
    return this.done;
  }

  private async finish(): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    const exit = this.classify();
    try {
      this.analyzer.finish();
    } catch (e) {
      this.warnings.fire(`the diagnosis failed: ${(e as Error).message}`);
    }
    const record: RunExitRecord = { reason: exit.reason, code: null, signal: null, error: exit.error, endedAt: new Date().toISOString(), steps: exit.steps };
    await this.writer.close(record);
    await Promise.all([...this.recorders.values()].map((r) => r.close(record)));
    const failure = this.writer.failure;
    if (failure) {
      exit.recording = { reason: failure.reason, steps: failure.mark };
      exit.message += `; the run file holds only ${failure.mark} of ${exit.steps} steps (${failure.reason})`;
    }
    this.exitValue = exit;
    this.ended.fire(exit);
    this.settle(exit);
  }

  private classify(): RunExit {
    const steps = this.store.stepCount;
    const base = { code: null, signal: null, steps, lastStep: this.store.lastStep, recording: null };
    const where = (e: ErrorInfo | null | undefined): string => (e?.frame ? ` at ${e.frame.file}:${e.frame.line}:${e.frame.column}` : '');
    const all = [...this.joined.values()];
    const note = this.rankNote(all);
    if (this.protocolError) {
      const error = { message: this.protocolError.message };
      return { ...base, reason: 'protocol-error', error, message: `stopped watching: the probe's data stream is corrupt: ${this.protocolError.message}${note}` };
    }
    const crashed = all.find((j) => j.end?.reason === 'crashed');
    if (crashed?.end) {
      const error = crashed.end.error ?? { message: 'the probe said it crashed' };
      const who = this.job === undefined ? '' : ` in rank ${crashed.rank}`;
      return { ...base, reason: 'crashed', error, message: `crashed${who}${where(error)}: ${error.message}${note}` };
    }
    const own = all.find((j) => j.conn === this.primary)?.end ?? null;
    const unended = all.filter((j) => !j.end);
    if (this.stopRequested && unended.length) {
      return { ...base, reason: 'stopped', error: null, message: `stopped watching after ${steps} steps: the remote script goes on training, unobserved${note}` };
    }
    if (unended.length) {
      const at = steps === 0 ? 'before any optimizer step' : `after step ${this.store.lastStep} (${steps} step${steps === 1 ? '' : 's'} seen)`;
      const who = this.job === undefined ? 'the connection' : `rank ${unended.map((j) => j.rank).join(', ')}'s connection`;
      const message = `${who} closed without an END ${at}: the remote script may still be training, unobserved`;
      return { ...base, reason: 'probe-lost', error: { message }, message: `probe lost: ${message}${note}` };
    }
    if (own?.reason === 'step-limit') return { ...base, reason: 'step-limit', error: null, message: `stopped cleanly after ${own.steps} steps (step limit)${note}` };
    return { ...base, reason: 'completed', error: null, message: `completed, ${steps} steps${note}` };
  }

  /** "; 2 ranks seen (rank 0: 20 steps, rank 1: 20 steps)", and the ranks the job expected that never joined; "" for one process. */
  private rankNote(all: readonly Joined[]): string {
    if (this.job === undefined) return '';
    return `; ${ranksSeenNote(this.ranks, this.expectedRanks, all).text}`;
  }
}
