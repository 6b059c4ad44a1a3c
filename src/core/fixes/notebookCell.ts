// Notebook cells as the editor places and fixes findings in them (pure; no vscode, no file I/O).
//
// A notebook run's locations name `{file: <notebook.ipynb>, cell, line}`: `cell` is the 0-based index
// among all the notebook's cells (markdown ones included, as VS Code's NotebookDocument.cellAt
// counts), `line` is 1-based within the cell. The editor places such a finding on that line of that
// cell's document, and a fix works on the cell's text alone, as if it were a Python file of its own:
// these helpers give the cell's text from the saved notebook, and the finding as that file sees it.
import type { Finding } from '../analysis/finding';
import type { ComputeFix, FixContext, FixResult } from './types';

/** The key of a place that holds text: a file, or one cell of a notebook. */
export function placeKey(file: string, cell?: number): string {
  return cell === undefined ? file : `${file}\u0000cell${cell}`;
}

/** The code cells of a notebook's JSON text (nbformat 4): index among all cells, and source. Null when it is no notebook. */
export function notebookCodeCells(ipynb: string): { index: number; source: string }[] | null {
  let nb: unknown;
  try {
    nb = JSON.parse(ipynb);
  } catch {
    return null;
  }
  const cells = (nb as { cells?: unknown })?.cells;
  if (!Array.isArray(cells)) return null;
  const out: { index: number; source: string }[] = [];
  cells.forEach((c: unknown, index) => {
    const cell = c as { cell_type?: unknown; source?: unknown };
    if (cell?.cell_type !== 'code') return;
    const src = cell.source;
    out.push({ index, source: Array.isArray(src) ? src.filter((s) => typeof s === 'string').join('') : typeof src === 'string' ? src : '' });
  });
  return out;
}

/** The source of the code cell at `index` (among all cells) of a notebook's JSON text; null when there is none. */
export function cellSourceOf(ipynb: string, index: number): string | null {
  return notebookCodeCells(ipynb)?.find((c) => c.index === index)?.source ?? null;
}

/**
 * The name the fix engine gets for a cell's text: a Python file (the engine picks the language by
 * the name), distinct per cell, that no real file has.
 */
export function cellFileName(notebook: string, cell: number): string {
  return `${notebook}#cell${cell}.py`;
}

/**
 * What the fix engine parses for a cell: the cell's text, then the import lines of the cells above it
 * (a cell uses the names earlier cells imported: `torch` from cell 1 in cell 4). After the cell, not
 * before: the cell's lines keep their numbers, in the finding and in the fix's title. `cellLength`
 * is where the cell's text ends.
 */
export function cellFixInput(cellsAbove: readonly string[], cellText: string): { text: string; cellLength: number } {
  const imports = cellsAbove.flatMap((c) => c.split('\n').filter((l) => /^(?:import\s|from\s+\S+\s+import\s)/.test(l) && !/[\\(]\s*$/.test(l)));
  if (!imports.length) return { text: cellText, cellLength: cellText.length };
  const sep = cellText.endsWith('\n') || cellText === '' ? '' : '\n';
  return { text: `${cellText}${sep}${imports.map((l) => l.replace(/\r$/, '')).join('\n')}\n`, cellLength: cellText.length };
}

/**
 * A fix computed on cellFixInput's text, as edits of the cell's own text; null when an edit would
 * touch the lines taken from the cells above (it belongs to another cell: not applied here).
 */
export function editsInCell<E extends { start: number; end: number; newText: string }>(
  edits: readonly E[],
  after: string,
  input: { text: string; cellLength: number },
): { edits: E[]; after: string } | null {
  const tail = input.text.length - input.cellLength;
  // At or past the end of the cell's text (when import lines follow) is another cell's import line.
  if (edits.some((e) => e.end > input.cellLength || (tail > 0 && e.start >= input.cellLength))) return null;
  return { edits: [...edits], after: after.slice(0, after.length - tail) };
}

/**
 * The finding as the fix engine sees it on one cell's text: its source and the further locations in
 * that cell renamed to the cell's file name (cellFileName), those in other cells or files dropped
 * (their lines are not lines of this text). Null when the finding's source is not in that cell.
 */
export function findingForCell(f: Finding, notebook: string, cell: number): Finding | null {
  if (!f.source || f.source.file !== notebook || f.source.cell !== cell) return null;
  const file = cellFileName(notebook, cell);
  const { cell: _c, ...source } = f.source;
  const locations = f.locations?.filter((l) => l.file === notebook && l.cell === cell).map(({ cell: _lc, ...l }) => ({ ...l, file }));
  return { ...f, source: { ...source, file }, ...(f.locations ? { locations } : {}) };
}

/**
 * One remedy of a notebook finding on one cell's text, with the fix engine given: the cell parsed
 * after the imports of the cells above it (cellFixInput), the finding on the cell's lines moved by
 * on the cell's own lines (findingForCell), and the edits checked to be the cell's (editsInCell).
 * Refused when the finding is not in that cell, or when the fix would edit another cell's line.
 */
export function computeCellFix(
  computeFix: ComputeFix,
  input: { notebook: string; cell: number; cellText: string; cellsAbove: readonly string[] },
  finding: Finding,
  remedyId: string,
  ctx: Omit<FixContext, 'file'>,
): FixResult {
  const { notebook, cell, cellText } = input;
  const fixInput = cellFixInput(input.cellsAbove, cellText);
  const f = findingForCell(finding, notebook, cell);
  if (!f) return { ok: false, remedy: remedyId, reason: `the finding is not in cell ${cell + 1} of ${notebook}` };
  const r = computeFix(fixInput.text, f, remedyId, { ...ctx, file: cellFileName(notebook, cell) });
  if (!r.ok) return r;
  const inCell = editsInCell(r.edits, r.after, fixInput);
  if (!inCell) return { ok: false, remedy: r.remedy, reason: `this fix edits an import in a cell above cell ${cell + 1}; edit that cell by hand` };
  return { ...r, ...inCell };
}
