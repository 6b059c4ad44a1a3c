// The "gradscope" DiagnosticCollection: each finding of a run on the line that built its layer (or
// the optimizer, for global findings), updated live (≤ 4 times a second), replaced when the same
// script runs again, cleared by `GradScope: Clear Diagnostics`.
//
// Lines move: findings name lines of the text as it was when the run started. Every edit of a file
// the run points into is logged and each anchor is shifted through it (lineAnchors.ts); an anchor
// whose line was replaced is dropped, and one whose line no longer holds the layer's construction
// text is hidden. So a diagnostic, a hover or a quick fix never points at a stale line.
import * as vscode from 'vscode';
import type { Finding } from '../core/analysis/finding';
import { readRegularText } from '../process/files';
import type { RunHandle } from '../process/runHandle';
import type { GradScopeContext } from './context';
import { neutralise } from '../core/text';
import { DisposableStore } from '../core/util/disposableStore';
import { diagnosticMessage, isFindingKind, levelOf, relatedMessage } from './diagnosisModel';
import { relatedLinesFor } from './relatedLines';
import { anchorHolds, assignedName, constructionText, findOptimizerLine, shiftLineThrough, spanOf, type LineAnchor, type LineEdit } from './lineAnchors';
import { cellSourceOf, notebookCodeCells, placeKey } from '../core/fixes/notebookCell';
import { openDocumentFor, placeOfDocument } from './notebookCells';

export const DIAGNOSTIC_SOURCE = 'GradScope';
export const CLEAR_DIAGNOSTICS_COMMAND = 'gradscope.clearDiagnostics';
/** Live updates are batched to at most one per this many ms (4 per second). */
const REFRESH_MS = 250;

/** One anchored line of a file: where a layer (or the optimizer) was built. */
interface Anchor extends LineAnchor {
  /** 1-based line in the text of the run, as findings and tensor sources name it. */
  baseLine: number;
  column: number;
  /** null once an edit removed the line. */
  alive: boolean;
  /** The variable the layer is assigned to on that line, if any. */
  name: string | null;
  /** line 1 for a global finding whose optimizer was not found: holds whatever the text. */
  fallback: boolean;
  /** The line's text as of the last edit (to tell where the anchored text sat before the next). */
  lineText: string | undefined;
}

/** The text of a file, or of one cell of a notebook (`cell`: its 0-based index among all the notebook's cells), as the run saw it. */
class FileTrack {
  /** Anchors by base line (1-based). */
  readonly anchors = new Map<number, Anchor>();
  readonly baseLines: string[];
  /** Every edit since the run's text, batch by batch, to bring late anchors up to date. */
  private readonly edits: LineEdit[][] = [];

  constructor(
    readonly file: string,
    baseText: string,
    readonly cell?: number,
  ) {
    this.baseLines = baseText.split('\n').map((l) => l.replace(/\r$/, ''));
  }

  anchor(baseLine: number, column: number | null, fallback = false): Anchor {
    let a = this.anchors.get(baseLine);
    if (a) return a;
    const lineText = this.baseLines[baseLine - 1] ?? '';
    const text = fallback ? '' : constructionText(lineText, column);
    let line: number | null = baseLine - 1;
    this.edits.forEach((batch, i) => {
      if (line !== null) line = i === 0 ? shiftLineThrough(line, batch, spanOf({ line, text }, lineText)) : shiftThrough(line, batch);
    });
    a = {
      baseLine,
      column: column ?? 1,
      line: line ?? -1,
      text,
      alive: line !== null,
      lineText: this.edits.length === 0 ? lineText : line !== null ? openLine(this.file, line, this.cell) : undefined,
      name: fallback ? null : assignedName(lineText, column),
      fallback,
    };
    this.anchors.set(baseLine, a);
    return a;
  }

  /**
   * Shifts every anchor through one batch of edits (coordinates of the text before it); `lineAt`
   * reads the text after it. True when anything may have changed.
   */
  edit(batch: LineEdit[], lineAt: (line: number) => string | undefined): boolean {
    this.edits.push(batch);
    for (const a of this.anchors.values()) {
      if (!a.alive) continue;
      const next = shiftLineThrough(a.line, batch, spanOf(a, a.lineText));
      if (next === null) a.alive = false;
      else a.line = next;
      a.lineText = a.alive ? lineAt(a.line) : undefined;
    }
    return batch.length > 0;
  }
}

function shiftThrough(line: number, batch: readonly LineEdit[]): number | null {
  // Late anchors (a layer first seen after edits): where their text sat is unknown, so a
  // multi-line edit that touches their line drops them (never stale, at worst hidden).
  return shiftLineThrough(line, batch);
}

/** A finding placed in a file, with the anchor that keeps its line. */
export interface PlacedFinding {
  finding: Finding;
  file: string;
  /** In a notebook (`file` a .ipynb): the cell's 0-based index among all its cells; the anchor's line is the cell's. */
  cell?: number;
  anchor: Anchor;
  /** `location`: a further affected layer of a finding about several (its `locations`), not the primary. */
  placement: 'layer' | 'optimizer' | 'fallback' | 'location';
  /** For a `location`: the affected layer on this line. */
  layer?: string;
  /** For a `location`: the finding's primary placement; shown only while that one is (an edit there makes the finding stale). */
  primary?: PlacedFinding;
  /** Lines that belong to it without being a layer (a custom layer's bias addWeight, a recurrent initialisation): relatedInformation. */
  related?: { file: string; cell?: number; anchor: Anchor; why: string }[];
}

/** Where a layer of the run sits now. */
export interface PlacedLayer {
  layer: string;
  file: string;
  cell?: number;
  /** 0-based line now. */
  line: number;
  name: string | null;
}

export class RunDiagnostics {
  readonly files = new Map<string, FileTrack>();
  placed: PlacedFinding[] = [];
  layers = new Map<string, { file: string; cell?: number; anchor: Anchor }>();
  private layerCount = -1;
  /** The findings' version placed last, and whether a file they name could not be read then (retried). */
  private placedVersion = -1;
  private unread = false;

  constructor(readonly run: RunHandle) {
    // The script as it ran: the run command saved it just before starting.
    this.track(run.script);
  }

  /**
   * The track of a file, or of a cell of a notebook. A notebook run's locations are lines of a cell
   * (SourceLocation.cell), never of the .ipynb's JSON text: a notebook location without a cell is not placed.
   */
  track(file: string, cell?: number): FileTrack | null {
    const notebook = isNotebook(file);
    if (notebook !== (cell !== undefined)) return null;
    const key = placeKey(file, cell);
    let t = this.files.get(key);
    if (t) return t;
    const doc = openDocumentFor(file, cell);
    let text: string | null;
    if (doc) text = doc.getText();
    else {
      try {
        // A saved run names these paths: read only a regular file (a FIFO would hang the extension host).
        const raw = readRegularText(file);
        text = cell === undefined ? raw : cellSourceOf(raw, cell);
      } catch {
        text = null;
      }
      if (text === null) {
        this.unread = true;
        return null;
      }
    }
    t = new FileTrack(file, text, cell);
    this.files.set(key, t);
    return t;
  }

  /** The track whose text is that document's, if this run tracks it. */
  trackOf(place: { file: string; cell?: number }): FileTrack | undefined {
    return this.files.get(placeKey(place.file, place.cell));
  }

  /** Re-reads the run: new layers get anchors, findings get placed (again only when they or the layers changed). */
  refresh(): void {
    const ts = this.run.store.tensors;
    const version = this.run.analyzer.version;
    if (ts.length === this.layerCount && version === this.placedVersion && !this.unread) return;
    if (ts.length !== this.layerCount) {
      this.layerCount = ts.length;
      for (const t of ts) {
        if (!t.source || this.layers.has(t.layer)) continue;
        const track = this.track(t.source.file, t.source.cell);
        if (!track) continue;
        this.layers.set(t.layer, { file: t.source.file, cell: t.source.cell, anchor: track.anchor(t.source.line, t.source.column) });
      }
    }
    const placed: PlacedFinding[] = [];
    this.unread = false;
    for (const f of this.run.analyzer.findings) {
      const primary = this.placePrimary(f);
      if (!primary) continue;
      placed.push(primary);
      this.placeLocations(f, primary, placed);
    }
    for (const p of placed) this.placeRelated(p);
    this.placed = placed;
    this.placedVersion = version;
  }

  /** The related lines of a layer placement, read from its file as it was when the run started. */
  private placeRelated(p: PlacedFinding): void {
    const layer = p.placement === 'location' ? p.layer : p.placement === 'layer' ? p.finding.layer : null;
    if (!layer) return;
    const track = this.trackOf(p);
    const t = this.run.store.tensors.find((x) => x.layer === layer);
    if (!track || !t) return;
    const found = relatedLinesFor(track.baseLines.join('\n'), p.cell !== undefined || p.file.endsWith('.py'), p.finding.kind, t.layerType, p.anchor.baseLine);
    if (found.length) p.related = found.map((r) => ({ file: p.file, cell: p.cell, anchor: track.anchor(r.line, null), why: r.why }));
  }

  /** Where a finding goes: its layer's line, else the optimizer's line, else line 1. */
  private placePrimary(f: Finding): PlacedFinding | null {
    if (f.source) {
      const track = this.track(f.source.file, f.source.cell);
      if (!track) return null;
      return { finding: f, file: f.source.file, cell: f.source.cell, anchor: track.anchor(f.source.line, f.source.column), placement: f.layer ? 'layer' : 'optimizer' };
    }
    if (isNotebook(this.run.script)) return this.placeInNotebook(f);
    const track = this.track(this.run.script);
    if (!track) return null;
    const opt = findOptimizerLine(track.baseLines.join('\n'), this.run.script.endsWith('.py'));
    if (opt) return { finding: f, file: this.run.script, anchor: track.anchor(opt.line + 1, opt.column), placement: 'optimizer' };
    return { finding: f, file: this.run.script, anchor: track.anchor(1, 1, true), placement: 'fallback' };
  }

  /** A global finding of a notebook run: on the first cell's line that builds an optimizer (none found: not placed). */
  private placeInNotebook(f: Finding): PlacedFinding | null {
    const nb = this.run.script;
    let cells: { index: number; source: string }[] | null = null;
    try {
      cells = notebookCodeCells(readRegularText(nb));
    } catch {
      cells = null;
    }
    for (const c of cells ?? []) {
      const track = this.track(nb, c.index);
      const opt = track && findOptimizerLine(track.baseLines.join('\n'), true);
      if (track && opt) return { finding: f, file: nb, cell: c.index, anchor: track.anchor(opt.line + 1, opt.column), placement: 'optimizer' };
    }
    return null;
  }

  /**
   * A finding about several layers: one placement on each further affected layer's line (not the
   * primary's; layers built on one line, in a loop, share one).
   */
  private placeLocations(f: Finding, primary: PlacedFinding, placed: PlacedFinding[]): void {
    if (!f.locations?.length) return;
    const seen = new Set<string>();
    if (f.source) seen.add(`${placeKey(f.source.file, f.source.cell)}:${f.source.line}`);
    for (const l of f.locations) {
      const key = `${placeKey(l.file, l.cell)}:${l.line}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const track = this.track(l.file, l.cell);
      if (!track) continue;
      placed.push({ finding: f, file: l.file, cell: l.cell, anchor: track.anchor(l.line, l.column), placement: 'location', layer: l.layer, primary });
    }
  }

  /** The finding with its source moved to where its line is now (null: the line is gone or changed). */
  current(p: PlacedFinding): Finding | null {
    if (!anchorValid(p.anchor, p.file, p.cell)) return null;
    if (p.primary && !anchorValid(p.primary.anchor, p.primary.file, p.primary.cell)) return null;
    if (!p.finding.source || p.placement === 'fallback' || p.placement === 'location') return p.finding;
    return { ...p.finding, source: { ...p.finding.source, line: p.anchor.line + 1 } };
  }

  layersAtLine(file: string, line: number, cell?: number): PlacedLayer[] {
    const out: PlacedLayer[] = [];
    for (const [layer, l] of this.layers) {
      if (l.file === file && l.cell === cell && l.anchor.line === line && anchorValid(l.anchor, file, cell)) out.push({ layer, file, cell, line, name: l.anchor.name });
    }
    return out;
  }

  layersNamed(file: string, word: string, cell?: number): PlacedLayer[] {
    const out: PlacedLayer[] = [];
    // In a notebook, a variable is the notebook's (the kernel's namespace is shared by its cells).
    const notebook = cell !== undefined;
    for (const [layer, l] of this.layers) {
      if (l.file === file && (notebook || l.cell === cell) && l.anchor.name === word && anchorValid(l.anchor, file, l.cell))
        out.push({ layer, file, cell: l.cell, line: l.anchor.line, name: word });
    }
    return out;
  }
}

function isNotebook(file: string): boolean {
  return file.toLowerCase().endsWith('.ipynb');
}

/** A line of the file's (or the cell's) open document, if it is open. */
function openLine(file: string, line: number, cell?: number): string | undefined {
  const doc = openDocumentFor(file, cell);
  return doc && line >= 0 && line < doc.lineCount ? doc.lineAt(line).text : undefined;
}

/** Whether the anchor's line still holds its construction text, in the open document or on disk. */
function anchorValid(a: Anchor, file: string, cell?: number): boolean {
  if (!a.alive || a.line < 0) return false;
  if (a.fallback) return true;
  const doc = openDocumentFor(file, cell);
  if (doc) return a.line < doc.lineCount && anchorHolds(a, doc.lineAt(a.line).text);
  return true;
}

function toEdits(e: vscode.TextDocumentChangeEvent): LineEdit[] {
  return e.contentChanges.map((c) => ({
    startLine: c.range.start.line,
    startChar: c.range.start.character,
    endLine: c.range.end.line,
    endChar: c.range.end.character,
    newText: c.text,
  }));
}

const LEVEL: Record<'error' | 'warning' | 'info', vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error,
  warning: vscode.DiagnosticSeverity.Warning,
  info: vscode.DiagnosticSeverity.Information,
};

export class DiagnosticsFeature implements vscode.Disposable {
  readonly collection = vscode.languages.createDiagnosticCollection('gradscope');
  /** One diagnosed run per script: a new run of the same script replaces it. */
  private readonly byScript = new Map<string, { diag: RunDiagnostics; scope: DisposableStore }>();
  /** What each published diagnostic stands for, to find the finding from a diagnostic. */
  private published = new Map<string, { diagnostic: vscode.Diagnostic; placed: PlacedFinding; run: RunDiagnostics }[]>();
  private timer: NodeJS.Timeout | undefined;
  private lastRefresh = 0;
  private readonly disposables = new DisposableStore();
  private readonly changed = new vscode.EventEmitter<void>();
  /** Fires after the diagnostics were republished. */
  readonly onDidChange = this.changed.event;

  constructor(private readonly ctx: GradScopeContext) {
    this.disposables.add(this.collection);
    this.disposables.add(this.changed);
    // Each run as it starts, and each saved run a view reads back.
    this.disposables.add(ctx.openRuns.onDidOpen((run) => this.show(run)));
    this.disposables.add(vscode.workspace.onDidChangeTextDocument((e) => this.onEdit(e)));
    this.disposables.add(vscode.workspace.onDidOpenTextDocument(() => this.schedule()));
    // A notebook run's findings sit in the cells of the open notebook: placed when it opens, removed when it closes.
    this.disposables.add(vscode.workspace.onDidOpenNotebookDocument(() => this.schedule()));
    this.disposables.add(vscode.workspace.onDidCloseNotebookDocument(() => this.schedule()));
    this.disposables.add(vscode.commands.registerCommand(CLEAR_DIAGNOSTICS_COMMAND, () => this.clear()));
  }

  /**
   * Diagnoses a run, replacing the diagnostics of an earlier run of the same script: a live one is
   * followed until it ends; a saved one (its findings computed once) is shown once, and again only
   * if an other run of its script replaced it.
   */
  show(run: RunHandle): RunDiagnostics {
    const live = run.live && !run.live.exited ? run.live : null;
    if (!live) {
      const existing = this.runById(run.id);
      if (existing) return existing;
    }
    const old = this.byScript.get(run.script);
    old?.scope.dispose();
    this.byScript.delete(run.script);
    const diag = new RunDiagnostics(run);
    const scope = new DisposableStore();
    if (live) {
      scope.add(run.store.onDidChange(() => this.schedule()));
      scope.add(live.onDidEnd(() => this.refreshNow()));
    }
    this.byScript.set(run.script, { diag, scope });
    this.refreshNow();
    return diag;
  }

  runById(runId: string): RunDiagnostics | undefined {
    for (const r of this.byScript.values()) if (r.diag.run.id === runId) return r.diag;
    return undefined;
  }

  /** The runs diagnosed now, newest first. */
  runs(): RunDiagnostics[] {
    return [...this.byScript.values()].map((r) => r.diag).reverse();
  }

  /** The finding a diagnostic of ours stands for (matched by line, code and message). */
  findingFor(uri: vscode.Uri, d: vscode.Diagnostic): { run: RunDiagnostics; placed: PlacedFinding } | undefined {
    if (d.source !== DIAGNOSTIC_SOURCE || !isFindingKind(codeOf(d))) return undefined;
    const hit = this.published
      .get(uri.toString())
      ?.find((p) => p.diagnostic.range.start.line === d.range.start.line && codeOf(p.diagnostic) === codeOf(d) && p.diagnostic.message === d.message);
    // A further affected layer's diagnostic offers no fix of its own: the fixes edit the primary's line.
    return hit && hit.placed.placement !== 'location' ? { run: hit.run, placed: hit.placed } : undefined;
  }

  clear(): void {
    this.forgetAll();
    this.published.clear();
    this.collection.clear();
    this.changed.fire();
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.forgetAll();
    this.disposables.dispose();
  }

  /** Drops every diagnosed run and stops listening to them. */
  private forgetAll(): void {
    for (const r of this.byScript.values()) r.scope.dispose();
    this.byScript.clear();
  }

  private schedule(): void {
    if (this.timer) return;
    const wait = Math.max(0, REFRESH_MS - (Date.now() - this.lastRefresh));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refreshNow();
    }, wait);
  }

  private refreshNow(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.lastRefresh = Date.now();
    for (const r of this.byScript.values()) {
      try {
        r.diag.refresh();
      } catch (e) {
        this.ctx.log.error(`diagnostics: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    this.publish();
  }

  private onEdit(e: vscode.TextDocumentChangeEvent): void {
    if (e.contentChanges.length === 0) return;
    const place = placeOfDocument(e.document);
    if (!place) return;
    let touched = false;
    for (const r of this.byScript.values()) {
      const track = r.diag.trackOf(place);
      if (track && track.edit(toEdits(e), (n) => (n < e.document.lineCount ? e.document.lineAt(n).text : undefined))) touched = true;
    }
    // Republished at once, not throttled: a diagnostic must not sit on a line that changed.
    if (touched) this.publish();
  }

  private publish(): void {
    const byUri = new Map<string, { uri: vscode.Uri; items: { diagnostic: vscode.Diagnostic; placed: PlacedFinding; run: RunDiagnostics }[] }>();
    for (const r of this.byScript.values()) {
      for (const p of r.diag.placed) {
        if (!anchorValid(p.anchor, p.file, p.cell)) continue;
        if (p.primary && !anchorValid(p.primary.anchor, p.primary.file, p.primary.cell)) continue;
        const uri = uriOf(p.file, p.cell);
        // A cell of a notebook that is not open has no document to carry a diagnostic.
        if (!uri) continue;
        const diagnostic = new vscode.Diagnostic(rangeOf(p), diagnosticMessage(p.finding, p.placement, p.layer), LEVEL[levelOf(p.finding)]);
        diagnostic.code = p.finding.kind;
        diagnostic.source = DIAGNOSTIC_SOURCE;
        let entry = byUri.get(uri.toString());
        if (!entry) byUri.set(uri.toString(), (entry = { uri, items: [] }));
        entry.items.push({ diagnostic, placed: p, run: r.diag });
      }
    }
    linkRelated([...byUri.values()].flatMap((e) => e.items));
    for (const key of this.published.keys()) if (!byUri.has(key)) this.collection.delete(vscode.Uri.parse(key));
    this.published = new Map();
    for (const [key, { uri, items }] of byUri) {
      this.collection.set(
        uri,
        items.map((i) => i.diagnostic),
      );
      this.published.set(key, items);
    }
    this.changed.fire();
  }
}

/**
 * The diagnostics of one finding about several layers point at each other, and each at its own
 * related lines (relatedInformation).
 */
function linkRelated(items: readonly { diagnostic: vscode.Diagnostic; placed: PlacedFinding }[]): void {
  const byFinding = new Map<Finding, { diagnostic: vscode.Diagnostic; placed: PlacedFinding }[]>();
  for (const i of items) {
    const group = byFinding.get(i.placed.finding) ?? [];
    group.push(i);
    byFinding.set(i.placed.finding, group);
  }
  for (const group of byFinding.values()) {
    for (const i of group) {
      const own = (i.placed.related ?? [])
        .filter((r) => anchorValid(r.anchor, r.file, r.cell) && uriOf(r.file, r.cell))
        .map((r) => new vscode.DiagnosticRelatedInformation(new vscode.Location(uriOf(r.file, r.cell)!, new vscode.Range(r.anchor.line, 0, r.anchor.line, 1000)), neutralise(r.why)));
      const others = group
        .filter((o) => o !== i && i.placed.finding.locations?.length)
        .map(
          (o) =>
            new vscode.DiagnosticRelatedInformation(
              new vscode.Location(uriOf(o.placed.file, o.placed.cell)!, o.diagnostic.range),
              relatedMessage(o.placed.finding, o.placed.placement === 'location' ? (o.placed.layer ?? null) : o.placed.finding.layer),
            ),
        );
      if (own.length || others.length) i.diagnostic.relatedInformation = [...others, ...own];
    }
  }
}

function codeOf(d: vscode.Diagnostic): string | undefined {
  const c = d.code;
  if (typeof c === 'string') return c;
  if (typeof c === 'object' && c !== null && typeof c.value === 'string') return c.value;
  return undefined;
}

/** From the construction text to the end of the line (trimmed); the whole line for line 1 fallbacks. */
function rangeOf(p: PlacedFinding): vscode.Range {
  const doc = openDocumentFor(p.file, p.cell);
  const a = p.anchor;
  const lineText = doc && a.line < doc.lineCount ? doc.lineAt(a.line).text : '';
  const at = a.text ? lineText.indexOf(a.text) : -1;
  const start = at >= 0 ? at : Math.max(0, lineText.search(/\S/));
  const end = Math.max(start + 1, lineText.trimEnd().length);
  if (!doc) return new vscode.Range(a.line, Math.max(0, a.column - 1), a.line, Math.max(a.column, 1000));
  return new vscode.Range(a.line, start, a.line, end);
}

/** The URI that carries a placement's diagnostic: the file's, or the open notebook's cell document's (undefined: the notebook is not open). */
function uriOf(file: string, cell?: number): vscode.Uri | undefined {
  return cell === undefined ? vscode.Uri.file(file) : openDocumentFor(file, cell)?.uri;
}
