// The terminal that shows one run's stdout/stderr: a Pseudoterminal, so the child keeps plain pipes
// (its fd 3 carries the wire protocol) and GradScope decides what the user sees.
import * as vscode from 'vscode';
import type { RunWarning } from '../core/report/warnings';

/** How much of the terminal's text is kept for `GradScopeApi.inspect()`. */
const TRANSCRIPT_CHARS = 64 * 1024;
/** Output held until VS Code opens the terminal; older output beyond this is dropped. */
const PENDING_CHARS = 1024 * 1024;

export interface RunTerminalHooks {
  /** Ctrl+C typed into the terminal while the run is live. */
  onInterrupt(): void;
  /** The user closed the terminal (any state). */
  onClosed(): void;
}

export class RunTerminal implements vscode.Disposable {
  readonly terminal: vscode.Terminal;
  private readonly writeEmitter = new vscode.EventEmitter<string>();
  private readonly closeEmitter = new vscode.EventEmitter<void>();
  /** Output that arrived before VS Code opened the terminal; flushed in `open`. */
  private pending: string[] = [];
  private pendingChars = 0;
  private opened = false;
  private ended = false;
  private disposed = false;
  private transcriptText = '';

  constructor(
    name: string,
    private readonly hooks: RunTerminalHooks,
  ) {
    const pty: vscode.Pseudoterminal = {
      onDidWrite: this.writeEmitter.event,
      onDidClose: this.closeEmitter.event,
      open: () => {
        this.opened = true;
        const buffered = this.pending.join('');
        this.pending = [];
        this.pendingChars = 0;
        if (buffered) this.writeEmitter.fire(buffered);
      },
      close: () => {
        this.opened = false;
        this.hooks.onClosed();
      },
      handleInput: (data) => {
        if (this.ended) {
          // Like a finished task: any key closes the terminal.
          this.closeEmitter.fire();
        } else if (data.includes('\x03')) {
          this.emit('^C\r\n');
          this.hooks.onInterrupt();
        }
      },
    };
    this.terminal = vscode.window.createTerminal({
      name,
      pty,
      iconPath: new vscode.ThemeIcon('pulse'),
      isTransient: true,
    });
  }

  /** The script's own output; newlines become CRLF, as a terminal needs. */
  write(text: string): void {
    this.emit(text.replace(/\r?\n/g, '\r\n'));
  }

  /** A GradScope line (dimmed), on a line of its own. */
  note(text: string): void {
    this.emit(`\x1b[2m${text.replace(/\r?\n/g, '\r\n')}\x1b[0m\r\n`);
  }

  /** The run is over: say why, and let any key close the terminal. */
  /** The last lines: the outcome, then what GradScope could not see (a run with warnings is not drawn green). */
  end(line: string, failed: boolean, warnings: readonly RunWarning[] = []): void {
    if (this.ended) return;
    const warned = warnings.some((w) => w.level === 'warning');
    const colour = failed ? '\x1b[31m' : warned ? '\x1b[33m' : '\x1b[32m';
    const notes = warnings.map((w) => (w.level === 'warning' ? `\x1b[33m  warning: ${w.message}\x1b[0m\r\n` : `\x1b[2m  note: ${w.message}\x1b[0m\r\n`)).join('');
    this.emit(`\r\n${colour}■ ${line}\x1b[0m\r\n${notes}\x1b[2mPress any key to close the terminal.\x1b[0m\r\n`);
    this.ended = true;
  }

  show(preserveFocus = true): void {
    if (!this.disposed) this.terminal.show(preserveFocus);
  }

  /** The text sent to the terminal so far (the last 64 KiB), escape sequences included. */
  transcript(): string {
    return this.transcriptText;
  }

  get isOpen(): boolean {
    return this.opened;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.terminal.dispose();
    this.writeEmitter.dispose();
    this.closeEmitter.dispose();
  }

  private emit(data: string): void {
    if (this.disposed || !data) return;
    this.transcriptText = (this.transcriptText + data).slice(-TRANSCRIPT_CHARS);
    if (this.opened) this.writeEmitter.fire(data);
    else {
      this.pending.push(data);
      this.pendingChars += data.length;
      while (this.pendingChars > PENDING_CHARS && this.pending.length > 1) {
        this.pendingChars -= this.pending.shift()!.length;
      }
    }
  }
}
