// "GradScope: Inspect This Notebook's Kernel" and "GradScope: Detach from This Notebook's Kernel"
// (issue 18). Inspect opens a listener for the active Jupyter notebook (src/process/kernelRun.ts:
// the per-run Unix socket the ranks join, in a folder only this user reaches) and has the notebook's
// running kernel execute the attach code through the Jupyter extension's API
// (`ms-toolsai.jupyter` exports `kernels.getKernel(uri)`, whose `executeCode` runs code without
// touching the notebook): the probe from this extension's dist/probe/torch, `%gradscope on
// <notebook> --connect <socket>`. Each run that joins is opened like any run (panel, diagnostics
// on the cells' lines, hover, quick fixes) and shown in a status bar item until it ends. Detach
// (or Stop in the panel) runs `%gradscope off`: every hook removed, the kernel left running.
//
// Without the Jupyter extension (or its kernel API) nothing can run code in the kernel: the command
// says so and offers the lines to paste into a cell, which connect to the same listener.
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import { attachCode, detachCode, KernelListener, pasteLines, type KernelRun } from '../process/kernelRun';
import type { GradScopeContext } from './context';
import { describeError } from './errors';

export const INSPECT_KERNEL_COMMAND = 'gradscope.inspectNotebookKernel';
export const DETACH_KERNEL_COMMAND = 'gradscope.detachNotebookKernel';
const JUPYTER_EXTENSION_ID = 'ms-toolsai.jupyter';
/** `gradscope.kernelAttached`: a notebook kernel is followed (Detach shows in the toolbar). */
const ATTACHED_CONTEXT_KEY = 'gradscope.kernelAttached';

// The part of the Jupyter extension's API used here (@vscode/jupyter-extension 1.1.1, `Jupyter`):
// declared here rather than adding the package for four members.
interface JupyterOutputItem {
  mime: string;
  data: Uint8Array;
}
interface JupyterKernel {
  readonly language: string;
  executeCode(code: string, token: vscode.CancellationToken): AsyncIterable<{ items: JupyterOutputItem[] }>;
}
interface JupyterApi {
  readonly kernels?: { getKernel(uri: vscode.Uri): Thenable<JupyterKernel | undefined> };
}

/** What Inspect did: attached through the Jupyter extension, or the lines to paste (listening), or nothing (why). */
export interface InspectResult {
  outcome: 'attached' | 'paste' | 'refused' | 'failed';
  message: string;
  /** With `paste`: the lines that connect a kernel to the listener. */
  lines?: string;
}

/** What the attach code printed, and whether an error came back. */
interface ExecResult {
  text: string;
  error: string | null;
}

const STDOUT_MIMES = ['application/vnd.code.notebook.stdout', 'application/x.notebook.stream.stdout', 'text/plain'];
const STDERR_MIMES = ['application/vnd.code.notebook.stderr', 'application/x.notebook.stream.stderr'];
const ERROR_MIME = 'application/vnd.code.notebook.error';

async function execute(kernel: JupyterKernel, code: string): Promise<ExecResult> {
  const source = new vscode.CancellationTokenSource();
  const timer = setTimeout(() => source.cancel(), 60_000);
  const out: string[] = [];
  let error: string | null = null;
  try {
    for await (const o of kernel.executeCode(code, source.token)) {
      for (const item of o.items) {
        const text = new TextDecoder().decode(item.data);
        if (item.mime === ERROR_MIME) error = text;
        else if (STDOUT_MIMES.includes(item.mime) || STDERR_MIMES.includes(item.mime)) out.push(text);
      }
    }
  } finally {
    clearTimeout(timer);
    source.dispose();
  }
  return { text: out.join(''), error };
}

/** One notebook followed: its listener, how to reach its kernel, the runs that joined. */
interface Attached {
  notebook: vscode.NotebookDocument;
  listener: KernelListener;
  kernel: JupyterKernel | null;
}

export class NotebookKernelFeature implements vscode.Disposable {
  private readonly attached = new Map<string, Attached>();
  private readonly status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 99);
  private readonly disposables: vscode.Disposable[] = [];
  private shown: KernelRun | null = null;
  private statusTimer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: GradScopeContext) {
    this.status.command = DETACH_KERNEL_COMMAND;
    this.disposables.push(
      this.status,
      vscode.commands.registerCommand(INSPECT_KERNEL_COMMAND, (arg?: unknown) => this.boundary('Inspect Notebook Kernel', () => this.inspect(arg))),
      vscode.commands.registerCommand(DETACH_KERNEL_COMMAND, (arg?: unknown) => this.boundary('Detach', () => this.detach(arg))),
      vscode.workspace.onDidCloseNotebookDocument((nb) => this.forget(nb.uri)),
    );
  }

  private async boundary<T>(title: string, body: () => Promise<T>): Promise<T | undefined> {
    try {
      return await body();
    } catch (e) {
      this.ctx.log.error(`${title}: ${describeError(e)}`);
      void vscode.window.showErrorMessage(`GradScope ${title}: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  }

  /** The notebook a command is for: its argument (a notebook URI, as the toolbar passes), else the active notebook editor's. */
  private notebookOf(arg: unknown): vscode.NotebookDocument | undefined {
    const uri = arg instanceof vscode.Uri ? arg : (arg as { notebookEditor?: { notebookUri?: unknown } } | undefined)?.notebookEditor?.notebookUri;
    if (uri instanceof vscode.Uri) return vscode.workspace.notebookDocuments.find((n) => n.uri.toString() === uri.toString());
    return vscode.window.activeNotebookEditor?.notebook;
  }

  /** Returns what happened (also shown and logged), for tests. */
  async inspect(arg?: unknown): Promise<InspectResult> {
    const nb = this.notebookOf(arg);
    if (!nb || nb.notebookType !== 'jupyter-notebook')
      return this.refuse('warn', 'open a Jupyter notebook (.ipynb) first: Inspect This Notebook’s Kernel follows the kernel of the active notebook.');
    if (nb.uri.scheme !== 'file' || nb.isUntitled) return this.refuse('warn', 'save the notebook first: its cells are found in the saved file, and its runs are written beside it.');
    // Attaching runs the probe's code in the kernel: the same rule as Train & Inspect.
    if (!vscode.workspace.isTrusted) return this.refuse('warn', 'nothing was attached: inspecting a kernel runs GradScope’s probe in it, and this workspace is not trusted.');
    if (nb.isDirty) await nb.save();
    const file = nb.uri.fsPath;
    const probeDir = join(this.ctx.extension.extensionUri.fsPath, 'dist', 'probe', 'torch');
    const a = await this.listen(nb);
    const api = await jupyterApi();
    const kernel = api?.kernels ? await api.kernels.getKernel(nb.uri) : undefined;
    if (!api?.kernels || !kernel) {
      const lines = pasteLines(probeDir, a.listener.address, file);
      const why = !api
        ? 'the Jupyter extension (ms-toolsai.jupyter) is not installed or not active, so GradScope cannot run code in the kernel itself'
        : !api.kernels
          ? 'this Jupyter extension has no kernel API'
          : `${basename(file)} has no running kernel yet (run a cell first), or the Jupyter extension did not give GradScope access to it`;
      // Not awaited: the command returns while the message waits for the person.
      void vscode.window
        .showWarningMessage(
          `GradScope: ${why}. Paste the lines GradScope copies into a cell of ${basename(file)} and run it: GradScope is listening, and shows the run from its first step.`,
          'Copy the Lines',
        )
        .then((pick) => pick && vscode.env.clipboard.writeText(lines));
      this.ctx.log.info(`inspect kernel: ${why}; lines to paste:\n${lines}`);
      return { outcome: 'paste', message: why, lines };
    }
    if (kernel.language && kernel.language.toLowerCase() !== 'python')
      return this.refuse('warn', `the kernel of ${basename(file)} runs ${kernel.language}; GradScope inspects PyTorch in Python kernels.`);
    a.kernel = kernel;
    const r = await execute(kernel, attachCode(probeDir, a.listener.address, file));
    this.ctx.log.info(`inspect kernel ${file}: ${r.text.trim()}${r.error ? ` (error: ${r.error})` : ''}`);
    if (r.error) return { outcome: 'failed', message: this.say('error', `the attach code failed in the kernel: ${r.error}`) };
    if (!/streaming to GradScope/.test(r.text) || /not streaming/.test(r.text))
      return { outcome: 'failed', message: this.say('error', `the kernel did not connect: ${r.text.trim() || 'no output'}`) };
    void vscode.commands.executeCommand('setContext', ATTACHED_CONTEXT_KEY, true);
    return { outcome: 'attached', message: this.say('info', `following the kernel of ${basename(file)}: every optimizer step from now on shows in the panel (Detach to stop).`) };
  }

  /** `%gradscope off` in the kernel (every hook removed); the listener stays for a later Inspect. */
  async detach(arg?: unknown): Promise<{ ran: boolean; message: string }> {
    const nb = this.notebookOf(arg) ?? this.shown?.script;
    const a = nb ? this.attached.get(typeof nb === 'string' ? vscode.Uri.file(nb).toString() : nb.uri.toString()) : [...this.attached.values()].at(-1);
    if (!a) return { ran: false, message: this.say('info', 'no notebook kernel is followed.') };
    void vscode.commands.executeCommand('setContext', ATTACHED_CONTEXT_KEY, false);
    if (!a.kernel)
      return { ran: false, message: this.say('info', `run %gradscope off in a cell of ${basename(a.notebook.uri.fsPath)} to detach (GradScope cannot run code in its kernel).`) };
    const r = await execute(a.kernel, detachCode());
    this.ctx.log.info(`detach ${a.notebook.uri.fsPath}: ${r.text.trim()}${r.error ? ` (error: ${r.error})` : ''}`);
    if (r.error) return { ran: false, message: this.say('error', `%gradscope off failed in the kernel: ${r.error}`) };
    return { ran: true, message: this.say('info', r.text.trim() || 'detached') };
  }

  private async listen(nb: vscode.NotebookDocument): Promise<Attached> {
    const key = nb.uri.toString();
    const existing = this.attached.get(key);
    if (existing) return existing;
    const file = nb.uri.fsPath;
    const a: Attached = { notebook: nb, kernel: null, listener: await KernelListener.open(file, () => this.detach(nb.uri).then((r) => r.ran)) };
    a.listener.onDidStartRun((run) => this.started(run));
    a.listener.onRefused((why) => this.ctx.log.warn(`notebook kernel listener for ${file}: a connection was refused: ${why}`));
    this.attached.set(key, a);
    return a;
  }

  private started(run: KernelRun): void {
    this.ctx.log.info(`notebook kernel run ${run.id}: ${run.script} joined`);
    this.ctx.openRuns.open(run);
    this.shown = run;
    this.updateStatus();
    const sub = run.store.onDidChange(() => {
      if (!this.statusTimer) this.statusTimer = setTimeout(() => ((this.statusTimer = undefined), this.updateStatus()), 250);
    });
    run.onDidEnd((exit) => {
      sub.dispose();
      this.ctx.log.info(`notebook kernel run ${run.id}: ${exit.reason}: ${exit.message}`);
      if (exit.reason !== 'completed') void vscode.window.showWarningMessage(`GradScope: ${basename(run.script)}: ${exit.message}`);
      this.updateStatus();
    });
  }

  private updateStatus(): void {
    const run = this.shown;
    if (!run || run.exited) {
      this.status.hide();
      return;
    }
    const found = run.analyzer.findings.length;
    this.status.text = `$(pulse) GradScope: ${basename(run.script)} kernel, step ${Math.max(0, run.store.lastStep)}${found ? `, ${found} finding${found > 1 ? 's' : ''}` : ''}`;
    this.status.tooltip = 'GradScope follows this notebook’s kernel. Click to detach (%gradscope off).';
    this.status.show();
  }

  private refuse(level: 'warn', text: string): InspectResult {
    return { outcome: 'refused', message: this.say(level, text) };
  }

  private say(level: 'info' | 'warn' | 'error', text: string): string {
    const show = level === 'info' ? vscode.window.showInformationMessage : level === 'warn' ? vscode.window.showWarningMessage : vscode.window.showErrorMessage;
    void show(`GradScope: ${text}`);
    this.ctx.log[level === 'warn' ? 'warn' : level](`notebook kernel: ${text}`);
    return text;
  }

  private forget(uri: vscode.Uri): void {
    const a = this.attached.get(uri.toString());
    if (!a) return;
    this.attached.delete(uri.toString());
    a.listener.dispose();
    if (this.shown && this.shown.script === uri.fsPath) this.shown = null;
    this.updateStatus();
  }

  dispose(): void {
    clearTimeout(this.statusTimer);
    for (const a of this.attached.values()) a.listener.dispose();
    this.attached.clear();
    for (const d of this.disposables) d.dispose();
  }
}

async function jupyterApi(): Promise<JupyterApi | undefined> {
  const ext = vscode.extensions.getExtension<JupyterApi>(JUPYTER_EXTENSION_ID);
  if (!ext) return undefined;
  try {
    return ext.isActive ? ext.exports : await ext.activate();
  } catch {
    return undefined;
  }
}
