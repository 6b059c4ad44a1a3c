// Lines that belong to a finding without being a layer's construction line, read from the script's
// text: where a custom layer creates its weights (`addWeight` in a `tf.layers.Layer` subclass,
// `nn.Parameter` in an `nn.Module`: a bias initialised far below zero kills that layer's units), and
// where a recurrent layer's recurrent initialisation is set when the script re-initialises it. The
// diagnostics link them as relatedInformation. Pure text: no vscode, no Node.
import type { FindingKind } from '../core/analysis/finding';
import { isRecurrentLayerType } from '../core/analysis/model';

export interface RelatedLine {
  /** 1-based. */
  line: number;
  why: string;
}

const WEIGHT_LINE = /\baddWeight\s*\(|\bParameter\s*\(/;
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** 0-based [first, last] lines of the body of `class <name>` (JS braces or Python indentation), or null. */
function classBody(lines: readonly string[], name: string, python: boolean): [number, number] | null {
  const head = python ? new RegExp(`^(\\s*)class\\s+${escapeRe(name)}\\s*[(:]`) : new RegExp(`\\bclass\\s+${escapeRe(name)}\\b`);
  const start = lines.findIndex((l) => head.test(l));
  if (start < 0) return null;
  if (python) {
    const indent = /^\s*/.exec(lines[start])![0].length;
    let end = start;
    for (let i = start + 1; i < lines.length; i++) {
      if (!lines[i].trim() || lines[i].trimStart().startsWith('#')) continue;
      if (/^\s*/.exec(lines[i])![0].length <= indent) break;
      end = i;
    }
    return [start, end];
  }
  // Braces, ignoring those in strings and comments only roughly (enough for a class's own body).
  let depth = 0;
  let opened = false;
  for (let i = start; i < lines.length; i++) {
    const code = lines[i].replace(/\/\/.*$/, '').replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`/g, '');
    for (const c of code) {
      if (c === '{') {
        depth++;
        opened = true;
      } else if (c === '}') depth--;
    }
    if (opened && depth <= 0) return [start, i];
  }
  return opened ? [start, lines.length - 1] : null;
}

/**
 * Related lines of a finding of `kind` on a layer of type `layerType` built on `constructionLine`
 * (1-based) of `text`. Dead units in a custom layer: the class's bias weight lines (all its weight
 * lines when none says bias). An explosion on a recurrent layer: the line that sets its recurrent
 * initialisation (an initialiser named on the construction line, or `nn.init.…(…weight_hh…)`).
 */
export function relatedLinesFor(text: string, python: boolean, kind: FindingKind, layerType: string, constructionLine: number): RelatedLine[] {
  const lines = text.split('\n');
  const out: RelatedLine[] = [];
  if (kind === 'dead-units' || kind === 'vanishing-gradient' || kind === 'exploding-gradient') {
    const body = classBody(lines, layerType, python);
    if (body) {
      const weights: number[] = [];
      for (let i = body[0]; i <= body[1]; i++) if (WEIGHT_LINE.test(lines[i].replace(python ? /#.*$/ : /\/\/.*$/, ''))) weights.push(i);
      const bias = weights.filter((i) => /bias/i.test(lines[i]));
      for (const i of kind === 'dead-units' && bias.length ? bias : weights) out.push({ line: i + 1, why: `${layerType} creates its weight here` });
    }
  }
  if (kind === 'exploding-gradient' && isRecurrentLayerType(layerType)) {
    const at = lines[constructionLine - 1] ?? '';
    const named = /recurrentInitializer\s*:\s*([A-Za-z_$][\w$]*)\b(?!\s*[.(])/.exec(at);
    if (named) {
      const def = new RegExp(`^\\s*(?:const|let|var)\\s+${escapeRe(named[1])}\\s*=`);
      const i = lines.findIndex((l) => def.test(l));
      if (i >= 0) out.push({ line: i + 1, why: 'the recurrent initialisation is set here' });
    } else if (/recurrentInitializer\s*:/.test(at)) out.push({ line: constructionLine, why: 'the recurrent initialisation is set here' });
    if (python)
      lines.forEach((l, i) => {
        if (/\bnn\.init\.\w+\s*\(.*weight_hh/.test(l.replace(/#.*$/, ''))) out.push({ line: i + 1, why: 'the recurrent initialisation is set here' });
      });
  }
  return out.filter((r) => r.line !== constructionLine || r.why.startsWith('the recurrent')).filter((r, i, a) => a.findIndex((x) => x.line === r.line) === i);
}
