// `gradscope run … --report out.html`: the same self-contained report as the panel's "Export report".
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findBuilt } from '../process/distPaths';
import { ensureDir, writeRegularFile } from '../process/files';
import type { Finding } from '../core/analysis/finding';
import type { RunStore } from '../core/store/runStore';
import type { PanelRanks, PanelRunHeader } from '../core/view/messages';
import { buildReportHtml } from '../core/view/report';
import { reportData } from '../core/view/snapshot';

/**
 * Writes the report (only as a regular file; its folder made without a recursive mkdir). Throws
 * HostFileError. `ranks`: a distributed run's ranks part (core/view/ranks.ts wholeRanks).
 */
export function writeReport(file: string, store: RunStore, header: PanelRunHeader, findings: Finding[], ranks: PanelRanks | null = null): number {
  const dir = findBuilt('webview', 'main.js');
  const js = readFileSync(join(dir, 'main.js'), 'utf8');
  const css = existsSync(join(dir, 'main.css')) ? readFileSync(join(dir, 'main.css'), 'utf8') : '';
  const { snapshot, details, views } = reportData(store, header, findings, ranks);
  const html = buildReportHtml(snapshot, { js, css }, details, views);
  ensureDir(dirname(file));
  writeRegularFile(file, html);
  return html.length;
}
