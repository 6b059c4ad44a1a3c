// The Python (PyTorch) fix language: the same contract as the TF.js one (text, finding, remedy →
// offset edits and the text after), computed on a Tree-sitter syntax tree of the script. Edits
// insert or replace the least text they can; new lines take the indentation of the block they go
// in (spaces or tabs, as written) and the file's line ending; comments and formatting stay.
// Under PyTorch Lightning and the Hugging Face Trainer the remedies are written in their idiom
// (framework.ts, trainer.ts): Trainer(gradient_clip_val=…), TrainingArguments(max_grad_norm=…, learning_rate=…);
// a clip threshold the script already has is lowered where it is written (lowerClip.ts).
// The parser (Tree-sitter's wasm and its Python grammar) is loaded by the shell that runs the engine
// (src/process/pythonParser.ts) and handed in: this folder reads no file.
import type { Tree } from '@vscode/tree-sitter-wasm';
import type { Finding } from '../../analysis/finding';
import type { FixContext, FixLanguage, Outcome, Rewrites } from '../types';
import { computeClipPy } from './clip';
import { computeGuardLossPy } from './guardLoss';
import { computeInitPy } from './init';
import { computeLowerClipPy } from './lowerClip';
import { computeLrPy } from './lr';
import { computeNormalizeInputsPy } from './normalizeInputs';
import { frameworkOf, type Framework } from './framework';
import { findOptimizers } from './optimizer';
import { errorCount, layoutOf, torchBindings, type Bindings, type Layout, type SyntaxNode } from './syntax';
import { computeHfClip, computeLightningClip } from './trainer';

/** A loaded Tree-sitter parser for Python. The caller of `parse` frees the tree (`delete()`). */
export interface PythonParser {
  parse(text: string): Tree;
}

export function isPythonFile(file: string | undefined | null): boolean {
  return !!file && /\.pyw?$/i.test(file);
}

/** Why Python fixes cannot be computed yet: the parser is still loading (null), or could not be loaded. */
export function pythonUnavailable(err: Error | null): string {
  return err ? `the Python parser could not be loaded: ${err.message}` : 'the Python parser is still loading: try again in a moment';
}

/** What every Python rewrite reads: the tree, how the file names torch, its layout, its framework. */
interface PyScript {
  root: SyntaxNode;
  b: Bindings;
  layout: Layout;
  fw: Framework;
}

const REWRITES: Rewrites<PyScript> = {
  'clip-global-norm': (s, f, ctx) => computeClipFor(s.root, s.b, s.layout, f, ctx, s.fw),
  'he-init': (s, f) => computeInitPy(s.root, s.b, s.layout, f, 'he'),
  'glorot-init': (s, f) => computeInitPy(s.root, s.b, s.layout, f, 'glorot'),
  'zero-bias-init': (s, f) => computeInitPy(s.root, s.b, s.layout, f, 'zero-bias'),
  'lower-lr': (s, f) => computeLrPy(s.root, s.b, s.layout, f, 'lower', s.fw),
  'raise-lr': (s, f) => computeLrPy(s.root, s.b, s.layout, f, 'raise', s.fw),
  'guard-loss': (s, f) => computeGuardLossPy(s.root, s.b, f),
  'lower-clip-threshold': (s, f, ctx) => computeLowerClipPy(s.root, s.layout, f, ctx, s.fw),
  'normalize-inputs': (s, f) => computeNormalizeInputsPy(s.root, s.layout, f),
};

export function pythonLanguage(parser: PythonParser): FixLanguage<Tree, PyScript> {
  return {
    parse: (text) => parser.parse(text),
    errorCount: (tree) => errorCount(tree.rootNode),
    read: (tree, text) => {
      const root = tree.rootNode;
      return { root, b: torchBindings(root), layout: layoutOf(text, root), fw: frameworkOf(root) };
    },
    release: (tree) => tree.delete(),
    rewrites: REWRITES,
  };
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
