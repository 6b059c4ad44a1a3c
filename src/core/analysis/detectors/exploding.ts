// Exploding gradients: the global gradient norm grows by orders of magnitude within a few steps
// while the loss does not fall. Detected on the growth itself, so it fires before the first
// non-finite step whenever the norm grows before it. See docs/findings.md.
// Where it is: a layer whose initialisation is too large (each such layer in `locations`), or the
// layer that leads the growth. A global explosion (the learning rate, or no layer leading) still
// names where it starts in `locations`: the recurrent layer of a recurrent net, else the layer whose
// norm grew fastest.
import { formatNumber } from '../../protocol/float';
import type { Detector, DetectorEnv } from '../detector';
import type { Finding, RemedyId } from '../finding';
import type { FindingLocation } from '../finding';
import {
  byLayer,
  ev,
  gainOf,
  initRemedies,
  isFiniteNum,
  isRecurrentLayerType,
  locationOf,
  locationsOf,
  median,
  remedies,
  type AnalysisContext,
  type LayerInfo,
  type StepRow,
} from '../model';

export const EXPLODING = {
  /** Finite steps kept for the baseline (their median). */
  window: 10,
  /** One jump: norm ≥ this × the median of the previous `window` finite steps. */
  jumpFactor: 100,
  /** Sustained growth: norm ≥ this × the value where the current non-decreasing run began… */
  runFactor: 20,
  /** …over at least this many rising steps. */
  runSteps: 2,
  /** A kernel whose initial gain rms(W)·√fan-in is at least this is initialised too large (He: √2). */
  gainTooLarge: 2,
  /** Initial gains are trusted only where the first update moved the weights by less than this. */
  reliableRatio: 0.3,
  /** A layer leads the growth when its growth is this many times that of every other layer. */
  leadFactor: 3,
  /** The norm must also reach this × the largest norm seen before (a new high). */
  newHigh: 5,
  /** A decade jump: ≥ this × the median AND ≥ this × every earlier norm, the loss not clearly falling… */
  decade: 10,
  /**
   * …over a baseline of at least this many finite steps; over a shorter one (one or two steps, a weak
   * median) the jump must be `shortDecade` ×. pytorch/examples' Forward-Forward: its first step's norm
   * was ×12.7 below the next one's, and the norm then swung between 0.001 and 0.05 while the loss
   * fell; a learning rate that kills the ReLUs at once jumps ×87 (dead-relu-hugestep).
   */
  decadeBaseline: 3,
  shortDecade: 30,
  /** Median first-step update ratio above which the learning rate is ranked first. */
  highRatio: 0.1,
  /**
   * A transient: after a detection, the last `settleWindow` finite steps (all after it, at least that
   * many) have a median norm within `settleFactor` × of the baseline it was measured against (far
   * below it is a model the spike broke: dead-relu-hugestep's ReLUs, killed at once), the last
   * `settleQuiet` of them stay under `decade` × that baseline, none reached the detected norm, no step
   * went non-finite, and their median loss is below the baseline's by at least `settleLoss` of it.
   */
  settleWindow: 20,
  settleQuiet: 10,
  settleFactor: 3,
  settleLoss: 0.05,
};

interface Detection {
  /** Per-layer baseline norms (median over the baseline rows). */
  layerBase: Float64Array;
  step: number;
  base: number;
  baseStep: number;
  norm: number;
  lossBase: number;
  loss: number;
  baseRow: StepRow;
  row: StepRow;
}

/** A detection that settled (EXPLODING.settle*): the run went on training with its norm back down. */
interface Settled {
  /** The last steps it was judged on, and their median norm and loss. */
  from: number;
  to: number;
  norm: number;
  loss: number;
}

export interface InitGain {
  layer: number;
  tensorId: number;
  gain: number;
}

/** Kernels whose first-step gain is reliable and too large, input side first. */
export function initialGains(first: StepRow | null, ctx: AnalysisContext): InitGain[] {
  if (!first) return [];
  const out: InitGain[] = [];
  for (const l of ctx.layers) {
    // A lookup table (nn.Embedding: N(0, 1), one row per token) has no fan-in to judge a gain by.
    if (l.lookup) continue;
    for (const id of l.kernels) {
      const p = first.paramNorm[id];
      const u = first.updateNorm[id];
      if (!(p > 0) || !isFiniteNum(p)) continue;
      if (isFiniteNum(u) && u / p > EXPLODING.reliableRatio) continue;
      const g = gainOf(p, ctx.tensors[id].shape, ctx.framework);
      if (isFiniteNum(g)) out.push({ layer: l.index, tensorId: id, gain: g });
    }
  }
  return out;
}

/** Median over kernels of ‖Δw‖/‖w‖ at a row (NaN when no kernel has both). */
export function medianUpdateRatio(row: StepRow, ctx: AnalysisContext): number {
  return median(updateRatios(row, ctx));
}

/** ‖Δw‖/‖w‖ of each kernel that received a non-zero gradient and has both norms. */
export function updateRatios(row: StepRow, ctx: AnalysisContext): number[] {
  const rs: number[] = [];
  for (const l of ctx.layers) {
    for (const id of l.kernels) {
      const p = row.paramNorm[id];
      const u = row.updateNorm[id];
      if (p > 0 && isFiniteNum(p) && isFiniteNum(u) && row.norm[id] > 0) rs.push(u / p);
    }
  }
  return rs;
}

function layerMedians(rows: readonly StepRow[], env: DetectorEnv): Float64Array {
  const L = env.ctx.layers.length;
  const out = new Float64Array(L);
  for (let i = 0; i < L; i++) out[i] = median(rows.map((r) => r.layerNorm[i]).filter(isFiniteNum));
  return out;
}

/**
 * Watches the global norm for an explosion. After one is detected it keeps watching: a spike the run
 * comes back from (the norm settles near where it was and the loss falls below where it was: an
 * LSTM language model at a high learning rate under clipping, whose first steps swing ×10) is
 * reported as a transient (info), and the detector looks for a new explosion from there on; a
 * non-finite step after it, or a run that ends before it settles, leaves it an error.
 */
export class ExplodingDetector implements Detector {
  private readonly rows: StepRow[] = [];
  private runBaseRow: StepRow | null = null;
  private runLen = 0;
  private prev = NaN;
  private maxBefore = 0;
  private stopped = false;
  private det: Detection | null = null;
  /** Steps after `det` (the last settleWindow of them), watched for it to settle. */
  private after: StepRow[] = [];
  /** The first explosion that settled, and how; reported while no later one is detected. */
  private transient: { d: Detection; settled: Settled } | null = null;

  step(row: StepRow, env: DetectorEnv): void {
    if (this.stopped) return;
    if (row.nonFinite.length > 0) {
      // Past the first non-finite step the norm means little; the non-finite finding takes over.
      this.stopped = true;
      return;
    }
    const g = row.globalNorm;
    if (!(g > 0) || !isFiniteNum(g)) return;
    if (this.det) {
      this.watchSettling(row, env);
      return;
    }
    if (this.rows.length > 0) {
      const norms = this.rows.map((r) => r.globalNorm);
      const base = median(norms);
      const losses = this.rows.map((r) => r.loss).filter(isFiniteNum);
      const lossBase = losses.length ? median(losses) : NaN;
      const lossKnown = isFiniteNum(row.loss) && isFiniteNum(lossBase);
      const lossOk = (!lossKnown || row.loss >= lossBase) && g >= EXPLODING.newHigh * this.maxBefore;
      // The loss of a step is computed before its update: at the first big jump it may not have risen yet.
      const decade = this.rows.length >= EXPLODING.decadeBaseline ? EXPLODING.decade : EXPLODING.shortDecade;
      const decadeOk = (!lossKnown || row.loss >= 0.5 * lossBase) && g >= decade * base && g >= decade * this.maxBefore;
      if (g >= this.prev) this.runLen++;
      else {
        this.runLen = 0;
        this.runBaseRow = row;
      }
      const runBase = this.runBaseRow ? this.runBaseRow.globalNorm : g;
      if ((lossOk && g >= EXPLODING.jumpFactor * base) || decadeOk) {
        const baseRow = this.rows[this.rows.length - 1];
        this.det = { layerBase: layerMedians(this.rows, env), step: row.step, base, baseStep: this.rows[0].step, norm: g, lossBase, loss: row.loss, baseRow, row };
      } else if (lossOk && this.runBaseRow && this.runLen >= EXPLODING.runSteps && g >= EXPLODING.runFactor * runBase) {
        const rb = this.runBaseRow;
        this.det = {
          layerBase: rb.layerNorm,
          step: row.step,
          base: runBase,
          baseStep: rb.step,
          norm: g,
          lossBase: isFiniteNum(rb.loss) ? rb.loss : lossBase,
          loss: row.loss,
          baseRow: rb,
          row,
        };
      }
      if (this.det) {
        env.shared.explodingAt = this.det.step;
        env.shared.explodingFrom = this.det.baseStep;
        return;
      }
    } else {
      this.runBaseRow = row;
    }
    this.prev = g;
    if (g > this.maxBefore) this.maxBefore = g;
    this.rows.push(row);
    if (this.rows.length > EXPLODING.window) this.rows.shift();
  }

  findings(env: DetectorEnv, _final: boolean): Finding[] {
    if (this.det) return [explodingFinding(this.det, env, null)];
    if (this.transient) return [explodingFinding(this.transient.d, env, this.transient.settled)];
    return [];
  }

  /** A finite step after the detection: whether the explosion has settled (EXPLODING.settle*). */
  private watchSettling(row: StepRow, env: DetectorEnv): void {
    const d = this.det!;
    const after = this.after;
    after.push(row);
    if (after.length > EXPLODING.settleWindow) after.shift();
    if (after.length < EXPLODING.settleWindow) return;
    const norms = after.map((r) => r.globalNorm);
    const losses = after.map((r) => r.loss).filter(isFiniteNum);
    const norm = median(norms);
    const loss = losses.length * 2 >= after.length ? median(losses) : NaN;
    const quiet = norms.slice(-EXPLODING.settleQuiet).every((v) => v < EXPLODING.decade * d.base);
    const settled =
      norm <= EXPLODING.settleFactor * d.base &&
      norm >= d.base / EXPLODING.settleFactor &&
      quiet &&
      norms.every((v) => v < d.norm) &&
      isFiniteNum(d.lossBase) &&
      isFiniteNum(loss) &&
      loss <= d.lossBase - EXPLODING.settleLoss * Math.abs(d.lossBase);
    if (!settled) return;
    if (!this.transient) this.transient = { d, settled: { from: after[0].step, to: row.step, norm, loss } };
    // Look for a new explosion from here: the settled steps are the baseline, and the spike the high
    // a new one must pass (a spike like it again is the same behaviour, still the transient).
    this.det = null;
    this.rows.length = 0;
    this.rows.push(...after.slice(-EXPLODING.window));
    this.maxBefore = Math.max(d.norm, ...norms);
    this.prev = row.globalNorm;
    this.runBaseRow = row;
    this.runLen = 0;
    this.after = [];
    // What other detectors read as "the explosion" (a NaN after it, units dead since): none now.
    env.shared.explodingAt = null;
    env.shared.explodingFrom = null;
  }
}

function explodingFinding(d: Detection, env: DetectorEnv, settled: Settled | null): Finding {
  const { ctx, shared } = env;
  const first = shared.firstRow;
  const tooLarge = initialGains(first, ctx).filter((g) => g.gain >= EXPLODING.gainTooLarge);
  const firstRatio = first ? medianUpdateRatio(first, ctx) : NaN;

  // Per-layer growth between the baseline row and the detection row.
  const growth = ctx.layers.map((l) => {
    const a = d.layerBase[l.index];
    const b = d.row.layerNorm[l.index];
    return a > 0 && isFiniteNum(b) ? b / a : NaN;
  });
  const order = growth
    .map((g, i) => [g, i] as const)
    .filter(([g]) => isFiniteNum(g))
    .sort((x, y) => y[0] - x[0]);

  let layer: LayerInfo | null = null;
  let cause: 'initialisation' | 'learning-rate' | 'layer-growth' | 'global';
  if (tooLarge.length > 0) {
    layer = ctx.layers[tooLarge[0].layer];
    cause = 'initialisation';
  } else if (firstRatio >= EXPLODING.highRatio) {
    // The very first update was already too large: the learning rate, a global cause.
    cause = 'learning-rate';
  } else if (order.length >= 2 && order[0][0] >= EXPLODING.leadFactor * order[1][0]) {
    layer = ctx.layers[order[0][1]];
    cause = 'layer-growth';
  } else if (order.length === 1) {
    layer = ctx.layers[order[0][1]];
    cause = 'layer-growth';
  } else cause = 'global';

  // Every layer with its own too-large initial gain; for a global explosion, where it starts.
  let locations: FindingLocation[] | undefined;
  let start: LayerInfo | null = null;
  if (cause === 'initialisation') {
    const ls = [...new Set(tooLarge.map((g) => g.layer))].map((i) => ctx.layers[i]);
    locations = locationsOf(ls, ctx);
  } else if (!layer) {
    const grown = order.filter(([, i]) => !ctx.layers[i].lookup);
    start = grown.map(([, i]) => ctx.layers[i]).find((l) => isRecurrentLayerType(l.layerType)) ?? (grown.length ? ctx.layers[grown[0][1]] : null);
    const loc = start ? locationOf(start, ctx) : null;
    if (loc) locations = [loc];
  }

  const ids: RemedyId[] =
    cause === 'initialisation' ? [...initRemedies(layer), 'clip-global-norm', 'lower-lr'] : cause === 'learning-rate' ? ['lower-lr', 'clip-global-norm'] : ['clip-global-norm', 'lower-lr'];

  const factor = d.norm / d.base;
  const over = d.step - d.baseStep;
  const where = layer ? `in ${layer.name}` : 'across all layers';
  const why =
    cause === 'initialisation'
      ? ` ${layer!.name}'s kernel starts ${formatNumber(tooLarge[0].gain / Math.SQRT2)}× larger than He initialisation (gain ${formatNumber(tooLarge[0].gain)}, He √2).`
      : cause === 'layer-growth'
        ? ` ${layer!.name} grows first (×${formatNumber(order[0][0])}, next ×${order.length > 1 ? formatNumber(order[1][0]) : '–'}).`
        : cause === 'learning-rate'
          ? ` The first update already moved the weights by ${formatNumber(firstRatio * 100)}% (median ‖Δw‖/‖w‖): the learning rate is too high.`
          : '';
  const starts = start ? ` It starts in ${start.name}${isRecurrentLayerType(start.layerType) ? ' (the recurrent layer)' : ''} (×${formatNumber(growth[start.index])}).` : '';
  const ev0: Record<string, number | string | null> = {
    growthFactor: ev(factor),
    overSteps: over,
    normAtStart: ev(d.base),
    startStep: d.baseStep,
    normAtDetection: ev(d.norm),
    lossAtStart: ev(d.lossBase),
    lossAtDetection: ev(d.loss),
    firstUpdateRatio: ev(firstRatio),
    cause,
  };
  if (layer) ev0.layerGrowth = ev(growth[layer.index]);
  ev0.growthByLayer = ctx.layers.map((l) => `${l.name} ×${formatNumber(growth[l.index])}`).join(', ');
  if (cause === 'initialisation') {
    ev0.initialGain = ev(tooLarge[0].gain);
    ev0.heGain = ev(Math.SQRT2);
    if (locations) {
      const best = new Map<number, number>();
      for (const g of tooLarge) best.set(g.layer, Math.max(best.get(g.layer) ?? 0, g.gain));
      ev0.byLayer = byLayer(
        [...best].sort((a, b) => a[0] - b[0]).map(([i, g]) => [ctx.layers[i], `initial gain ${formatNumber(g)} (≥ ${EXPLODING.gainTooLarge}), growth ×${formatNumber(growth[i])}`]),
      );
    }
  }
  if (start) {
    ev0.startLayer = start.name;
    ev0.byLayer = byLayer([[start, `growth ×${formatNumber(growth[start.index])}`]]);
  }
  if (shared.firstNonFiniteAt !== null && !settled) ev0.firstNonFiniteStep = shared.firstNonFiniteAt;
  let after = '';
  if (settled) {
    ev0.settled = 1;
    ev0.settledSteps = `${settled.from}–${settled.to}`;
    ev0.settledNorm = ev(settled.norm);
    ev0.settledLoss = ev(settled.loss);
    after = ` It settled: over steps ${settled.from}–${settled.to} the median norm was ${formatNumber(settled.norm)} (×${formatNumber(settled.norm / d.base)} of where it started) and the median loss ${formatNumber(settled.loss)}, below the ${formatNumber(d.lossBase)} before the spike: a transient the run came back from.`;
  }
  return {
    id: `exploding-gradient:${layer ? layer.name : 'global'}`,
    kind: 'exploding-gradient',
    severity: settled ? 'info' : 'error',
    step: d.step,
    stepRange: [d.baseStep, d.step],
    tensors: layer ? layer.tensors.map((i) => ctx.tensors[i].name) : [],
    layer: layer ? layer.name : null,
    source: layer ? layer.source : ctx.optimizerSource,
    ...(locations ? { locations } : {}),
    message: `${settled ? 'A gradient spike' : 'Exploding gradients'} ${where}: the gradient norm grew ×${formatNumber(factor)} in ${over} step(s) (${formatNumber(d.base)} → ${formatNumber(d.norm)}) by step ${d.step}.${why}${starts}${after}`,
    evidence: ev0,
    remedies: remedies(ids, ctx.framework),
  };
}
