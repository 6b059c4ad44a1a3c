// Keeping a diagnostic on the line it was computed for while the file is edited (pure; no vscode).
// A run's findings name lines of the text as it was when the run started. VS Code does not move
// the diagnostics of an extension's collection with edits, so each anchor (a line plus the text that
// built the layer there, e.g. `tf.layers.dense(`) is shifted through every edit, and dropped when
// the edit replaced its line or the line no longer holds that text: an anchor is never stale.

export interface LineAnchor {
  /** 0-based line in the current text. */
  line: number;
  /** Text the line must still contain (the layer's construction, or the optimizer call). */
  text: string;
}

/** One edit, in the coordinates of the text before it (0-based lines and UTF-16 columns). */
export interface LineEdit {
  startLine: number;
  startChar: number;
  endLine: number;
  endChar: number;
  newText: string;
}

function newlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * Where line `line` is after the edit, or null when the edit removed it. `span` is where the
 * anchored text sits on the line ([start, end) columns, before the edit); without it, an edit that
 * spans several lines and touches this one drops it (it cannot tell whether the text survived).
 * The content is not checked here (see `anchorHolds`): an edit inside the line keeps its number.
 */
export function shiftLine(line: number, e: LineEdit, span?: readonly [number, number]): number | null {
  const added = newlines(e.newText);
  const removed = e.endLine - e.startLine;
  // Entirely above: the line moves by the net line count.
  if (e.endLine < line) return line + added - removed;
  // Entirely below (or starting after the line).
  if (e.startLine > line) return line;
  // A pure insertion at the very start of the line pushes it down by the lines inserted.
  if (e.startLine === line && e.endLine === line && e.startChar === 0 && e.endChar === 0) return line + added;
  // Inside the line: same number (the caller checks that the text is still there).
  if (e.startLine === line && e.endLine === line) return line;
  // Starts on the line and runs past its end: only the head before the edit survives here.
  if (e.startLine === line) return span && span[1] <= e.startChar ? line : null;
  // Starts above and ends on the line: the tail after the edit survives, after the inserted text.
  if (e.endLine === line) return span && e.endChar <= span[0] ? e.startLine + added : null;
  // The line was inside the replaced range.
  return null;
}

/** Applies edits given in the coordinates of the text before all of them (VS Code's contentChanges). */
export function shiftLineThrough(line: number, edits: readonly LineEdit[], span?: readonly [number, number]): number | null {
  // Applying from the last edit to the first keeps each edit's coordinates valid.
  const sorted = [...edits].sort((a, b) => b.startLine - a.startLine || b.startChar - a.startChar);
  let cur: number | null = line;
  for (const e of sorted) {
    if (cur === null) return null;
    // The span is known only on the line as it was; once an edit moved the line, it is not.
    cur = shiftLine(cur, e, cur === line ? span : undefined);
  }
  return cur;
}

/** Where the anchor's text sits on a line, as a span for shiftLine. */
export function spanOf(anchor: LineAnchor, lineText: string | undefined): [number, number] | undefined {
  if (lineText === undefined || !anchor.text) return undefined;
  const i = lineText.indexOf(anchor.text);
  return i < 0 ? undefined : [i, i + anchor.text.length];
}

/** Whether the anchor's line (in `lineText`) still holds what was recorded. */
export function anchorHolds(anchor: LineAnchor, lineText: string | undefined): boolean {
  return lineText !== undefined && anchor.text.length > 0 && lineText.includes(anchor.text);
}

/**
 * The text to keep an anchor honest: the call that starts at the source column (`tf.layers.dense(`,
 * `tf.train.sgd(`, `tf.variable(`), else the trimmed line. `column` is 1-based.
 */
export function constructionText(lineText: string, column: number | null): string {
  const from = column && column > 0 ? Math.min(column - 1, lineText.length) : 0;
  // The whole callee chain around the column: the probe may point at `dense(` in `tf.layers.dense(`.
  const chain = /[A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_$][\w$]*)*\s*\(/g;
  let m: RegExpExecArray | null;
  while ((m = chain.exec(lineText))) {
    if (m.index <= from && from < m.index + m[0].length) return m[0];
  }
  const call = /^[A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_$][\w$]*)*\s*\(/.exec(lineText.slice(from));
  if (call) return call[0];
  return lineText.trim();
}

/** The variable a layer is assigned to on its line (`const dense1 = tf.layers.dense(…)` → dense1). */
export function assignedName(lineText: string, column: number | null): string | null {
  const head = column && column > 0 ? lineText.slice(0, column - 1) : lineText;
  const m = /(?:^|[;{(,\s])(?:(?:const|let|var)\s+)?([A-Za-z_$][\w$]*)\s*=\s*(?:await\s+)?$/.exec(head) ?? /(?:^|[;{(,\s])(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=/.exec(lineText);
  if (!m) return null;
  const name = m[1];
  return /^(?:const|let|var|await|return|new|this)$/.test(name) ? null : name;
}

/**
 * The 0-based line of the first optimizer built with `tf.train.*(` (comments skipped), or for a
 * Python script with `torch.optim.<Class>(` / `optim.<Class>(` (comments and triple-quoted strings
 * skipped), or null. Global findings (no layer) are shown there.
 */
export function findOptimizerLine(text: string, python = false): { line: number; column: number; text: string } | null {
  if (python) return findTorchOptimizerLine(text);
  const lines = text.split('\n');
  let inBlock = false;
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i];
    if (inBlock) {
      const end = l.indexOf('*/');
      if (end < 0) continue;
      l = ' '.repeat(end + 2) + l.slice(end + 2);
      inBlock = false;
    }
    l = l.replace(/\/\*.*?\*\//g, (c) => ' '.repeat(c.length));
    const open = l.indexOf('/*');
    if (open >= 0) {
      l = l.slice(0, open);
      inBlock = true;
    }
    const comment = l.indexOf('//');
    if (comment >= 0) l = l.slice(0, comment);
    const m = /\btf\s*\.\s*train\s*\.\s*[A-Za-z_$][\w$]*\s*\(/.exec(l);
    if (m) return { line: i, column: m.index + 1, text: m[0] };
  }
  return null;
}

function findTorchOptimizerLine(text: string): { line: number; column: number; text: string } | null {
  const lines = text.split('\n');
  let quote: string | null = null; // inside a triple-quoted string opened by this delimiter
  for (let i = 0; i < lines.length; i++) {
    // Blank out triple-quoted strings (possibly spanning lines), then the comment.
    let l = '';
    let rest = lines[i];
    while (rest.length) {
      if (quote) {
        const end = rest.indexOf(quote);
        if (end < 0) {
          l += ' '.repeat(rest.length);
          rest = '';
        } else {
          l += ' '.repeat(end + 3);
          rest = rest.slice(end + 3);
          quote = null;
        }
        continue;
      }
      const m = /"""|'''/.exec(rest);
      if (!m) {
        l += rest;
        rest = '';
      } else {
        l += rest.slice(0, m.index) + '   ';
        rest = rest.slice(m.index + 3);
        quote = m[0];
      }
    }
    const hash = l.indexOf('#');
    if (hash >= 0) l = l.slice(0, hash);
    const m = /\b(?:torch\s*\.\s*)?optim\s*\.\s*[A-Z]\w*\s*\(/.exec(l);
    if (m) return { line: i, column: m.index + 1, text: m[0] };
  }
  return null;
}
