// The readable summary `gradscope run` prints without --json.
import { relative } from 'node:path';
import type { Finding } from '../core/analysis/finding';
import type { RunStore, Series } from '../core/store/runStore';
import type { RunExit } from '../process/runSession';

export const fmt = (v: number | null | undefined): string => {
  if (v === null || v === undefined) return '–';
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? 'Inf' : '-Inf';
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(3);
};

/** Largest finite value of a series over its whole history (envelope and recent part). */
export function seriesMax(s: Series): number | null {
  let m = -Infinity;
  for (const v of s.envelope.max) if (Number.isFinite(v) && v > m) m = v;
  for (const v of s.values) if (Number.isFinite(v) && v > m) m = v;
  return m === -Infinity ? null : m;
}

function seriesLast(s: Series): number | null {
  if (s.values.length) return s.values[s.values.length - 1];
  const l = s.envelope.last;
  return l.length ? l[l.length - 1] : null;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c >= 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd()).join('\n');
}

export function formatSummary(store: RunStore, exit: RunExit, where: { script: string; runFile: string }, findings: readonly Finding[] = []): string {
  const out: string[] = [];
  const h = store.hello;
  const s = store.summary();
  out.push('');
  out.push(`GradScope · ${where.script}`);
  if (h) out.push(`backend   ${h.backend} (${h.device})${h.backendReason ? ` — ${h.backendReason}` : ''}`);
  out.push(`run       ${exit.message}`);
  if (exit.error?.stack && exit.reason === 'crashed' && !exit.error.frame) out.push(exit.error.stack.split('\n').slice(0, 4).join('\n'));
  out.push(`steps     ${store.stepCount}`);
  out.push(`‖g‖       first ${fmt(s.globalNorm.first)} · max ${fmt(s.globalNorm.max)} · last ${fmt(s.globalNorm.last)}`);
  if (s.firstNonFinite) {
    const t = store.tensors[s.firstNonFinite.tensorId];
    out.push(`non-finite  first at step ${s.firstNonFinite.step} in ${t ? t.name : `tensor ${s.firstNonFinite.tensorId}`}`);
  } else if (store.stepCount) out.push('non-finite  none');
  const dropped = store.events.filter((e) => e.kind === 'dropped').reduce((a, e) => a + (e.count ?? 0), 0);
  if (dropped) out.push(`dropped   ${dropped} frames (the pipe was full; statistics of those steps are missing)`);
  if (store.tensors.length) {
    const rows = [['tensor', 'shape', 'built at', 'last ‖g‖', 'max ‖g‖', 'NaN/Inf']];
    for (const t of store.tensors) {
      const norm = store.series(t.id, 'norm');
      const bad = (seriesMax(store.series(t.id, 'nanCount')) ?? 0) + (seriesMax(store.series(t.id, 'infCount')) ?? 0) > 0;
      const src = t.source ? `${relative(process.cwd(), t.source.file) || t.source.file}:${t.source.line}` : '?';
      // The norm column covers finite entries only: show NaN/Inf when the last step had them.
      const last = (seriesLast(store.series(t.id, 'nanCount')) ?? 0) > 0 ? NaN : (seriesLast(store.series(t.id, 'infCount')) ?? 0) > 0 ? Infinity : seriesLast(norm);
      rows.push([t.name, `[${t.shape.join(',')}]`, src, fmt(last), fmt(seriesMax(norm)), bad ? 'yes' : 'no']);
    }
    out.push('');
    out.push(table(rows));
  }
  out.push('');
  if (findings.length) {
    out.push(`findings  ${findings.length}`);
    for (const f of findings) {
      const at = f.source ? `${relative(process.cwd(), f.source.file) || f.source.file}:${f.source.line}` : f.layer ? '?' : '(global)';
      out.push(`  ${f.severity.padEnd(7)} ${f.kind} at step ${f.step} · ${at}${f.layer ? ` · ${f.layer}` : ''}`);
      out.push(`          ${f.message}`);
      if (f.remedies.length) out.push(`          remedies: ${f.remedies.map((r) => r.id).join(', ')}`);
    }
    if (findings.some((f) => f.remedies.length)) {
      out.push('');
      out.push(`fix       npx gradscope fix ${where.script} --verify   (shows the diff of the top remedy, re-runs to check it, then writes it)`);
    }
  } else if (store.stepCount) out.push('findings  none');
  out.push('');
  out.push(`run file  ${where.runFile}`);
  out.push('');
  return out.join('\n');
}
