// What the panel (and so the HTML report) shows for names and messages that come from the run: each
// neutralised (a bidirectional control shows as `\u202E` and cannot reorder the text around it) and
// cut to a length that fits, with the whole text kept for the element's title (hover). Pure: no DOM,
// so it is unit-tested; main.ts only writes these into elements.
import type { Finding } from '../src/core/analysis/finding';
import { locationText } from '../src/core/protocol/messages';
import type { RunWarning } from '../src/core/report/warnings';
import { SHOWN, shownText, type ShownText } from '../src/core/text';
import type { PanelOptimizer, PanelRunHeader, PanelTensor } from '../src/core/view/messages';

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
