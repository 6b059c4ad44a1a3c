// Small sparklines of a series (a layer's gradient norm history) for hovers and text: an SVG (as a
// data: URI for a Markdown image) and a unicode-block fallback. Pure: values in, text out.
// Gradient norms span orders of magnitude when they explode, so the default scale is log10.

export interface SparklineOptions {
  /** Points kept (the series is reduced by taking each bucket's maximum, non-finite first). Default 48. */
  points?: number;
  /** log10 scale (non-positive values are treated as the smallest positive one). Default true. */
  log?: boolean;
}

export interface SvgSparklineOptions extends SparklineOptions {
  width?: number;
  height?: number;
  /** Line colour (any SVG colour). */
  stroke?: string;
  /** Colour of the marks for non-finite values. */
  alarm?: string;
}

const BLOCKS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/** Written for a non-finite point in the unicode form. */
export const NON_FINITE_MARK = '×';

/**
 * Reduces a series to at most `n` points: each point is the maximum of its bucket, and a bucket that
 * holds a non-finite value becomes that value (so a NaN/Inf is never hidden by decimation).
 */
export function reduceSeries(values: ArrayLike<number>, n: number): number[] {
  const len = values.length;
  if (len <= n) return Array.from(values);
  const out: number[] = [];
  for (let b = 0; b < n; b++) {
    const from = Math.floor((b * len) / n);
    const to = Math.max(from + 1, Math.floor(((b + 1) * len) / n));
    let best = -Infinity;
    let bad: number | null = null;
    for (let i = from; i < to; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) {
        bad ??= v;
      } else if (v > best) best = v;
    }
    out.push(bad ?? best);
  }
  return out;
}

/** Maps finite values to [0, 1] (NaN for non-finite ones). A flat series maps to 0.5. */
export function normalise(values: readonly number[], log = true): number[] {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return values.map(() => NaN);
  const positive = finite.filter((v) => v > 0);
  const floor = positive.length ? Math.min(...positive) : 1;
  const tx = (v: number): number => (log ? Math.log10(Math.max(v, floor)) : v);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of finite) {
    const t = tx(v);
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  const span = hi - lo;
  return values.map((v) => (!Number.isFinite(v) ? NaN : span > 0 ? (tx(v) - lo) / span : 0.5));
}

/** A one-line unicode sparkline (▁▂▃▄▅▆▇█), `×` for non-finite points. Empty for an empty series. */
export function sparklineBlocks(values: ArrayLike<number>, opts: SparklineOptions = {}): string {
  const pts = reduceSeries(values, opts.points ?? 48);
  return normalise(pts, opts.log ?? true)
    .map((u) => (Number.isNaN(u) ? NON_FINITE_MARK : BLOCKS[Math.min(BLOCKS.length - 1, Math.round(u * (BLOCKS.length - 1)))]))
    .join('');
}

/** An SVG polyline of the series; non-finite points are red ticks at the top. Empty series: empty svg. */
export function sparklineSvg(values: ArrayLike<number>, opts: SvgSparklineOptions = {}): string {
  const width = opts.width ?? 160;
  const height = opts.height ?? 32;
  const stroke = opts.stroke ?? '#3794ff';
  const alarm = opts.alarm ?? '#f14c4c';
  const pts = reduceSeries(values, opts.points ?? 48);
  const u = normalise(pts, opts.log ?? true);
  const pad = 2;
  const n = pts.length;
  const x = (i: number): number => (n <= 1 ? width / 2 : pad + (i * (width - 2 * pad)) / (n - 1));
  const y = (v: number): number => height - pad - v * (height - 2 * pad);
  const r1 = (v: number): string => (Math.round(v * 10) / 10).toString();
  const segments: string[] = [];
  let cur: string[] = [];
  const marks: string[] = [];
  u.forEach((v, i) => {
    if (Number.isNaN(v)) {
      if (cur.length) segments.push(cur.join(' '));
      cur = [];
      marks.push(`<line x1="${r1(x(i))}" y1="${pad}" x2="${r1(x(i))}" y2="${height - pad}" stroke="${alarm}" stroke-width="1.5"/>`);
    } else cur.push(`${r1(x(i))},${r1(y(v))}`);
  });
  if (cur.length) segments.push(cur.join(' '));
  const lines = segments.map((s) =>
    s.includes(' ')
      ? `<polyline fill="none" stroke="${stroke}" stroke-width="1.5" stroke-linejoin="round" points="${s}"/>`
      : `<circle cx="${s.split(',')[0]}" cy="${s.split(',')[1]}" r="1.5" fill="${stroke}"/>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${lines.join('')}${marks.join('')}</svg>`;
}

/** The SVG as a data: URI (base64, so it survives Markdown link parsing). */
export function sparklineDataUri(values: ArrayLike<number>, opts: SvgSparklineOptions = {}): string {
  return `data:image/svg+xml;base64,${base64(sparklineSvg(values, opts))}`;
}

function base64(s: string): string {
  // Buffer in Node; btoa elsewhere (the SVG is ASCII).
  const g = globalThis as { Buffer?: { from(s: string, enc: string): { toString(enc: string): string } }; btoa?: (s: string) => string };
  if (g.Buffer) return g.Buffer.from(s, 'utf8').toString('base64');
  return g.btoa!(s);
}
