// A small unified diff (no dependency) for `gradscope fix`: common prefix and suffix trimmed, an LCS
// over the lines in between (fixes touch a few places, so that part is small), hunks with 3 lines of
// context, in the format `patch` and `git apply` read.

type Op = { kind: ' ' | '-' | '+'; line: string };

function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function lineOps(a: string[], b: string[]): Op[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const A = a.slice(pre, a.length - suf);
  const B = b.slice(pre, b.length - suf);
  const ops: Op[] = a.slice(0, pre).map((line) => ({ kind: ' ', line }));
  if (A.length * B.length > 4e6) {
    // Too large for the table: everything in between replaced.
    ops.push(...A.map((line) => ({ kind: '-' as const, line })), ...B.map((line) => ({ kind: '+' as const, line })));
  } else {
    const n = A.length;
    const m = B.length;
    const L = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i * (m + 1) + j] = A[i] === B[j] ? L[(i + 1) * (m + 1) + j + 1] + 1 : Math.max(L[(i + 1) * (m + 1) + j], L[i * (m + 1) + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && A[i] === B[j]) {
        ops.push({ kind: ' ', line: A[i++] });
        j++;
      } else if (i < n && (j === m || L[(i + 1) * (m + 1) + j] >= L[i * (m + 1) + j + 1])) ops.push({ kind: '-', line: A[i++] });
      else ops.push({ kind: '+', line: B[j++] });
    }
  }
  ops.push(...a.slice(a.length - suf).map((line) => ({ kind: ' ' as const, line })));
  return ops;
}

/** `--- a/<name>` / `+++ b/<name>` and hunks; '' when the texts are equal. */
export function unifiedDiff(before: string, after: string, oldName: string, newName = oldName, context = 3): string {
  if (before === after) return '';
  const ops = lineOps(splitLines(before), splitLines(after));
  const oldCount = ops.filter((o) => o.kind !== '+').length;
  const newCount = ops.filter((o) => o.kind !== '-').length;
  const out: string[] = [`--- ${oldName}`, `+++ ${newName}`];
  // Positions (in ops) of changes, grouped into hunks whose context overlaps.
  const changed = ops.map((o, k) => (o.kind === ' ' ? -1 : k)).filter((k) => k >= 0);
  let h = 0;
  while (h < changed.length) {
    let end = h;
    while (end + 1 < changed.length && changed[end + 1] - changed[end] <= 2 * context) end++;
    const from = Math.max(0, changed[h] - context);
    const to = Math.min(ops.length, changed[end] + context + 1);
    let oldStart = 1;
    let newStart = 1;
    for (let k = 0; k < from; k++) {
      if (ops[k].kind !== '+') oldStart++;
      if (ops[k].kind !== '-') newStart++;
    }
    const body = ops.slice(from, to);
    const oldLen = body.filter((o) => o.kind !== '+').length;
    const newLen = body.filter((o) => o.kind !== '-').length;
    out.push(`@@ -${oldLen === 0 ? oldStart - 1 : oldStart},${oldLen} +${newLen === 0 ? newStart - 1 : newStart},${newLen} @@`);
    for (let k = from; k < to; k++) {
      const o = ops[k];
      out.push(o.kind + o.line);
      // The last line of a text without a final newline: git's marker right after it.
      const lastOld = o.kind !== '+' && oldIndex(ops, k) === oldCount - 1 && noEol(before);
      const lastNew = o.kind !== '-' && newIndex(ops, k) === newCount - 1 && noEol(after);
      if ((o.kind === '-' && lastOld) || (o.kind === '+' && lastNew) || (o.kind === ' ' && (lastOld || lastNew))) out.push('\\ No newline at end of file');
    }
    h = end + 1;
  }
  return out.join('\n') + '\n';
}

function noEol(t: string): boolean {
  return t.length > 0 && !t.endsWith('\n');
}

/** Index of ops[k] among the old text's lines (ops[k] must not be '+'). */
function oldIndex(ops: Op[], k: number): number {
  let n = 0;
  for (let i = 0; i < k; i++) if (ops[i].kind !== '+') n++;
  return n;
}

function newIndex(ops: Op[], k: number): number {
  let n = 0;
  for (let i = 0; i < k; i++) if (ops[i].kind !== '-') n++;
  return n;
}
