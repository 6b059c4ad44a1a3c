// Text helpers both fix languages share: applying offset edits, and writing a number the way a
// person would.
import type { TextEdit } from './types';

/** A number written readably: 0.05 rather than 0.05000000000000001; 1e-7 stays in exponent form. */
export function formatNumber(x: number, likeText?: string): string {
  const v = Number(x.toPrecision(12));
  if (likeText && /e/i.test(likeText) && v !== 0) {
    const [m, e] = v.toExponential().split('e');
    return `${Number(m)}e${Number(e)}`;
  }
  return String(v);
}

export function applyEdits(text: string, edits: readonly TextEdit[]): string {
  // From the end backwards, so earlier offsets stay valid; insertions at the same offset keep the
  // order they were given in.
  const sorted = edits.map((e, i) => ({ e, i })).sort((a, b) => b.e.start - a.e.start || b.e.end - a.e.end || b.i - a.i);
  let out = text;
  let limit = Infinity;
  for (const { e } of sorted) {
    if (e.start < 0 || e.end < e.start || e.end > text.length) throw new RangeError(`edit [${e.start}, ${e.end}) is outside the text (${text.length} characters)`);
    if (e.end > limit) throw new RangeError(`edits overlap at ${e.start}`);
    out = out.slice(0, e.start) + e.newText + out.slice(e.end);
    limit = e.start;
  }
  return out;
}
