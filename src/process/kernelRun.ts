// A notebook kernel followed live (issue 18, "Inspect This Notebook's Kernel"): the code the extension
// has the kernel execute to attach the PyTorch probe and to detach it, and the host's end, a
// listener on the per-run Unix socket of ./rankListener.ts (a folder only this user can reach, so no
// token) where each `%gradscope on --connect` of the kernel joins, announced by its HELLO. Each
// connection is one run (a RunHandle that is live until its END or its connection's close); the
// kernel writes its own run file beside the notebook meanwhile (gradscope_probe/notebook.py).
// Node only, no vscode: the VS Code command (src/features/notebookKernel.ts) and the tests use it.
import { dirname, join } from 'node:path';
import type { Analyzer } from '../core/analysis/analyzer';
import type { ProtocolError } from '../core/protocol/codec';
import { makeRunId } from '../core/store/runFile';
import { RunStore } from '../core/store/runStore';
import { Emitter, type Disposable } from '../core/util/emitter';
import { RankListener, type RankConnection } from './rankListener';
import { analyzerFor, type LiveRun, type RunExit, type RunHandle } from './runHandle';

/** A Python string literal of any text (JSON's escapes are Python's). */
function py(s: string): string {
  return JSON.stringify(s);
}

/** One argument of the magic's line, as shlex.split reads it back (single quotes; a quote inside closed and escaped). */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'"'"'`)}'`;
}

/**
 * The code the extension has the kernel execute to attach: the probe's folder (the extension's
 * dist/probe/torch) first on sys.path (no pip install), the IPython extension loaded, and
 * `%gradscope on <notebook> --connect <address>` run through the magic's function (a magic's line
 * would be variable-expanded by IPython: `$` or `{` in a path). Prints what the magic says.
 */
export function attachCode(probeDir: string, address: string, notebook: string): string {
  return [
    'def _gradscope_attach():',
    '    import sys',
    `    d = ${py(probeDir)}`,
    '    if d not in sys.path:',
    '        sys.path.insert(0, d)',
    '    ip = get_ipython()',
    '    ip.extension_manager.load_extension("gradscope_probe")',
    '    from gradscope_probe import notebook',
    `    notebook.gradscope_magic(ip, ${py(`on ${shellQuote(notebook)} --connect ${shellQuote(address)}`)})`,
    '_gradscope_attach()',
    'del _gradscope_attach',
    '',
  ].join('\n');
}

/** The code that detaches: `%gradscope off` (the run ends, every hook removed). Harmless when never attached. */
export function detachCode(): string {
  return [
    'def _gradscope_detach():',
    '    import sys',
    '    m = sys.modules.get("gradscope_probe.notebook")',
    '    if m is None:',
    '        print("GradScope is off")',
    '    else:',
    '        m.gradscope_magic(get_ipython(), "off")',
    '_gradscope_detach()',
    'del _gradscope_detach',
    '',
  ].join('\n');
}

/** What a person pastes into a cell when the extension cannot run code in the kernel itself (no Jupyter extension). */
export function pasteLines(probeDir: string, address: string, notebook: string): string {
  return [`import sys; sys.path.insert(0, ${py(probeDir)})`, '%load_ext gradscope_probe', `%gradscope on ${shellQuote(notebook)} --connect ${shellQuote(address)}`, ''].join('\n');
}

/** One `%gradscope on --connect` of the kernel, followed live until its END or its connection's close. */
export class KernelRun implements RunHandle, LiveRun {
  readonly id = makeRunId();
  readonly args: readonly string[] = [];
  readonly cwd: string;
  /** The kernel writes the run file itself, under the notebook's `.gradscope/runs/` (its name is the kernel's). */
  readonly runFile = '';
  readonly store = new RunStore();
  readonly analyzer: Analyzer = analyzerFor(this.store);
  readonly live: LiveRun = this;
  private ended: RunExit | null = null;
  private stopping = false;
  private readonly endedEmitter = new Emitter<RunExit>();
  readonly onDidEnd = this.endedEmitter.event;

  constructor(
    /** The notebook, as the run's script. */
    readonly script: string,
    /** Runs `%gradscope off` in the kernel; false when the host cannot run code there (the lines were pasted). */
    private readonly detach: () => Promise<boolean>,
    /** Closes this run's connection from the host's side. */
    private readonly disconnect: () => void,
  ) {
    this.cwd = dirname(script);
    this.store.onDidChange(() => this.analyzer.update());
  }

  get exited(): boolean {
    return this.ended !== null;
  }

  get exit(): RunExit | null {
    return this.ended;
  }

  /**
   * Stop = Detach: the kernel runs `%gradscope off` (it keeps running; only the inspection ends).
   * When the host cannot run code in the kernel, it stops following: the connection is closed (the
   * probe stops streaming at its next write) and the run ends `stopped`, saying that the kernel still
   * records to its run file until `%gradscope off`.
   */
  async stop(): Promise<RunExit> {
    if (!this.ended) {
      this.stopping = true;
      if (!(await this.detach().catch(() => false)) && !this.ended) this.disconnect();
    }
    return this.ended ?? (await new Promise<RunExit>((r) => this.onDidEnd(r)));
  }

  /** The connection closed: its END says how (`completed` at `off`), or none came (`probe-lost`: the kernel died or was restarted). */
  end(protocolError: ProtocolError | null = null): void {
    if (this.ended) return;
    this.analyzer.finish();
    const end = this.store.end;
    const steps = this.store.stepCount;
    const reason = protocolError ? 'protocol-error' : end ? (end.reason === 'crashed' ? 'crashed' : 'completed') : this.stopping ? 'stopped' : 'probe-lost';
    const message = protocolError
      ? `the kernel's stream broke the protocol: ${protocolError.message}`
      : end
        ? `detached after ${steps} step(s)`
        : this.stopping
          ? `stopped following the kernel after ${steps} step(s); it still records to its run file until %gradscope off runs in a cell`
          : `the kernel's connection closed without an END after ${steps} step(s) (the kernel stopped or was restarted): later steps, if any, were not observed`;
    this.ended = { reason, code: null, signal: null, error: end?.error ?? null, message, steps, lastStep: this.store.lastStep };
    this.endedEmitter.fire(this.ended);
  }
}

/**
 * The host's end for one notebook: listens until disposed; each connection that joins is a new
 * KernelRun (`onDidStartRun`). `detach` is what Stop runs (the extension: detachCode in the kernel).
 */
export class KernelListener implements Disposable {
  private readonly started = new Emitter<KernelRun>();
  readonly onDidStartRun = this.started.event;
  private readonly runs = new Map<number, KernelRun>();
  private readonly refusedEmitter = new Emitter<string>();
  /** A connection that was no GradScope probe: why. */
  readonly onRefused = this.refusedEmitter.event;

  private constructor(
    readonly notebook: string,
    private readonly listener: RankListener,
  ) {}

  get address(): string {
    return this.listener.address;
  }

  static async open(notebook: string, detach: () => Promise<boolean>): Promise<KernelListener> {
    // The handlers run only once the listener exists (a connection comes after open()).
    const ref: { self?: KernelListener } = {};
    const listener = await RankListener.open({
      onJoin: (c: RankConnection) => {
        const run = new KernelRun(notebook, detach, () => c.socket.destroy());
        ref.self!.runs.set(c.id, run);
        ref.self!.started.fire(run);
      },
      onFrame: (c, f) => ref.self!.runs.get(c.id)?.store.ingest(f.message),
      onProtocolError: (c, err) => ref.self!.runs.get(c.id)?.end(err),
      onClose: (c) => ref.self!.runs.get(c.id)?.end(),
      onRefused: (why) => ref.self!.refusedEmitter.fire(why),
    });
    ref.self = new KernelListener(notebook, listener);
    return ref.self;
  }

  /** The runs joined so far, oldest first. */
  get all(): KernelRun[] {
    return [...this.runs.values()];
  }

  dispose(): void {
    this.listener.close();
    for (const r of this.runs.values()) r.end();
    this.started.dispose();
    this.refusedEmitter.dispose();
  }
}

/** Where the kernel writes its run files for this notebook (gradscope_probe/notebook.py RUNS_SUBDIR). */
export function kernelRunFolder(notebook: string): string {
  return join(dirname(notebook), '.gradscope', 'runs');
}
