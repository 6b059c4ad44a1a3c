// The contract of the fix engine: (source text, finding, remedy) in, text edits out. Pure: the
// editor's code actions, the panel's remedy buttons and `gradscope fix` all call the same code.
import type { Finding, RemedyId } from '../analysis/finding';

/** A replacement of [start, end) (0-based UTF-16 offsets into the text the fix was computed on). */
export interface TextEdit {
  start: number;
  end: number;
  newText: string;
}

/** Numbers from the run that a remedy needs (e.g. the clip threshold derived from healthy norms). */
export interface FixContext {
  /** Absolute path of the file being edited. */
  file: string;
  /** Per-step global gradient norms of the run (finite values; NaN/Inf allowed and ignored). */
  globalNorms?: readonly number[];
  /**
   * The version of the document the text came from (the editor's `TextDocument.version`). The
   * engine only echoes it in the result: the editor refuses the edits if the document changed.
   */
  version?: number;
}

export type FixResult =
  | {
      ok: true;
      remedy: RemedyId;
      /** A one-line description: "Clip gradients by global norm 12.5 (wraps tf.train.sgd on line 20)". */
      title: string;
      edits: TextEdit[];
      /** The text after the edits (for diffs and verification). */
      after: string;
      /** `ctx.version`, echoed: the document version these offsets belong to. */
      version?: number;
    }
  | {
      ok: false;
      remedy: RemedyId;
      /** Why this remedy cannot be applied here, in words for the user. */
      reason: string;
      /** Already applied (e.g. the clipping wrapper is present): not an error, nothing to do. */
      alreadyApplied?: boolean;
    };

export type ComputeFix = (text: string, finding: Finding, remedy: RemedyId, ctx: FixContext) => FixResult;
