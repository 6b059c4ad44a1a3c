// Dead units: a layer whose gradients stay (mostly) exactly zero. Two signals:
//  - every STEP: all of the layer's tensors have a gradient norm of exactly 0 (and no NaN/Inf);
//  - DETAIL (every k steps): the zero fraction of the layer's kernel gradient is ≥ 70 %
//    (AUTOTRAINER's dying-ReLU threshold), for several detail samples spanning enough steps.
// A dead layer also zeroes the gradients of every layer below it, so the finding names the
// output-most dead layer (where the gradient stops) as its primary and carries every layer whose
// own gradient meets one of the two signals in `locations` (a stack that died together), each
// layer's own zero fraction in `evidence.byLayer`.
// Mostly-zero is the normal shape of a lookup table's gradient (nn.Embedding: only the rows of the
// batch's tokens get one), so lookup layers are not judged by their zero fraction (docs/findings.md).
import { formatNumber } from '../../protocol/float';
import type { DetailMsg } from '../../protocol/messages';
import type { Detector, DetectorEnv } from '../detector';
import type { Finding, RemedyId } from '../finding';
import { byLayer, ev, initRemedies, isFiniteNum, locationsOf, remedies, type LayerInfo, type StepRow } from '../model';

export const DEAD_UNITS = {
  /** Zero fraction of a kernel's gradient from which its units count as mostly dead. */
  zeroFrac: 0.7,
  /** Consecutive steps of an all-zero layer gradient. */
  zeroSteps: 10,
  /** Mean zero fraction over this many most recent detail samples… */
  details: 5,
  /** …covering at least this many steps. */
  detailSpan: 10,
};

/**
 * Mean zero fraction over the last `details` samples, when they span enough steps; null when
 * there are too few samples yet. `since`: the first step of the trailing run at or above the threshold.
 */
function recentZero(hist: readonly DetailMsg[]): { mean: number; since: number } | null {
  const n = DEAD_UNITS.details;
  if (hist.length < n) return null;
  const last = hist[hist.length - 1];
  if (last.step - hist[hist.length - n].step < DEAD_UNITS.detailSpan - 1) return null;
  let zf = 0;
  for (let j = hist.length - n; j < hist.length; j++) zf += hist[j].zeroFrac;
  let i = hist.length;
  while (i > 0 && hist[i - 1].zeroFrac >= DEAD_UNITS.zeroFrac) i--;
  return { mean: zf / n, since: hist[Math.min(i, hist.length - 1)].step };
}

interface Streak {
  since: number;
  count: number;
  lastStep: number;
}

interface DeadLayer {
  layer: LayerInfo;
  since: number;
  zeroFrac: number;
  via: 'zero-norm' | 'zero-fraction';
}

export class DeadUnitsDetector implements Detector {
  private streaks: (Streak | null)[] = [];
  private firstStep = NaN;
  private lastStep = NaN;

  step(row: StepRow, env: DetectorEnv): void {
    if (!isFiniteNum(this.firstStep)) this.firstStep = row.step;
    this.lastStep = row.step;
    const bad = new Set(row.nonFinite);
    for (const l of env.ctx.layers) {
      // Absent tensors (no gradient at this step) are missing data: a layer with none present
      // neither extends nor breaks its streak.
      let present = 0;
      let zero = true;
      for (const id of l.tensors) {
        if (row.absent[id]) continue;
        present++;
        if (bad.has(id) || !(row.norm[id] === 0)) {
          zero = false;
          break;
        }
      }
      if (present === 0) continue;
      const s = this.streaks[l.index];
      if (zero) {
        if (s) {
          s.count++;
          s.lastStep = row.step;
        } else this.streaks[l.index] = { since: row.step, count: 1, lastStep: row.step };
      } else this.streaks[l.index] = null;
    }
  }

  private deadLayers(env: DetectorEnv): DeadLayer[] {
    const out: DeadLayer[] = [];
    for (const l of env.ctx.layers) {
      const s = this.streaks[l.index];
      if (s && s.count >= DEAD_UNITS.zeroSteps) {
        out.push({ layer: l, since: s.since, zeroFrac: 1, via: 'zero-norm' });
        continue;
      }
      // Detail history of the layer's largest kernel: the trailing run of mostly-zero samples.
      let k = -1;
      let size = -1;
      for (const id of l.kernels) {
        const n = env.ctx.tensors[id].shape.reduce((a, b) => a * b, 1);
        if (n > size) {
          size = n;
          k = id;
        }
      }
      if (k < 0) continue;
      // A lookup table's gradient is mostly zero by construction (only the batch's rows).
      if (l.lookup) continue;
      const z = recentZero(env.details(k));
      if (!z || z.mean < DEAD_UNITS.zeroFrac) continue;
      // A kernel gradient can also be all zero because the layer's INPUT is all zero (a dead layer
      // below): then its bias still gets a gradient. Units are dead only if the bias is silent too.
      let biasAlive = false;
      for (const id of l.tensors) {
        if (env.ctx.tensors[id].shape.length !== 1) continue;
        const zb = recentZero(env.details(id));
        if (zb && zb.mean < DEAD_UNITS.zeroFrac) biasAlive = true;
      }
      if (!biasAlive) out.push({ layer: l, since: z.since, zeroFrac: z.mean, via: 'zero-fraction' });
    }
    return out;
  }

  findings(env: DetectorEnv, _final: boolean): Finding[] {
    const dead = this.deadLayers(env);
    if (dead.length === 0) return [];
    const { ctx, shared } = env;
    const root = dead.reduce((a, b) => (b.layer.index > a.layer.index ? b : a));
    // Units that died in an explosion that went on to NaN/Inf are part of it: those findings cover them.
    if (shared.explodingFrom !== null && root.since >= shared.explodingFrom && shared.firstNonFiniteAt !== null) return [];
    const below = dead.filter((d) => d !== root).map((d) => d.layer.name);
    const afterBlowUp = shared.explodingAt !== null && shared.explodingAt <= root.since;
    const fromStart = root.since === this.firstStep && !afterBlowUp;
    const ids: RemedyId[] = fromStart
      ? [...(root.layer.lookup ? [] : (['zero-bias-init'] as const)), ...initRemedies(root.layer), 'lower-lr']
      : afterBlowUp
        ? ['clip-global-norm', 'lower-lr', ...initRemedies(root.layer)]
        : ['lower-lr', 'clip-global-norm', ...initRemedies(root.layer)];
    const locs = locationsOf(
      dead.map((d) => d.layer),
      ctx,
    );
    const pct = formatNumber(root.zeroFrac * 100);
    const how = root.via === 'zero-norm' ? `its gradient has been exactly zero` : `${pct}% of its kernel gradient has been exactly zero`;
    const when = fromStart ? 'from the first step' : `since step ${root.since}${afterBlowUp ? ' (after the gradient blew up)' : ''}`;
    return [
      {
        id: `dead-units:${root.layer.name}`,
        kind: 'dead-units',
        severity: 'warning',
        step: root.since,
        stepRange: [root.since, this.lastStep],
        tensors: root.layer.tensors.map((i) => ctx.tensors[i].name),
        layer: root.layer.name,
        source: root.layer.source,
        ...(locs ? { locations: locs } : {}),
        message: `Dead units in ${root.layer.name}: ${how} ${when}${below.length ? `; ${below.join(', ')} below it get no gradient either` : ''}.`,
        evidence: {
          zeroFraction: ev(root.zeroFrac),
          threshold: DEAD_UNITS.zeroFrac,
          sinceStep: root.since,
          lastStep: this.lastStep,
          signal: root.via,
          deadFromStart: fromStart ? 1 : 0,
          layersBelowDead: below.length ? below.join(', ') : null,
          deadLayers: dead.length,
          byLayer: byLayer([...dead].sort((a, b) => a.layer.index - b.layer.index).map((d) => [d.layer, `${formatNumber(d.zeroFrac * 100)}% zero (${d.via}, since step ${d.since})`])),
          explodingFlaggedAt: shared.explodingAt,
        },
        remedies: remedies(ids, env.ctx.framework),
      },
    ];
  }
}
