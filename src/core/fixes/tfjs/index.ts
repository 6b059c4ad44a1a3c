// The TF.js fix language: the rewrites computed on the TypeScript compiler's syntax tree (it parses
// JS and TS). Edits insert or replace the least text they can and never reformat: the user's
// formatting and comments stay as they were.
import type * as ts from 'typescript';
import type { FixLanguage, Rewrites } from '../types';
import { parse, styleOf, syntaxErrors, tfBindings, type Style, type TfBindings } from './ast';
import { computeClip } from './clip';
import { computeGuardLoss } from './guardLoss';
import { computeInit, computeZeroBias } from './init';
import { computeLowerClip } from './lowerClip';
import { computeLr } from './lr';
import { computeNormalizeInputs } from './normalizeInputs';

/** What every TF.js rewrite reads: the tree, how the file names tfjs, and how it writes code. */
interface TfScript {
  sf: ts.SourceFile;
  b: TfBindings;
  style: Style;
}

const REWRITES: Rewrites<TfScript> = {
  'clip-global-norm': (s, f, ctx) => computeClip(s.sf, s.b, s.style, f, ctx),
  'he-init': (s, f) => computeInit(s.sf, s.b, s.style, f, 'he'),
  'glorot-init': (s, f) => computeInit(s.sf, s.b, s.style, f, 'glorot'),
  'lower-lr': (s, f) => computeLr(s.sf, s.b, s.style, f, 'lower'),
  'raise-lr': (s, f) => computeLr(s.sf, s.b, s.style, f, 'raise'),
  'guard-loss': (s, f) => computeGuardLoss(s.sf, s.b, f),
  'zero-bias-init': (s, f) => computeZeroBias(s.sf, s.b, s.style, f),
  'lower-clip-threshold': (s, f, ctx) => computeLowerClip(s.sf, f, ctx),
  'normalize-inputs': (s, f) => computeNormalizeInputs(s.sf, s.b, f),
};

export const tfjsLanguage: FixLanguage<ts.SourceFile, TfScript> = {
  parse,
  errorCount: (sf) => syntaxErrors(sf).length,
  read: (sf) => ({ sf, b: tfBindings(sf), style: styleOf(sf) }),
  rewrites: REWRITES,
};
