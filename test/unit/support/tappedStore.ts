import type { Message } from '../../../src/core/protocol/messages';
import { RunStore } from '../../../src/core/store/runStore';

/** A store that calls back after every message, to drive the analyzer one step at a time (its own change events are batched per microtask). */
export class TappedStore extends RunStore {
  constructor(private readonly onMessage: (m: Message) => void) {
    super();
  }
  override ingest(msg: Message): void {
    super.ingest(msg);
    this.onMessage(msg);
  }
}
