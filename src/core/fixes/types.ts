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

/** What one language's rewrite answers (before the driver checks the edits and adds the text after). */
export type Outcome = { ok: true; title: string; edits: TextEdit[] } | { ok: false; reason: string; alreadyApplied?: boolean };

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
      /** The remedy asked for: a RemedyId, or an id GradScope does not know (the CLI's --remedy takes any). */
      remedy: string;
      /** Why this remedy cannot be applied here, in words for the user. */
      reason: string;
      /** Already applied (e.g. the clipping wrapper is present): not an error, nothing to do. */
      alreadyApplied?: boolean;
    };

export type ComputeFix = (text: string, finding: Finding, remedy: string, ctx: FixContext) => FixResult;

/** One remedy's rewrite in one language, on what the language read of the script (`S`). */
export type Rewrite<S> = (script: S, finding: Finding, ctx: FixContext) => Outcome;

/** Every remedy's rewrite: keyed by RemedyId, so a language that lacks one fails to compile. */
export type Rewrites<S> = Record<RemedyId, Rewrite<S>>;

/**
 * What the driver (driver.ts) needs of a language: parse (to a tree `T`), count syntax errors (a fix
 * may not add any), read what the rewrites share (`S`: the tree with its bindings, layout …), and
 * the rewrites. The driver does the rest, the same for every language.
 */
export interface FixLanguage<T, S> {
  parse(text: string, file: string): T;
  errorCount(tree: T): number;
  read(tree: T, text: string): S;
  /** Frees a tree (Tree-sitter's live in wasm memory); absent where the garbage collector does it. */
  release?(tree: T): void;
  rewrites: Rewrites<S>;
}
