// Where a notebook cell's text is in the editor: a location `{file: <notebook.ipynb>, cell}` maps to
// the code cell at that index of the open notebook (vscode.workspace.notebookDocuments), whose
// document has a `vscode-notebook-cell:` URI; and back, from a cell's document to its notebook and
// index. A notebook that is not open has no cell documents: nothing is placed in it.
import * as vscode from 'vscode';

export const NOTEBOOK_CELL_SCHEME = 'vscode-notebook-cell';

/** The open document of a file, or of a cell of an open notebook (`cell`: 0-based index among all its cells). */
export function openDocumentFor(file: string, cell?: number): vscode.TextDocument | undefined {
  if (cell === undefined) return vscode.workspace.textDocuments.find((d) => d.uri.scheme === 'file' && d.uri.fsPath === file);
  const nb = vscode.workspace.notebookDocuments.find((n) => n.uri.scheme === 'file' && n.uri.fsPath === file);
  if (!nb || cell < 0 || cell >= nb.cellCount) return undefined;
  const c = nb.cellAt(cell);
  return c.kind === vscode.NotebookCellKind.Code ? c.document : undefined;
}

/** The notebook file and cell index of a cell's document; undefined for any other document. */
export function cellOfDocument(doc: vscode.TextDocument | vscode.Uri): { file: string; cell: number } | undefined {
  const uri = doc instanceof vscode.Uri ? doc : doc.uri;
  if (uri.scheme !== NOTEBOOK_CELL_SCHEME) return undefined;
  for (const nb of vscode.workspace.notebookDocuments) {
    if (nb.uri.scheme !== 'file' || nb.uri.path !== uri.path) continue;
    const c = nb.getCells().find((x) => x.document.uri.toString() === uri.toString());
    if (c) return { file: nb.uri.fsPath, cell: c.index };
  }
  return undefined;
}

/** Where a document's text is, as findings name it: a file, or a notebook and cell. Undefined for other schemes. */
export function placeOfDocument(doc: vscode.TextDocument): { file: string; cell?: number } | undefined {
  if (doc.uri.scheme === 'file') return { file: doc.uri.fsPath };
  return cellOfDocument(doc);
}

/** The text of the code cells above a cell's document in its notebook (none for any other document). */
export function cellsAbove(doc: vscode.TextDocument): string[] {
  const at = cellOfDocument(doc);
  const nb = at && vscode.workspace.notebookDocuments.find((n) => n.uri.scheme === 'file' && n.uri.fsPath === at.file);
  if (!at || !nb) return [];
  return nb
    .getCells(new vscode.NotebookRange(0, at.cell))
    .filter((c) => c.kind === vscode.NotebookCellKind.Code)
    .map((c) => c.document.getText());
}
