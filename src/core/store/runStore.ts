// RunStore: everything one run has sent, held columnar and bounded, for the analyzer and the views.
// Pure TypeScript (no Node, no vscode): it also runs in tests and could run in a worker.
//
// Layout and memory bound (docs/run-file.md, "RunStore memory bound"):
//   For each statistic seen, typed arrays over all tensors:
//   - a ring of the most recent R steps at full resolution: Float32 R × T;
//   - E envelope buckets for the steps that left the ring: min, max, last (Float32) and a flags byte
//     (NaN / +Inf / −Inf seen), E × T each. When all E buckets are full, neighbours are merged
//     pairwise and the bucket width (in steps) doubles, so the envelope always covers the whole run.
//   Presence ("absent is a value", not NaN): one byte per ring cell (absent or not) and one per
//   envelope cell (present cells folded in, absent cells folded in), R × T + E × T, whatever S.
//   bytes ≤ T × S × (4R + 13E) + T × (R + E)    series (T = tensor capacity, S = statistics seen ≤ 6)
//          + 17R + 20E + 24T                     step indices, per-step tensor count, stat mask and
//                                                optimizer id, bucket step ranges and optimizer masks,
//                                                each tensor's first step and absent count
//          + 2 × 17G × (1 + K)                   global-norm and loss curves (step, value, flag): the
//                                                run's, and with two or more optimizers each one's own
//                                                (K = optimizers that stepped, at most 8; 0 with one)
//          + T × (D × (4B + 160) + 4B + 4P + 160)  detail history (B bins, P thumbnail cells)
//          + events kept × ~(200 + message length)
//          + optimizers × ~(200 + 4 × their tensors)  OPTIMIZER messages (latest per id)
//   Defaults R = 2048, E = 512, G = 16384, D = 64: for 200 tensors × 6 statistics the series take
//   200 × (6 × 14,848 + 2,560) B ≈ 18.3 MB, whatever the length of the run.
//   T is the tensor capacity: exactly the count of the first STEP, grown by at least 1/8 when a
//   later STEP has more tensors, so T ≤ ⌈1.125 × tensors⌉; and T ≤ maxStoredTensors (default: what
//   fits 512 MiB), so a malformed or enormous STEP cannot exhaust the host's memory.
//
// Statistics are stored as Float32: finite float64 values beyond ±3.4e38 read back as ±Inf and
// values below 1.4e-45 as 0. The global norm, the loss and summary() are computed from the
// float64 message itself.
//
// Non-finite values are information and survive folding: min/max of a bucket are over its finite
// values, and the bucket's flags record a NaN, +Inf or −Inf among the values folded into it.
// Note that the protocol itself uses NaN for "unknown" in some statistics (updateNorm).
//
// Absent cells (STEP hasGrad = 0, or a known tensor id ≥ the STEP's nTensors) are not values: they
// never enter min/max/last/flags, the global norm or firstNonFinite. series() lists present cells
// in steps/values and absent ones in absentSteps; an envelope bucket says whether it held absent
// cells (some, or only absent ones).
import {
  STAT_IDS,
  STAT_NAMES,
  assertNever,
  type DetailMsg,
  type EndMsg,
  type EventMsg,
  type HelloMsg,
  type Message,
  type OptimizerMsg,
  type StatName,
  type StepMsg,
  type TensorInfo,
} from '../protocol/messages';
import { Emitter, type Disposable } from '../util/emitter';

export interface RunStoreOptions {
  /** R: steps kept at full resolution (ring). Default 2048. */
  recentSteps?: number;
  /** E: envelope buckets for older steps; rounded up to an even number ≥ 2. Default 512. */
  envelopeBuckets?: number;
  /** G: points of the global-norm and loss curves before they are decimated; even ≥ 2. Default 16384. */
  curvePoints?: number;
  /** N: events kept (the first N); later ones are only counted. Default 1000. */
  maxEvents?: number;
  /** D: DETAIL messages kept per tensor for the history view. Default 64. */
  detailHistory?: number;
  /**
   * Series are kept for tensor ids below this; higher ids still count in the global norm and
   * summary. Default: as many as fit 512 MiB of series with 6 statistics and their presence bytes
   * (5,857 with R and E at their defaults), so a malformed or enormous STEP cannot exhaust the host's
   * memory.
   */
  maxStoredTensors?: number;
}

/** Memory the default maxStoredTensors allows the series. */
export const DEFAULT_SERIES_BUDGET_BYTES = 512 * 1024 * 1024;

export const STORE_DEFAULTS: Readonly<Required<Omit<RunStoreOptions, 'maxStoredTensors'>>> = Object.freeze({
  recentSteps: 2048,
  envelopeBuckets: 512,
  curvePoints: 16384,
  maxEvents: 1000,
  detailHistory: 64,
});

/** Bucket flags: which non-finite values were folded into an envelope bucket. */
export const FLAG_NAN = 1;
export const FLAG_POS_INF = 2;
export const FLAG_NEG_INF = 4;

/** Envelope presence of a bucket: every cell folded into it was present, some were absent, all were. */
export const BUCKET_PRESENT = 0;
export const BUCKET_SOME_ABSENT = 1;
export const BUCKET_ALL_ABSENT = 2;
export type BucketPresence = typeof BUCKET_PRESENT | typeof BUCKET_SOME_ABSENT | typeof BUCKET_ALL_ABSENT;

/** Presence of one (tensor, step) cell. `unknown`: the step is not held at full resolution, or never came. */
export type CellPresence = 'present' | 'absent' | 'unknown';

export interface SeriesEnvelope {
  /** First and last step index folded into each bucket, oldest bucket first. */
  stepFirst: Float64Array;
  stepLast: Float64Array;
  /** Smallest and largest finite value in the bucket; NaN when it held no finite value (or only absent cells). */
  min: Float32Array;
  max: Float32Array;
  /** The bucket's last present value as it came (may be NaN or ±Inf); NaN in a bucket of absent cells only (check `absent`). */
  last: Float32Array;
  /** FLAG_NAN | FLAG_POS_INF | FLAG_NEG_INF seen among the bucket's present values. */
  flags: Uint8Array;
  /** BUCKET_PRESENT, BUCKET_SOME_ABSENT or BUCKET_ALL_ABSENT per bucket. */
  absent: Uint8Array;
  /** STEP messages per bucket (the last bucket may be partly filled). */
  width: number;
}

export interface Series {
  tensorId: number;
  stat: StatName;
  /** Older steps, folded (steps before the recent part). Empty while the run fits the ring. */
  envelope: SeriesEnvelope;
  /** Recent steps at full resolution where the tensor had a gradient, oldest first: step indices as they came. */
  steps: Float64Array;
  values: Float32Array;
  /** Recent steps at full resolution where the tensor had no gradient (absent), oldest first. */
  absentSteps: Float64Array;
}

export interface SeriesOptions {
  /** Only the steps of this optimizer (OPTIMIZER id). Envelope buckets are kept when they hold any of its steps. */
  optimizer?: number;
  /**
   * Only what came after this step index: recent steps > since, envelope buckets whose last step is
   * > since (a live append reads its few new steps, not the whole ring). Omitted: everything held.
   */
  since?: number;
}

/** An optimizer as the probe announced it, with the steps the store saw for it. */
export interface OptimizerInfo extends Omit<OptimizerMsg, 'type'> {
  /** STEP messages of this optimizer. */
  steps: number;
  firstStep: number | null;
  lastStep: number | null;
}

export interface Curve {
  /** Step index of each point; for a decimated point, the step of the value kept. */
  steps: Float64Array;
  values: Float64Array;
  /** 1 where the point (or, decimated, the point kept for its bucket) was non-finite. */
  nonFinite: Uint8Array;
  /** Steps per point: 1 at full resolution, doubling with each decimation. */
  width: number;
}

/** RunStore.lossSummary(): the loss of the run, or of one optimizer's steps, exactly (not from the decimated curve). */
export interface LossSummary {
  first: number;
  last: number;
  /** Steps that carried a loss. */
  steps: number;
  firstNonFinite: { step: number; value: number } | null;
}

/** lossTally's key for the whole run (optimizer ids are u32). */
const RUN_KEY = -1;

export interface RunSummary {
  globalNorm: { first: number | null; max: number | null; last: number | null };
  firstNonFiniteStep: number | null;
  firstNonFinite: { step: number; tensorId: number } | null;
}

/** The run file stopped being written mid-run (a disk error): what it keeps. A host fact, carried by no message. */
export interface RecordingFailure {
  /** One line: "no space left on device (ENOSPC)". */
  reason: string;
  /** Steps the run file holds (the first ones); later steps are only in memory. */
  steps: number;
  /** The run file. */
  file: string;
}

/**
 * Processes of the run still alive after it ended and its process group was stopped: they left the
 * group (setsid, setpgid). A host fact, carried by no message (src/process/survivors.ts).
 */
export interface RunSurvivors {
  /** The environment entry that marks the run's processes: "GS_RUN_MARK=<run id>". */
  marker: string;
  processes: { pid: number; command: string }[];
}

export interface RunStoreChange {
  /** Incremented on every ingested message. */
  readonly version: number;
  readonly stepCount: number;
}

/** Statistics kept as float series (hasGrad is kept as presence, see series().absentSteps). */
export const SERIES_STAT_NAMES: readonly StatName[] = STAT_NAMES.filter((n) => n !== 'hasGrad');

const NSTATS = STAT_NAMES.length;
/** Float series kept per statistic; hasGrad is stored as presence bytes instead. */
const SERIES_STATS = NSTATS - 1;
const S_NORM = STAT_IDS.norm - 1;
const S_NAN = STAT_IDS.nanCount - 1;
const S_INF = STAT_IDS.infCount - 1;
const S_HAS = STAT_IDS.hasGrad - 1;
// Envelope presence bits per cell.
const ENV_PRESENT = 1;
const ENV_ABSENT = 2;
const optBit = (id: number): number => (id < 31 ? 1 << id : 1 << 31) >>> 0;
const EMPTY_F32 = new Float32Array(0);
const EMPTY_F64 = new Float64Array(0);
const EMPTY_U8 = new Uint8Array(0);
const MAX_TENSOR_ID = 1 << 20;
/** Optimizer ids whose steps are counted (a malformed stream cannot grow the map without bound). */
const MAX_OPTIMIZERS = 1024;
/** Optimizers with a global-norm and loss curve of their own; later ones have none (an empty curve). */
export const MAX_CURVE_OPTIMIZERS = 8;

const isFiniteNum = (v: number): boolean => v - v === 0;
const evenAtLeast2 = (n: number): number => Math.max(2, Math.ceil(n / 2) * 2);

/** Per-statistic columns: ring rows and envelope rows, each `cap` tensors wide. */
interface StatColumns {
  ring: Float32Array;
  min: Float32Array;
  max: Float32Array;
  last: Float32Array;
  flags: Uint8Array;
}

/**
 * A curve of one value per step that stays within G points: full resolution until G points,
 * then neighbours merge pairwise keeping the larger (non-finite beats finite, NaN beats ±Inf), so
 * a spike and a NaN step survive any amount of decimation with their own step index.
 */
class DecimatedCurve {
  private readonly steps: Float64Array;
  private readonly values: Float64Array;
  private readonly flags: Uint8Array;
  private count = 0;
  private width = 1;
  private pCount = 0;
  private pStep = 0;
  private pValue = 0;
  private pFlag = 0;

  constructor(private readonly cap: number) {
    this.steps = new Float64Array(cap);
    this.values = new Float64Array(cap);
    this.flags = new Uint8Array(cap);
  }

  get byteLength(): number {
    return this.steps.byteLength + this.values.byteLength + this.flags.byteLength;
  }

  push(step: number, value: number, flag: number): void {
    if (this.pCount === 0 || DecimatedCurve.beats(value, flag, this.pValue, this.pFlag)) {
      this.pStep = step;
      this.pValue = value;
      this.pFlag = flag;
    }
    if (++this.pCount < this.width) return;
    const i = this.count++;
    this.steps[i] = this.pStep;
    this.values[i] = this.pValue;
    this.flags[i] = this.pFlag;
    this.pCount = 0;
    if (this.count === this.cap) this.halve();
  }

  /** The points, or with `since` only those at steps after it (steps ascend: found from the end). */
  read(since = -Infinity): Curve {
    let from = this.count;
    while (from > 0 && this.steps[from - 1] > since) from--;
    const n = this.count - from + (this.pCount > 0 && this.pStep > since ? 1 : 0);
    const steps = new Float64Array(n);
    const values = new Float64Array(n);
    const nonFinite = new Uint8Array(n);
    steps.set(this.steps.subarray(from, this.count));
    values.set(this.values.subarray(from, this.count));
    nonFinite.set(this.flags.subarray(from, this.count));
    if (n > this.count - from) {
      steps[n - 1] = this.pStep;
      values[n - 1] = this.pValue;
      nonFinite[n - 1] = this.pFlag;
    }
    return { steps, values, nonFinite, width: this.width };
  }

  /** A copy holding the same points and pending bucket. */
  clone(): DecimatedCurve {
    const c = new DecimatedCurve(this.cap);
    c.steps.set(this.steps);
    c.values.set(this.values);
    c.flags.set(this.flags);
    c.count = this.count;
    c.width = this.width;
    c.pCount = this.pCount;
    c.pStep = this.pStep;
    c.pValue = this.pValue;
    c.pFlag = this.pFlag;
    return c;
  }

  private static beats(v: number, f: number, w: number, g: number): boolean {
    if (f !== g) return f > g;
    if (v !== v) return w === w; // NaN beats anything but an earlier NaN
    return w === w && v > w;
  }

  private halve(): void {
    const half = this.cap >> 1;
    for (let k = 0; k < half; k++) {
      const a = 2 * k;
      const b = a + 1;
      const src = DecimatedCurve.beats(this.values[b], this.flags[b], this.values[a], this.flags[a]) ? b : a;
      this.steps[k] = this.steps[src];
      this.values[k] = this.values[src];
      this.flags[k] = this.flags[src];
    }
    this.count = half;
    this.width *= 2;
  }
}

interface DetailSlot {
  latest: DetailMsg;
  history: DetailMsg[];
}

export class RunStore {
  private readonly R: number;
  private readonly E: number;
  private readonly maxEvents: number;
  private readonly detailCap: number;
  private readonly maxStored: number;
  private readonly G: number;

  private _hello: HelloMsg | null = null;
  private _end: EndMsg | null = null;
  private readonly _tensors: TensorInfo[] = [];
  private readonly _events: EventMsg[] = [];
  private _eventsDropped = 0;
  private _stepCount = 0;
  private _recordingFailure: RecordingFailure | null = null;
  private _survivors: RunSurvivors | null = null;
  private _lastStep = -1;
  private _lastWallMs = NaN;
  private version = 0;

  // Tensor capacity of every column (row stride) and the most tensors any STEP carried.
  private cap = 0;
  private tensorsInSteps = 0;
  // Per tensor: ordinal and step index of the first STEP that carried it.
  private firstOrd = new Float64Array(0);
  private firstStep = new Float64Array(0);
  // Per tensor: STEPs since its first, of an optimizer that trains it, in which it was absent; and
  // how many such STEPs there were. An optimizer trains the tensors of its OPTIMIZER message; one not
  // announced (older run files, a probe without OPTIMIZER messages) is taken to train every tensor. A
  // GAN's discriminator is not "without a gradient" at the generator's steps.
  private absentCount = new Float64Array(0);
  private ownedCount = new Float64Array(0);
  // Per announced optimizer: 1 at each tensor id it trains.
  private readonly trains = new Map<number, Uint8Array>();
  private readonly cols: (StatColumns | undefined)[] = new Array<StatColumns | undefined>(NSTATS).fill(undefined);
  // Presence: 1 where a ring cell is absent (R × cap); ENV_PRESENT | ENV_ABSENT per envelope cell (E × cap).
  private ringAbsent = new Uint8Array(0);
  private envPresence = new Uint8Array(0);

  // Per ring slot: step index, tensors in that STEP, bit mask of statistics it carried, optimizer id.
  private readonly stepRing: Float64Array;
  private readonly ringN: Uint32Array;
  private readonly ringMask: Uint8Array;
  private readonly ringOpt: Uint32Array;
  private readonly _optimizers = new Map<number, Omit<OptimizerMsg, 'type'>>();
  // Steps per optimizer id, announced or not (a tfjs run has only id 0, never announced).
  // Per optimizer: its STEPs, first and last step index, and its global norm (first, largest finite, last).
  private readonly optCounts = new Map<number, { steps: number; first: number; last: number; gFirst: number | null; gMax: number | null; gLast: number | null }>();
  private optimizerBytes = 0;

  // Envelope: buckets in use (the last one is open), steps folded into the open one, width.
  private nBuckets = 0;
  private openFill = 0;
  private width = 1;
  private readonly bucketFirst: Float64Array;
  private readonly bucketLast: Float64Array;
  /** Optimizers whose steps a bucket holds (bit id, ids ≥ 31 share bit 31). */
  private readonly bucketOpt: Uint32Array;

  private readonly gnorm: DecimatedCurve;
  private readonly lossCurve: DecimatedCurve;
  /** lossSummary()'s tallies: the run's (RUN_KEY), and each optimizer's by id. */
  private readonly lossTally = new Map<number, LossSummary>();
  /** Optimizer ids whose steps have carried a finite loss (for probes that do not mark "no loss": a NaN loss counts as one from then on). */
  private readonly lossSeen = new Set<number>();
  /**
   * Each optimizer's own global-norm and loss curves. Made when a
   * second optimizer steps (the first one's are then copies of the run's, all its steps so far being
   * the run's); none while one optimizer steps, where the run's curves are its own.
   */
  private readonly optCurves = new Map<number, { gnorm: DecimatedCurve; loss: DecimatedCurve }>();
  private firstOpt: number | null = null;
  private gFirst: number | null = null;
  private gMax: number | null = null;
  private gLast: number | null = null;
  private _firstNonFinite: { step: number; tensorId: number } | null = null;

  private readonly detailSlots = new Map<number, DetailSlot>();
  private detailBytes = 0;
  private eventBytes = 0;
  private tensorInfoBytes = 0;

  private readonly changed = new Emitter<RunStoreChange>();
  private notifyQueued = false;
  /** Fires at most once per microtask (a whole decoded chunk or run file is one notification). */
  readonly onDidChange: (listener: (change: RunStoreChange) => void) => Disposable = this.changed.event;

  constructor(opts: RunStoreOptions = {}) {
    this.R = Math.max(1, Math.floor(opts.recentSteps ?? STORE_DEFAULTS.recentSteps));
    this.E = evenAtLeast2(Math.floor(opts.envelopeBuckets ?? STORE_DEFAULTS.envelopeBuckets));
    this.maxEvents = Math.max(0, Math.floor(opts.maxEvents ?? STORE_DEFAULTS.maxEvents));
    this.detailCap = Math.max(1, Math.floor(opts.detailHistory ?? STORE_DEFAULTS.detailHistory));
    const G = evenAtLeast2(Math.floor(opts.curvePoints ?? STORE_DEFAULTS.curvePoints));
    this.G = G;
    this.maxStored = Math.max(1, Math.floor(opts.maxStoredTensors ?? DEFAULT_SERIES_BUDGET_BYTES / (SERIES_STATS * (4 * this.R + 13 * this.E) + this.R + this.E)));
    this.stepRing = new Float64Array(this.R);
    this.ringN = new Uint32Array(this.R);
    this.ringMask = new Uint8Array(this.R);
    this.ringOpt = new Uint32Array(this.R);
    this.bucketFirst = new Float64Array(this.E);
    this.bucketLast = new Float64Array(this.E);
    this.bucketOpt = new Uint32Array(this.E);
    this.gnorm = new DecimatedCurve(G);
    this.lossCurve = new DecimatedCurve(G);
  }

  get hello(): HelloMsg | null {
    return this._hello;
  }
  get end(): EndMsg | null {
    return this._end;
  }
  /** Tensor metadata by id, from TENSORS messages. */
  get tensors(): readonly TensorInfo[] {
    return this._tensors;
  }
  /** Most tensors any STEP carried (may exceed tensors.length if TENSORS was late). */
  get stepTensorCount(): number {
    return this.tensorsInSteps;
  }
  /** Tensors carried by STEPs whose series are not kept (ids ≥ maxStoredTensors). */
  get tensorsNotStored(): number {
    return Math.max(0, this.tensorsInSteps - this.maxStored);
  }
  get stepCount(): number {
    return this._stepCount;
  }
  get lastStep(): number {
    return this._lastStep;
  }
  get lastWallMs(): number {
    return this._lastWallMs;
  }
  /** The first `maxEvents` events; see eventsDropped for the rest. */
  get events(): readonly EventMsg[] {
    return this._events;
  }
  get eventsDropped(): number {
    return this._eventsDropped;
  }
  /** Set when the run file could not be written to the end (runWarnings says so); null otherwise. */
  get recordingFailure(): RecordingFailure | null {
    return this._recordingFailure;
  }

  /** The host's run-file writer failed: keep what the file holds, for the warnings. The first call wins. */
  noteRecordingFailure(f: RecordingFailure): void {
    if (this._recordingFailure) return;
    this._recordingFailure = { ...f };
    this.changedNow();
  }
  /** Set when processes of the run outlived it (runWarnings lists them); null otherwise. */
  get survivors(): RunSurvivors | null {
    return this._survivors;
  }

  /** The host found processes of the run alive after its end: keep them, for the warnings. */
  noteSurvivors(s: RunSurvivors): void {
    this._survivors = { marker: s.marker, processes: s.processes.map((p) => ({ ...p })) };
    this.changedNow();
  }
  get options(): { recentSteps: number; envelopeBuckets: number } {
    return { recentSteps: this.R, envelopeBuckets: this.E };
  }
  /** The optimizers the probe announced (latest OPTIMIZER per id), by id, with their step counts. */
  get optimizers(): readonly OptimizerInfo[] {
    const out: OptimizerInfo[] = [];
    for (const [id, msg] of this._optimizers) {
      const c = this.optCounts.get(id);
      out.push({ ...msg, steps: c?.steps ?? 0, firstStep: c?.first ?? null, lastStep: c?.last ?? null });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  ingest(msg: Message): void {
    switch (msg.type) {
      case 'step':
        this.ingestStep(msg);
        break;
      case 'detail':
        this.ingestDetail(msg);
        break;
      case 'tensors':
        for (const t of msg.tensors) {
          if (t.id >= MAX_TENSOR_ID) continue;
          if (this._tensors[t.id] === undefined) this.tensorInfoBytes += 200 + 2 * (t.name.length + t.layer.length + (t.source?.file.length ?? 0));
          this._tensors[t.id] = t;
        }
        break;
      case 'event':
        if (this._events.length < this.maxEvents) {
          this._events.push(msg);
          this.eventBytes += 200 + 2 * msg.message.length;
        } else this._eventsDropped++;
        break;
      case 'hello':
        this._hello = msg;
        break;
      case 'end':
        this._end = msg;
        break;
      case 'optimizer':
        this.ingestOptimizer(msg);
        break;
      default:
        assertNever(msg, 'message');
    }
    this.changedNow();
  }

  private changedNow(): void {
    this.version++;
    if (!this.notifyQueued) {
      this.notifyQueued = true;
      queueMicrotask(this.notify);
    }
  }

  private readonly notify = (): void => {
    this.notifyQueued = false;
    this.changed.fire({ version: this.version, stepCount: this._stepCount });
  };

  dispose(): void {
    this.changed.dispose();
  }

  // -------------------------------------------------------------------------------------------
  // STEP: the hot path. Copies each float64 column into the ring (one typed-array set per stat),
  // folds the row the ring evicts into the envelope, and updates the global norm and summary.

  private ingestStep(m: StepMsg): void {
    const all = m.nTensors;
    const n = Math.min(all, this.maxStored); // tensors whose series are kept
    if (n > this.cap) this.growTensors(n);
    const ord = this._stepCount;
    if (all > this.tensorsInSteps) {
      const from = Math.min(this.tensorsInSteps, n);
      this.firstOrd.fill(ord, from, n);
      this.firstStep.fill(m.step, from, n);
      this.tensorsInSteps = all;
    }
    const slot = ord % this.R;
    if (ord >= this.R) this.fold(slot, ord - this.R);

    const base = slot * this.cap;
    let mask = 0;
    let normCol: Float64Array | null = null;
    let nanCol: Float64Array | null = null;
    let infCol: Float64Array | null = null;
    let hasCol: Float64Array | null = null;
    const nStats = m.stats.length;
    for (let k = 0; k < nStats; k++) {
      const s = STAT_IDS[m.stats[k]] - 1;
      if (!(s >= 0 && s < NSTATS)) continue;
      const col = m.columns[k];
      if (!col) continue;
      if (s === S_HAS) {
        hasCol = col;
        continue;
      }
      const sc = this.cols[s] ?? this.allocStat(s);
      if (col.length === n) sc.ring.set(col, base);
      else if (col.length > n) sc.ring.set(col.subarray(0, n), base);
      else {
        sc.ring.set(col, base);
        sc.ring.fill(NaN, base + col.length, base + n);
      }
      mask |= 1 << s;
      if (s === S_NORM) normCol = col;
      else if (s === S_NAN) nanCol = col;
      else if (s === S_INF) infCol = col;
    }
    this.stepRing[slot] = m.step;
    this.ringN[slot] = n;
    this.ringMask[slot] = mask;
    this.ringOpt[slot] = m.optimizer;
    this._stepCount = ord + 1;
    this._lastStep = m.step;
    this._lastWallMs = m.wallMs;
    this.countOptimizerStep(m);

    // Presence: hasGrad 0 is absent; a STEP without the column has every tensor present. Known
    // tensors beyond this STEP's nTensors are absent from it.
    const ra = this.ringAbsent;
    const trains = this.trains.get(m.optimizer);
    const ac = this.absentCount;
    const oc = this.ownedCount;
    const nh = hasCol ? Math.min(hasCol.length, n) : 0;
    for (let i = 0; i < nh; i++) {
      const a = hasCol![i] === 0 ? 1 : 0;
      ra[base + i] = a;
      if (trains === undefined || trains[i] === 1) {
        ac[i] += a;
        oc[i]++;
      }
    }
    if (nh < n) ra.fill(0, base + nh, base + n);
    for (let i = nh; i < n; i++) if (trains === undefined || trains[i] === 1) oc[i]++;
    const known = Math.min(this.tensorsInSteps, this.maxStored);
    for (let i = n; i < known; i++) {
      if (trains === undefined || trains[i] === 1) {
        ac[i]++;
        oc[i]++;
      }
    }
    const absentAt = (i: number): boolean => i >= all || (hasCol !== null && i < hasCol.length && hasCol[i] === 0);

    // Non-finite in this step: any present tensor's norm non-finite or NaN/Inf count > 0. First tensor wins.
    let bad = -1;
    const nn = Math.min(all, normCol ? normCol.length : 0);
    const na = Math.min(all, nanCol ? nanCol.length : 0);
    const ni = Math.min(all, infCol ? infCol.length : 0);
    const scan = Math.max(nn, na, ni);
    for (let i = 0; i < scan; i++) {
      if (hasCol && absentAt(i)) continue;
      if ((i < nn && !isFiniteNum(normCol![i])) || (i < na && nanCol![i] > 0) || (i < ni && infCol![i] > 0)) {
        bad = i;
        break;
      }
    }
    if (bad >= 0 && this._firstNonFinite === null) this._firstNonFinite = { step: m.step, tensorId: bad };

    const own = this.ownCurves(m.optimizer);
    const presentNorms = normCol && nn > 0 ? (hasCol ? countPresent(hasCol, nn) : nn) : 0;
    if (normCol && presentNorms > 0) {
      // The per-tensor norms cover finite entries only (protocol); the global norm of a step whose
      // gradients hold NaN or Inf is reported as what it truly is, NaN or Inf, so that "last 0"
      // never hides a run that blew up. Absent tensors take no part; a step where every tensor was
      // absent has no global norm.
      let g = globalNormOf(normCol, nn, hasCol);
      if (bad >= 0) {
        let nan = false;
        for (let i = 0; i < scan && !nan; i++) {
          if (hasCol && absentAt(i)) continue;
          nan = (i < na && nanCol![i] > 0) || (i < nn && Number.isNaN(normCol[i]));
        }
        g = nan ? NaN : Infinity;
      }
      this.gnorm.push(m.step, g, bad >= 0 ? 1 : 0);
      own?.gnorm.push(m.step, g, bad >= 0 ? 1 : 0);
      if (this.gFirst === null) this.gFirst = g;
      this.gLast = g;
      if (isFiniteNum(g) && (this.gMax === null || g > this.gMax)) this.gMax = g;
      const tally = this.optCounts.get(m.optimizer);
      if (tally) {
        if (tally.gFirst === null) tally.gFirst = g;
        tally.gLast = g;
        if (isFiniteNum(g) && (tally.gMax === null || g > tally.gMax)) tally.gMax = g;
      }
    }

    // Loss: null is "not seen" (a step of a second optimizer after one backward pass, SparseAdam
    // beside Adam, carries none); NaN a NaN loss, from the first step on. A probe that does not
    // mark "not seen" (no HELLO marksNoLoss: older probes, their run files) wrote NaN for both: there
    // NaN means "not seen" until a finite loss has been seen in this optimizer's steps (per optimizer,
    // for the reason above), a NaN loss after that.
    const loss = m.loss;
    const opt = m.optimizer;
    if (loss === null) return;
    const finite = isFiniteNum(loss);
    if (finite) this.lossSeen.add(opt);
    else if (this._hello?.marksNoLoss !== true && !this.lossSeen.has(opt) && loss !== Infinity && loss !== -Infinity) return;
    this.lossCurve.push(m.step, loss, finite ? 0 : 1);
    own?.loss.push(m.step, loss, finite ? 0 : 1);
    this.noteLoss(opt, m.step, loss);
  }

  /** lossSummary()'s figures, exact (the curves are decimated), for the run and for optimizer `opt`. */
  private noteLoss(opt: number, step: number, loss: number): void {
    for (const key of [RUN_KEY, opt]) {
      let t = this.lossTally.get(key);
      if (!t) this.lossTally.set(key, (t = { first: loss, last: loss, steps: 0, firstNonFinite: null }));
      t.last = loss;
      t.steps++;
      if (!isFiniteNum(loss) && !t.firstNonFinite) t.firstNonFinite = { step, value: loss };
    }
  }

  /**
   * The loss over the run (or over optimizer `optimizer`'s steps): its first and last value (either
   * may be NaN or ±Inf), the steps that carried one, and the first non-finite one. Null when no step
   * carried a loss.
   */
  lossSummary(optimizer?: number): LossSummary | null {
    const t = this.lossTally.get(optimizer ?? RUN_KEY);
    return t ? { ...t, firstNonFinite: t.firstNonFinite ? { ...t.firstNonFinite } : null } : null;
  }

  /** The curves of optimizer `id` to push this STEP into, besides the run's (null: none). Call before pushing. */
  private ownCurves(id: number): { gnorm: DecimatedCurve; loss: DecimatedCurve } | null {
    if (this.firstOpt === null) this.firstOpt = id;
    const have = this.optCurves.get(id);
    if (have) return have;
    if (this.optCurves.size === 0) {
      if (id === this.firstOpt) return null;
      this.optCurves.set(this.firstOpt, { gnorm: this.gnorm.clone(), loss: this.lossCurve.clone() });
    }
    if (this.optCurves.size >= MAX_CURVE_OPTIMIZERS) return null;
    const made = { gnorm: new DecimatedCurve(this.G), loss: new DecimatedCurve(this.G) };
    this.optCurves.set(id, made);
    return made;
  }

  private ingestOptimizer(m: OptimizerMsg): void {
    if (m.id >= MAX_TENSOR_ID || (this._optimizers.size >= MAX_OPTIMIZERS && !this._optimizers.has(m.id))) return;
    const prev = this._optimizers.get(m.id);
    const { type: _t, ...info } = m;
    if (prev) this.optimizerBytes -= 200 + 2 * prev.name.length + 8 * prev.tensorIds.length + (this.trains.get(m.id)?.byteLength ?? 0);
    let top = -1;
    for (const t of m.tensorIds) if (Number.isInteger(t) && t > top && t < MAX_TENSOR_ID) top = t;
    const mask = new Uint8Array(top + 1);
    for (const t of m.tensorIds) if (Number.isInteger(t) && t >= 0 && t <= top) mask[t] = 1;
    this.trains.set(m.id, mask);
    this.optimizerBytes += 200 + 2 * m.name.length + 8 * m.tensorIds.length + mask.byteLength;
    this._optimizers.set(m.id, info);
  }

  private countOptimizerStep(m: StepMsg): void {
    const c = this.optCounts.get(m.optimizer);
    if (c) {
      c.steps++;
      c.last = m.step;
    } else if (this.optCounts.size < MAX_OPTIMIZERS) this.optCounts.set(m.optimizer, { steps: 1, first: m.step, last: m.step, gFirst: null, gMax: null, gLast: null });
  }

  /** The global norm over optimizer `id`'s steps, exactly (first, largest finite, last); null when it had none. */
  optimizerGlobalNorm(id: number): { first: number; max: number | null; last: number } | null {
    const c = this.optCounts.get(id);
    return c && c.gFirst !== null && c.gLast !== null ? { first: c.gFirst, max: c.gMax, last: c.gLast } : null;
  }

  /** STEPs of optimizer `id` over the whole run (announced or not). */
  optimizerStepCount(id: number): number {
    return this.optCounts.get(id)?.steps ?? 0;
  }

  private allocStat(s: number): StatColumns {
    const cap = Math.max(this.cap, 1);
    const sc: StatColumns = {
      ring: new Float32Array(this.R * cap),
      min: new Float32Array(this.E * cap).fill(Infinity),
      max: new Float32Array(this.E * cap).fill(-Infinity),
      last: new Float32Array(this.E * cap).fill(NaN),
      flags: new Uint8Array(this.E * cap),
    };
    this.cols[s] = sc;
    return sc;
  }

  private growTensors(n: number): void {
    const old = this.cap;
    const cap = old === 0 ? n : Math.max(n, old + Math.ceil(old / 8));
    const restride = <A extends Float32Array | Uint8Array>(src: A, rows: number, make: (len: number) => A): A => {
      const dst = make(rows * cap);
      if (old > 0) for (let r = 0; r < rows; r++) dst.set(src.subarray(r * old, r * old + old), r * cap);
      return dst;
    };
    for (let s = 0; s < NSTATS; s++) {
      const sc = this.cols[s];
      if (!sc) continue;
      sc.ring = restride(sc.ring, this.R, (l) => new Float32Array(l));
      sc.min = restride(sc.min, this.E, (l) => new Float32Array(l).fill(Infinity));
      sc.max = restride(sc.max, this.E, (l) => new Float32Array(l).fill(-Infinity));
      sc.last = restride(sc.last, this.E, (l) => new Float32Array(l).fill(NaN));
      sc.flags = restride(sc.flags, this.E, (l) => new Uint8Array(l));
    }
    this.ringAbsent = restride(this.ringAbsent, this.R, (l) => new Uint8Array(l));
    this.envPresence = restride(this.envPresence, this.E, (l) => new Uint8Array(l));
    const fo = new Float64Array(cap);
    fo.set(this.firstOrd);
    this.firstOrd = fo;
    const fs = new Float64Array(cap);
    fs.set(this.firstStep);
    this.firstStep = fs;
    const ac = new Float64Array(cap);
    ac.set(this.absentCount);
    this.absentCount = ac;
    const oc = new Float64Array(cap);
    oc.set(this.ownedCount);
    this.ownedCount = oc;
    this.cap = cap;
  }

  /** Folds the ring row at `slot` (ordinal `ord`, about to be overwritten) into the open envelope bucket. */
  private fold(slot: number, ord: number): void {
    const cap = this.cap;
    if (this.nBuckets === 0 || this.openFill === this.width) {
      if (this.nBuckets === this.E) this.mergeBuckets();
      const b = this.nBuckets++;
      this.openFill = 0;
      this.bucketFirst[b] = this.stepRing[slot];
      const lo = b * cap;
      const hi = lo + cap;
      for (let s = 0; s < NSTATS; s++) {
        const sc = this.cols[s];
        if (!sc) continue;
        sc.min.fill(Infinity, lo, hi);
        sc.max.fill(-Infinity, lo, hi);
        sc.last.fill(NaN, lo, hi);
        sc.flags.fill(0, lo, hi);
      }
      this.envPresence.fill(0, lo, hi);
      this.bucketOpt[b] = 0;
    }
    const b = this.nBuckets - 1;
    this.bucketLast[b] = this.stepRing[slot];
    this.bucketOpt[b] |= optBit(this.ringOpt[slot]);
    this.openFill++;
    const n = this.ringN[slot];
    const mask = this.ringMask[slot];
    const src = slot * cap;
    const dst = b * cap;
    const ra = this.ringAbsent;
    const ep = this.envPresence;
    for (let i = 0; i < n; i++) ep[dst + i] |= ra[src + i] ? ENV_ABSENT : ENV_PRESENT;
    const known = Math.min(this.tensorsInSteps, this.maxStored, cap);
    for (let i = n; i < known; i++) if (this.firstOrd[i] <= ord) ep[dst + i] |= ENV_ABSENT;
    for (let s = 0; s < NSTATS; s++) {
      if (!(mask & (1 << s))) continue;
      const sc = this.cols[s]!;
      const ring = sc.ring;
      const mn = sc.min;
      const mx = sc.max;
      const last = sc.last;
      for (let i = 0; i < n; i++) {
        if (ra[src + i]) continue;
        const v = ring[src + i];
        const e = dst + i;
        last[e] = v;
        if (v - v === 0) {
          if (v < mn[e]) mn[e] = v;
          if (v > mx[e]) mx[e] = v;
        } else {
          sc.flags[e] |= v !== v ? FLAG_NAN : v > 0 ? FLAG_POS_INF : FLAG_NEG_INF;
        }
      }
    }
  }

  /** All E buckets full: merge neighbours pairwise into E/2 buckets of twice the width. */
  private mergeBuckets(): void {
    const cap = this.cap;
    const half = this.E >> 1;
    for (let k = 0; k < half; k++) {
      const a = 2 * k * cap;
      const b = a + cap;
      const d = k * cap;
      for (let s = 0; s < NSTATS; s++) {
        const sc = this.cols[s];
        if (!sc) continue;
        const { min, max, last, flags } = sc;
        for (let i = 0; i < cap; i++) {
          const bHas = min[b + i] <= max[b + i] || flags[b + i] !== 0;
          min[d + i] = Math.min(min[a + i], min[b + i]);
          max[d + i] = Math.max(max[a + i], max[b + i]);
          last[d + i] = bHas ? last[b + i] : last[a + i];
          flags[d + i] = flags[a + i] | flags[b + i];
        }
      }
      const ep = this.envPresence;
      for (let i = 0; i < cap; i++) ep[d + i] = ep[a + i] | ep[b + i];
      this.bucketOpt[k] = this.bucketOpt[2 * k] | this.bucketOpt[2 * k + 1];
      this.bucketFirst[k] = this.bucketFirst[2 * k];
      this.bucketLast[k] = this.bucketLast[2 * k + 1];
    }
    this.nBuckets = half;
    this.width *= 2;
  }

  private ingestDetail(m: DetailMsg): void {
    if (m.tensorId >= MAX_TENSOR_ID) return;
    // History entries drop the thumbnail (the latest keeps it): the history view needs histograms.
    const h: DetailMsg = m.thumb.length === 0 ? m : { ...m, thumb: EMPTY_F32, thumbRows: 0, thumbCols: 0 };
    const hBytes = 160 + h.hist.byteLength;
    let slot = this.detailSlots.get(m.tensorId);
    if (!slot) {
      slot = { latest: m, history: [] };
      this.detailSlots.set(m.tensorId, slot);
    } else {
      this.detailBytes -= 160 + slot.latest.hist.byteLength + slot.latest.thumb.byteLength;
      slot.latest = m;
    }
    this.detailBytes += 160 + m.hist.byteLength + m.thumb.byteLength;
    const hist = slot.history;
    if (hist.length >= this.detailCap) {
      // Full: drop every other entry (the newest stays), so older history thins out gradually.
      let w = 0;
      for (let r = 0; r < hist.length; r++) {
        if (r % 2 === 1 || r === hist.length - 1) hist[w++] = hist[r];
        else this.detailBytes -= 160 + hist[r].hist.byteLength;
      }
      hist.length = w;
    }
    hist.push(h);
    this.detailBytes += hBytes;
  }

  // -------------------------------------------------------------------------------------------
  // Queries. Each returns fresh arrays (the caller may keep or transfer them).

  /**
   * sqrt(Σ norm²) over tensors, per step; decimated keeping the max (non-finite first) per bucket.
   * With `optimizer`: over that optimizer's steps only (empty for one beyond MAX_CURVE_OPTIMIZERS).
   */
  globalNorm(opts: SeriesOptions = {}): Curve {
    return this.curveOf('gnorm', opts);
  }

  /** The loss per step (steps without a loss are absent), decimated like globalNorm(); `optimizer` likewise. */
  loss(opts: SeriesOptions = {}): Curve {
    return this.curveOf('loss', opts);
  }

  /**
   * The optimizers with curves of their own, by id: empty while one optimizer steps, else each that
   * stepped (the first MAX_CURVE_OPTIMIZERS to step).
   */
  get curveOptimizers(): number[] {
    return [...this.optCurves.keys()].sort((a, b) => a - b);
  }

  private curveOf(which: 'gnorm' | 'loss', { optimizer, since }: SeriesOptions): Curve {
    const run = which === 'gnorm' ? this.gnorm : this.lossCurve;
    if (optimizer === undefined) return run.read(since);
    const own = this.optCurves.get(optimizer);
    if (own) return own[which].read(since);
    if (this.optCurves.size === 0 && optimizer === this.firstOpt) return run.read(since);
    return { steps: EMPTY_F64, values: EMPTY_F64, nonFinite: EMPTY_U8, width: 1 };
  }

  series(tensorId: number, stat: StatName, opts: SeriesOptions = {}): Series {
    const s = STAT_IDS[stat] - 1;
    const sc = this.cols[s];
    if (!sc || !(tensorId >= 0 && tensorId < Math.min(this.tensorsInSteps, this.maxStored))) return emptySeries(tensorId, stat);
    const cap = this.cap;
    const bit = 1 << s;
    const opt = opts.optimizer;
    const fo = this.firstOrd[tensorId];

    // Recent part: ring slots in ingest order since the tensor's first STEP; present cells of steps
    // that carried this statistic, and absent cells.
    const count = Math.min(this._stepCount, this.R);
    let start = Math.max(this._stepCount - count, fo);
    const since = opts.since;
    if (since !== undefined) {
      // Steps ascend: the first slot after `since`, found from the newest (an append has a few).
      let o = this._stepCount;
      while (o > start && this.stepRing[(o - 1) % this.R] > since) o--;
      start = o;
    }
    let m = 0;
    let ma = 0;
    for (let o = start; o < this._stepCount; o++) {
      const slot = o % this.R;
      if (opt !== undefined && this.ringOpt[slot] !== opt) continue;
      if (this.cellAbsent(slot, tensorId)) ma++;
      else if (this.ringMask[slot] & bit) m++;
    }
    const steps = new Float64Array(m);
    const values = new Float32Array(m);
    const absentSteps = new Float64Array(ma);
    let j = 0;
    let ja = 0;
    for (let o = start; o < this._stepCount; o++) {
      const slot = o % this.R;
      if (opt !== undefined && this.ringOpt[slot] !== opt) continue;
      if (this.cellAbsent(slot, tensorId)) absentSteps[ja++] = this.stepRing[slot];
      else if (this.ringMask[slot] & bit) {
        steps[j] = this.stepRing[slot];
        values[j++] = sc.ring[slot * cap + tensorId];
      }
    }

    // Envelope: buckets where this tensor had any value or was absent.
    const ep = this.envPresence;
    let b0 = 0;
    if (since !== undefined) {
      b0 = this.nBuckets;
      while (b0 > 0 && this.bucketLast[b0 - 1] > since) b0--;
    }
    const keep = (b: number): boolean => {
      const e = b * cap + tensorId;
      if (opt !== undefined && !(this.bucketOpt[b] & optBit(opt))) return false;
      return sc.min[e] <= sc.max[e] || sc.flags[e] !== 0 || (ep[e] & ENV_ABSENT) !== 0;
    };
    let nb = 0;
    for (let b = b0; b < this.nBuckets; b++) if (keep(b)) nb++;
    const env: SeriesEnvelope = {
      stepFirst: new Float64Array(nb),
      stepLast: new Float64Array(nb),
      min: new Float32Array(nb),
      max: new Float32Array(nb),
      last: new Float32Array(nb),
      flags: new Uint8Array(nb),
      absent: new Uint8Array(nb),
      width: this.width,
    };
    // Bucket b holds the steps of ordinals [b·width, (b+1)·width); a tensor that appeared inside
    // a bucket starts there at its own first step.
    j = 0;
    for (let b = b0; b < this.nBuckets; b++) {
      if (!keep(b)) continue;
      const e = b * cap + tensorId;
      const hasFinite = sc.min[e] <= sc.max[e];
      env.stepFirst[j] = fo > b * this.width ? this.firstStep[tensorId] : this.bucketFirst[b];
      env.stepLast[j] = this.bucketLast[b];
      env.min[j] = hasFinite ? sc.min[e] : NaN;
      env.max[j] = hasFinite ? sc.max[e] : NaN;
      env.last[j] = sc.last[e];
      env.flags[j] = sc.flags[e];
      env.absent[j++] = !(ep[e] & ENV_ABSENT) ? BUCKET_PRESENT : ep[e] & ENV_PRESENT ? BUCKET_SOME_ABSENT : BUCKET_ALL_ABSENT;
    }
    return { tensorId, stat, envelope: env, steps, values, absentSteps };
  }

  /** Whether tensor `tensorId` had no gradient in the STEP held in ring `slot` (known tensors only). */
  private cellAbsent(slot: number, tensorId: number): boolean {
    return this.ringN[slot] > tensorId ? this.ringAbsent[slot * this.cap + tensorId] === 1 : true;
  }

  /**
   * Presence of a cell at full resolution: the latest STEP with index `step` still in the ring.
   * `unknown` when that step left the ring (or never came) or the tensor was not known yet.
   */
  presence(tensorId: number, step: number): CellPresence {
    if (!(tensorId >= 0 && tensorId < Math.min(this.tensorsInSteps, this.maxStored))) return 'unknown';
    const first = Math.max(this._stepCount - Math.min(this._stepCount, this.R), this.firstOrd[tensorId]);
    for (let o = this._stepCount - 1; o >= first; o--) {
      const slot = o % this.R;
      if (this.stepRing[slot] === step) return this.cellAbsent(slot, tensorId) ? 'absent' : 'present';
    }
    return 'unknown';
  }

  /** STEPs since (and including) the first that carried the tensor; 0 for a tensor no STEP carried. */
  stepsSince(tensorId: number): number {
    return tensorId >= 0 && tensorId < Math.min(this.tensorsInSteps, this.maxStored) ? this._stepCount - this.firstOrd[tensorId] : 0;
  }

  /**
   * STEPs since its first, of an optimizer that trains the tensor, in which it had no gradient (over
   * the whole run, not only the ring). Another optimizer's STEPs do not count (see absentCount).
   */
  absentSteps(tensorId: number): number {
    return tensorId >= 0 && tensorId < this.absentCount.length ? this.absentCount[tensorId] : 0;
  }

  /** STEPs since its first of an optimizer that trains the tensor (every STEP where none is announced). */
  ownedSteps(tensorId: number): number {
    return tensorId >= 0 && tensorId < this.ownedCount.length ? this.ownedCount[tensorId] : 0;
  }

  /** Ordinal (ingest order) of the oldest STEP still held at full resolution; stepCount is one past the newest. */
  get recentFirstOrdinal(): number {
    return this._stepCount - Math.min(this._stepCount, this.R);
  }

  /** Step index and optimizer id of the STEP with ordinal `ord` (must be ≥ recentFirstOrdinal). */
  recentStep(ord: number): { step: number; optimizer: number } {
    const slot = this.recentSlot(ord);
    return { step: this.stepRing[slot], optimizer: this.ringOpt[slot] };
  }

  /**
   * One statistic of every tensor in the STEP with ordinal `ord`: out[i] for i < out.length, NaN
   * where the tensor was absent or not stored; `absent[i]` (when given) is set to 1 where the tensor
   * had no gradient. Returns false (and fills NaN) when the STEP did not carry the statistic.
   */
  readRecentRow(ord: number, stat: StatName, out: Float64Array, absent?: Uint8Array): boolean {
    const slot = this.recentSlot(ord);
    const s = STAT_IDS[stat] - 1;
    const sc = this.cols[s];
    const carried = sc !== undefined && (this.ringMask[slot] & (1 << s)) !== 0;
    const n = this.ringN[slot];
    const base = slot * this.cap;
    for (let i = 0; i < out.length; i++) {
      const a = i >= n ? this.firstOrd[i] <= ord && i < this.tensorsInSteps : this.ringAbsent[base + i] === 1;
      if (absent) absent[i] = a ? 1 : 0;
      out[i] = carried && !a && i < n ? sc.ring[base + i] : NaN;
    }
    return carried;
  }

  /** Step indices of the recent (full-resolution) STEPs of optimizer `id`, oldest first. */
  optimizerSteps(id: number): Float64Array {
    const out: number[] = [];
    for (let o = this.recentFirstOrdinal; o < this._stepCount; o++) {
      const slot = o % this.R;
      if (this.ringOpt[slot] === id) out.push(this.stepRing[slot]);
    }
    return Float64Array.from(out);
  }

  private recentSlot(ord: number): number {
    if (!(Number.isInteger(ord) && ord >= this.recentFirstOrdinal && ord < this._stepCount)) {
      throw new RangeError(`step ordinal ${ord} is not held at full resolution (${this.recentFirstOrdinal}…${this._stepCount - 1})`);
    }
    return ord % this.R;
  }

  latestDetail(tensorId: number): DetailMsg | undefined {
    return this.detailSlots.get(tensorId)?.latest;
  }

  /**
   * DETAIL history of a tensor, oldest first, at most `detailHistory` entries (older ones thinned
   * by halving when full). Entries carry the histogram; only latestDetail() keeps the thumbnail.
   */
  details(tensorId: number): readonly DetailMsg[] {
    return this.detailSlots.get(tensorId)?.history ?? [];
  }

  summary(): RunSummary {
    const f = this._firstNonFinite;
    return {
      globalNorm: { first: this.gFirst, max: this.gMax, last: this.gLast },
      firstNonFiniteStep: f ? f.step : null,
      firstNonFinite: f ? { step: f.step, tensorId: f.tensorId } : null,
    };
  }

  /** Bytes held: typed arrays exactly, details, events and tensor metadata estimated. */
  memoryBytes(): number {
    let b = this.stepRing.byteLength + this.ringN.byteLength + this.ringMask.byteLength + this.ringOpt.byteLength;
    b += this.firstOrd.byteLength + this.firstStep.byteLength + this.absentCount.byteLength + this.ownedCount.byteLength;
    b += this.bucketFirst.byteLength + this.bucketLast.byteLength + this.bucketOpt.byteLength;
    b += this.ringAbsent.byteLength + this.envPresence.byteLength;
    b += this.gnorm.byteLength + this.lossCurve.byteLength;
    for (const c of this.optCurves.values()) b += c.gnorm.byteLength + c.loss.byteLength;
    for (const sc of this.cols) {
      if (!sc) continue;
      b += sc.ring.byteLength + sc.min.byteLength + sc.max.byteLength + sc.last.byteLength + sc.flags.byteLength;
    }
    return b + this.detailBytes + this.eventBytes + this.tensorInfoBytes + this.optimizerBytes;
  }
}

/**
 * The stated bound, in bytes, for `tensors` tensors, `stats` statistics and `optimizers` optimizers
 * that stepped, excluding details, events, tensor and optimizer metadata (see the header comment).
 * memoryBytes() stays at or below this plus those parts, with `tensors` the tensor capacity.
 */
export function seriesMemoryBound(tensors: number, stats: number, opts: RunStoreOptions = {}, optimizers = 1): number {
  const R = Math.max(1, Math.floor(opts.recentSteps ?? STORE_DEFAULTS.recentSteps));
  const E = evenAtLeast2(Math.floor(opts.envelopeBuckets ?? STORE_DEFAULTS.envelopeBuckets));
  const G = evenAtLeast2(Math.floor(opts.curvePoints ?? STORE_DEFAULTS.curvePoints));
  const K = optimizers >= 2 ? Math.min(optimizers, MAX_CURVE_OPTIMIZERS) : 0;
  return tensors * stats * (4 * R + 13 * E) + tensors * (R + E) + 17 * R + 20 * E + 32 * tensors + 2 * 17 * G * (1 + K);
}

function countPresent(has: Float64Array, n: number): number {
  let c = 0;
  for (let i = 0; i < n; i++) if (!(i < has.length && has[i] === 0)) c++;
  return c;
}

/**
 * Overflow-safe sqrt(Σ v²) of the first n values, skipping those `has` marks absent (0): NaN if any
 * is NaN, Inf if any is ±Inf.
 */
function globalNormOf(col: Float64Array, n: number, has: Float64Array | null = null): number {
  let scale = 0;
  let inf = false;
  for (let i = 0; i < n; i++) {
    if (has && i < has.length && has[i] === 0) continue;
    const v = col[i];
    if (v !== v) return NaN;
    const a = v < 0 ? -v : v;
    if (a === Infinity) inf = true;
    else if (a > scale) scale = a;
  }
  if (inf) return Infinity;
  if (scale === 0) return 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    if (has && i < has.length && has[i] === 0) continue;
    const r = col[i] / scale;
    sum += r * r;
  }
  return scale * Math.sqrt(sum);
}

function emptySeries(tensorId: number, stat: StatName): Series {
  return {
    tensorId,
    stat,
    envelope: { stepFirst: EMPTY_F64, stepLast: EMPTY_F64, min: EMPTY_F32, max: EMPTY_F32, last: EMPTY_F32, flags: EMPTY_U8, absent: EMPTY_U8, width: 1 },
    steps: EMPTY_F64,
    values: EMPTY_F32,
    absentSteps: EMPTY_F64,
  };
}
