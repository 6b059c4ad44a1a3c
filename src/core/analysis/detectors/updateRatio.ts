// Update/weight ratio: ‖Δw‖/‖w‖ per step (median over the kernels that receive a gradient) out of
// a sane range for most of the recent steps: too high (the learning rate overshoots) or too low
// (training barely moves). DeepDiagnosis's range is [1e-5, 1e-1] for lr·‖Δw‖/‖w‖; here ‖Δw‖ is the
// update actually applied, so the learning rate is already in it.
import { formatNumber } from '../../protocol/float';
import type { Detector, DetectorEnv } from '../detector';
import type { Finding } from '../finding';
import { ev, isFiniteNum, median, remedies, type StepRow } from '../model';
import { medianUpdateRatio, updateRatios } from './exploding';

export const UPDATE_RATIO = {
  high: 0.1,
  low: 1e-5,
  /** Steps looked at (the most recent finite ones)… */
  window: 20,
  /** …of which at least this many must be out of range. */
  minSteps: 10,
};

interface Hit {
  dir: 'high' | 'low';
  step: number;
  since: number;
  median: number;
  lastStep: number;
}

export class UpdateRatioDetector implements Detector {
  private readonly recent: { step: number; r: number; max: number }[] = [];
  private hit: Hit | null = null;

  step(row: StepRow, env: DetectorEnv): void {
    if (row.nonFinite.length > 0) return;
    // High: most kernels overshoot (median). Low: even the kernel that moves most barely moves
    // (max), so layers starved by vanishing gradients do not read as a learning rate too low.
    const r = medianUpdateRatio(row, env.ctx);
    const rs = updateRatios(row, env.ctx);
    if (!isFiniteNum(r)) return;
    // A net whose kernels mostly get no gradient at all (dead units) does not read as "lr too low" either.
    let kernels = 0;
    for (const l of env.ctx.layers) for (const id of l.kernels) if (!row.absent[id]) kernels++;
    const mostlyLive = rs.length * 2 >= kernels;
    this.recent.push({ step: row.step, r, max: mostlyLive ? Math.max(...rs) : NaN });
    if (this.recent.length > UPDATE_RATIO.window) this.recent.shift();
    if (this.hit) {
      this.hit.lastStep = row.step;
      return;
    }
    const hi = this.recent.filter((x) => x.r > UPDATE_RATIO.high);
    const lo = this.recent.filter((x) => x.max < UPDATE_RATIO.low);
    const pick = hi.length >= UPDATE_RATIO.minSteps ? { dir: 'high' as const, xs: hi } : lo.length >= UPDATE_RATIO.minSteps ? { dir: 'low' as const, xs: lo } : null;
    if (pick) this.hit = { dir: pick.dir, step: row.step, since: pick.xs[0].step, median: median(pick.xs.map((x) => (pick.dir === 'high' ? x.r : x.max))), lastStep: row.step };
  }

  findings(env: DetectorEnv, _final: boolean): Finding[] {
    const h = this.hit;
    if (!h) return [];
    // Tiny updates in a run whose gradients vanish are that finding's symptom, not a learning rate too low.
    if (h.dir === 'low' && env.shared.vanishingAt !== null) return [];
    const { ctx } = env;
    const high = h.dir === 'high';
    return [
      {
        id: 'update-ratio:global',
        kind: 'update-ratio',
        severity: high ? 'warning' : 'info',
        step: h.step,
        stepRange: [h.since, h.lastStep],
        tensors: [],
        layer: null,
        source: ctx.optimizerSource,
        message: high
          ? `Learning rate too high: each step changes the weights by ${formatNumber(h.median * 100)}% (median ‖Δw‖/‖w‖ over kernels), above ${UPDATE_RATIO.high * 100}% on ${UPDATE_RATIO.minSteps}+ of the last ${UPDATE_RATIO.window} steps.`
          : `Learning rate too low: each step changes the weights by at most ${formatNumber(h.median)} of their norm (largest ‖Δw‖/‖w‖ over kernels), below ${UPDATE_RATIO.low} on ${UPDATE_RATIO.minSteps}+ of the last ${UPDATE_RATIO.window} steps; training barely moves.`,
        evidence: {
          direction: h.dir,
          medianRatio: ev(h.median),
          low: UPDATE_RATIO.low,
          high: UPDATE_RATIO.high,
          sinceStep: h.since,
          detectedAt: h.step,
        },
        remedies: remedies(high ? ['lower-lr', 'clip-global-norm'] : ['raise-lr'], env.ctx.framework),
      },
    ];
  }
}
