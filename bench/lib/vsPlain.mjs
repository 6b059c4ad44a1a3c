// Each mode's figures against the plain run of the same round (the benches interleave rounds, so a
// ratio pairs runs made under the same load): the median ratio with its spread, and the medians.
import { median } from './bundle.mjs';

export const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

/**
 * runs: mode → per-round results with medianMs, meanMs, cpuMsPerStep, treeCpuS, wallS (and any of
 * `extra`), `plain` among them. Returns mode → figures; `extra` keys get their median too.
 */
export function figuresVsPlain(runs, modes, extra = []) {
  const col = (m, k) => runs[m].map((x) => x[k]);
  const figures = {};
  for (const m of modes) {
    const pair = (k) => runs[m].map((x, i) => x[k] / runs.plain[i][k]);
    figures[m] = {
      rounds: runs[m].length,
      ratioMedianStep: spread(pair('medianMs')),
      ratioMeanStep: spread(pair('meanMs')),
      ratioCpu: spread(pair('cpuMsPerStep')),
      medianStepMs: median(col(m, 'medianMs')),
      meanStepMs: median(col(m, 'meanMs')),
      cpuMsPerStep: median(col(m, 'cpuMsPerStep')),
      ...Object.fromEntries(extra.map((k) => [k, median(col(m, k))])),
      runCpuS: median(col(m, 'treeCpuS')),
      runWallS: median(col(m, 'wallS')),
    };
  }
  return figures;
}
