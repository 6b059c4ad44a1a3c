// Typed errors for the VS Code side. Code below the command boundary throws these; the boundary
// (commands.ts) logs every error and decides whether, and how loudly, to tell the user.

/**
 * - `user`: the user can fix it (no file open, untitled file, untrusted workspace); shown as a
 *   warning, no stack in the log.
 * - `environment`: the machine is missing something (Node not found, storage not writable).
 * - `internal`: a bug in GradScope; shown as an error with a way to the log.
 */
export type ErrorCategory = 'user' | 'environment' | 'internal';

export class GradScopeError extends Error {
  override readonly name = 'GradScopeError';
  constructor(
    readonly category: ErrorCategory,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function asGradScopeError(e: unknown): GradScopeError {
  if (e instanceof GradScopeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new GradScopeError('internal', message, { cause: e });
}

/** The stack of an error and of its causes, for the log. */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    parts.push(cur instanceof Error ? (cur.stack ?? `${cur.name}: ${cur.message}`) : describeValue(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join('\nCaused by: ');
}

/** A thrown non-Error as text: JSON for plain objects (String() would print "[object Object]"). */
function describeValue(v: unknown): string {
  if (typeof v === 'object' && v !== null) {
    try {
      return JSON.stringify(v);
    } catch {
      return Object.prototype.toString.call(v);
    }
  }
  const primitive = v as string | number | boolean | bigint | symbol | undefined;
  return String(primitive);
}
