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
  /**
   * Too high, then settled, `window` steps or more after the detection: every ratio measured over the
   * last `window` steps in range, at least `settleSamples` of them (the sampled tier measures update
   * norms every step of the first 10, then every few dozen steps), and the median loss of the
   * last `lossSteps` steps below the one of the steps up to the detection by at least `settleLoss` of
   * it. A fresh model's first steps move its weights far from their initialisation while the loss
   * falls fast (pytorch-tutorial's linear regression: 43 % a step over its first ten, its one weight
   * crossing zero, then 1.3 % while the loss fell 28.6 → 0.34); a learning rate that overshoots keeps
   * them large, or the loss does not fall.
   */
  settleSamples: 1,
  lossSteps: 10,
  settleLoss: 0.05,
};

interface Hit {
  dir: 'high' | 'low';
  step: number;
  since: number;
  median: number;
  lastStep: number;
  /** Median loss of the window it was found in (NaN: unknown). */
  loss: number;
}

/** A high hit that settled: the window it was judged on, its median ratio and loss. */
interface Settled {
  from: number;
  to: number;
  samples: number;
  ratio: number;
  loss: number;
}

export class UpdateRatioDetector implements Detector {
  private readonly recent: { step: number; r: number; max: number }[] = [];
  private hit: Hit | null = null;
  /** The first high hit that settled (reported as info while no later hit stands). */
  private settled: { hit: Hit; how: Settled } | null = null;
  /** The loss of the last lossSteps steps (every step, measured or not). */
  private readonly losses: number[] = [];
  /** Ratios measured after the hit. */
  private after: { step: number; r: number }[] = [];

  step(row: StepRow, env: DetectorEnv): void {
    if (row.nonFinite.length > 0) return;
    if (isFiniteNum(row.loss)) {
      this.losses.push(row.loss);
      if (this.losses.length > UPDATE_RATIO.lossSteps) this.losses.shift();
    }
    if (this.hit?.dir === 'high') {
      this.hit.lastStep = row.step;
      this.watchSettling(this.hit, row, medianUpdateRatio(row, env.ctx));
      if (this.hit) return;
    }
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
    if (pick)
      this.hit = {
        dir: pick.dir,
        step: row.step,
        since: pick.xs[0].step,
        median: median(pick.xs.map((x) => (pick.dir === 'high' ? x.r : x.max))),
        lastStep: row.step,
        loss: this.losses.length ? median(this.losses) : NaN,
      };
  }

  /** A step after a high hit: whether it settled (see UPDATE_RATIO.settleSamples); then it looks again. */
  private watchSettling(h: Hit, row: StepRow, r: number): void {
    if (row.step <= h.step) return;
    if (isFiniteNum(r)) this.after.push({ step: row.step, r });
    // The ratios measured over the last `window` steps, the hit at least that far back.
    while (this.after.length && this.after[0].step <= row.step - UPDATE_RATIO.window) this.after.shift();
    const a = this.after;
    if (a.length < UPDATE_RATIO.settleSamples || row.step - h.step < UPDATE_RATIO.window || !a.every((x) => x.r <= UPDATE_RATIO.high)) return;
    const loss = median(this.losses);
    if (!(isFiniteNum(h.loss) && this.losses.length && loss <= h.loss - UPDATE_RATIO.settleLoss * Math.abs(h.loss))) return;
    this.settled ??= { hit: h, how: { from: a[0].step, to: a[a.length - 1].step, samples: a.length, ratio: median(a.map((x) => x.r)), loss } };
    // Looks again, from the measures since the hit: a later overshoot is a warning again.
    this.hit = null;
    this.after = [];
    this.recent.length = 0;
  }

  findings(env: DetectorEnv, _final: boolean): Finding[] {
    if (!this.hit && this.settled) return [settledFinding(this.settled.hit, this.settled.how, env)];
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

function settledFinding(h: Hit, how: Settled, env: DetectorEnv): Finding {
  const pct = (x: number): string => `${formatNumber(x * 100)}%`;
  return {
    id: 'update-ratio:global',
    kind: 'update-ratio',
    severity: 'info',
    step: h.step,
    stepRange: [h.since, how.to],
    tensors: [],
    layer: null,
    source: env.ctx.optimizerSource,
    message:
      `Large first updates, then settled: each step changed the weights by ${pct(h.median)} (median ‖Δw‖/‖w‖ over kernels) up to step ${h.step}, ` +
      `then by ${pct(how.ratio)} ${how.samples === 1 ? `at step ${how.from}` : `over the ${how.samples} steps measured from ${how.from} to ${how.to}`}, under ${UPDATE_RATIO.high * 100}%, while the loss fell from ${formatNumber(h.loss)} to ${formatNumber(how.loss)} (medians of ${UPDATE_RATIO.lossSteps} steps): ` +
      'the first steps moved the weights far from their initialisation, as a fresh model does.',
    evidence: {
      direction: 'high',
      medianRatio: ev(h.median),
      low: UPDATE_RATIO.low,
      high: UPDATE_RATIO.high,
      sinceStep: h.since,
      detectedAt: h.step,
      settled: 1,
      settledSteps: `${how.from}–${how.to}`,
      settledRatio: ev(how.ratio),
      lossAtDetection: ev(h.loss),
      settledLoss: ev(how.loss),
    },
    remedies: [],
  };
}
