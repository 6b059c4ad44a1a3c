// Colours for the charts, read from VS Code's theme variables (set on <html> by the webview host)
// with fallbacks for the standalone HTML report. Re-read whenever the theme changes.

export interface Palette {
  foreground: string;
  muted: string;
  grid: string;
  background: string;
  fontFamily: string;
  /** Global gradient norm. */
  norm: string;
  loss: string;
  clip: string;
  compare: string;
  /** Per-layer curve colours, cycled. */
  series: string[];
  /** Per-optimizer global-norm (and loss) colours, cycled; the first is `norm`. */
  optimizers: string[];
  /** Heatmap cells and curve markers. */
  nan: string;
  inf: string;
  /** log10 of an exact zero (-Inf on a log metric). */
  zero: string;
  /** Heatmap cells where the layer had no gradient (absent): a faint wash, unlike NaN and no data. */
  absent: string;
}

const css = (style: CSSStyleDeclaration, name: string, fallback: string): string => {
  const v = style.getPropertyValue(name).trim();
  return v === '' ? fallback : v;
};

export function readPalette(el: Element = document.body): Palette {
  const s = getComputedStyle(el);
  const fg = css(s, '--vscode-editor-foreground', css(s, '--vscode-foreground', '#1f1f1f'));
  const blue = css(s, '--vscode-charts-blue', '#3794ff');
  const red = css(s, '--vscode-charts-red', '#f14c4c');
  const yellow = css(s, '--vscode-charts-yellow', '#cca700');
  const orange = css(s, '--vscode-charts-orange', '#d18616');
  const green = css(s, '--vscode-charts-green', '#89d185');
  const purple = css(s, '--vscode-charts-purple', '#b180d7');
  return {
    foreground: css(s, '--vscode-charts-foreground', fg),
    muted: css(s, '--vscode-descriptionForeground', fg),
    grid: css(s, '--vscode-charts-lines', 'rgba(128,128,128,0.35)'),
    background: css(s, '--vscode-editor-background', '#ffffff'),
    fontFamily: css(s, '--vscode-font-family', 'system-ui, sans-serif'),
    norm: blue,
    loss: css(s, '--vscode-charts-foreground', fg),
    clip: orange,
    compare: css(s, '--vscode-descriptionForeground', '#888888'),
    series: [green, purple, yellow, orange, css(s, '--vscode-terminal-ansiCyan', '#11a8cd')],
    optimizers: [blue, orange, green, purple, yellow],
    nan: css(s, '--gradscope-nan', '#ff00ff'),
    inf: css(s, '--gradscope-inf', red),
    zero: css(s, '--gradscope-zero', '#7f7f7f'),
    absent: css(s, '--gradscope-absent', 'rgba(128,128,128,0.22)'),
  };
}

/** Parses any CSS colour to [r, g, b, a] (a in 0..255) by letting a 1×1 canvas do it. */
export function toRgba(color: string): [number, number, number, number] {
  const c = document.createElement('canvas');
  c.width = c.height = 1;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  if (!ctx) return [0, 0, 0, 255];
  ctx.clearRect(0, 0, 1, 1);
  ctx.fillStyle = '#000';
  ctx.fillStyle = color;
  ctx.fillRect(0, 0, 1, 1);
  const d = ctx.getImageData(0, 0, 1, 1).data;
  return [d[0] ?? 0, d[1] ?? 0, d[2] ?? 0, d[3] ?? 255];
}

/** Packs RGBA into the little-endian u32 that a Uint32Array view of ImageData expects. */
export function packRgba([r, g, b, a]: [number, number, number, number]): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

// cividis (blue → yellow): perceptually uniform, readable for colour-blind people, and free of
// reds and magentas, so the NaN (magenta) and Inf (red) cells stand apart from every finite value.
const CIVIDIS: [number, number, number][] = [
  [0, 32, 77],
  [0, 42, 102],
  [0, 52, 110],
  [39, 63, 108],
  [60, 74, 107],
  [76, 85, 107],
  [91, 96, 110],
  [104, 108, 115],
  [117, 119, 118],
  [131, 130, 121],
  [147, 142, 119],
  [163, 155, 116],
  [179, 167, 111],
  [196, 180, 103],
  [214, 193, 92],
  [232, 207, 77],
  [253, 231, 55],
];

/** A 256-entry LUT of packed colours along cividis. */
export function cividisLut(): Uint32Array {
  const lut = new Uint32Array(256);
  const n = CIVIDIS.length - 1;
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * n;
    const k = Math.min(n - 1, Math.floor(t));
    const f = t - k;
    const a = CIVIDIS[k];
    const b = CIVIDIS[k + 1];
    lut[i] = packRgba([Math.round(a[0] + (b[0] - a[0]) * f), Math.round(a[1] + (b[1] - a[1]) * f), Math.round(a[2] + (b[2] - a[2]) * f), 255]);
  }
  return lut;
}

export function lutCss(lut: Uint32Array, i: number): string {
  const v = lut[Math.max(0, Math.min(255, i))] ?? 0;
  return `rgb(${v & 255}, ${(v >>> 8) & 255}, ${(v >>> 16) & 255})`;
}
