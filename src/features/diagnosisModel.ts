// What the editor shows for a finding, as plain data: severity, the diagnostic's message, a layer's
// gradient statistics, and the hover's Markdown. Pure (no vscode import) so it is unit-tested;
// diagnostics.ts, hover.ts and codeActions.ts turn it into VS Code objects.
import type { Finding, FindingKind } from '../core/analysis/finding';
import { sparklineBlocks, sparklineDataUri } from '../core/analysis/sparkline';
import { pathToFileURL } from 'node:url';
import type { LibrarySite, StatName, TensorInfo } from '../core/protocol/messages';
import type { RunStore } from '../core/store/runStore';
import { neutralise } from '../core/text';
import { formatNumber } from '../core/protocol/float';

export type DiagnosticLevel = 'error' | 'warning' | 'info';

// Declared once, with the findings (src/core/analysis/finding.ts).
export { FINDING_KINDS, isFindingKind } from '../core/analysis/finding';

/** Error for exploding/non-finite and a rank desync, info for a too-low update ratio, warning otherwise. */
export function levelOf(f: Finding): DiagnosticLevel {
  if (f.kind === 'exploding-gradient' || f.kind === 'non-finite-gradient' || f.kind === 'rank-desync') return 'error';
  if (f.kind === 'update-ratio' && (f.evidence.direction === 'low' || f.severity === 'info')) return 'info';
  return 'warning';
}

/** The evidence worth a place in the one-line diagnostic, per kind, in this order. */
const KEY_EVIDENCE: Record<FindingKind, string[]> = {
  'exploding-gradient': ['growthFactor', 'normAtDetection', 'firstNonFiniteStep', 'cause'],
  'non-finite-gradient': ['firstStep', 'firstTensor', 'cause', 'normBefore'],
  'vanishing-gradient': ['ratio', 'firstLayerNorm', 'lastLayerNorm', 'sinceStep'],
  'dead-units': ['zeroFraction', 'sinceStep', 'signal'],
  'update-ratio': ['direction', 'medianRatio', 'sinceStep'],
  'rank-desync': ['ranks', 'referenceRank', 'tensor', 'relDiff', 'skipped'],
};

/** A number as a person reads it in a hover: the one format (protocol/float.ts). */
export const fmt = formatNumber;

export function keyEvidence(f: Finding): string {
  const parts: string[] = [];
  for (const k of KEY_EVIDENCE[f.kind] ?? []) {
    const v = f.evidence[k];
    if (v === undefined || v === null) continue;
    parts.push(`${k} ${fmt(v)}`);
  }
  return parts.join(', ');
}

/**
 * One layer's own numbers in a finding that concerns several (`evidence.byLayer`, "name value; name
 * value"), or null when the finding has none for it.
 */
export function layerEvidence(f: Finding, layer: string): string | null {
  const by = f.evidence.byLayer;
  if (typeof by !== 'string') return null;
  for (const e of by.split('; ')) if (e.startsWith(layer + ' ')) return e.slice(layer.length + 1);
  return null;
}

/** Whether a finding concerns this layer: its primary layer or one of its locations. */
export function concernsLayer(f: Finding, layer: string): boolean {
  return f.layer === layer || (f.locations?.some((l) => l.layer === layer) ?? false);
}

/** The line of relatedInformation that points from one affected layer's diagnostic to another's. */
export function relatedMessage(f: Finding, layer: string | null): string {
  if (layer === null) return neutralise(`${f.kind}: the finding (global)`);
  const own = layerEvidence(f, layer);
  return neutralise(`${f.kind} in ${layer}${layer === f.layer ? ' (primary)' : ''}${own ? `: ${own}` : ''}`);
}

/**
 * The diagnostic's message: the finding's sentence, the key evidence, and a note when placed by guess.
 * `location`: the diagnostic on a further affected layer's line (`layer`), led by that layer's own numbers.
 */
export function diagnosticMessage(f: Finding, placement: 'layer' | 'optimizer' | 'fallback' | 'location', layer?: string): string {
  const ev = keyEvidence(f);
  // The run's names are in the message: a bidirectional control must not reorder the Problems view.
  let msg = neutralise(ev ? `${f.message} [${ev}]` : f.message);
  const n = f.locations?.length ?? 0;
  if (placement === 'location' && layer !== undefined) {
    const own = layerEvidence(f, layer);
    const what = f.layer === null ? 'where it starts' : `affected layer, 1 of ${n}`;
    return neutralise(`${layer} (${what})${own ? `: ${own}` : ''}.`) + ` ${msg}`;
  }
  if (n > 1 && f.layer !== null) {
    const own = layerEvidence(f, f.layer);
    msg += neutralise(` (${n} affected layers, each marked on its line${own ? `; ${f.layer}: ${own}` : ''})`);
  }
  if (placement === 'optimizer') msg += ' (global finding: shown where the optimizer is built)';
  else if (placement === 'fallback') msg += ' (global finding: GradScope could not find where the optimizer is built, so it is shown on line 1)';
  return msg;
}

// -----------------------------------------------------------------------------------------------
// A layer's gradient statistics, from the run's store.

export interface LayerStats {
  layer: string;
  layerType: string;
  tensors: string[];
  /** Steps and the layer's norm √Σ‖g‖² at each (recent, full-resolution part of the run). */
  steps: number[];
  norms: number[];
  last: { step: number; norm: number } | null;
  max: { step: number; norm: number } | null;
  firstNonFiniteStep: number | null;
  /** ‖Δw‖/‖w‖ over the layer's tensors at the last step where both were finite. */
  updateRatio: { step: number; ratio: number } | null;
  /** Where a library (transformers) constructed the layer inside the user's line, when one did. */
  builtIn?: LibrarySite;
  /** Other names of the layer's tensors (tied or shared weights: "lm_head.weight"). */
  aliases?: string[];
}

/** Reads the layer's statistics; null when the store knows no tensor of that layer. */
export function layerStats(store: RunStore, layer: string): LayerStats | null {
  const ts = store.tensors.filter((t) => t.layer === layer);
  if (!ts.length) return null;
  const sumSq = new Map<number, number>();
  const bad = new Set<number>();
  const take = (id: number, stat: StatName): { steps: Float64Array; values: Float32Array } => store.series(id, stat);
  let firstNonFinite: number | null = null;
  let envMax: { step: number; norm: number } | null = null;
  for (const t of ts) {
    const s = take(t.id, 'norm');
    const nan = take(t.id, 'nanCount');
    const inf = take(t.id, 'infCount');
    const nanAt = new Map<number, number>();
    for (let i = 0; i < nan.steps.length; i++) nanAt.set(nan.steps[i], nan.values[i] + (inf.values[i] ?? 0));
    for (let i = 0; i < s.steps.length; i++) {
      const step = s.steps[i];
      const v = s.values[i];
      if (!Number.isFinite(v) || (nanAt.get(step) ?? 0) > 0) bad.add(step);
      else sumSq.set(step, (sumSq.get(step) ?? 0) + v * v);
      if (!sumSq.has(step)) sumSq.set(step, 0);
    }
    // Steps folded out of the ring: their buckets' maxima and non-finite flags.
    const env = store.series(t.id, 'norm').envelope;
    for (let b = 0; b < env.max.length; b++) {
      if (env.flags[b] !== 0 && (firstNonFinite === null || env.stepFirst[b] < firstNonFinite)) firstNonFinite = env.stepFirst[b];
      if (Number.isFinite(env.max[b]) && (!envMax || env.max[b] > envMax.norm)) envMax = { step: env.stepLast[b], norm: env.max[b] };
    }
  }
  const steps = [...sumSq.keys()].sort((a, b) => a - b);
  const norms = steps.map((st) => (bad.has(st) ? NaN : Math.sqrt(sumSq.get(st) ?? 0)));
  let max: { step: number; norm: number } | null = envMax;
  for (let i = 0; i < steps.length; i++) {
    if (Number.isFinite(norms[i]) && (!max || norms[i] > max.norm)) max = { step: steps[i], norm: norms[i] };
    if (!Number.isFinite(norms[i]) && (firstNonFinite === null || steps[i] < firstNonFinite)) firstNonFinite = steps[i];
  }
  const lastI = steps.length - 1;
  // Update ratio at the last step where every tensor has finite param and update norms.
  let updateRatio: { step: number; ratio: number } | null = null;
  const p = ts.map((t) => take(t.id, 'paramNorm'));
  const u = ts.map((t) => take(t.id, 'updateNorm'));
  const n0 = p[0].steps.length;
  for (let i = n0 - 1; i >= 0 && updateRatio === null; i--) {
    let pp = 0;
    let uu = 0;
    let ok = true;
    for (let k = 0; k < ts.length && ok; k++) {
      const pv = p[k].values[i];
      const uv = u[k].values[i];
      if (pv === undefined || uv === undefined || !Number.isFinite(pv) || !Number.isFinite(uv)) ok = false;
      else {
        pp += pv * pv;
        uu += uv * uv;
      }
    }
    if (ok && pp > 0) updateRatio = { step: p[0].steps[i], ratio: Math.sqrt(uu) / Math.sqrt(pp) };
  }
  return {
    layer,
    layerType: ts[0].layerType,
    tensors: ts.map((t) => t.name),
    steps,
    norms,
    last: lastI >= 0 ? { step: steps[lastI], norm: norms[lastI] } : null,
    max,
    firstNonFiniteStep: firstNonFinite,
    updateRatio,
    ...originOf(ts),
  };
}

function originOf(ts: readonly TensorInfo[]): Pick<LayerStats, 'builtIn' | 'aliases'> {
  const out: Pick<LayerStats, 'builtIn' | 'aliases'> = {};
  const built = ts.find((t) => t.builtIn)?.builtIn;
  if (built) out.builtIn = built;
  const aliases = ts.flatMap((t) => t.aliases ?? []);
  if (aliases.length) out.aliases = aliases;
  return out;
}

/** "built in transformers: modeling_bert.py:154 · also: lm_head.weight" as hover Markdown (the file
 * a link to that line), or null when the layer has neither. */
export function originMarkdown(s: Pick<LayerStats, 'builtIn' | 'aliases'>): string | null {
  const parts: string[] = [];
  const b = s.builtIn;
  if (b) {
    const where = `${b.file.split(/[\\/]/).pop() ?? b.file}:${b.line}`;
    parts.push(`built in ${mdEscape(b.package)}: [${mdEscape(where)}](${pathToFileURL(b.file).href}#L${b.line},${b.column})`);
  }
  if (s.aliases?.length) parts.push(`also: ${s.aliases.map(mdEscape).join(', ')}`);
  return parts.length ? parts.join(' · ') : null;
}

// -----------------------------------------------------------------------------------------------
// The hover.

export interface HoverModel {
  stats: LayerStats;
  findings: readonly Finding[];
  /** Script name and state, e.g. "exploding-mlp.js, ended at step 19". */
  runLabel: string;
  /** command: link that opens the panel at the layer (already encoded), or null. */
  panelLink: string | null;
  /** Put the SVG sparkline in (else only the unicode one). */
  svg: boolean;
  /** The hovered layer: a finding about several layers then shows this one's own numbers. */
  layer?: string | null;
}

const LEVEL_ICON: Record<DiagnosticLevel, string> = { error: '$(error)', warning: '$(warning)', info: '$(info)' };

/** Escapes Markdown's special characters in text that comes from the run (names, messages), its bidirectional controls shown as `\u202E`. */
export function mdEscape(s: string): string {
  return neutralise(s).replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}

export function hoverMarkdown(m: HoverModel): string {
  const s = m.stats;
  const out: string[] = [];
  out.push(`**GradScope · ${mdEscape(s.layer)}** (${mdEscape(s.layerType)}, ${s.tensors.length} tensor${s.tensors.length === 1 ? '' : 's'}) — ${mdEscape(m.runLabel)}`);
  out.push('');
  const blocks = sparklineBlocks(s.norms);
  if (s.norms.length) {
    const first = s.steps[0];
    const last = s.steps[s.steps.length - 1];
    const bad = blocks.includes('×');
    // The SVG renders in VS Code's hovers (checked in code-server 1.100); the unicode line is the
    // text form (and what a client that drops images shows as the image's alt text).
    if (m.svg) {
      out.push(`![‖g‖ ${blocks}](${sparklineDataUri(s.norms, { width: 240, height: 36 })})  `);
      out.push(`‖g‖ steps ${first}–${last}, log scale${bad ? ' (red: non-finite)' : ''}`);
    } else out.push(`\`${blocks}\` ‖g‖ steps ${first}–${last}, log scale${bad ? ' (× non-finite)' : ''}`);
    out.push('');
  }
  const ur = s.updateRatio;
  const urNote = ur && s.last && ur.step !== s.last.step ? ` (step ${ur.step}, the last finite)` : ur ? ` (step ${ur.step})` : '';
  out.push(
    [
      `‖g‖ last **${s.last ? fmt(s.last.norm) : '–'}**${s.last ? ` (step ${s.last.step})` : ''}`,
      `max **${s.max ? fmt(s.max.norm) : '–'}**${s.max ? ` (step ${s.max.step})` : ''}`,
      `first non-finite step **${s.firstNonFiniteStep === null ? 'none' : String(s.firstNonFiniteStep)}**`,
      `update ratio ‖Δw‖/‖w‖ **${ur === null ? '–' : fmt(ur.ratio)}**${urNote}`,
    ].join(' · '),
  );
  out.push('');
  const origin = originMarkdown(s);
  if (origin) {
    out.push(origin);
    out.push('');
  }
  if (m.findings.length) {
    for (const f of m.findings) {
      out.push(`${LEVEL_ICON[levelOf(f)]} **${f.kind}** — ${mdEscape(f.message)}`);
      const own = m.layer && f.locations?.length ? layerEvidence(f, m.layer) : null;
      if (own && m.layer) out.push(`  _This layer (${mdEscape(m.layer)}${f.layer === m.layer ? ', primary' : ''}, 1 of ${f.locations!.length} affected):_ ${mdEscape(own)}`);
      if (f.remedies.length) out.push(`  _Remedies:_ ${f.remedies.map((r) => mdEscape(r.title)).join('; ')}`);
      out.push('');
    }
  }
  if (m.panelLink) out.push(`[$(graph) Open in the GradScope panel](${m.panelLink})`);
  return out.join('\n');
}

/** The run's global gradient norm as LayerStats (for global findings, shown on the optimizer's line). */
export function globalStats(store: RunStore): LayerStats {
  const c = store.globalNorm();
  const steps = Array.from(c.steps);
  const norms = Array.from(c.values, (v, i) => (c.nonFinite[i] ? NaN : v));
  let max: { step: number; norm: number } | null = null;
  let firstNonFinite: number | null = null;
  for (let i = 0; i < steps.length; i++) {
    if (Number.isFinite(norms[i]) && (!max || norms[i] > max.norm)) max = { step: steps[i], norm: norms[i] };
    if (!Number.isFinite(norms[i]) && firstNonFinite === null) firstNonFinite = steps[i];
  }
  const n = steps.length;
  return {
    layer: 'all layers (global norm)',
    layerType: 'global',
    tensors: store.tensors.map((t) => t.name),
    steps,
    norms,
    last: n ? { step: steps[n - 1], norm: norms[n - 1] } : null,
    max,
    firstNonFiniteStep: store.summary().firstNonFiniteStep ?? firstNonFinite,
    updateRatio: null,
  };
}
