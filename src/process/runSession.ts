// One training run: spawns the probe around the user's script (Program), decodes its frames
// (FrameDecoder), keeps them in a RunStore, writes them to the run file as they arrive, and decides
// how the run ended. The CLI and the extension are both thin shells over this class; it is the
// run's RunHandle (./runHandle.ts) while it is live and after.
import { delimiter, dirname, extname, join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Analyzer } from '../core/analysis/analyzer';
import type { Finding } from '../core/analysis/finding';
import { FrameDecoder, ProtocolError, type DecodedFrame } from '../core/protocol/codec';
import type { EndMsg, ErrorInfo, Framework, Message } from '../core/protocol/messages';
import { RunFileWriter, makeRunId, type RunExitRecord } from '../core/store/runFile';
import { RunStore } from '../core/store/runStore';
import { Emitter, type Disposable } from '../core/util/emitter';
import { childChannelFd } from './channelFd';
import { findBuilt } from './distPaths';
import { ensureDir, scriptProblem } from './files';
import { killProcessGroup } from './killTree';
import { describeRootCause, teardownAbortHint, torchrunRootCause } from './launcherFailure';
import { Program, type ProgramExit } from './program';
import { checkTorch, choosePython, type PythonSource } from './python';
import { PROBE_SETTINGS_ENV, PROBE_SOCKET_ENV, RankListener, type RankConnection } from './rankListener';
import { ranksSeenNote } from '../core/view/ranks';
import { RankRecorder } from './rankRecorder';
import { analyzerFor, type LiveRun, type RunExit, type RunHandle, type RunRank } from './runHandle';
import { RUN_MARK_ENV, findMarkedProcesses } from './survivors';

export type { ExitReason, RunExit } from './runHandle';

export interface RunOptions {
  script: string;
  args?: string[];
  cwd?: string;
  /** Node executable for tfjs scripts (default: the one running this code). */
  nodePath?: string;
  /** Node flags for a TF.js script (`--max-old-space-size=8192`, `--experimental-vm-modules`), before the runner. */
  nodeArgs?: string[];
  /** Python interpreter for PyTorch scripts (default: GRADSCOPE_PYTHON, else `python3` on PATH). */
  pythonPath?: string;
  /** Where pythonPath came from, for messages (default 'setting'). */
  pythonSource?: PythonSource;
  /** Stop cleanly after this many optimizer steps (0 or undefined: no limit). */
  maxSteps?: number;
  /** Stop after this many seconds (0 or undefined: no limit). */
  timeoutSec?: number;
  /** Steps between detail frames (0 or undefined: the probe chooses). */
  detailEvery?: number;
  /** Folder for the run file. */
  runDir: string;
  env?: Record<string, string>;
  /** ms between SIGTERM and SIGKILL when stopping. */
  graceMs?: number;
  /** Override where the probe bundles live (tests). */
  probeDir?: string;
  /**
   * A PyTorch script run as a distributed job, every rank instrumented (issue 17): `nprocPerNode` runs
   * `<python> -m torch.distributed.run --standalone --nproc_per_node N <script> args…`; `command` runs a
   * launcher's command line as given (`torchrun …`, `python -m torch.distributed.run …`), `script`
   * being the training script it names. Rank 0 is the run's store and run file.
   */
  launcher?: { nprocPerNode: number } | { command: readonly string[] };
}

/** A rank that ended the run: the first END `crashed`, else a process that left without END. */
interface RankFailure {
  rank: number;
  error: ErrorInfo | null;
}

export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  text: string;
}

const TFJS_EXTENSIONS = new Set(['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts']);

/** Where the built probe lives: next to this bundle (dist/), or under dist/ of an enclosing checkout. */
export function findProbeDir(start = __dirname): string {
  return findBuilt('probe', join('tfjs', 'runner.js'), start);
}

/** Where the PyTorch probe lives: the folder holding `gradscope_probe/` (it goes first on PYTHONPATH). */
export function findTorchProbeDir(start = __dirname): string {
  return findBuilt(join('probe', 'torch'), join('gradscope_probe', '__main__.py'), start);
}

export function frameworkOf(script: string): Framework | null {
  const ext = extname(script).toLowerCase();
  if (TFJS_EXTENSIONS.has(ext)) return 'tfjs';
  if (ext === '.py') return 'torch';
  return null;
}

export class RunSession implements RunHandle, LiveRun {
  readonly id = makeRunId();
  readonly store = new RunStore();
  readonly script: string;
  readonly cwd: string;
  readonly args: readonly string[];
  readonly runFile: string;
  /** A live run is its own session. */
  readonly live: LiveRun = this;

  private readonly output = new Emitter<OutputChunk>();
  private readonly ended = new Emitter<RunExit>();
  readonly onOutput = this.output.event;
  readonly onDidEnd = this.ended.event;
  private readonly rankJoined = new Emitter<RunRank>();
  /** A process joined the run with a store of its own (a rank other than a launcher's rank 0): views that follow the ranks' steps subscribe to it. */
  readonly onDidJoinRank = this.rankJoined.event;
  /** Every decoded message, in order (for views that want more than the store's change signal). */
  private readonly messages = new Emitter<Message>();
  readonly onMessage = this.messages.event;

  readonly done: Promise<RunExit>;
  /** Diagnoses the run as steps arrive (one cheap update per store change) and once more at the end. */
  readonly analyzer: Analyzer;

  private program: Program | undefined;
  /** The child's descriptor number for the probe's channel (./channelFd.ts: why not 3). */
  private readonly channelFd = childChannelFd();
  private readonly writer: RunFileWriter;
  private readonly decoder = new FrameDecoder();
  private protocolError: ProtocolError | null = null;
  private endMsg: EndMsg | null = null;
  /** The channel closed (EOF) while no END had come: the probe is gone, whatever the script does next. */
  private channelLostAt: number | null = null;
  private programExited = false;
  private stopReason: 'stopped' | 'time-limit' | 'protocol-error' | null = null;
  private timer: NodeJS.Timeout | undefined;
  private settle!: (exit: RunExit) => void;
  private settled = false;
  private exitValue: RunExit | null = null;
  private finishing = false;
  private channelClosed: Promise<void> = Promise.resolve();
  private readonly opts: RunOptions;
  /** Where the processes the run starts join it (null: not open, or a TF.js run). */
  private listener: RankListener | null = null;
  /** Processes that joined over the socket and have their own record, by connection id. */
  private readonly recorders = new Map<number, RankRecorder>();
  /** Under a launcher, the connection whose frames are the run's own (rank 0). */
  private primary: RankConnection | null = null;
  /** Ranks seen (HELLO) with their pid, and whether each sent END. */
  private readonly joined = new Map<number, { rank: number; pid: number; worldSize: number | null; ended: boolean }>();
  private rankFailure: RankFailure | null = null;

  /**
   * Starts a run. A script that cannot run (missing, a folder, no interpreter) arrives as the exit;
   * a run folder or run file that cannot be made throws (HostFileError from ./files, or
   * RunFileError 'io'), with one line that says why, before anything is started.
   */
  static start(opts: RunOptions): RunSession {
    return new RunSession(opts);
  }

  private constructor(opts: RunOptions) {
    this.opts = opts;
    this.script = resolve(opts.cwd ?? process.cwd(), opts.script);
    this.cwd = resolve(opts.cwd ?? dirname(this.script));
    this.args = opts.args ?? [];
    this.done = new Promise<RunExit>((r) => (this.settle = r));
    const framework = frameworkOf(this.script) ?? 'tfjs';
    ensureDir(opts.runDir);
    this.writer = RunFileWriter.create(opts.runDir, {
      runId: this.id,
      script: this.script,
      args: [...this.args],
      cwd: this.cwd,
      startedAt: new Date().toISOString(),
      framework,
    });
    this.runFile = this.writer.path;
    this.writer.onDidFail((f) => {
      this.store.noteRecordingFailure({ reason: f.reason, steps: f.mark, file: this.runFile });
      // At the end (the exit record did not fit), the exit message says it instead.
      if (this.finishing) return;
      this.output.fire({
        stream: 'stderr',
        text: `[gradscope] warning: the run file could not be written (${f.reason}): recording stopped after ${f.mark} step(s); the run goes on, observed in memory only\n`,
      });
    });
    this.analyzer = analyzerFor(this.store);
    this.store.onDidChange(() => this.analyzer.update());
    this.launch();
  }

  /** The current findings (final once the run has ended). */
  get findings(): readonly Finding[] {
    return this.analyzer.findings;
  }

  /** How the run ended; null while it runs. */
  get exit(): RunExit | null {
    return this.exitValue;
  }

  get pid(): number | undefined {
    return this.program?.pid;
  }

  get exited(): boolean {
    return this.settled;
  }

  /** The processes that joined over the socket, by rank (under a launcher, rank 0 is the run's own store). */
  get ranks(): readonly RunRank[] {
    const out: RunRank[] = [...this.recorders.values()];
    if (this.primary) out.push({ rank: this.primary.hello.rank, store: this.store, runFile: this.runFile });
    return out.sort((a, b) => a.rank - b.rank);
  }

  /** Ranks the job said it has (the largest world size a HELLO gave, or --nproc-per-node); 0 when unknown. */
  get expectedRanks(): number {
    let n = this.opts.launcher && 'nprocPerNode' in this.opts.launcher ? this.opts.launcher.nprocPerNode : 0;
    for (const j of this.joined.values()) n = Math.max(n, j.worldSize ?? 0);
    return n;
  }

  /** Stops the run (SIGTERM to its process group, SIGKILL after the grace period). Idempotent. */
  stop(): Promise<RunExit> {
    return this.halt('stopped');
  }

  private halt(reason: 'stopped' | 'time-limit' | 'protocol-error'): Promise<RunExit> {
    if (!this.settled && !this.stopReason) this.stopReason = reason;
    // Close our ends of the channels first: each probe's watchdog exits on EOF even if a signal is
    // blocked, and reaches ranks a launcher started in sessions of their own (torchrun does).
    this.listener?.disconnectAll();
    if (this.program) {
      this.program.channel?.destroy();
      void this.program.stop(this.opts.graceMs);
    }
    return this.done;
  }

  private launch(): void {
    const fw = frameworkOf(this.script);
    const problem = scriptProblem(this.script);
    if (problem) return this.failEarly(problem);
    if (fw === 'torch') {
      void this.launchTorch();
      return;
    }
    if (fw === null) {
      return this.failEarly(`don't know how to run ${this.script}: expected a TensorFlow.js script (.js, .mjs, .cjs, .ts) or a PyTorch script (.py)`);
    }
    let probeDir: string;
    try {
      probeDir = this.opts.probeDir ?? findProbeDir();
    } catch (e) {
      return this.failEarly((e as Error).message);
    }
    const env = this.probeEnv({ ...process.env, ...this.opts.env });
    this.startProgram(this.opts.nodePath || process.execPath, ['--enable-source-maps', ...(this.opts.nodeArgs ?? []), join(probeDir, 'tfjs', 'runner.js'), this.script, ...this.args], env);
  }

  /**
   * The child's environment: the probe's settings added, the run's marker (inherited by all it
   * starts, to find what outlives the run: ./survivors), the host's own Node options removed
   * (NODE_OPTIONS given in the run's `env` is the user's and is kept: the CLI passes its shell's).
   */
  private probeEnv(base: NodeJS.ProcessEnv, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...base,
      ...extra,
      [RUN_MARK_ENV]: this.id,
      GRADSCOPE_CHANNEL_FD: String(this.channelFd),
      GRADSCOPE_MAX_STEPS: String(this.opts.maxSteps ?? 0),
      GRADSCOPE_DETAIL_EVERY: String(this.opts.detailEvery ?? 0),
    };
    // The extension host's own Node options (inspector ports, loaders) must not leak into the child.
    if (this.opts.env?.NODE_OPTIONS === undefined) delete env.NODE_OPTIONS;
    delete env.ELECTRON_RUN_AS_NODE;
    return env;
  }

  /**
   * PyTorch: check that torch imports with the chosen interpreter (one clear message if not), then
   * run `<python> -m gradscope_probe <script> args…` with the probe's folder first on PYTHONPATH.
   */
  private async launchTorch(): Promise<void> {
    let probeDir: string;
    try {
      probeDir = this.opts.probeDir ? join(this.opts.probeDir, 'torch') : findTorchProbeDir();
    } catch (e) {
      return this.failEarly((e as Error).message);
    }
    const cwd = this.cwd;
    const baseEnv: NodeJS.ProcessEnv = { ...process.env, ...this.opts.env };
    const check = await checkTorch(choosePython(this.opts.pythonPath, baseEnv, this.opts.pythonSource), { env: baseEnv, cwd });
    if (this.stopReason) {
      // Stopped while checking: nothing was started.
      return void this.finish({ code: null, signal: null, stopRequested: true, stderrTail: '' });
    }
    if (!check.ok) return this.failEarly(check.message);
    // The socket the processes the script starts join (ranks, spawned children: ./rankListener.ts).
    const launcher = this.opts.launcher;
    try {
      this.listener = await RankListener.open({
        onJoin: (c) => this.onRankJoin(c),
        onFrame: (c, f) => this.onRankFrame(c, f),
        onProtocolError: (c, e) => this.onRankProtocolError(c, e),
        onClose: (c) => this.onRankClose(c),
        onRefused: (why) => this.output.fire({ stream: 'stderr', text: `[gradscope] warning: refused a connection to the run's socket: ${why}\n` }),
      });
    } catch (e) {
      if (launcher) return this.failEarly(`cannot open the socket the ranks join: ${(e as Error).message}`);
      this.output.fire({ stream: 'stderr', text: `[gradscope] warning: cannot open the socket child processes join (${(e as Error).message}): only the main process is observed\n` });
    }
    if (this.stopReason) return void this.finish({ code: null, signal: null, stopRequested: true, stderrTail: '' });
    // gradscope_boot/ (a sitecustomize) on PYTHONPATH starts the probe in each rank and spawned child;
    // the probe's own folder goes first for `-m gradscope_probe` (which takes it off again).
    const boot = join(probeDir, 'gradscope_boot');
    const paths = [...(launcher ? [] : [probeDir]), ...(this.listener ? [boot] : []), ...(baseEnv.PYTHONPATH ? [baseEnv.PYTHONPATH] : [])];
    const extra: NodeJS.ProcessEnv = {
      PYTHONPATH: paths.join(delimiter),
      // The script's output shows up as it prints, not when a pipe buffer fills.
      PYTHONUNBUFFERED: baseEnv.PYTHONUNBUFFERED ?? '1',
    };
    if (this.listener) {
      extra[PROBE_SOCKET_ENV] = this.listener.address;
      extra[PROBE_SETTINGS_ENV] = `steps=${this.opts.maxSteps ?? 0},detail=${this.opts.detailEvery ?? 0},sampled=0,script=${this.script}`;
    }
    const env = this.probeEnv(baseEnv, extra);
    if (!launcher) return this.startProgram(check.python, ['-m', 'gradscope_probe', this.script, ...this.args], env);
    // Under a launcher nothing is on the fd channel: the launcher is no rank, the ranks use the socket.
    delete env.GRADSCOPE_CHANNEL_FD;
    if ('nprocPerNode' in launcher) {
      // --standalone: a rendezvous on a free port of this machine (two runs at once do not collide).
      const args = ['-m', 'torch.distributed.run', '--standalone', `--nproc_per_node=${launcher.nprocPerNode}`, this.script, ...this.args];
      return this.startProgram(check.python, args, env, false);
    }
    const [command, ...args] = launcher.command;
    this.startProgram(command, args, env, false);
  }

  /** A process joined over the socket: under a launcher, the first rank 0 is the run's own; any other gets a run file of its own. */
  private onRankJoin(c: RankConnection): void {
    const h = c.hello;
    this.joined.set(c.id, { rank: h.rank, pid: h.pid, worldSize: h.worldSize ?? null, ended: false });
    if (this.opts.launcher && !this.primary && h.rank === 0) {
      this.primary = c;
      return;
    }
    try {
      const meta = { runId: this.id, script: this.script, args: [...this.args], cwd: this.cwd, startedAt: new Date().toISOString(), framework: 'torch' as const };
      const rec = new RankRecorder(this.runFile, meta, h);
      this.recorders.set(c.id, rec);
      this.rankJoined.fire(rec);
    } catch (e) {
      this.output.fire({ stream: 'stderr', text: `[gradscope] warning: rank ${h.rank} (pid ${h.pid}) cannot be recorded: ${(e as Error).message}\n` });
    }
  }

  private onRankFrame(c: RankConnection, f: DecodedFrame): void {
    const m = f.message;
    if (m.type === 'end') {
      const j = this.joined.get(c.id);
      if (j) j.ended = true;
      if (m.reason === 'crashed' && !this.rankFailure) this.rankFailure = { rank: c.hello.rank, error: m.error ?? null };
    }
    if (c === this.primary) return this.ingest(f);
    try {
      this.recorders.get(c.id)?.ingest(f);
    } catch (e) {
      this.output.fire({ stream: 'stderr', text: `[gradscope] internal error handling rank ${c.hello.rank}'s ${m.type} frame: ${(e as Error).message}\n` });
    }
  }

  private onRankProtocolError(c: RankConnection, err: ProtocolError): void {
    if (this.protocolError) return;
    this.protocolError = new ProtocolError(err.code, `rank ${c.hello.rank}: ${err.message}`, err.offset);
    void this.halt('protocol-error');
  }

  /** A rank's connection closed without END while the run was not being stopped: it died (or os._exit). */
  private onRankClose(c: RankConnection): void {
    const j = this.joined.get(c.id);
    if (!j || j.ended || this.stopReason || this.rankFailure) return;
    this.rankFailure = { rank: j.rank, error: null };
  }

  private startProgram(command: string, args: string[], env: NodeJS.ProcessEnv, channel = true): void {
    this.program = Program.start({
      command,
      args,
      cwd: this.cwd,
      env,
      graceMs: this.opts.graceMs,
      channel,
      channelFd: this.channelFd,
    });
    const p = this.program;
    // One decoder per stream, so a multi-byte character split across chunks stays whole.
    const outText = new StringDecoder('utf8');
    const errText = new StringDecoder('utf8');
    p.onStdout((b) => this.output.fire({ stream: 'stdout', text: outText.write(b) }));
    p.onStderr((b) => this.output.fire({ stream: 'stderr', text: errText.write(b) }));
    const ch = p.channel;
    if (ch) {
      ch.on('data', (chunk: Buffer) => this.onData(chunk));
      this.channelClosed = new Promise((r) => ch.once('close', () => r()));
      ch.once('end', () => this.onChannelEnd());
    }
    // A socket error here means the child went away; its exit is reported through `exited`.
    p.channel?.on('error', () => {});
    if (this.opts.timeoutSec && this.opts.timeoutSec > 0) {
      this.timer = setTimeout(() => void this.halt('time-limit'), this.opts.timeoutSec * 1000);
      this.timer.unref?.();
    }
    void p.exited.then((x) => {
      this.programExited = true;
      return this.finish(x);
    });
  }

  /**
   * EOF on the channel. With an END before it, the probe said goodbye. Without one, the probe is
   * gone (the script closed or replaced its descriptor, the probe died, os._exit): if the script is
   * still running a moment later, say so now, not only when it ends.
   */
  private onChannelEnd(): void {
    if (this.endMsg || this.stopReason || this.channelLostAt !== null) return;
    this.channelLostAt = this.store.lastStep;
    setTimeout(() => {
      if (this.programExited || this.settled || this.endMsg || this.stopReason) return;
      this.output.fire({ stream: 'stderr', text: `[gradscope] warning: ${this.lostText(false)}; the script is still running, unobserved\n` });
    }, 1000).unref();
  }

  /**
   * "the probe's channel closed without an END after step 178 (179 steps seen)", with the cause when
   * the probe said it on stderr (`cause`, from probeLostCause).
   */
  private lostText(ended: boolean, cause: string | null = null): string {
    const steps = this.store.stepCount;
    const at = this.channelLostAt ?? this.store.lastStep;
    const where = steps === 0 ? 'before any optimizer step' : `after step ${at} (${steps} step${steps === 1 ? '' : 's'} seen)`;
    return `the probe's channel closed without an END ${where}${cause ? `, because ${cause}` : ''}${ended ? ': later steps, if any, were not observed' : ''}`;
  }

  private onData(chunk: Buffer): void {
    // Never throw out of a data handler: the decoder returns errors, the store and writer are guarded.
    const err = this.decoder.push(chunk, (f) => this.ingest(f));
    if (err && !this.protocolError) {
      this.protocolError = err;
      void this.halt('protocol-error');
    }
  }

  /** A frame of the run's own stream (the fd channel, or rank 0's connection under a launcher). */
  private ingest(f: DecodedFrame): void {
    try {
      // The mark is the steps recorded once this frame is on disk (what a failed writer keeps).
      this.writer.append(f.raw, this.store.stepCount + (f.message.type === 'step' ? 1 : 0));
      this.store.ingest(f.message);
      if (f.message.type === 'end') this.endMsg = f.message;
      this.messages.fire(f.message);
    } catch (e) {
      this.output.fire({ stream: 'stderr', text: `[gradscope] internal error handling a ${f.message.type} frame: ${(e as Error).message}\n` });
    }
  }

  private failEarly(message: string): void {
    this.output.fire({ stream: 'stderr', text: `[gradscope] ${message}\n` });
    void this.finish({ code: null, signal: null, stopRequested: false, stderrTail: '', spawnError: new Error(message) });
  }

  private async finish(x: ProgramExit): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    clearTimeout(this.timer);
    // The process can exit before the last bytes of the channel are read: wait for the channel to close
    // (bounded, in case a grandchild inherited it and keeps it open).
    await Promise.race([this.channelClosed, new Promise((r) => setTimeout(r, 2000).unref())]);
    // Whatever still holds the child's end (a process outside the group that inherited it), nothing
    // more is read: let go of ours, so it does not keep this process alive.
    this.program?.channel?.destroy();
    if (!this.protocolError && this.program && !this.opts.launcher) {
      const err = this.decoder.end();
      if (err) this.protocolError = err;
    }
    await this.endRanks();
    if (this.program?.pid !== undefined) {
      // The group is stopped by now (Program SIGKILLs what is left of it when the child ends): a
      // process of the run still alive outside it left the group itself. Listed, not killed.
      const left = await findMarkedProcesses(this.id, this.program.pid);
      if (left.length > 0) this.store.noteSurvivors({ marker: `${RUN_MARK_ENV}=${this.id}`, processes: left });
    }
    const exit = this.withRanks(this.classify(x));
    try {
      this.analyzer.finish();
    } catch (e) {
      this.output.fire({ stream: 'stderr', text: `[gradscope] the diagnosis failed: ${(e as Error).message}\n` });
    }
    this.settled = true;
    const record: RunExitRecord = {
      reason: exit.reason,
      code: exit.code,
      signal: exit.signal,
      error: exit.error,
      endedAt: new Date().toISOString(),
      steps: exit.steps,
    };
    await this.writer.close(record);
    await Promise.all([...this.recorders.values()].map((r) => r.close(record)));
    const failure = this.writer.failure;
    if (failure) {
      exit.recording = { reason: failure.reason, steps: failure.mark };
      this.store.noteRecordingFailure({ reason: failure.reason, steps: failure.mark, file: this.runFile });
      exit.message += `; the run file holds only ${failure.mark} of ${exit.steps} steps (${failure.reason})`;
    }
    this.exitValue = exit;
    this.ended.fire(exit);
    this.settle(exit);
  }

  /**
   * The ranks at the end: their connections drained (bounded), then closed (each probe's watchdog
   * stops its process); a rank still alive after that is killed with what it started: torchrun starts
   * its ranks in sessions of their own, out of reach of the run's process group.
   */
  private async endRanks(): Promise<void> {
    const l = this.listener;
    if (!l) return;
    await l.drained(this.joined.size ? 2000 : 0);
    l.close();
    const pids = new Set([...this.joined.values()].map((j) => j.pid));
    if (pids.size === 0) return;
    const deadline = Date.now() + 3000;
    let left: number[] = [];
    do {
      left = (await findMarkedProcesses(this.id)).map((p) => p.pid).filter((p) => pids.has(p));
      if (left.length) await new Promise((r) => setTimeout(r, 100));
    } while (left.length && Date.now() < deadline);
    for (const pid of left) {
      killProcessGroup(pid, 'SIGKILL'); // its group, when it leads one (a process alive with that pid leads any group of that id)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }

  /**
   * The run's exit with what its ranks say: a rank that crashed (or left without END) makes the run
   * crashed, naming it; the ranks seen are counted, and a rank the job expected that never joined is
   * said (never a silent "completed").
   */
  private withRanks(exit: RunExit): RunExit {
    if (this.joined.size === 0 && !this.opts.launcher) return exit;
    const f = this.rankFailure;
    if (f && exit.reason !== 'stopped' && exit.reason !== 'time-limit' && exit.reason !== 'protocol-error') {
      const where = f.error?.frame ? ` at ${f.error.frame.file}:${f.error.frame.line}:${f.error.frame.column}` : '';
      const error: ErrorInfo = f.error ?? { message: exit.error?.message ?? 'it ended without saying why' };
      const why = f.error ? error.message : `its process ended without END (${error.message})`;
      exit = { ...exit, reason: 'crashed', error: { ...error, message: `rank ${f.rank}: ${error.message}` }, message: `crashed in rank ${f.rank}${where}: ${why}` };
    }
    const ranks = this.ranks;
    // The script only started its ranks (mp.spawn): its own process took no step, they did.
    if (!this.primary && this.store.stepCount === 0 && ranks.some((r) => r.store.stepCount > 0)) {
      exit = { ...exit, message: exit.message.replace(/^(\w+), 0 steps/, "$1, 0 steps in the script's own process") };
    }
    const note = ranksSeenNote(ranks, this.expectedRanks, [...this.joined.values()]);
    if (note.missing) this.output.fire({ stream: 'stderr', text: `[gradscope] warning: ${note.missing}\n` });
    return { ...exit, message: `${exit.message}; ${note.text}` };
  }

  /**
   * Under a launcher, the rank torchrun names as the root cause of its failure and how it ended; a
   * rank whose END came first (its steps all recorded) died on its way out (with the reason when it is
   * torch's teardown abort, see teardownAbortHint). Null when torchrun said nothing of the kind.
   */
  private launcherCause(x: ProgramExit): string | null {
    if (!this.opts.launcher) return null;
    const c = torchrunRootCause(x.stderrTail);
    if (!c) return null;
    const joined = [...this.joined.values()].find((j) => j.rank === c.rank);
    const rank = this.ranks.find((r) => r.rank === c.rank);
    const ended = joined?.ended && this.rankFailure?.rank !== c.rank && rank;
    const afterEnd = ended ? ` after its END, on its way out (${rank.store.stepCount === 1 ? 'its 1 step is recorded' : `its ${rank.store.stepCount} steps are all recorded`})` : '';
    const teardown = ended ? teardownAbortHint(c, x.stderrTail) : '';
    return `${describeRootCause(c)}${afterEnd}${teardown}; the launcher ${describeExit(x)}`;
  }

  private classify(x: ProgramExit): RunExit {
    const steps = this.store.stepCount;
    const base = { code: x.code, signal: x.signal, steps, lastStep: this.store.lastStep, recording: null };
    const where = (e: ErrorInfo | null | undefined): string => (e?.frame ? ` at ${e.frame.file}:${e.frame.line}:${e.frame.column}` : '');
    if (x.spawnError) {
      const error = { message: x.spawnError.message };
      return { ...base, reason: 'crashed', error, message: `could not start: ${x.spawnError.message}` };
    }
    if (this.protocolError) {
      const error = { message: this.protocolError.message };
      return { ...base, reason: 'protocol-error', error, message: `stopped: the probe's data stream is corrupt: ${this.protocolError.message}` };
    }
    if (this.stopReason === 'time-limit') {
      return { ...base, reason: 'time-limit', error: null, message: `stopped after the ${this.opts.timeoutSec}s time limit, ${steps} steps` };
    }
    if (this.endMsg?.reason === 'step-limit') {
      return { ...base, reason: 'step-limit', error: null, message: `stopped cleanly after ${this.endMsg.steps} steps (step limit)` };
    }
    if (this.stopReason === 'stopped') {
      return { ...base, reason: 'stopped', error: null, message: `stopped by the user after ${steps} steps` };
    }
    if (this.endMsg?.reason === 'crashed' || x.code !== 0 || x.signal) {
      const error: ErrorInfo = this.endMsg?.error ?? { message: this.launcherCause(x) ?? lastErrorLine(x.stderrTail) ?? describeExit(x) };
      return { ...base, reason: 'crashed', error, message: `crashed${where(error)}: ${error.message}` };
    }
    if (!this.endMsg && this.store.hello && this.program) {
      // The probe said HELLO, the script exited 0, and no END came: the probe was lost on the way
      // (a closed or redirected channel, os._exit, a probe that died). Not a completed run.
      const message = this.lostText(true, probeLostCause(x.stderrTail));
      return { ...base, reason: 'probe-lost', error: { message }, message: `probe lost: ${message}; the script exited with code 0` };
    }
    return { ...base, reason: 'completed', error: null, message: `completed, ${steps} steps` };
  }
}

/**
 * What a probe said on stderr when the script took its channel away (both probes print "[gradscope]
 * warning: the script closed the channel's descriptor (…)…" and go on without inspection): the
 * cause of a probe-lost run, or null.
 */
export function probeLostCause(stderr: string): string | null {
  const m = /\[gradscope\] warning: (the script closed the channel's descriptor[^\n]*?)(?:: GradScope sees|; the script goes on|\n|$)/.exec(stderr);
  return m ? m[1] : null;
}

function describeExit(x: ProgramExit): string {
  return x.signal ? `killed by ${x.signal}` : `exited with code ${x.code}`;
}

/** The last line of stderr that looks like an error, for crashes the probe could not report. */
function lastErrorLine(stderr: string): string | undefined {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return [...lines].reverse().find((l) => /\b(Error|Exception)\b|^\w*Error:/.test(l)) ?? lines[lines.length - 1];
}

export type { Disposable };
