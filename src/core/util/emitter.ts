// A minimal typed event emitter for the pure core and the process layer (VS Code's EventEmitter is
// not available outside the extension host). Listeners that throw are isolated from each other.
export interface Disposable {
  dispose(): void;
}

export class Emitter<T> {
  private listeners = new Set<(value: T) => void>();

  readonly event = (listener: (value: T) => void): Disposable => {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  };

  fire(value: T): void {
    for (const l of [...this.listeners]) {
      try {
        l(value);
      } catch (e) {
        // A broken view must not break the data path.
        console.error('[gradscope] listener failed:', e);
      }
    }
  }

  dispose(): void {
    this.listeners.clear();
  }
}
