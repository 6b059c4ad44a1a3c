// The readable summary `gradscope run` prints without --json.
import { relative } from 'node:path';
import type { CrossRankAnalysis } from '../core/analysis/crossRank';
import type { Finding } from '../core/analysis/finding';
import { isShardStore } from '../core/report/runJson';
import { runWarnings } from '../core/report/warnings';
import { BUCKET_ALL_ABSENT, type LossSummary, type OptimizerInfo, type RunStore, type Series } from '../core/store/runStore';
import { formatNumber } from '../core/protocol/float';
import { locationText } from '../core/protocol/messages';
import { neutralise } from '../core/text';
import type { RunExit } from '../process/runSession';

/** The CLI's numbers: the one format of the CLI, the hover and the panel (protocol/float.ts). */
export const fmt = (v: number | null | undefined): string => formatNumber(v);

/** Largest finite value of a series over its whole history (envelope and recent part). */
export function seriesMax(s: Series): number | null {
  let m = -Infinity;
  for (const v of s.envelope.max) if (Number.isFinite(v) && v > m) m = v;
  for (const v of s.values) if (Number.isFinite(v) && v > m) m = v;
  return m === -Infinity ? null : m;
}

/** The last present value of a series (buckets of absent cells only have none). */
function seriesLast(s: Series): number | null {
  if (s.values.length) return s.values[s.values.length - 1];
  const { last, absent } = s.envelope;
  for (let b = last.length - 1; b >= 0; b--) if (absent[b] !== BUCKET_ALL_ABSENT) return last[b];
  return null;
}

/** The optimizer `--optimizer` names: its name, or its id; null when none matches. */
export function findOptimizer(store: RunStore, key: string): OptimizerInfo | null {
  const all = store.optimizers;
  return all.find((o) => o.name === key) ?? (/^\d+$/.test(key) ? all.find((o) => o.id === Number(key)) : undefined) ?? null;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/**
 * "frozen.weight (every step), head.weight (150 of 300 steps)": tensors that had no gradient at some
 * steps, over the whole run, or with `optimizer` over that optimizer's steps still held at full
 * resolution.
 */
function absentLine(store: RunStore, ids: readonly number[], optimizer: number | null): string | null {
  const parts: string[] = [];
  let n = 0;
  const ofOptimizer = optimizer === null ? 0 : store.optimizerSteps(optimizer).length;
  for (const id of ids) {
    const a = optimizer === null ? store.absentSteps(id) : store.series(id, 'norm', { optimizer }).absentSteps.length;
    if (!(a > 0)) continue;
    n++;
    if (parts.length < 4) {
      const t = store.tensors[id];
      const seen = optimizer === null ? store.ownedSteps(id) : ofOptimizer;
      parts.push(`${t ? t.name : `tensor ${id}`} (${a >= seen ? 'every step' : `${a} of ${seen} steps`})`);
    }
  }
  if (n === 0) return null;
  return `${plural(n, 'tensor')} had no gradient at some steps (left out of the analysis, not counted as non-finite): ${parts.join(', ')}${n > parts.length ? ', …' : ''}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c >= 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export interface SummaryOptions {
  /** Restrict the table to this optimizer's tensors and steps (`--optimizer`: its name or id). */
  optimizer?: string | null;
  /** A run of several ranks: the rank the table shows (null: the script's own process), every rank, and the cross-rank analysis. */
  ranks?: {
    shown: number | null;
    ranks: readonly number[];
    cross: CrossRankAnalysis | null;
    /** Where the processes are workers that train on their own (world size 1: Hogwild, all "rank 0"): their pids, and the shown one's. */
    alone?: { pids: readonly (number | null)[]; shown: number | null } | null;
  } | null;
}

/**
 * The loss, first and last, and the first non-finite one: the run's, or each optimizer's when two or
 * more carry one (a GAN's discriminator and generator losses are two series, not one).
 */
function lossLines(store: RunStore): string[] {
  const describe = (l: LossSummary): string => `first ${fmt(l.first)} · last ${fmt(l.last)}${l.firstNonFinite ? ` · ${fmt(l.firstNonFinite.value)} at step ${l.firstNonFinite.step}` : ''}`;
  const own = store.optimizers.flatMap((o) => {
    const l = store.lossSummary(o.id);
    return l ? [{ o, l }] : [];
  });
  if (own.length >= 2) return own.map(({ o, l }, i) => `${i === 0 ? 'loss' : '    '}      ${o.name}: ${describe(l)}`);
  const run = store.lossSummary();
  return [`loss      ${run ? describe(run) : 'none seen'}`];
}

export function formatSummary(store: RunStore, exit: RunExit, where: { script: string; runFile: string }, findings: readonly Finding[] = [], opts: SummaryOptions = {}): string {
  const out: string[] = [];
  const h = store.hello;
  const s = store.summary();
  out.push('');
  out.push(`GradScope · ${where.script}`);
  if (h) out.push(`backend   ${h.backend} (${h.device})${h.backendReason ? ` — ${h.backendReason}` : ''}`);
  out.push(`run       ${exit.message}`);
  if (exit.error?.stack && exit.reason === 'crashed' && !exit.error.frame) out.push(exit.error.stack.split('\n').slice(0, 4).join('\n'));
  out.push(`steps     ${store.stepCount}`);
  // What GradScope could not see comes right under the outcome: "completed, 0 steps" is not a success.
  for (const w of runWarnings(store, { reason: exit.reason })) {
    // A count over the run (skipped steps) is not about the one step of its first occurrence.
    const at = w.step !== undefined && w.code !== 'skipped-steps' ? ` (step ${w.step})` : '';
    out.push(`${w.level === 'warning' ? 'warning' : 'note   '}   ${w.message}${at}`);
  }
  const rv = opts.ranks ?? null;
  if (rv?.alone) {
    const { pids, shown } = rv.alone;
    out.push(`process   pid ${shown ?? '?'} is shown, of ${plural(pids.length, 'process', 'processes')} that train on their own (pids ${pids.map((p) => p ?? '?').join(', ')})`);
  } else if (rv) {
    const all = rv.ranks.join(', ');
    out.push(
      rv.shown === null
        ? `ranks     the script's own process is shown; its ranks: ${all} (--rank R shows one)`
        : `rank      ${rv.shown} is shown, of rank${rv.ranks.length === 1 ? '' : 's'} ${all}${rv.ranks.length > 1 ? ' (--rank R shows another)' : ''}`,
    );
  }
  // A process that holds shards (FSDP2) has the global norm of its shards, not of the model: say so,
  // and give the model's, combined from every rank's shards.
  const sharded = isShardStore(store);
  const whose = sharded ? ' shard ' : '       ';
  out.push(
    `‖g‖${whose}first ${fmt(s.globalNorm.first)} · max ${fmt(s.globalNorm.max)} · last ${fmt(s.globalNorm.last)}${sharded ? ` (${h ? `rank ${h.rank}'s` : "this process's"} shards only)` : ''}`,
  );
  // Several optimizers (a GAN's D and G): each one's own norm as well, since the run's alternates between them.
  const ownNorms = sharded
    ? []
    : store.optimizers.flatMap((o) => {
        const g = store.optimizerGlobalNorm(o.id);
        return g ? [{ o, g }] : [];
      });
  if (ownNorms.length >= 2) for (const { o, g } of ownNorms) out.push(`          ${o.name}: first ${fmt(g.first)} · max ${fmt(g.max)} · last ${fmt(g.last)}`);
  const combined = rv?.cross?.combined;
  if (combined) {
    const g = combined.globalNorm;
    let max = -Infinity;
    for (const v of g) if (Number.isFinite(v) && v > max) max = v;
    out.push(
      `‖g‖ model first ${fmt(g.length ? g[0] : null)} · max ${fmt(max === -Infinity ? null : max)} · last ${fmt(g.length ? g[g.length - 1] : null)} (combined from the shards of ranks ${combined.ranks.join(', ')}, ${plural(g.length, 'step')})`,
    );
  }
  if (store.stepCount) out.push(...lossLines(store));
  if (s.firstNonFinite) {
    const t = store.tensors[s.firstNonFinite.tensorId];
    out.push(`non-finite  first at step ${s.firstNonFinite.step} in ${t ? t.name : `tensor ${s.firstNonFinite.tensorId}`}`);
  } else if (store.stepCount) out.push('non-finite  none');
  const optimizers = store.optimizers;
  if (optimizers.length > 1 || optimizers.some((o) => o.mode === 'backward')) {
    const desc = (o: OptimizerInfo): string =>
      `${o.name}${o.className ? ` (${o.className})` : ''}${o.mode === 'backward' ? ' — no optimizer: each backward pass is a step' : ''}, ${plural(o.steps, 'step')}`;
    out.push(`optimizers  ${optimizers.map(desc).join(' · ')}`);
  }
  let picked: OptimizerInfo | null = null;
  if (opts.optimizer) {
    picked = findOptimizer(store, opts.optimizer);
    if (picked)
      out.push(
        `optimizer   ${picked.name}: ${plural(picked.steps, 'step')}${picked.firstStep !== null ? ` (${picked.firstStep}–${picked.lastStep})` : ''}, ${plural(picked.tensorIds.length, 'tensor')}; the table shows only these`,
      );
    else
      out.push(
        `warning   no optimizer named "${opts.optimizer}" in this run${optimizers.length ? ` (it has: ${optimizers.map((o) => o.name).join(', ')})` : ''}; the table shows every tensor`,
      );
  }
  const shown = picked ? store.tensors.filter((t) => t && picked.tensorIds.includes(t.id)) : store.tensors.filter((t) => t);
  const absent = absentLine(
    store,
    shown.map((t) => t.id),
    picked ? picked.id : null,
  );
  if (absent) out.push(`no grad   ${absent}`);
  if (shown.length) {
    const rows = [['tensor', 'shape', 'built at', sharded ? 'last ‖shard‖' : 'last ‖g‖', sharded ? 'max ‖shard‖' : 'max ‖g‖', 'NaN/Inf']];
    const sel = picked ? { optimizer: picked.id } : {};
    for (const t of shown) {
      const norm = store.series(t.id, 'norm', sel);
      const bad = (seriesMax(store.series(t.id, 'nanCount', sel)) ?? 0) + (seriesMax(store.series(t.id, 'infCount', sel)) ?? 0) > 0;
      const src = t.source ? locationText(relative(process.cwd(), t.source.file) || t.source.file, t.source) : '?';
      // The norm column covers finite entries only: show NaN/Inf when the last step had them.
      const last = (seriesLast(store.series(t.id, 'nanCount', sel)) ?? 0) > 0 ? NaN : (seriesLast(store.series(t.id, 'infCount', sel)) ?? 0) > 0 ? Infinity : seriesLast(norm);
      // A shard: its own block's shape, of the tensor's.
      const shape = t.shard ? `[${t.shard.localShape.join(',')}] of [${t.shape.join(',')}]` : `[${t.shape.join(',')}]`;
      rows.push([neutralise(t.name, true), shape, neutralise(src, true), fmt(last), fmt(seriesMax(norm)), bad ? 'yes' : 'no']);
    }
    out.push('');
    out.push(table(rows));
  }
  out.push('');
  if (findings.length) {
    out.push(`findings  ${findings.length}`);
    for (const f of findings) {
      const at = f.source ? locationText(relative(process.cwd(), f.source.file) || f.source.file, f.source) : f.layer ? '?' : '(global)';
      out.push(`  ${f.severity.padEnd(7)} ${f.kind} at step ${f.step} · ${at}${f.layer ? ` · ${f.layer}` : ''}`);
      out.push(`          ${f.message}`);
      // A finding about several layers: each affected layer's own line (the editor marks each one).
      if (f.locations?.length) {
        const where = f.locations.map((l) => `${locationText(relative(process.cwd(), l.file) || l.file, l)} ${l.layer}`).join(', ');
        out.push(neutralise(`          ${f.layer === null ? 'starts in' : `${plural(f.locations.length, 'affected layer')}:`} ${where}`));
      }
      if (f.remedies.length) out.push(`          remedies: ${f.remedies.map((r) => r.id).join(', ')}`);
    }
    if (findings.some((f) => f.remedies.length)) {
      out.push('');
      out.push(`fix       npx gradscope fix ${where.script} --verify   (shows the diff of the top remedy, re-runs to check it, then writes it)`);
    }
  } else if (store.stepCount) out.push('findings  none');
  if (rv?.cross) out.push(...crossRankLines(rv.cross));
  out.push('');
  out.push(`run file  ${where.runFile}${exit.recording ? ` (incomplete: ${exit.recording.steps} of ${exit.steps} steps, ${exit.recording.reason})` : ''}`);
  out.push('');
  // Names, paths and messages come from the run: no bidirectional control may reorder the terminal's
  // text, no ESC sequence act on it (the table's cells are neutralised above, so columns line up).
  return neutralise(out.join('\n'));
}

/** The cross-rank part of the summary: what was compared, and each rank-desync finding. */
function crossRankLines(c: CrossRankAnalysis): string[] {
  const out: string[] = [''];
  const n = c.ranks.length;
  if (c.findings.length === 0) {
    if (c.compared.groups === 0)
      out.push(`ranks     ${n} ranks: every tensor is held as distinct shards, nothing is held twice to compare${c.sharded ? "; the model's norm is combined above" : ''}`);
    else out.push(`ranks     ${n} ranks in step: ${plural(c.compared.groups, 'replicated tensor')} compared over ${plural(c.compared.steps, 'step')}, the same gradient norms on every rank`);
    return out;
  }
  out.push(`ranks     ${n} ranks, ${plural(c.findings.length, 'cross-rank finding')}`);
  for (const f of c.findings) {
    out.push(`  ${f.severity.padEnd(7)} ${f.kind} at step ${f.step} · ranks ${String(f.evidence.ranksDisagreeing)}`);
    out.push(`          ${f.message}`);
  }
  return out;
}
