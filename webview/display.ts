// What the panel (and so the HTML report) shows for names and messages that come from the run: each
// neutralised (a bidirectional control shows as `\u202E` and cannot reorder the text around it) and
// cut to a length that fits, with the whole text kept for the element's title (hover). Pure: no DOM,
// so it is unit-tested; main.ts only writes these into elements.
import type { Finding } from '../src/core/analysis/finding';
import { locationText } from '../src/core/protocol/messages';
import type { RunWarning } from '../src/core/report/warnings';
import { SHOWN, shownText, type ShownText } from '../src/core/text';
import type { PanelOptimizer, PanelRank, PanelRankKey, PanelRunHeader, PanelTensor } from '../src/core/view/messages';

/** A tensor, layer, optimizer or file name: one line. */
export const shownName = (s: string, max: number = SHOWN.name): ShownText => shownText(s, max, true);

/** A message (finding, warning, run status): line breaks kept. */
export const shownMessage = (s: string): ShownText => shownText(s, SHOWN.message);

/** A layer name where only a few characters fit (heatmap ticks): its end, which tells layers apart. */
export const shownNameEnd = (s: string, max: number): ShownText => shownText(s, max, true, 'end');

const basename = (p: string): string => p.split(/[\\/]/).pop() ?? p;

/** The tensor picker's option: "name [3×4]". */
export function tensorOption(t: PanelTensor): ShownText {
  const name = shownName(t.name);
  const shape = ` [${t.shape.join('×')}]`;
  return { text: name.text + shape, full: name.full + shape, clipped: name.clipped };
}

/** The optimizer picker's option: "name (Class) · 12 steps". */
export function optimizerOption(o: PanelOptimizer): ShownText {
  const name = shownName(o.name);
  const cls = o.className ? shownName(o.className) : null;
  const tail = ` · ${o.steps} steps`;
  return {
    text: `${name.text}${cls ? ` (${cls.text})` : ''}${tail}`,
    full: `${name.full}${cls ? ` (${cls.full})` : ''}${tail}`,
    clipped: name.clipped || (cls?.clipped ?? false),
  };
}

export interface HeaderDisplay {
  script: ShownText;
  /** The status's hover: the run's exit message. */
  statusTitle: string;
  backend: ShownText;
  backendTitle: string;
}

export function headerDisplay(h: PanelRunHeader): HeaderDisplay {
  return {
    script: shownName(h.script || 'GradScope'),
    statusTitle: shownMessage(h.statusMessage).full,
    backend: shownName([h.backend, h.device].filter((x) => x).join(' · ') || '—'),
    backendTitle: h.backendReason === null ? '' : shownMessage(h.backendReason).full,
  };
}

export function warningDisplay(w: RunWarning): ShownText {
  return shownMessage(w.step !== undefined ? `${w.message} (step ${w.step})` : w.message);
}

export interface FindingDisplay {
  message: ShownText;
  /** "kind · layer · steps a–b · file.py:12" */
  meta: ShownText;
  /** Evidence strings (layer lists can be long); numbers are formatted by the caller. */
  evidence: { key: ShownText; value: ShownText | number | null }[];
  remedies: { id: string; title: ShownText }[];
}

export function findingDisplay(f: Finding): FindingDisplay {
  const layer = f.layer ? shownName(f.layer) : null;
  const file = f.source ? shownName(basename(f.source.file)) : null;
  const where = (part: 'text' | 'full'): string => (f.source && file ? ` · ${locationText(file[part], f.source)}` : '');
  const meta = (part: 'text' | 'full'): string => `${f.kind}${layer ? ` · ${layer[part]}` : ''} · steps ${f.stepRange[0]}–${f.stepRange[1]}${where(part)}`;
  return {
    message: shownMessage(f.message),
    meta: { text: meta('text'), full: meta('full'), clipped: (layer?.clipped ?? false) || (file?.clipped ?? false) },
    evidence: Object.keys(f.evidence).map((k) => {
      const v = f.evidence[k];
      return { key: shownName(k), value: typeof v === 'string' ? shownText(v, SHOWN.value) : (v ?? null) };
    }),
    remedies: f.remedies.map((r) => ({ id: r.id, title: shownName(r.title) })),
  };
}

/** The rank picker's button: "Rank 1 ▾" (the script's own process when it shows no rank: it started its ranks and none has stepped). */
export function rankButtonText(shown: PanelRankKey | null, list: readonly PanelRank[]): string {
  if (!shown) return "Script's process ▾";
  const twin = list.filter((r) => r.rank === shown.rank && r.state === 'joined').length > 1;
  return `Rank ${shown.rank}${twin && shown.pid !== null ? ` (pid ${shown.pid})` : ''} ▾`;
}

/** A rank in the picker: "Rank 1" and what is known of it: "host vm · pid 4242 · 30 steps", or that it never joined. */
export function rankOptionText(r: PanelRank): { name: string; meta: ShownText } {
  if (r.state === 'missing') return { name: `Rank ${r.rank}`, meta: shownText('never joined: not observed', SHOWN.name, true) };
  const parts: string[] = [];
  if (r.host) parts.push(r.host);
  if (r.pid !== null) parts.push(`pid ${r.pid}`);
  parts.push(`${r.steps} step${r.steps === 1 ? '' : 's'}`);
  if (r.end && r.end !== 'completed') parts.push(r.end);
  return { name: `Rank ${r.rank}`, meta: shownText(parts.join(' · '), SHOWN.name, true) };
}

/** A rank's line in the cross-rank overlay: "rank 1" (with its pid when two processes said that rank). */
export const rankSeriesLabel = (k: PanelRankKey, twin: boolean): string => `rank ${k.rank}${twin && k.pid !== null ? ` (pid ${k.pid})` : ''}`;
