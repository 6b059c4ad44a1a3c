// The closing-note table: for every recorded diagnosis run (test/fixtures/diagnosis/runs), the
// expected finding kinds vs the kinds found, whether each marked finding is on the right line
// (or global as expected), every affected layer on its exact line (the script's gs:layer / gs:also
// lines found among the finding's locations, plus located lines that no marker expects), and the
// explosion step vs the first non-finite step.
// Usage: node bench/diagnosis-table.mjs [--markdown]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { loadTs } from './lib/bundle.mjs';

const { expectations, affectedLines } = await loadTs('test/unit/analysis/expectations.ts');
const { readRunFile } = await loadTs('src/core/store/runFile.ts');
const { Analyzer } = await loadTs('src/core/analysis/analyzer.ts');
const { activationFromSource } = await loadTs('src/core/analysis/activation.ts');
const { relatedLinesFor } = await loadTs('src/features/relatedLines.ts');
// As the CLI does: the layer's activation read from the line that built it.
const texts = new Map();
const activationOf = (t) => {
  if (!t.source) return null;
  if (!texts.has(t.source.file)) {
    let text = null;
    try {
      text = readFileSync(t.source.file, 'utf8');
    } catch {
      /* unreadable: no activation shown */
    }
    texts.set(t.source.file, text);
  }
  const text = texts.get(t.source.file);
  return text === null ? null : activationFromSource(text, t.source.line, t.layerType);
};

const short = (k) =>
  ({ 'exploding-gradient': 'exploding', 'vanishing-gradient': 'vanishing', 'non-finite-gradient': 'non-finite', 'dead-units': 'dead-units', 'update-ratio': 'update-ratio' })[k] ?? k;
const rows = [['script', 'expected', 'found', 'kinds', 'line', 'affected layers (found/expected, +extra)', 'explosion / 1st non-finite', 'top remedy per finding']];
let kindsOk = 0;
let affOk = 0;
let affTotal = 0;
let affExtra = 0;
let relOk = 0;
let relTotal = 0;
let healthyRuns = 0;
let healthyAlarms = 0;
let linesOk = 0;
let linesTotal = 0;
const all = expectations();
for (const e of all) {
  const { store } = readRunFile(e.runFile);
  const fs = new Analyzer(store, { activationOf }).finish();
  const found = [...new Set(fs.map((f) => f.kind))].sort();
  const exp = [...e.kinds].sort();
  const ok = JSON.stringify(found) === JSON.stringify(exp);
  if (ok) kindsOk++;
  const lineCells = [];
  for (const [kind, line] of e.where) {
    linesTotal++;
    const f = fs.find((x) => x.kind === kind);
    const got = !f ? 'missing' : f.layer === null ? 'global' : f.source ? `${basename(f.source.file)}:${f.source.line}` : '?';
    const right = f && (line === null ? f.layer === null : f.source?.line === line && basename(f.source.file) === basename(e.script));
    if (right) linesOk++;
    lineCells.push(`${short(kind)} ${line === null ? 'global' : ':' + line} → ${got.replace(/^.*:/, ':')} ${right ? '✓' : '✗'}`);
  }
  const affCells = [];
  for (const [kind, lines] of e.affected) {
    const f = fs.find((x) => x.kind === kind);
    const got = f ? affectedLines(f, e.script) : [];
    const hit = lines.filter((l) => got.includes(l)).length;
    const extra = got.filter((l) => !lines.includes(l)).length;
    affOk += hit;
    affTotal += lines.length;
    affExtra += extra;
    affCells.push(`${short(kind)} ${hit}/${lines.length}${extra ? ` +${extra}` : ''}`);
  }
  // gs:related lines (a custom layer's bias addWeight / nn.Parameter): what the editor links as relatedInformation.
  for (const [kind, lines] of e.related) {
    const f = fs.find((x) => x.kind === kind);
    const t = f?.layer ? store.tensors.find((x) => x.layer === f.layer) : undefined;
    const got = f?.source && t ? relatedLinesFor(readFileSync(e.script, 'utf8'), e.script.endsWith('.py'), kind, t.layerType, f.source.line).map((r) => r.line) : [];
    const hit = lines.filter((l) => got.includes(l)).length;
    relOk += hit;
    relTotal += lines.length;
    affCells.push(`related ${hit}/${lines.length}`);
  }
  if (e.kinds.length === 0) {
    healthyRuns++;
    if (fs.length > 0) healthyAlarms++;
  }
  const ex = fs.find((f) => f.kind === 'exploding-gradient');
  const nf = store.summary().firstNonFiniteStep;
  rows.push([
    e.name,
    exp.map(short).join(', ') || '(healthy)',
    found.map(short).join(', ') || '(none)',
    ok ? '✓' : '✗',
    lineCells.join('; ') || '–',
    affCells.join('; ') || '–',
    ex || nf !== null ? `${ex ? ex.step : '–'} / ${nf ?? '–'}` : '–',
    fs.map((f) => `${short(f.kind)}: ${f.remedies[0]?.id ?? '–'}`).join('; ') || '–',
  ]);
}
if (process.argv.includes('--markdown')) {
  console.log(`| ${rows[0].join(' | ')} |\n| ${rows[0].map(() => '---').join(' | ')} |`);
  for (const r of rows.slice(1)) console.log(`| ${r.join(' | ')} |`);
} else {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows)
    console.log(
      r
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    );
}
console.log(`\nkinds right: ${kindsOk}/${all.length} runs · lines right: ${linesOk}/${linesTotal} marked findings`);
console.log(
  `false alarms on healthy runs: ${healthyAlarms}/${healthyRuns} · exact line per affected layer: ${affOk}/${affTotal} (+${affExtra} located lines no marker expects) · related lines: ${relOk}/${relTotal}`,
);
