// When a step measures the weights tier: each parameter's norm and the norm of its change over the
// step (paramNorm, updateNorm). Same rules as the torch probe (gradscope_probe/sampled.py, where maxAbs is sampled too; here it is on every step, cheap on these backends).
//
// Measuring a step's update means a copy of every parameter before the step and a read of every
// parameter after it: on cpu/wasm that is as much memory traffic as the gradients themselves (and
// on the device path a clone plus a dozen ops per tensor). So it is measured on a schedule, like the
// detail tier: every step of the first WEIGHTS_DENSE_STEPS (the analysis reads step 0 to judge the
// initialisation, and the early steps to catch a learning rate that overshoots), then every
// `every` steps, an interval tuned so the tier costs WEIGHTS_BUDGET of the step time on average
// (1 where it is that cheap). Steps in between report paramNorm and updateNorm as NaN, which the
// protocol defines as "unknown": the detectors and the panel skip them. A tensor's first step always
// measures it, whatever the schedule (the probe sees to that).
//
// GRADSCOPE_SAMPLED_EVERY=N fixes the interval (1: every step).

export const WEIGHTS_DENSE_STEPS = 20;
/** Average share of the step interval the weights tier may take in automatic mode. */
export const WEIGHTS_BUDGET = 0.01;
export const WEIGHTS_EVERY_MAX = 100;

export class WeightsSchedule {
  readonly auto: boolean;
  every: number;
  private last: number | null = null;
  /** The tier's cost on a step that measured it, smoothed (ms). */
  private costMs = 0;

  /** `fixed`: 0 for the automatic interval, else measure every `fixed` steps. */
  constructor(fixed: number) {
    this.auto = !(fixed > 0);
    // Automatic: every other step until a cost is known (the device path learns the cost by
    // comparing steps with and without the tier, so it needs some without).
    this.every = this.auto ? 2 : Math.floor(fixed);
  }

  /** Whether step `step` measures the tier (decided before the step: the weights must be copied first). */
  due(step: number): boolean {
    if (!this.auto) return step % this.every === 0;
    if (step < WEIGHTS_DENSE_STEPS) return true;
    return this.last === null || step - this.last >= this.every;
  }

  /** Records that `step` measured the tier. */
  taken(step: number): void {
    this.last = step;
  }

  /**
   * Automatic interval from the cost of a step that measured the tier (the copies on the training
   * thread plus the worker's norms, which compete for a core on small machines) and the smoothed
   * step interval.
   */
  tune(costMs: number, stepIntervalMs: number): void {
    if (!this.auto || !(costMs > 0)) return;
    this.costMs = this.costMs ? 0.7 * this.costMs + 0.3 * costMs : costMs;
    if (!(stepIntervalMs > 0)) return;
    this.every = Math.min(WEIGHTS_EVERY_MAX, Math.max(1, Math.ceil(this.costMs / (WEIGHTS_BUDGET * stepIntervalMs))));
  }
}
