// Non-finite gradients: the first step and tensor where NaN/Inf appears, and whether it followed
// growth of the norm (an explosion overflowing) or appeared at once while the norm was flat or
// falling (typically from the loss: log(0), sqrt(0), 0/0).
import { formatNumber } from '../../protocol/float';
import type { Detector, DetectorEnv } from '../detector';
import type { Finding, RemedyId } from '../finding';
import { ev, isFiniteNum, median, remedies, type LayerInfo, type StepRow } from '../model';
import { EXPLODING, initialGains } from './exploding';

export const NON_FINITE = {
  /** Finite steps kept before the first non-finite one. */
  window: 10,
  /** "Followed growth": the last finite norm is ≥ this × the median of the early norms. */
  growthFactor: 10,
};

interface Hit {
  row: StepRow;
  /** Finite global norms before it, oldest first (the last `window`). */
  before: number[];
  early: number[];
  explodingAt: number | null;
}

export class NonFiniteDetector implements Detector {
  private readonly before: number[] = [];
  private readonly early: number[] = [];
  private hit: Hit | null = null;

  step(row: StepRow, env: DetectorEnv): void {
    if (this.hit) return;
    if (row.nonFinite.length > 0) {
      this.hit = { row, before: [...this.before], early: [...this.early], explodingAt: env.shared.explodingAt };
      env.shared.firstNonFiniteAt = row.step;
      return;
    }
    const g = row.globalNorm;
    if (!isFiniteNum(g)) return;
    this.before.push(g);
    if (this.before.length > NON_FINITE.window) this.before.shift();
    if (this.early.length < 5) this.early.push(g);
  }

  findings(env: DetectorEnv, _final: boolean): Finding[] {
    const h = this.hit;
    if (!h) return [];
    const { ctx } = env;
    const row = h.row;
    const affected = new Set(row.nonFinite);
    // Tensors that carry gradients at all in this step (a frozen or unused one does not count).
    const live = ctx.tensors.filter((t) => t && t.id < row.norm.length && !row.absent[t.id]);
    const all = live.every((t) => affected.has(t.id));
    // NaN spreads from where it is made towards the input: the output-most affected layer is the origin.
    let origin: LayerInfo | null = null;
    if (!all) {
      for (const id of row.nonFinite) {
        const l = ctx.layers[ctx.layerOf[id]];
        if (l && (!origin || l.index > origin.index)) origin = l;
      }
    }
    const last = h.before.length ? h.before[h.before.length - 1] : NaN;
    const earlyMed = median(h.early);
    const trend = h.before.length >= 2 ? last / h.before[0] : NaN;
    const grew = h.explodingAt !== null || (isFiniteNum(earlyMed) && earlyMed > 0 && last >= NON_FINITE.growthFactor * earlyMed);
    const lossBad = !isFiniteNum(row.loss) && !Number.isNaN(row.loss) ? true : Number.isNaN(row.loss) && h.before.length > 0 ? null : false;
    const cause = grew ? 'after-growth' : !isFiniteNum(row.loss) && row.loss === row.loss ? 'loss' : 'at-once';

    let ids: RemedyId[];
    if (grew) {
      const tooLarge = initialGains(env.shared.firstRow, ctx).some((g) => g.gain >= EXPLODING.gainTooLarge);
      ids = tooLarge ? ['clip-global-norm', 'he-init', 'lower-lr'] : ['clip-global-norm', 'lower-lr'];
    } else ids = ['guard-loss', 'lower-lr'];

    const names = row.nonFinite.slice(0, 8).map((i) => ctx.tensors[i]?.name ?? `tensor ${i}`);
    const firstName = names[0];
    const how = grew
      ? h.explodingAt !== null
        ? `after the gradient norm exploded (flagged at step ${h.explodingAt})`
        : `after the gradient norm grew ×${formatNumber(last / earlyMed)}`
      : `at once, while the gradient norm was ${trend < 0.9 ? `falling (×${formatNumber(trend)} over the last ${h.before.length} steps)` : 'flat'}${
          cause === 'loss' ? `; the loss was ${formatNumber(row.loss)}` : ''
        }: look for log(0), sqrt(0) or 0/0 in the loss`;
    const where = all ? `in every tensor (${affected.size})` : `first in ${firstName}${affected.size > 1 ? ` and ${affected.size - 1} more` : ''}`;
    return [
      {
        id: `non-finite-gradient:${origin ? origin.name : 'global'}`,
        kind: 'non-finite-gradient',
        severity: 'error',
        step: row.step,
        stepRange: [row.step, row.step],
        tensors: row.nonFinite.map((i) => ctx.tensors[i]?.name ?? `tensor ${i}`),
        layer: origin ? origin.name : null,
        source: origin ? origin.source : ctx.optimizerSource,
        message: `Non-finite gradients (NaN/Inf) from step ${row.step}, ${where}, ${how}.`,
        evidence: {
          firstStep: row.step,
          firstTensor: firstName,
          tensorsAffected: affected.size,
          tensorsTotal: live.length,
          nanCount: row.nanCount,
          infCount: row.infCount,
          lossAtStep: ev(row.loss),
          lossNonFinite: lossBad === null ? null : lossBad ? 1 : 0,
          normBefore: ev(last),
          normEarly: ev(earlyMed),
          normTrend: ev(trend),
          explodingFlaggedAt: h.explodingAt,
          cause,
        },
        remedies: remedies(ids, env.ctx.framework),
      },
    ];
  }
}
