// The analyzer: turns a RunStore into Findings, incrementally as steps arrive and once more at
// the end. Pure TypeScript (no Node, no vscode).
//
// update() reads only the steps it has not seen (a cursor over the store's full-resolution ring),
// folds each into the detectors' bounded state, and returns the current findings; finish() does
// the same for what is left and evaluates once more with `final` set. The detectors see the same
// rows in the same order either way, so a live run and a replay of its file give the same findings.
//
// Steps that left the store's ring (R = 2048 by default) before the analyzer read them are not
// seen at full resolution; they are counted in `stats.stepsMissed`.
import type { DetailMsg, TensorInfo } from '../protocol/messages';
import type { RunStore, Series } from '../store/runStore';
import type { Detector, DetectorEnv, SharedFacts } from './detector';
import { DeadUnitsDetector } from './detectors/deadUnits';
import { ExplodingDetector } from './detectors/exploding';
import { NonFiniteDetector } from './detectors/nonFinite';
import { UpdateRatioDetector } from './detectors/updateRatio';
import { VanishingDetector } from './detectors/vanishing';
import type { Finding, Severity } from './finding';
import { buildLayers, isFiniteNum, type ActivationFamily, type AnalysisContext, type StepRow } from './model';
import type { SourceLocation } from '../protocol/messages';

export interface AnalyzerOptions {
  /** Activation family of a tensor's layer when the caller can tell (e.g. from the source line). */
  activationOf?: (t: TensorInfo) => ActivationFamily | null;
  /** Where the optimizer was built, when known: global findings point there. */
  optimizerSource?: SourceLocation | null;
}

export interface AnalyzerStats {
  updates: number;
  stepsSeen: number;
  stepsMissed: number;
  /** Total milliseconds spent in update()/finish() (needs a clock: performance.now when present). */
  ms: number;
  maxMs: number;
}

const SEVERITY_RANK: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/** Findings in a stable order: by severity, then step, then id. */
export function sortFindings(fs: Finding[]): Finding[] {
  return fs.sort((a, b) => SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || a.step - b.step || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export class Analyzer {
  private ctx: AnalysisContext = { tensors: [], layers: [], layerOf: [], optimizerSource: null, framework: 'tfjs' };
  private tensorCount = -1;
  private cursor = -Infinity;
  private readonly detectors: Detector[] = [new ExplodingDetector(), new NonFiniteDetector(), new VanishingDetector(), new DeadUnitsDetector(), new UpdateRatioDetector()];
  private readonly shared: SharedFacts = { firstRow: null, explodingAt: null, explodingFrom: null, vanishingAt: null, firstNonFiniteAt: null };
  private readonly env: DetectorEnv;
  private current: Finding[] = [];
  private finished = false;
  readonly stats: AnalyzerStats = { updates: 0, stepsSeen: 0, stepsMissed: 0, ms: 0, maxMs: 0 };

  constructor(
    private readonly store: RunStore,
    private readonly opts: AnalyzerOptions = {},
  ) {
    const self = this;
    this.env = {
      get ctx() {
        return self.ctx;
      },
      shared: this.shared,
      details: (id: number): readonly DetailMsg[] => this.store.details(id),
    };
  }

  /** The findings as of the last update()/finish(). */
  get findings(): readonly Finding[] {
    return this.current;
  }

  /** Reads the steps that arrived since the last call and returns the current findings. */
  update(): Finding[] {
    return this.run(false);
  }

  /** Reads what is left and evaluates once more for the end of the run. */
  finish(): Finding[] {
    return this.run(true);
  }

  private run(final: boolean): Finding[] {
    const t0 = now();
    this.refreshContext();
    for (const row of this.newRows()) {
      if (!this.shared.firstRow) this.shared.firstRow = row;
      for (const d of this.detectors) d.step(row, this.env);
      this.stats.stepsSeen++;
    }
    const out: Finding[] = [];
    for (const d of this.detectors) out.push(...d.findings(this.env, final));
    this.current = sortFindings(out);
    if (final) this.finished = true;
    const ms = now() - t0;
    this.stats.updates++;
    this.stats.ms += ms;
    if (ms > this.stats.maxMs) this.stats.maxMs = ms;
    return this.current;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  private refreshContext(): void {
    const ts = this.store.tensors;
    if (ts.length === this.tensorCount) return;
    this.tensorCount = ts.length;
    const { layers, layerOf } = buildLayers(ts, this.opts.activationOf);
    const framework = this.store.hello?.framework === 'torch' ? 'torch' : 'tfjs';
    this.ctx = { tensors: ts, layers, layerOf, optimizerSource: this.opts.optimizerSource ?? null, framework };
  }

  /** Rows for the steps after the cursor, from the store's full-resolution ring. */
  private newRows(): StepRow[] {
    const T = Math.min(this.store.stepTensorCount, this.store.tensors.length);
    if (T === 0 || this.store.stepCount === 0) return [];
    const take = (id: number, stat: 'norm' | 'maxAbs' | 'nanCount' | 'infCount' | 'paramNorm' | 'updateNorm'): Series => this.store.series(id, stat);
    const normS: Series[] = [];
    for (let i = 0; i < T; i++) normS.push(take(i, 'norm'));
    const steps = normS[0].steps;
    let from = steps.length;
    while (from > 0 && steps[from - 1] > this.cursor) from--;
    if (from === steps.length) return [];
    if (from === 0 && this.cursor === -Infinity && this.store.stepCount > steps.length) this.stats.stepsMissed += this.store.stepCount - steps.length;
    const n = steps.length - from;
    const nanS: Series[] = [];
    const infS: Series[] = [];
    const parS: Series[] = [];
    const updS: Series[] = [];
    for (let i = 0; i < T; i++) {
      nanS.push(take(i, 'nanCount'));
      infS.push(take(i, 'infCount'));
      parS.push(take(i, 'paramNorm'));
      updS.push(take(i, 'updateNorm'));
    }
    // Loss by step, for the new steps only (the loss curve is in step order).
    const lossC = this.store.loss();
    const loss = new Map<number, number>();
    for (let j = lossC.steps.length - 1; j >= 0 && lossC.steps[j] > this.cursor; j--) loss.set(lossC.steps[j], lossC.values[j]);

    const L = this.ctx.layers.length;
    const rows: StepRow[] = [];
    for (let k = 0; k < n; k++) {
      const step = steps[from + k];
      const norm = new Float64Array(T);
      const paramNorm = new Float64Array(T);
      const updateNorm = new Float64Array(T);
      const nonFinite: number[] = [];
      let nan = 0;
      let inf = 0;
      let sum = 0;
      let any = false;
      for (let i = 0; i < T; i++) {
        const at = (s: Series): number => {
          // Series of tensors that joined late are shorter: align on the step index from the end.
          const off = s.steps.length - (steps.length - (from + k));
          return off >= 0 && s.steps[off] === step ? s.values[off] : NaN;
        };
        const g = at(normS[i]);
        const a = at(nanS[i]);
        const b = at(infS[i]);
        norm[i] = g;
        paramNorm[i] = at(parS[i]);
        updateNorm[i] = at(updS[i]);
        if (a > 0) nan += a;
        if (b > 0) inf += b;
        if (a > 0 || b > 0 || (g === g && !isFiniteNum(g))) nonFinite.push(i);
        if (isFiniteNum(g)) {
          sum += g * g;
          any = true;
        }
      }
      const layerNorm = new Float64Array(L);
      for (const l of this.ctx.layers) {
        let s2 = 0;
        for (const id of l.tensors) if (id < T && isFiniteNum(norm[id])) s2 += norm[id] * norm[id];
        layerNorm[l.index] = Math.sqrt(s2);
      }
      rows.push({ step, loss: loss.get(step) ?? NaN, globalNorm: any ? Math.sqrt(sum) : NaN, nonFinite, nanCount: nan, infCount: inf, norm, paramNorm, updateNorm, layerNorm });
    }
    this.cursor = steps[steps.length - 1];
    return rows;
  }
}

/** Replays a whole store at once (a run file): the same as one finish() on a fresh Analyzer. */
export function analyzeStore(store: RunStore, opts: AnalyzerOptions = {}): Finding[] {
  return new Analyzer(store, opts).finish();
}
