// Vanishing gradients: the input-side layer's gradient norm (all its parameters) stays below a
// thousandth of the output-side layer's, step after step. Layers with exactly zero gradients are
// left to the dead-units detector.
// Every layer whose OWN ratio to the output-side layer stayed below the threshold for as many steps
// (not merely the layers between) is carried in `locations`, its own smallest ratio in `evidence.byLayer`.
import { formatNumber } from '../../protocol/float';
import type { Detector, DetectorEnv } from '../detector';
import type { Finding } from '../finding';
import { byLayer, ev, initRemedies, isFiniteNum, locationsOf, remedies, type AnalysisContext, type StepRow } from '../model';

export const VANISHING = {
  /** first-layer ‖g‖ / last-layer ‖g‖ below this (AUTOTRAINER's 1e-3)… */
  ratio: 1e-3,
  /** …for this many consecutive finite steps. */
  steps: 10,
};

interface State {
  since: number;
  first: number;
  last: number;
  ratio: number;
  firstNorm: number;
  lastNorm: number;
  minRatio: number;
}

function ends(row: StepRow, ctx: AnalysisContext): [number, number] | null {
  let a = -1;
  let b = -1;
  for (const l of ctx.layers) {
    // A lookup table's gradient covers only the batch's rows: its norm is not comparable to a dense layer's.
    if (l.lookup) continue;
    const n = row.layerNorm[l.index];
    if (!(n > 0) || !isFiniteNum(n)) continue;
    if (a < 0 && l.kernels.length > 0) a = l.index;
    b = l.index;
  }
  return a >= 0 && b > a ? [a, b] : null;
}

export class VanishingDetector implements Detector {
  private streak = 0;
  private cur: State | null = null;
  private found: (State & { step: number; streak: number; lastStep: number }) | null = null;
  /** Per layer: consecutive steps its own ratio to the output-side layer was below the threshold. */
  private below: number[] = [];
  /** Per layer: longest such run, and the smallest ratio seen in a run that reached VANISHING.steps. */
  private longest: number[] = [];
  private minOwn: number[] = [];

  /** Each layer's own ratio against the output-side layer b (skips lookup tables and zero norms). */
  private perLayer(row: StepRow, b: number, env: DetectorEnv): void {
    const fb = row.layerNorm[b];
    for (const l of env.ctx.layers) {
      if (l.index >= b) break;
      const n = row.layerNorm[l.index];
      const r = n / fb;
      if (l.lookup || l.kernels.length === 0 || !(n > 0) || !isFiniteNum(n) || !(r < VANISHING.ratio)) {
        this.below[l.index] = 0;
        continue;
      }
      const c = (this.below[l.index] ?? 0) + 1;
      this.below[l.index] = c;
      if (c > (this.longest[l.index] ?? 0)) this.longest[l.index] = c;
      if (c >= VANISHING.steps && !(r >= (this.minOwn[l.index] ?? Infinity))) this.minOwn[l.index] = r;
    }
  }

  step(row: StepRow, env: DetectorEnv): void {
    if (row.nonFinite.length > 0) {
      this.streak = 0;
      this.cur = null;
      this.below = [];
      return;
    }
    const e = ends(row, env.ctx);
    if (!e) {
      this.streak = 0;
      this.cur = null;
      this.below = [];
      return;
    }
    const [a, b] = e;
    this.perLayer(row, b, env);
    const fa = row.layerNorm[a];
    const fb = row.layerNorm[b];
    const r = fa / fb;
    if (r < VANISHING.ratio) {
      if (this.streak === 0 || !this.cur || this.cur.first !== a) this.cur = { since: row.step, first: a, last: b, ratio: r, firstNorm: fa, lastNorm: fb, minRatio: r };
      this.streak++;
      this.cur.ratio = r;
      this.cur.firstNorm = fa;
      this.cur.lastNorm = fb;
      this.cur.minRatio = Math.min(this.cur.minRatio, r);
      if (this.found && this.found.first === a) {
        this.found.lastStep = row.step;
        this.found.streak = Math.max(this.found.streak, this.streak);
        this.found.minRatio = Math.min(this.found.minRatio, r);
      } else if (!this.found && this.streak >= VANISHING.steps) {
        this.found = { ...this.cur, step: row.step, streak: this.streak, lastStep: row.step };
        env.shared.vanishingAt = row.step;
      }
    } else {
      this.streak = 0;
      this.cur = null;
    }
  }

  findings(env: DetectorEnv, _final: boolean): Finding[] {
    const f = this.found;
    if (!f) return [];
    const { ctx } = env;
    const layer = ctx.layers[f.first];
    const lastLayer = ctx.layers[f.last];
    const affected = ctx.layers.filter((l) => l.index < f.last && (this.longest[l.index] ?? 0) >= VANISHING.steps);
    if (!affected.includes(layer)) affected.unshift(layer);
    const locs = locationsOf(affected, ctx);
    return [
      {
        id: `vanishing-gradient:${layer.name}`,
        kind: 'vanishing-gradient',
        severity: 'warning',
        step: f.step,
        stepRange: [f.since, f.lastStep],
        tensors: layer.tensors.map((i) => ctx.tensors[i].name),
        layer: layer.name,
        source: layer.source,
        ...(locs ? { locations: locs } : {}),
        message: `Vanishing gradients: ${layer.name} (input side) gets ${formatNumber(f.ratio)}× the gradient of ${lastLayer.name} (‖g‖ ${formatNumber(f.firstNorm)} vs ${formatNumber(f.lastNorm)}), below ${VANISHING.ratio} for ${f.streak} steps since step ${f.since}.${affected.length > 1 ? ` ${affected.length} layers each stay below it: ${affected.map((l) => l.name).join(', ')}.` : ''}`,
        evidence: {
          ratio: ev(f.ratio),
          minRatio: ev(f.minRatio),
          threshold: VANISHING.ratio,
          firstLayerNorm: ev(f.firstNorm),
          lastLayerNorm: ev(f.lastNorm),
          lastLayer: lastLayer.name,
          sinceStep: f.since,
          steps: f.streak,
          layersBetween: f.last - f.first - 1,
          affectedLayers: affected.length,
          byLayer: byLayer(affected.map((l) => [l, `ratio ${formatNumber(this.minOwn[l.index] ?? f.minRatio)} (below ${VANISHING.ratio} for ${this.longest[l.index] ?? f.streak} steps)`])),
        },
        remedies: remedies(initRemedies(layer), env.ctx.framework),
      },
    ];
  }
}
