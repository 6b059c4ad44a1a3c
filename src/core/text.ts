// Text that comes from a run (tensor, layer and file names, finding and crash messages) as a person
// sees it: in the panel, the HTML report, the CLI and the editor. Two rules hold wherever it is shown:
// - a bidirectional control character cannot reorder what is shown around it ("evil\u202Egnp.exe"
//   reads "evilexe.png"; Trojan Source, CVE-2021-42574), and a terminal control (ESC …) cannot act:
//   each is shown as a visible escape such as `\u202E`;
// - one long string never blanks or swamps a view (a 250-block model's dead-units message is 4,500
//   characters): a view shows the start of it and the whole text on hover, and a message between the
//   host and the webview carries at most MAX_TEXT characters per string.
// Pure and free of imports: the webview bundles it too.

/** Longest string a host → webview message carries; the webview cuts a longer one (it never drops the message for it). */
export const MAX_TEXT = 65_536;

/** How many characters the views show before cutting a string (the whole text on hover). */
export const SHOWN = { name: 160, message: 600, value: 200 } as const;

/**
 * Bidirectional controls: ALM U+061C, LRM/RLM U+200E–U+200F, embeddings and overrides U+202A–U+202E,
 * isolates U+2066–U+2069.
 */
export const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

export function isBidiControl(code: number): boolean {
  return code === 0x061c || code === 0x200e || code === 0x200f || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

/** C0 and C1 controls and DEL, which a terminal may act on; tab and line feed only when `singleLine`. */
function isControl(code: number, singleLine: boolean): boolean {
  if (code === 0x09 || code === 0x0a) return singleLine;
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

/** The visible escape of a UTF-16 unit: `\u202E`. */
export const unicodeEscape = (code: number): string => `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * SGR sequences (`ESC [ 1 m`, `ESC [ 0 m`): they only style text. torch's own error messages carry
 * them (the `weights_only` load error bolds a warning), and shown escaped they read as noise.
 */
// eslint-disable-next-line no-control-regex -- ESC is what it matches
const SGR = /\u001B\[[0-9;]*m/g;

/**
 * `s` with its styling (SGR) sequences removed and every other bidirectional control and C0/C1
 * control replaced by its visible escape (`\u202E`, `\u001B[2J`). Tabs and line breaks are kept
 * unless `singleLine` (a name: one line). The same string when there is nothing to replace.
 */
export function neutralise(s: string, singleLine = false): string {
  // (Dropping a style cannot hide text: a terminal's concealed or same-colour text shows plainly.)
  if (s.includes('\u001B[')) s = s.replace(SGR, '');
  let out: string | null = null;
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Fast path: printable ASCII and most of the BMP need nothing.
    if ((c >= 0x20 && c < 0x7f) || !(isBidiControl(c) || isControl(c, singleLine))) continue;
    out = (out ?? '') + s.slice(from, i) + unicodeEscape(c);
    from = i + 1;
  }
  return out === null ? s : out + s.slice(from);
}

/**
 * `s` cut to at most `max` characters (UTF-16 units), an ellipsis taking the last one; `keep: 'end'`
 * keeps the end instead (a layer name's last part tells more than its first). A surrogate pair is
 * never split. The same string when it fits.
 */
export function clip(s: string, max: number, keep: 'start' | 'end' = 'start'): string {
  if (s.length <= max) return s;
  if (max <= 1) return '…';
  if (keep === 'start') {
    let end = max - 1;
    if (isHigh(s.charCodeAt(end - 1))) end--;
    return `${s.slice(0, end)}…`;
  }
  let start = s.length - (max - 1);
  if (isLow(s.charCodeAt(start))) start++;
  return `…${s.slice(start)}`;
}

const isHigh = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

/** What a view shows for a string from the run: `text` on screen, `full` on hover (both neutralised). */
export interface ShownText {
  text: string;
  full: string;
  /** `text` is a cut of `full`. */
  clipped: boolean;
}

/** `s` neutralised and cut to `max` characters for the screen, with the whole text (neutralised) for a hover. */
export function shownText(s: string, max: number, singleLine = false, keep: 'start' | 'end' = 'start'): ShownText {
  const full = neutralise(s, singleLine);
  if (s.length <= max) return { text: full, full, clipped: false };
  return { text: neutralise(clip(s, max, keep), singleLine), full, clipped: true };
}
