// normalize-inputs for TF.js: standardise the model's input where the script trains on it, by
// wrapping the argument of the training call: `model.fit(x, y, …)` →
// `model.fit(tf.tidy(() => { const { mean, variance } = tf.moments(x, 0); return x.sub(mean).div(variance.sqrt().add(1e-8)); }), y, …)`
// (in a custom loop, the argument of `predict(x)` / `apply(x)` / a plain `forward(x)`).
//
// Why there and not a normalisation layer, or the declaration: the argument is an expression in
// every script style (a `const` tensor, a `let` batch rebuilt in the loop, a tensor a helper returns),
// so wrapping it needs no new binding and no knowledge of how it was built; what the script derives
// from the raw x elsewhere (targets computed from the features) stays as written; the model (its
// layers, saved weights) stays as it was; and each feature is standardised on its own. A
// `batchNormalization` layer first would need the model definition rewritten and normalises with
// batch statistics; a `layerNormalization` normalises each sample across its features, which leaves
// one feature in the thousands dominating the rest. `tf.tidy` frees the temporaries; the statistics
// are over axis 0 (the examples): a [batch, time, features] sequence is standardised per time step
// and feature. Under `fit` they are computed once, over the whole training set.
import * as ts from 'typescript';
import type { Finding } from '../../analysis/finding';
import { NORMALIZE_EPSILON } from '../policy';
import type { Outcome } from '../types';
import { lineOf, type TfBindings } from './ast';

const TRAIN_CALLS = ['fit', 'trainOnBatch'];
// A custom loop's forward function is often a plain `predict(x)` / `forward(x)` / `model(x)`.
const FORWARD_CALLS = ['predict', 'apply', 'forward', 'model', 'net'];

type Input = { kind: 'wrap'; arg: ts.Identifier } | { kind: 'done' };

/** The first argument of the first such call: a plain identifier (to wrap), or one already standardised ('done'). */
function inputArgument(sf: ts.SourceFile, methods: readonly string[]): Input | null {
  let out: Input | null = null;
  const visit = (n: ts.Node): void => {
    if (out) return;
    const callee = ts.isCallExpression(n) ? n.expression : null;
    const name = callee && ts.isPropertyAccessExpression(callee) ? callee.name.text : callee && ts.isIdentifier(callee) && methods === FORWARD_CALLS ? callee.text : null;
    if (ts.isCallExpression(n) && name !== null && methods.includes(name)) {
      const a = n.arguments[0];
      if (a && ts.isIdentifier(a) && !isSymbolicInput(sf, a.text)) {
        out = { kind: 'wrap', arg: a };
        return;
      }
      if (a && ts.isCallExpression(a) && /\.moments\(/.test(a.getText(sf))) {
        out = { kind: 'done' };
        return;
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** `const input = tf.input(…)`: a symbolic tensor of the functional API (`dense.apply(input)`), not data. */
function isSymbolicInput(sf: ts.SourceFile, name: string): boolean {
  let out = false;
  const visit = (n: ts.Node): void => {
    if (out) return;
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.name.text === name && n.initializer && ts.isCallExpression(n.initializer)) {
      if (/(^|\.)input$/.test(n.initializer.expression.getText(sf))) out = true;
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

export function computeNormalizeInputs(sf: ts.SourceFile, b: TfBindings, _finding: Finding): Outcome {
  const tf = b.namespaces[0];
  if (!tf) return { ok: false, reason: 'the script imports tfjs without a namespace (import * as tf / require): the standardisation needs tf.tidy and tf.moments' };
  const input = inputArgument(sf, TRAIN_CALLS) ?? inputArgument(sf, FORWARD_CALLS);
  if (!input) return { ok: false, reason: 'no model.fit(x, …), trainOnBatch(x, …) or predict(x) with the input tensor as a plain argument in this file' };
  if (input.kind === 'done') return { ok: false, alreadyApplied: true, reason: 'the input of the training call is already standardised' };
  const x = input.arg.text;
  const start = input.arg.getStart(sf);
  const newText = `${tf}.tidy(() => { const { mean, variance } = ${tf}.moments(${x}, 0); return ${x}.sub(mean).div(variance.sqrt().add(${NORMALIZE_EPSILON})); }) /* GradScope: standardised inputs */`;
  return {
    ok: true,
    title: `Standardise the model's input ${x} where the script trains on it (line ${lineOf(sf, start)}): mean 0, std 1 per feature`,
    edits: [{ start, end: input.arg.end, newText }],
  };
}
