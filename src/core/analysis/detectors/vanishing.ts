// Vanishing gradients: the input-side layer's gradient norm (all its parameters) stays below a
// thousandth of the output-side layer's, step after step. Layers with exactly zero gradients are
// left to the dead-units detector.
import type { Detector, DetectorEnv } from '../detector';
import type { Finding } from '../finding';
import { ev, fmtNum, initRemedies, isFiniteNum, remedies, type AnalysisContext, type StepRow } from '../model';

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

  step(row: StepRow, env: DetectorEnv): void {
    if (row.nonFinite.length > 0) {
      this.streak = 0;
      this.cur = null;
      return;
    }
    const e = ends(row, env.ctx);
    if (!e) {
      this.streak = 0;
      this.cur = null;
      return;
    }
    const [a, b] = e;
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
        message: `Vanishing gradients: ${layer.name} (input side) gets ${fmtNum(f.ratio)}× the gradient of ${lastLayer.name} (‖g‖ ${fmtNum(f.firstNorm)} vs ${fmtNum(f.lastNorm)}), below ${VANISHING.ratio} for ${f.streak} steps since step ${f.since}.`,
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
        },
        remedies: remedies(initRemedies(layer), env.ctx.framework),
      },
    ];
  }
}
