// The self-contained HTML report: the panel's own bundle and stylesheet inlined, the snapshot
// embedded as JSON (never as script), and a CSP that allows nothing but those inline parts, so the
// file opens offline in any browser and cannot fetch anything. Pure: used by the CLI (`--report`)
// and by the panel's "Export report".
import { createHash } from 'node:crypto';
import { BIDI_CONTROLS, SHOWN, shownText, unicodeEscape } from '../text';
import type { PanelSnapshot, PanelTensorDetail, PanelView } from './messages';

export interface ReportAssets {
  /** dist/webview/main.js */
  js: string;
  /** dist/webview/main.css */
  css: string;
}

/**
 * JSON that is safe inside <script type="application/json">: no `<`, `>`, `&`, U+2028/2029 literally,
 * nor a bidirectional control (a name with U+202E would reorder the file's source as an editor or a
 * code review shows it; JSON.parse restores it, and the panel shows it neutralised).
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029')
    .replace(BIDI_CONTROLS, (c) => unicodeEscape(c.charCodeAt(0)));
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** `views`: each optimizer's view (reportData), which the report's optimizer picker shows offline. */
export function buildReportHtml(snapshot: PanelSnapshot, assets: ReportAssets, details: PanelTensorDetail[] = [], views: PanelView[] = []): string {
  // A closing tag inside the inlined code would end the element early; `<\/` means the same in JS
  // strings and regexes, and the sourcemap comment would point at a file that is not there.
  const js = assets.js.replace(/<\/(script)/gi, '<\\/$1').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
  const css = assets.css.replace(/<\/(style)/gi, '<\\/$1').replace(/\/\*# sourceMappingURL=\S+ \*\/\s*$/, '');
  const title = `GradScope report · ${shownText(snapshot.header.script || snapshot.header.runId, SHOWN.name, true, 'end').text}`;
  const csp = [`default-src 'none'`, `script-src ${sha256(js)}`, `style-src 'unsafe-inline'`, `img-src data:`, `font-src data:`].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="GradScope">
<title>${escapeHtml(title)}</title>
<style>${css}</style>
</head>
<body class="gs-standalone">
<div id="gradscope"></div>
<script type="application/json" id="gradscope-data">${jsonForScript({ snapshot, details, views })}</script>
<script>${js}</script>
</body>
</html>
`;
}
