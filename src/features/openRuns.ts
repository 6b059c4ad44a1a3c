// The runs the editor's views show, as handles. Features publish and find runs here rather than
// reaching into each other: a run that starts or that the panel reads back is opened here, and the
// diagnostics show it; a remedy from the panel finds the run the panel shows.
import { Emitter, type Disposable } from '../core/util/emitter';
import type { RunHandle } from '../process/runHandle';

export class OpenRuns implements Disposable {
  private readonly opened = new Emitter<RunHandle>();
  /** A run was opened: a live one as it starts, a saved one when a view read it back. */
  readonly onDidOpen = this.opened.event;
  /** The newest run opened of each script (one each, so old runs' stores are let go). */
  private readonly newest = new Map<string, RunHandle>();
  /** The run the inspection panel shows (null: none). */
  shown: RunHandle | null = null;

  open(run: RunHandle): void {
    this.newest.set(run.script, run);
    this.opened.fire(run);
  }

  /**
   * Opens a run the views read back on their own (the panel following the editor), unless a run of
   * its script started since: reading a file takes a while, and a run started meanwhile stays the
   * newest (ids sort by start time: makeRunId). Returns whether it was opened.
   */
  openUnlessSuperseded(run: RunHandle): boolean {
    const newest = this.newest.get(run.script);
    if (newest && newest.id > run.id) return false;
    this.open(run);
    return true;
  }

  /** The newest run opened of this script. */
  latest(script: string): RunHandle | undefined {
    return this.newest.get(script);
  }

  dispose(): void {
    this.opened.dispose();
    this.newest.clear();
    this.shown = null;
  }
}
