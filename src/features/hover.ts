// Hover on a diagnosed layer's line, or on the variable the layer is assigned to (anywhere in the
// file): the layer's gradient statistics, a sparkline of its norm history, its findings, and a link
// that opens the panel at that layer. On the optimizer's line (global findings): the global norm.
import { basename } from 'node:path';
import * as vscode from 'vscode';
import type { GradScopeContext } from './context';
import { concernsLayer, globalStats, hoverMarkdown, layerStats, type LayerStats } from './diagnosisModel';
import type { DiagnosticsFeature, RunDiagnostics } from './diagnostics';
import { NOTEBOOK_CELL_SCHEME, placeOfDocument } from './notebookCells';

export const SCRIPT_SELECTOR: vscode.DocumentSelector = [
  { scheme: 'file', language: 'javascript' },
  { scheme: 'file', language: 'typescript' },
  { scheme: 'file', language: 'javascriptreact' },
  { scheme: 'file', language: 'typescriptreact' },
  { scheme: 'file', language: 'python' },
  { scheme: 'file', pattern: '**/*.{js,mjs,cjs,ts,mts,cts,py}' },
  // The Python cells of a notebook (a notebook run's findings sit on their lines).
  { scheme: NOTEBOOK_CELL_SCHEME, language: 'python' },
];

/** At most this many layers in one hover (layers built in a loop share a line). */
const MAX_LAYERS = 3;

export function registerHover(ctx: GradScopeContext, diagnostics: DiagnosticsFeature): vscode.Disposable {
  return vscode.languages.registerHoverProvider(SCRIPT_SELECTOR, {
    provideHover: (doc, pos) => {
      try {
        return hoverAt(diagnostics, doc, pos);
      } catch (e) {
        ctx.log.error(`hover: ${e instanceof Error ? e.message : String(e)}`);
        return undefined;
      }
    },
  });
}

function hoverAt(diagnostics: DiagnosticsFeature, doc: vscode.TextDocument, pos: vscode.Position): vscode.Hover | undefined {
  const place = placeOfDocument(doc);
  if (!place) return undefined;
  const { file, cell } = place;
  for (const run of diagnostics.runs()) {
    let layers = run.layersAtLine(file, pos.line, cell);
    let range: vscode.Range | undefined;
    if (!layers.length) {
      const word = doc.getWordRangeAtPosition(pos, /[A-Za-z_$][\w$]*/);
      if (word) {
        layers = run.layersNamed(file, doc.getText(word), cell);
        range = word;
      }
    }
    const parts: string[] = [];
    for (const l of layers.slice(0, MAX_LAYERS)) {
      const stats = layerStats(run.run.store, l.layer);
      if (stats) parts.push(render(run, stats, l.layer));
    }
    // Global findings sit on the optimizer's line (or line 1).
    if (!parts.length) {
      const globals = run.placed.filter((p) => p.finding.layer === null && p.file === file && p.cell === cell && p.anchor.line === pos.line && run.current(p));
      if (globals.length) parts.push(render(run, globalStats(run.run.store), null));
    }
    if (parts.length) {
      const md = new vscode.MarkdownString(parts.join('\n\n---\n\n'), true);
      md.isTrusted = { enabledCommands: ['gradscope.showPanel'] };
      md.supportHtml = false;
      return new vscode.Hover(md, range);
    }
  }
  return undefined;
}

function render(run: RunDiagnostics, stats: LayerStats, layer: string | null): string {
  const store = run.run.store;
  const live = run.run.live && !run.run.live.exited;
  // A finding about several layers is shown on each of their lines, with that layer's own numbers.
  const findings = [...new Set(run.placed.filter((p) => (layer === null ? p.finding.layer === null : concernsLayer(p.finding, layer)) && run.current(p)).map((p) => p.finding))];
  const args = encodeURIComponent(JSON.stringify([{ layer: layer ?? undefined, runId: run.run.id }]));
  return hoverMarkdown({
    stats,
    findings,
    runLabel: `${basename(run.run.script)}, ${live ? `running, step ${store.lastStep}` : `run ended at step ${store.lastStep}`}`,
    panelLink: `command:gradscope.showPanel?${args}`,
    svg: true,
    layer,
  });
}
