// When the tfjs probe measures paramNorm/updateNorm (the weights tier): dense at first, then on an
// interval tuned to a budget of the step time, or fixed by GRADSCOPE_SAMPLED_EVERY.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WEIGHTS_BUDGET, WEIGHTS_DENSE_STEPS, WEIGHTS_EVERY_MAX, WeightsSchedule } from '../../../src/probe/tfjs/weightsSchedule';

/** Steps in [0, n) the schedule measures, taking each step it calls due. */
function run(s: WeightsSchedule, n: number, onStep?: (step: number) => void): number[] {
  const out: number[] = [];
  for (let step = 0; step < n; step++) {
    onStep?.(step);
    if (s.due(step)) {
      s.taken(step);
      out.push(step);
    }
  }
  return out;
}

describe('weights tier schedule', () => {
  it('automatic: every one of the first steps, then the tuned interval', () => {
    const s = new WeightsSchedule(0);
    // The tier costs 2 ms of a 20 ms step: 1 % of the step allows it every 10th step.
    const steps = run(s, 60, () => s.tune(2, 20));
    assert.equal(s.every, Math.ceil(2 / (WEIGHTS_BUDGET * 20)));
    assert.deepEqual(
      steps.filter((x) => x < WEIGHTS_DENSE_STEPS),
      Array.from({ length: WEIGHTS_DENSE_STEPS }, (_, i) => i),
    );
    assert.deepEqual(
      steps.filter((x) => x >= WEIGHTS_DENSE_STEPS),
      [29, 39, 49, 59],
    );
  });

  it('automatic: a cheap tier stays on every step; a dear one is capped', () => {
    const cheap = new WeightsSchedule(0);
    assert.equal(run(cheap, 50, () => cheap.tune(0.01, 20)).length, 50);
    const dear = new WeightsSchedule(0);
    run(dear, 30, () => dear.tune(1000, 10));
    assert.equal(dear.every, WEIGHTS_EVERY_MAX);
  });

  it('automatic, with no cost known yet: every other step after the dense ones (so a cost can be learnt)', () => {
    const s = new WeightsSchedule(0);
    assert.deepEqual(
      run(s, 26).filter((x) => x >= WEIGHTS_DENSE_STEPS),
      [21, 23, 25],
    );
  });

  it('fixed interval: exactly every N steps from step 0, tuning ignored', () => {
    const s = new WeightsSchedule(7);
    assert.deepEqual(
      run(s, 30, () => s.tune(100, 1)),
      [0, 7, 14, 21, 28],
    );
    assert.equal(new WeightsSchedule(1).due(123), true);
  });
});
