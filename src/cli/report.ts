// `gradscope run … --report out.html`: the same self-contained report as the panel's "Export report".
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Finding } from '../core/analysis/finding';
import type { RunStore } from '../core/store/runStore';
import type { PanelRunHeader } from '../panel/messages';
import { buildReportHtml } from '../panel/report';
import { reportData } from '../panel/snapshot';

/** dist/webview next to this bundle, or under dist/ of an enclosing checkout. */
function webviewDir(start = __dirname): string {
  for (let d = start; ; d = dirname(d)) {
    for (const cand of [join(d, 'webview'), join(d, 'dist', 'webview')]) {
      if (existsSync(join(cand, 'main.js'))) return cand;
    }
    if (dirname(d) === d) throw new Error(`the panel bundle is not built (no webview/main.js above ${start}): run \`npm run build\``);
  }
}

export function writeReport(file: string, store: RunStore, header: PanelRunHeader, findings: Finding[]): number {
  const dir = webviewDir();
  const js = readFileSync(join(dir, 'main.js'), 'utf8');
  const css = existsSync(join(dir, 'main.css')) ? readFileSync(join(dir, 'main.css'), 'utf8') : '';
  const { snapshot, details } = reportData(store, header, findings);
  const html = buildReportHtml(snapshot, { js, css }, details);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, html, 'utf8');
  return html.length;
}
