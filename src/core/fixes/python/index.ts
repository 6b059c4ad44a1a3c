// The Python (PyTorch) fix engine: the same contract as the TF.js engine (text, finding, remedy →
// offset edits and the text after), computed on a Tree-sitter syntax tree of the script. Edits
// insert or replace the least text they can; new lines take the indentation of the block they go
// in (spaces or tabs, as written) and the file's line ending; comments and formatting stay.
// Under PyTorch Lightning and the Hugging Face Trainer the remedies are written in their idiom
// (framework.ts, trainer.ts): Trainer(gradient_clip_val=…), TrainingArguments(max_grad_norm=…, learning_rate=…);
// a clip threshold the script already has is lowered where it is written (lowerClip.ts).
// The parser is wasm and loads asynchronously: `loadPythonParser()` must have resolved before
// `computePythonFix` can compute anything (until then it answers ok:false and starts loading).
import type { Finding, RemedyId } from '../../analysis/finding';
import { applyEdits } from '../ast';
import type { FixContext, FixResult } from '../types';
import { computeClipPy } from './clip';
import { computeGuardLossPy } from './guardLoss';
import { computeInitPy } from './init';
import { computeLowerClipPy } from './lowerClip';
import { computeLrPy } from './lr';
import { computeNormalizeInputsPy } from './normalizeInputs';
import { frameworkOf, type Framework } from './framework';
import { findOptimizers } from './optimizer';
import { loadPythonParser, parsePython, pythonParserError, pythonParserReady } from './parser';
import { errorCount, layoutOf, torchBindings, type Bindings, type Layout, type SyntaxNode } from './syntax';
import { computeHfClip, computeLightningClip } from './trainer';
import type { Outcome } from './types';

export { loadPythonParser, pythonParserReady };

export function isPythonFile(file: string | undefined | null): boolean {
  return !!file && /\.pyw?$/i.test(file);
}

export function computePythonFix(text: string, finding: Finding, remedy: RemedyId, ctx: FixContext): FixResult {
  if (!pythonParserReady()) {
    const err = pythonParserError();
    loadPythonParser().catch(() => undefined);
    return { ok: false, remedy, reason: err ? `the Python parser could not be loaded: ${err.message}` : 'the Python parser is still loading: try again in a moment' };
  }
  let out: Outcome;
  let beforeErrors: number;
  const tree = parsePython(text);
  try {
    const root = tree.rootNode;
    beforeErrors = errorCount(root);
    const b = torchBindings(root);
    const layout = layoutOf(text, root);
    const fw = frameworkOf(root);
    switch (remedy) {
      case 'clip-global-norm':
        out = computeClipFor(root, b, layout, finding, ctx, fw);
        break;
      case 'he-init':
        out = computeInitPy(root, b, layout, finding, 'he');
        break;
      case 'glorot-init':
        out = computeInitPy(root, b, layout, finding, 'glorot');
        break;
      case 'zero-bias-init':
        out = computeInitPy(root, b, layout, finding, 'zero-bias');
        break;
      case 'lower-lr':
        out = computeLrPy(root, b, layout, finding, 'lower', fw);
        break;
      case 'raise-lr':
        out = computeLrPy(root, b, layout, finding, 'raise', fw);
        break;
      case 'guard-loss':
        out = computeGuardLossPy(root, b, finding);
        break;
      case 'lower-clip-threshold':
        out = computeLowerClipPy(root, layout, finding, ctx, fw);
        break;
      case 'normalize-inputs':
        out = computeNormalizeInputsPy(root, layout, finding);
        break;
      default:
        out = { ok: false, reason: `GradScope has no automatic edit for the remedy '${remedy}'` };
    }
  } catch (e) {
    return { ok: false, remedy, reason: `internal error computing the fix: ${(e as Error).message}` };
  } finally {
    tree.delete();
  }
  if (!out.ok) return { ok: false, remedy, reason: out.reason, ...(out.alreadyApplied ? { alreadyApplied: true } : {}) };
  const after = applyEdits(text, out.edits);
  // A fix must never break the file: the text after must parse with no more errors than before.
  const afterTree = parsePython(after);
  const afterErrors = errorCount(afterTree.rootNode);
  afterTree.delete();
  if (afterErrors > beforeErrors) return { ok: false, remedy, reason: `internal error: the edit would not parse (${out.title})` };
  const edits = [...out.edits].sort((a, b) => a.start - b.start);
  return { ok: true, remedy, title: out.title, edits, after, ...(ctx.version !== undefined ? { version: ctx.version } : {}) };
}

/** Clipping in the script's idiom: the Lightning Trainer's or TrainingArguments' threshold, else clip_grad_norm_ before each step. */
function computeClipFor(root: SyntaxNode, b: Bindings, layout: Layout, finding: Finding, ctx: FixContext, fw: Framework): Outcome {
  switch (fw.kind) {
    case 'lightning': {
      const out = computeLightningClip(root, layout, fw, finding, ctx);
      if (out.ok || fw.trainers.length > 0) return out;
      // A LightningModule with no Trainer here may be stepped by a plain loop in this file.
      const plain = computeClipPy(root, b, layout, finding, ctx, findOptimizers(root, b).length);
      return plain.ok || plain.alreadyApplied ? plain : out;
    }
    case 'hf': {
      const out = computeHfClip(root, layout, fw, finding, ctx);
      if (out.ok || fw.args.length > 0 || fw.trainers.length > 0) return out;
      // HfArgumentParser feeding a loop of the script's own (no Trainer here).
      const plain = computeClipPy(root, b, layout, finding, ctx, findOptimizers(root, b).length);
      return plain.ok || plain.alreadyApplied ? plain : out;
    }
    case 'plain':
      return computeClipPy(root, b, layout, finding, ctx, findOptimizers(root, b).length);
  }
}
