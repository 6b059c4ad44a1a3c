// One scope of things to dispose together (the extension's, a feature's, one run's listeners), as in
// the VS Code extension samples' dispose.ts. Pure: it takes anything with dispose(), vscode's or ours.
//
// dispose() disposes in reverse order of add() (what was added last may use what came before), once;
// a disposable that throws does not keep the others alive: all are disposed, then the error is
// rethrown (several: an AggregateError), or handed to `onError` when one was given.
import type { Disposable } from './emitter';

export class DisposableStore implements Disposable {
  private items: { dispose(): unknown }[] = [];
  private disposed = false;

  /** `onError`: where a failing dispose() goes instead of being rethrown (e.g. the log). */
  constructor(private readonly onError?: (error: unknown) => void) {}

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Keeps `d` until dispose() or clear(); after dispose(), `d` is disposed at once (nothing may leak). */
  add<T extends { dispose(): unknown }>(d: T): T {
    if (this.disposed) this.disposeAll([d]);
    else this.items.push(d);
    return d;
  }

  /** Disposes what is held now; the store stays usable (a scope reset for the next run). */
  clear(): void {
    const items = this.items;
    this.items = [];
    this.disposeAll(items);
  }

  /** Disposes everything held, in reverse order; later calls do nothing. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.clear();
  }

  private disposeAll(items: readonly { dispose(): unknown }[]): void {
    const errors: unknown[] = [];
    for (let i = items.length - 1; i >= 0; i--) {
      try {
        items[i].dispose();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length === 0) return;
    if (this.onError) for (const e of errors) this.onError(e);
    else throw errors.length === 1 ? errors[0] : new AggregateError(errors, `${errors.length} disposables failed`);
  }
}
