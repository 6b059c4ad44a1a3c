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
//
// Each optimizer (STEP.optimizer) has its own detectors: its steps are judged against its own
// earlier steps. With several, a finding's id ends in `@<optimizer name>` and its message starts
// with `[<name>]`.
import type { DetailMsg, TensorInfo } from '../protocol/messages';
import type { RunStore } from '../store/runStore';
import type { Detector, DetectorEnv, SharedFacts } from './detector';
import { adjustForClipping, clipInEffect, type LargestNorms } from './clipping';
import { adjustForInputScale, inputScaleOf } from './inputScale';
import { DeadUnitsDetector } from './detectors/deadUnits';
import { ExplodingDetector } from './detectors/exploding';
import { NonFiniteDetector } from './detectors/nonFinite';
import { UpdateRatioDetector } from './detectors/updateRatio';
import { VanishingDetector } from './detectors/vanishing';
import { severityRank, type Finding } from './finding';
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

/**
 * A run's diagnosis as its readers (diagnostics, panel, CLI) see it: the findings, and a version that
 * changes whenever they change. Readers compare versions, not the findings.
 */
export interface FindingsView {
  readonly findings: readonly Finding[];
  /** Changes (grows) whenever `findings` changed in content since the version was last read. */
  readonly version: number;
}

/** Findings that never change (a saved diagnosis with a located cause added). */
export function fixedFindings(findings: readonly Finding[]): FindingsView {
  return { findings, version: 0 };
}

interface Lane {
  optimizer: number;
  detectors: Detector[];
  shared: SharedFacts;
  env: DetectorEnv;
}

/** Findings in a stable order: by severity, then step, then id. */
export function sortFindings(fs: Finding[]): Finding[] {
  return fs.sort((a, b) => severityRank(a.severity) - severityRank(b.severity) || a.step - b.step || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export class Analyzer implements FindingsView {
  private ctx: AnalysisContext = { tensors: [], layers: [], layerOf: [], optimizerSource: null, framework: 'tfjs' };
  private tensorCount = -1;
  /** Ordinal of the last STEP read (−1: none). */
  private cursor = -1;
  /** One set of detectors per optimizer (a GAN's two, SparseAdam beside Adam), created at its first step. */
  private readonly lanes = new Map<number, Lane>();
  private current: Finding[] = [];
  /** The findings as of the last `version` read, and that version. */
  private versioned: readonly Finding[] = this.current;
  private versionNo = 0;
  private finished = false;
  /** The largest finite global norm and tensor norm of the steps read so far (before clipping, as the probe reports; clipping.ts judges a clip by them). */
  private readonly largest: LargestNorms = { global: NaN, tensor: NaN };
  readonly stats: AnalyzerStats = { updates: 0, stepsSeen: 0, stepsMissed: 0, ms: 0, maxMs: 0 };

  constructor(
    private readonly store: RunStore,
    private readonly opts: AnalyzerOptions = {},
  ) {}

  /**
   * The detectors of one optimizer. Each optimizer's steps are judged against its own earlier
   * steps: interleaved steps of two optimizers over different tensors (a sparse embedding's norm
   * 0.02, the dense layers' 0.2) are not a ×10 jump.
   */
  private lane(optimizer: number): Lane {
    let lane = this.lanes.get(optimizer);
    if (!lane) {
      const self = this;
      const shared: SharedFacts = { firstRow: null, explodingAt: null, explodingFrom: null, vanishingAt: null, firstNonFiniteAt: null };
      const env: DetectorEnv = {
        get ctx() {
          return self.ctx;
        },
        shared,
        details: (id: number): readonly DetailMsg[] => this.store.details(id),
      };
      lane = { optimizer, detectors: [new ExplodingDetector(), new NonFiniteDetector(), new VanishingDetector(), new DeadUnitsDetector(), new UpdateRatioDetector()], shared, env };
      this.lanes.set(optimizer, lane);
    }
    return lane;
  }

  /** The findings as of the last update()/finish(). */
  get findings(): readonly Finding[] {
    return this.current;
  }

  /**
   * Bumped when the findings differ in content from those of the last version read. Checked when it
   * is read (a reader's flush, 20 a second at most), not on every update (every STEP of the run).
   */
  get version(): number {
    if (this.current !== this.versioned) {
      if (!sameValue(this.current, this.versioned)) this.versionNo++;
      this.versioned = this.current;
    }
    return this.versionNo;
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
      const lane = this.lane(row.optimizer);
      if (!lane.shared.firstRow) lane.shared.firstRow = row;
      for (const d of lane.detectors) d.step(row, lane.env);
      const largest = this.largest;
      if (isFiniteNum(row.globalNorm) && !(row.globalNorm <= largest.global)) largest.global = row.globalNorm;
      for (let t = 0; t < row.norm.length; t++) {
        const v = row.norm[t];
        if (!row.absent[t] && isFiniteNum(v) && !(v <= largest.tensor)) largest.tensor = v;
      }
      this.stats.stepsSeen++;
    }
    const out: Finding[] = [];
    for (const lane of this.lanes.values()) {
      const fs: Finding[] = [];
      for (const d of lane.detectors) fs.push(...d.findings(lane.env, final));
      out.push(...(this.lanes.size > 1 ? fs.map((f) => this.ofOptimizer(f, lane.optimizer)) : fs));
    }
    // A script that already clips is not told to add clipping (see clipping.ts).
    const clip = clipInEffect(this.store.events);
    if (clip) for (let i = 0; i < out.length; i++) out[i] = adjustForClipping(out[i], clip, this.largest, this.ctx.framework);
    // Un-normalised inputs put normalize-inputs first on an explosion (see inputScale.ts).
    for (let i = 0, seen = inputScaleOf(this.store.events); i < out.length; i++) out[i] = adjustForInputScale(out[i], seen, this.ctx.framework);
    this.current = sortFindings(out);
    if (final) this.finished = true;
    const ms = now() - t0;
    this.stats.updates++;
    this.stats.ms += ms;
    if (ms > this.stats.maxMs) this.stats.maxMs = ms;
    return this.current;
  }

  /** With several optimizers, a finding names the one whose steps showed it (and its id says so). */
  private ofOptimizer(f: Finding, optimizer: number): Finding {
    const name = this.store.optimizers.find((o) => o.id === optimizer)?.name ?? `optimizer ${optimizer}`;
    return { ...f, id: `${f.id}@${name}`, message: `[${name}] ${f.message}`, evidence: { ...f.evidence, optimizer: name } };
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

  /**
   * Rows for the steps after the cursor (an ordinal: STEPs in the order they came), from the
   * store's full-resolution ring. Absent cells (no gradient at that step) are missing data: NaN in
   * the row's arrays, marked in `absent`, and never counted as non-finite.
   */
  private newRows(): StepRow[] {
    const T = Math.min(this.store.stepTensorCount, this.store.tensors.length);
    if (T === 0 || this.store.stepCount === 0) return [];
    const first = this.store.recentFirstOrdinal;
    const from = Math.max(this.cursor + 1, first);
    if (from >= this.store.stepCount) return [];
    if (from > this.cursor + 1) this.stats.stepsMissed += from - (this.cursor + 1);
    // Loss by step, for the new steps only (the loss curve is in step order).
    const firstNew = this.store.recentStep(from).step;
    const lossC = this.store.loss();
    const loss = new Map<number, number>();
    for (let j = lossC.steps.length - 1; j >= 0 && lossC.steps[j] >= firstNew; j--) if (!loss.has(lossC.steps[j])) loss.set(lossC.steps[j], lossC.values[j]);

    const L = this.ctx.layers.length;
    const rows: StepRow[] = [];
    const nanRow = new Float64Array(T);
    const infRow = new Float64Array(T);
    for (let ord = from; ord < this.store.stepCount; ord++) {
      const { step, optimizer } = this.store.recentStep(ord);
      const norm = new Float64Array(T);
      const paramNorm = new Float64Array(T);
      const updateNorm = new Float64Array(T);
      const absent = new Uint8Array(T);
      this.store.readRecentRow(ord, 'norm', norm, absent);
      this.store.readRecentRow(ord, 'paramNorm', paramNorm);
      this.store.readRecentRow(ord, 'updateNorm', updateNorm);
      this.store.readRecentRow(ord, 'nanCount', nanRow);
      this.store.readRecentRow(ord, 'infCount', infRow);
      const nonFinite: number[] = [];
      let nan = 0;
      let inf = 0;
      let sum = 0;
      let any = false;
      for (let i = 0; i < T; i++) {
        if (absent[i]) continue;
        const g = norm[i];
        const a = nanRow[i];
        const b = infRow[i];
        if (a > 0) nan += a;
        if (b > 0) inf += b;
        if (a > 0 || b > 0 || (g === g && !isFiniteNum(g))) nonFinite.push(i);
        if (isFiniteNum(g)) {
          sum += g * g;
          any = true;
        }
      }
      // A layer none of whose tensors had a gradient at this step has no norm (NaN), not 0.
      const layerNorm = new Float64Array(L);
      for (const l of this.ctx.layers) {
        let s2 = 0;
        let seen = false;
        for (const id of l.tensors) {
          if (id >= T || absent[id]) continue;
          seen = true;
          if (isFiniteNum(norm[id])) s2 += norm[id] * norm[id];
        }
        layerNorm[l.index] = seen ? Math.sqrt(s2) : NaN;
      }
      rows.push({
        step,
        optimizer,
        loss: loss.get(step) ?? NaN,
        globalNorm: any ? Math.sqrt(sum) : NaN,
        nonFinite,
        nanCount: nan,
        infCount: inf,
        norm,
        paramNorm,
        updateNorm,
        layerNorm,
        absent,
      });
    }
    this.cursor = this.store.stepCount - 1;
    return rows;
  }
}

/** Deep equality of findings (plain data); NaN equals NaN and 0 equals -0. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b || (a !== a && b !== b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** Replays a whole store at once (a run file): the same as one finish() on a fresh Analyzer. */
export function analyzeStore(store: RunStore, opts: AnalyzerOptions = {}): Finding[] {
  return new Analyzer(store, opts).finish();
}
