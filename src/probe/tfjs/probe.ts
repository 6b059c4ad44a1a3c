// The probe proper: turns what the capture hooks see into protocol messages.
//
// Per optimizer step (inside the wrapped applyGradients, on the training thread) it notes new
// tensors (TENSORS) and computes the per-step tier: on cpu/wasm in one JS pass over each gradient,
// read in place (inlineStep), or, for a model where that pass costs too much of the step, in the
// stats worker from one packed copy (hostStep); on the native backend with a few tf ops and one read
// (deviceStep). On the steps that measure paramNorm/updateNorm (weightsSchedule.ts) it also copies
// the parameters before the update. The detail tier (histograms, thumbnails) always goes to the
// worker, from one packed copy of the gradients. Results become STEP / DETAIL / EVENT frames.
//
// Results are also pulled synchronously at every step (receiveMessageOnPort), so a training loop
// that never yields to the event loop still streams its steps; and at the end of the run (exit,
// crash, step limit) everything pending is drained synchronously before END is written.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type * as tfTypes from '@tensorflow/tfjs';
import { ROW, ROW_LENGTH, TENSOR_ROW_STATS, type ErrorInfo, type Message, type ProbeEndReason, type SourceLocation, type TensorInfo } from '../../core/protocol/messages';
import type { BackendSelection } from './backend';
import { Capture, type CaptureSink, type NamedGrad } from './capture';
import { Channel } from './channel';
import { ChangedGrads, sameShape, type Compared } from './changedGrads';
import { DeviceStats } from './deviceStats';
import { BufferPool, makeReader, pack, type Reader } from './packing';
import { InputScale } from './inputs';
import { compileErrorSite, firstUserFrame, firstUserFrameOfSite, type Site } from './sourceSite';
import { AnomalyTracker } from './stats';
import { StatsState, runJob, stepRows } from './statsJob';
import { WeightsSchedule } from './weightsSchedule';
import { jobBuffers, offsetsOf, slot, type DetailJob, type StepJob, type WorkerJob, type WorkerReply, type WorkerResult } from './workerProtocol';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

export interface ProbeOptions {
  channelFd: number;
  script: string;
  /** 0: no limit. */
  maxSteps: number;
  /** 0: automatic. */
  detailEvery: number;
  /** paramNorm/updateNorm every N steps; 0: automatic (weightsSchedule.ts). */
  weightsEvery?: number;
  /**
   * Where the per-step tier is computed: 'device' on the device (the default on tensorflow); 'inline'
   * on the training thread; 'host' in the stats worker. Default elsewhere: inline, moving to the
   * worker if it costs more than INLINE_BUDGET of the step (see inlineStep).
   */
  statsMode?: 'host' | 'inline' | 'device' | '';
  /** Called when the host end of the channel goes away. */
  onHostGone: (why: string) => void;
  /** The machine's name, said in HELLO (remote runs). */
  host?: string;
}

interface Known {
  info: TensorInfo;
  /** Whether a step has included this tensor yet (the first one also sends the weights before the update). */
  seen: boolean;
}

interface StepEntry {
  known: Known;
  g: Tensor;
  v: tfTypes.Variable | null;
  /** Whether this step measures the tensor's paramNorm/updateNorm. */
  weigh: boolean;
}

interface StepCtx {
  entries: StepEntry[];
  /** The loss read on the host (null: none seen, or it is in lossTensor). */
  loss: number | null;
  lossTensor: Tensor | null;
  /** The schedule made this a weights step (tensors seen for the first time are weighed regardless). */
  weightsDue: boolean;
  /** The weighed parameters before the update, packed in entry order (host path). */
  w0: Float32Array | null;
  /** Time spent on the weights tier before the update, ms. */
  weighMs: number;
}

interface PendingStep {
  step: number;
  nTensors: number;
  /** null: the step had no loss (NO_LOSS on the wire), never NaN for it. */
  loss: number | null;
  wallMs: number;
  /** Training-thread time spent on the weights tier (0: the step did not measure it), ms. */
  weighMs: number;
}

/**
 * Bounds on work handed to the worker and not yet answered. Past them a step's statistics are
 * skipped (and counted) rather than letting copies pile up: training is never slowed by the probe.
 * The byte bound is the one that matters for big models; the count bounds a burst of tiny steps
 * (a synchronous loop that runs before the worker has even started).
 */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
const MAX_WORKER_BACKLOG = 512;
/** Automatic detail tier: the first interval, and the shortest (as the torch probe's). */
const AUTO_DETAIL_START = 10;
/**
 * Automatic detail tier: its average share of the step interval (the worker's CPU time and the
 * frames' encoding on the training thread; the worker competes for a core on small machines).
 */
const DETAIL_BUDGET = 0.05;
/** Automatic detail tier: detail frames per second the host is asked to take, at most. */
const DETAIL_BYTES_PER_S = 1e6;
/**
 * The per-step tier runs on the training thread while it costs less than this share of the step, or
 * less than INLINE_MIN_MS. One pass over each gradient, read in place, is ~0.6 ns a value; the worker
 * path costs the training thread a copy (~0.15 ns a value) plus a message, and the process a second
 * thread that wakes every step, which on a busy 2-core machine competes with training: on the MLP
 * 784-256-256-10 on wasm the two measured within noise of each other (CPU ×1.01–1.035 inline,
 * ×1.02–1.035 in the worker, over two sets of interleaved runs). A model with many parameters per
 * unit of compute crosses the budget and moves to the worker for good.
 */
const INLINE_BUDGET = 0.01;
const INLINE_MIN_MS = 1;
const INLINE_JUDGE_FROM = 20;

function probeVersion(): string {
  for (const p of [join(__dirname, '..', '..', '..', 'package.json'), join(__dirname, '..', '..', 'package.json')]) {
    try {
      const v = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (v.name === 'gradscope' && v.version) return v.version;
    } catch {
      /* next */
    }
  }
  return '0.0.0';
}

const errMsg = (e: unknown): string => String((e as Error)?.message ?? e);

export class Probe implements CaptureSink {
  readonly channel: Channel;
  private tf!: Tf;
  private capture!: Capture;
  private readonly t0 = performance.now();
  private steps = 0;
  private finished = false;
  private readonly tensors: Known[] = [];
  private readonly byName = new Map<string, Known>();
  private readonly layerSites = new WeakMap<object, Site>();
  private readonly layers: WeakRef<object>[] = [];
  private readonly varSites = new Map<string, { site: Site | null; layer: WeakRef<object> | null }>();
  private pendingLoss: number | null = null;
  private pendingLossTensor: Tensor | null = null;
  /** Gradient computations (with a scalar value) since the last applyGradients: their losses add up. */
  private pendingLosses = 0;
  /** Gradients changed between their computation and applyGradients (a clip by hand): changedGrads.ts. */
  private readonly changed = new ChangedGrads(
    (computed, applied) => this.globalNorms(computed, applied),
    (m) => void this.send(m),
  );
  private readonly warned = new Set<string>();
  private detailEvery: number;
  private readonly autoDetail: boolean;
  private lastDetail: number | null = null;
  private readonly weights: WeightsSchedule;
  private reader: Reader = (t) => t.dataSync();
  private readonly pool = new BufferPool();
  /** Device path: smoothed time of compute() on steps without the weights tier, ms. */
  private devicePlainMs = 0;
  /** Inline per-step tier: its time (paramNorm/updateNorm left out), smoothed, ms. */
  private inlineMs = 0;
  private lastApplyAt = 0;
  private stepIntervalMs = 0;
  private deviceMode = false;
  private device: DeviceStats | null = null;
  /** Anomalies seen on this thread (the device path and the inline per-step tier; the worker has its own). */
  private localAnomalies = new AnomalyTracker();
  private inlineStepTier = false;
  // Worker plumbing.
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private signal = new Int32Array(new SharedArrayBuffer(4));
  private inlineState: StatsState | null = null;
  private jobSeq = 0;
  private repliesSeen = 0;
  private readonly pending = new Map<number, PendingStep>();
  private stepsDropped = 0;
  private inFlightBytes = 0;
  private readonly jobBytes = new Map<number, number>();
  private nonFiniteReported = false;
  /** The first layer's input scale (inputs.ts). */
  private readonly inputs = new InputScale({
    send: (m) => void (this.finished || this.send(m)),
    steps: () => this.steps,
    tensorIdOf: (name) => this.byName.get(name)?.info.id,
    warn: (where, e) => this.warn(where, e),
  });

  constructor(private readonly opts: ProbeOptions) {
    this.channel = new Channel(opts.channelFd, (why) => {
      if (!this.finished) opts.onHostGone(why);
    });
    this.autoDetail = !(opts.detailEvery > 0);
    this.detailEvery = this.autoDetail ? AUTO_DETAIL_START : Math.floor(opts.detailEvery);
    this.weights = new WeightsSchedule(opts.weightsEvery ?? 0);
  }

  private send(msg: Message): boolean {
    return this.channel.send(msg);
  }

  /** An `info` EVENT (locate mode's report: ./locate.ts). */
  info(message: string): void {
    this.send({ type: 'event', kind: 'info', message });
  }

  warn(where: string, e: unknown): void {
    const key = `${where}: ${errMsg(e)}`;
    if (this.warned.has(key) || this.warned.size > 50) return;
    this.warned.add(key);
    this.send({ type: 'event', kind: 'warning', message: `probe ${key}` });
  }

  /** Optimizer steps observed so far. */
  get stepsSeen(): number {
    return this.steps;
  }

  /** HELLO and the backend event; no hooks yet. */
  hello(sel: BackendSelection | null, failure?: string): void {
    this.send({
      type: 'hello',
      probeVersion: probeVersion(),
      framework: 'tfjs',
      backend: sel?.backend ?? 'none',
      device: sel?.device ?? 'unknown',
      backendReason: sel?.reason ?? failure ?? '',
      pid: process.pid,
      rank: 0,
      script: this.opts.script,
      detailEvery: this.detailEvery,
      marksNoLoss: true,
      ...(this.opts.host !== undefined ? { host: this.opts.host } : {}),
    });
    if (sel) {
      const version = (sel.tf.version as Record<string, string> | undefined)?.['tfjs-core'];
      let message = version ? `${sel.reason} (tfjs ${version})` : sel.reason;
      if (sel.composedKernels.length) message += ` (GradScope added wasm kernels: ${sel.composedKernels.join(', ')})`;
      this.send({ type: 'event', kind: 'backend', message });
    } else if (failure) {
      this.send({ type: 'event', kind: 'warning', message: failure });
    }
  }

  /** Installs the hooks on the chosen tfjs and starts the stats worker. */
  start(sel: BackendSelection): void {
    this.tf = sel.tf;
    this.deviceMode = this.opts.statsMode === 'device' || (this.opts.statsMode !== 'host' && sel.backend === 'tensorflow');
    if (this.deviceMode) this.device = new DeviceStats(this.tf);
    else this.reader = makeReader(this.tf, sel.backend);
    this.inlineStepTier = !this.deviceMode && this.opts.statsMode !== 'host';
    this.startWorker();
    this.capture = new Capture(this.tf, this);
    this.capture.install();
  }

  private startWorker(): void {
    try {
      const { port1, port2 } = new MessageChannel();
      const w = new Worker(join(__dirname, 'statsWorker.js'), {
        workerData: { port: port2, signal: this.signal.buffer },
        transferList: [port2],
        stdout: false,
        stderr: false,
      });
      w.on('error', (e) => {
        this.warn('stats worker', e);
        this.worker = null;
        this.port = null;
        this.inlineState = new StatsState();
      });
      w.unref();
      port1.on('message', (m: WorkerReply) => {
        this.channel.cork();
        try {
          this.onReply(m);
        } finally {
          this.channel.uncork();
        }
      });
      port1.unref();
      this.worker = w;
      this.port = port1;
    } catch (e) {
      this.warn('stats worker (computing on the main thread instead)', e);
      this.inlineState = new StatsState();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Capture sink

  onLayer(layer: object, site: Site): void {
    this.layerSites.set(layer, site);
    this.layers.push(new WeakRef(layer));
    this.inputs.watch(layer);
  }

  onVariable(name: string, site: Site | null, layer: object | null): void {
    this.varSites.set(name, { site, layer: layer ? new WeakRef(layer) : null });
  }

  /**
   * Every gradient computation since the last applyGradients feeds the step about to be applied
   * (accumulation over micro-batches: variableGrads per batch, the gradients added, one
   * applyGradients): the step's loss is the sum of their values, as the torch probe sums the
   * scalars back-propagated since the last step. (It used to be the last batch's value alone.)
   */
  onGradientsValue(value: Tensor): void {
    const first = this.pendingLosses === 0;
    this.pendingLosses++;
    if (this.deviceMode) {
      const prev = this.pendingLossTensor;
      const v = value.reshape([]);
      this.pendingLossTensor = this.tf.keep(first || !prev ? this.tf.clone(v) : this.tf.add(prev, v));
      v.dispose();
      prev?.dispose();
    } else {
      // cpu/wasm compute eagerly: the value is there already, reading a scalar costs nothing.
      const v = Number(value.dataSync()[0]);
      this.pendingLoss = first || this.pendingLoss === null ? v : this.pendingLoss + v;
    }
  }

  /** The gradients a computation made (see changedGrads.ts: a script that changes them before applyGradients). */
  onGradients(computed: ReadonlyMap<string, Tensor>): void {
    this.changed.onComputed(computed);
  }

  /**
   * The global L2 norms of two lists of tensors (computed, applied), the cosine between them and
   * their largest |g| (for changedGrads.ts, on the first changed step and while it looks for a
   * clip's threshold: one read); null where the script disposed one already or the read fails.
   */
  private globalNorms(computed: Tensor[], applied: Tensor[]): Compared | null {
    if (computed.some((t) => t.isDisposed) || applied.some((t) => t.isDisposed)) return null;
    const aligned = computed.every((t, i) => t.size === applied[i].size);
    const tf = this.tf;
    try {
      const five = tf.tidy(() => {
        const f = (t: Tensor): Tensor => tf.cast(t, 'float32').reshape([-1]);
        const sumOf = (xs: Tensor[]): Tensor => (xs.length === 1 ? xs[0] : tf.addN(xs));
        const maxOf = (ts: Tensor[]): Tensor => tf.max(tf.stack(ts.map((t) => tf.max(tf.abs(f(t))))));
        const cc = sumOf(computed.map((t) => tf.sum(tf.square(f(t)))));
        const aa = sumOf(applied.map((t) => tf.sum(tf.square(f(t)))));
        const ca = aligned ? sumOf(computed.map((t, i) => tf.sum(tf.mul(f(t), f(applied[i]))))) : tf.scalar(Number.NaN);
        return tf.stack([cc, aa, ca, maxOf(computed), maxOf(applied)]);
      });
      const [cc, aa, ca, cm, am] = five.dataSync();
      five.dispose();
      const cn = Math.sqrt(cc);
      const an = Math.sqrt(aa);
      return { computed: cn, applied: an, cosine: cn > 0 && an > 0 ? ca / (cn * an) : 0, computedMax: cm, appliedMax: am };
    } catch {
      return null;
    }
  }

  beforeApply(_optimizer: object, grads: NamedGrad[], outer: unknown): StepCtx {
    // Nothing can be delivered any more (the script closed the channel's descriptor): the script
    // goes on uninstrumented; afterApply only counts the step, for the step limit.
    if (!this.channel.open) return { entries: [], loss: null, lossTensor: null, weightsDue: false, w0: null, weighMs: 0 };
    // Where the script changed them since they were computed (a clip by hand): the computed ones.
    grads = this.changed.toMeasure(this.steps, grads);
    const vars = this.capture.engine.registeredVariables;
    const fresh: TensorInfo[] = [];
    const entries: StepEntry[] = [];
    const weightsDue = this.weights.due(this.steps);
    for (const { name, tensor } of grads) {
      let known = this.byName.get(name);
      if (!known || !sameShape(known.info.shape, tensor.shape)) {
        known = { info: this.describe(name, tensor.shape), seen: false };
        this.tensors.push(known);
        this.byName.set(name, known);
        fresh.push(known.info);
      }
      const v = vars[name] ?? null;
      // A tensor's first step always has them (the analysis judges the initialisation by it).
      const weigh = v !== null && v.size === tensor.size && (weightsDue || !known.seen);
      entries.push({ known, g: tensor, v, weigh });
    }
    if (fresh.length) this.send({ type: 'tensors', tensors: fresh });
    // The weights before the update: a copy (host path) or a snapshot (device path).
    const t0 = performance.now();
    let w0: Float32Array | null = null;
    const weighed = entries.filter((e) => e.weigh);
    if (weighed.length) {
      if (this.device) for (const e of weighed) this.device.snapshot(e.known.info.id, e.v!);
      else
        w0 = pack(
          this.reader,
          weighed.map((e) => e.v!),
          this.pool,
        ).data;
    }
    const ctx: StepCtx = { entries, loss: this.pendingLoss, lossTensor: this.pendingLossTensor, weightsDue, w0, weighMs: performance.now() - t0 };
    this.pendingLoss = null;
    this.pendingLossTensor = null;
    this.pendingLosses = 0;
    const o = outer as StepCtx | null;
    if (o) {
      // A nested call (super.applyGradients): the loss seen before the outer call belongs to this step.
      ctx.loss = o.loss;
      ctx.lossTensor = o.lossTensor;
      o.loss = null;
      o.lossTensor = null;
    }
    return ctx;
  }

  afterApply(raw: unknown): void {
    const ctx = raw as StepCtx;
    this.changed.onApplied();
    if (!this.channel.open) {
      this.steps++;
      this.checkStepLimit();
      return;
    }
    const step = this.steps++;
    const now = performance.now();
    if (this.lastApplyAt) {
      const dt = now - this.lastApplyAt;
      this.stepIntervalMs = this.stepIntervalMs ? 0.8 * this.stepIntervalMs + 0.2 * dt : dt;
    }
    this.lastApplyAt = now;
    for (const e of ctx.entries) e.known.seen = true;
    if (ctx.weightsDue) this.weights.taken(step);
    const wallMs = now - this.t0;
    const detail = this.autoDetail ? this.lastDetail === null || step - this.lastDetail >= this.detailEvery : step % this.detailEvery === 0;
    if (detail) this.lastDetail = step;
    if (this.device) this.deviceStep(ctx, step, wallMs, detail);
    else if (this.inlineStepTier) this.inlineStep(ctx, step, wallMs, detail);
    else this.hostStep(ctx, step, wallMs, detail);
    this.poll();
    this.checkStepLimit();
  }

  private checkStepLimit(): void {
    if (this.opts.maxSteps > 0 && this.steps >= this.opts.maxSteps) {
      this.finish('step-limit');
      process.exit(0);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Per-step paths

  private hostStep(ctx: StepCtx, step: number, wallMs: number, detail: boolean): void {
    if (this.worker && (this.inFlightBytes > MAX_IN_FLIGHT_BYTES || this.jobSeq - this.repliesSeen >= MAX_WORKER_BACKLOG)) {
      // The worker is behind: skip this step's statistics rather than pile up copies.
      if (ctx.w0) this.pool.give(ctx.w0.buffer as ArrayBuffer);
      this.stepsDropped++;
      this.channel.noteDropped(1);
      return;
    }
    const g = pack(
      this.reader,
      ctx.entries.map((e) => e.g),
      this.pool,
    );
    const t0 = performance.now();
    const weighted: number[] = [];
    ctx.entries.forEach((e, i) => e.weigh && weighted.push(i));
    const w = ctx.w0
      ? pack(
          this.reader,
          weighted.map((i) => ctx.entries[i].v!),
          this.pool,
        ).data
      : null;
    const weighMs = ctx.w0 ? ctx.weighMs + performance.now() - t0 : 0;
    const job: StepJob = {
      kind: 'step',
      seq: this.jobSeq++,
      step,
      detail,
      jumpGap: this.jumpGap,
      ids: ctx.entries.map((e) => e.known.info.id),
      shapes: ctx.entries.map((e) => e.known.info.shape),
      sizes: g.sizes,
      g: g.data,
      weighted: w ? weighted : [],
      w,
      w0: w ? ctx.w0 : null,
    };
    this.pending.set(job.seq, { step, nTensors: this.tensors.length, loss: ctx.loss, wallMs, weighMs });
    this.post(job);
  }

  /** The per-step tier on this thread, straight from the tensors' memory; the detail tier in the worker. */
  private inlineStep(ctx: StepCtx, step: number, wallMs: number, detail: boolean): void {
    const entries = ctx.entries;
    const weighted: number[] = [];
    if (ctx.w0) entries.forEach((e, i) => e.weigh && weighted.push(i));
    const wOffsets = offsetsOf(weighted.map((i) => entries[i].v!.size));
    const t0 = performance.now();
    const rows = stepRows(
      entries.length,
      (i) => this.reader(entries[i].g),
      weighted,
      (k) => this.reader(entries[weighted[k]].v!),
      (k) => slot(ctx.w0!, wOffsets, k),
    );
    // What the worker would take off this thread: the pass over the gradients (the rest, the frame
    // and the anomaly check, happens here on either path).
    const ms = performance.now() - t0 - rows.weightsMs;
    if (ctx.w0) {
      this.pool.give(ctx.w0.buffer as ArrayBuffer);
      this.weights.tune(ctx.weighMs + rows.weightsMs, this.stepIntervalMs);
    }
    const ids = entries.map((e) => e.known.info.id);
    const seen = this.localAnomalies.observe(ids, rows.norms, rows.nonFinite);
    const p = { step, nTensors: this.tensors.length, loss: ctx.loss, wallMs, weighMs: 0 };
    this.emitStep(p, ids, rows.stats);
    if (seen.firstNonFinite !== null) this.emitNonFinite(step, seen.firstNonFinite, ids, rows.stats);
    if (this.localAnomalies.wantsDetail(step, seen, detail, this.jumpGap)) this.postDetail(ctx, step, p);
    // Judged on steps INLINE_JUDGE_FROM on: the first ones run the loops before they are compiled
    // (several times slower), and pay for the dense phase of the weights tier.
    if (step >= INLINE_JUDGE_FROM) this.inlineMs = this.inlineMs ? 0.8 * this.inlineMs + 0.2 * ms : ms;
    if (this.opts.statsMode !== 'inline' && this.port && step >= INLINE_JUDGE_FROM + 10 && this.inlineMs > Math.max(INLINE_MIN_MS, INLINE_BUDGET * this.stepIntervalMs)) {
      this.inlineStepTier = false;
    }
  }

  /** The detail tier of a step whose per-step tier is done: one read of the gradients, reduced in the worker. */
  private postDetail(ctx: StepCtx, step: number, p: PendingStep): void {
    const g = pack(
      this.reader,
      ctx.entries.map((e) => e.g),
      this.pool,
    );
    const job: DetailJob = {
      kind: 'detail',
      seq: this.jobSeq++,
      step,
      ids: ctx.entries.map((e) => e.known.info.id),
      shapes: ctx.entries.map((e) => e.known.info.shape),
      sizes: g.sizes,
      g: g.data,
    };
    this.pending.set(job.seq, p);
    this.post(job);
  }

  private deviceStep(ctx: StepCtx, step: number, wallMs: number, detail: boolean): void {
    const dev = this.device!;
    const t0 = performance.now();
    const { stats, loss } = dev.compute(
      ctx.entries.map((e) => ({ id: e.known.info.id, g: e.g, v: e.v, weigh: e.weigh })),
      ctx.lossTensor,
    );
    const computeMs = performance.now() - t0;
    if (!ctx.entries.some((e) => e.weigh)) {
      this.devicePlainMs = this.devicePlainMs ? 0.8 * this.devicePlainMs + 0.2 * computeMs : computeMs;
    } else if (this.devicePlainMs) {
      // The weights tier's share: what a weighed step's compute takes beyond a plain one's.
      this.weights.tune(ctx.weighMs + Math.max(0, computeMs - this.devicePlainMs), this.stepIntervalMs);
    }
    ctx.lossTensor?.dispose();
    const ids = ctx.entries.map((e) => e.known.info.id);
    const norms = ids.map((_, i) => stats[i * ROW_LENGTH + ROW.norm]);
    const nonFinite = ids.map((_, i) => stats[i * ROW_LENGTH + ROW.nanCount] + stats[i * ROW_LENGTH + ROW.infCount]);
    const seen = this.localAnomalies.observe(ids, norms, nonFinite);
    const { firstNonFinite } = seen;
    const lossValue = ctx.lossTensor ? loss : ctx.loss;
    this.emitStep({ step, nTensors: this.tensors.length, loss: lossValue, wallMs }, ids, stats);
    if (firstNonFinite !== null) this.emitNonFinite(step, firstNonFinite, ids, stats);
    if (this.localAnomalies.wantsDetail(step, seen, detail, this.jumpGap)) this.postDetail(ctx, step, { step, nTensors: this.tensors.length, loss: lossValue, wallMs, weighMs: 0 });
  }

  /** Steps a norm jump's detail tier must be from the previous one: the automatic interval, which keeps it in budget. */
  private get jumpGap(): number {
    return this.autoDetail ? this.detailEvery : 0;
  }

  private post(job: WorkerJob): void {
    const transfer = jobBuffers(job);
    const bytes = transfer.reduce((a, b) => a + b.byteLength, 0);
    this.inFlightBytes += bytes;
    this.jobBytes.set(job.seq, bytes);
    if (this.port) {
      this.port.postMessage(job, transfer);
      return;
    }
    this.inlineState ??= new StatsState();
    let reply: WorkerReply;
    try {
      reply = runJob(this.inlineState, job);
    } catch (e) {
      reply = { kind: 'error', seq: job.seq, message: errMsg(e), recycle: transfer };
    }
    this.onReply(reply);
  }

  // -------------------------------------------------------------------------------------------
  // Results

  /** Takes every result that is ready, without waiting. */
  poll(): void {
    if (this.port) {
      // One write for all the frames these results make (channel.ts).
      this.channel.cork();
      try {
        for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) this.onReply(m.message as WorkerReply);
      } finally {
        this.channel.uncork();
      }
    }
    this.channel.pump();
  }

  /** Waits (blocking) until every posted job has answered, or the deadline passes. */
  private drain(timeoutMs: number): void {
    const deadline = Date.now() + timeoutMs;
    while (this.repliesSeen < this.jobSeq && this.port && Date.now() < deadline) {
      const seen = Atomics.load(this.signal, 0);
      this.poll();
      if (this.repliesSeen >= this.jobSeq) break;
      Atomics.wait(this.signal, 0, seen, 20);
    }
    this.poll();
  }

  private onReply(m: WorkerReply): void {
    this.repliesSeen++;
    this.inFlightBytes -= this.jobBytes.get(m.seq) ?? 0;
    this.jobBytes.delete(m.seq);
    for (const b of m.recycle ?? []) this.pool.give(b);
    const p = this.pending.get(m.seq);
    this.pending.delete(m.seq);
    if (m.kind === 'error') {
      this.warn('stats worker', new Error(m.message));
      return;
    }
    if (!p) return;
    try {
      this.onResult(m, p);
    } catch (e) {
      this.warn('stats encoding', e);
    }
  }

  private onResult(r: WorkerResult, p: PendingStep): void {
    if (r.stats) {
      this.emitStep(p, r.ids, r.stats);
      if (r.firstNonFinite !== null) this.emitNonFinite(p.step, r.firstNonFinite, r.ids, r.stats);
      if (p.weighMs > 0) this.weights.tune(p.weighMs + r.weightsMs, this.stepIntervalMs);
    }
    if (!r.details.length) return;
    const t0 = performance.now();
    for (const d of r.details) this.send({ type: 'detail', step: p.step, ...d });
    // (an anomaly's detail tier counts as the interval's: the next one is `detailEvery` steps on)
    if (this.lastDetail === null || p.step > this.lastDetail) this.lastDetail = p.step;
    if (this.autoDetail) this.tuneDetail(r, performance.now() - t0);
  }

  private emitStep(p: Omit<PendingStep, 'weighMs'>, ids: number[], stats: Float64Array): void {
    const n = p.nTensors;
    // Every tensor of a tfjs step has a gradient: no hasGrad column (the protocol reads its absence
    // as "all present").
    // One column per statistic of the row (TENSOR_ROW_STATS, the STEP's `stats` in the same order).
    const columns = TENSOR_ROW_STATS.map(() => new Float64Array(n).fill(NaN));
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id >= n) continue;
      for (let s = 0; s < ROW_LENGTH; s++) columns[s][id] = stats[i * ROW_LENGTH + s];
    }
    this.send({ type: 'step', step: p.step, loss: p.loss, wallMs: p.wallMs, optimizer: 0, stats: [...TENSOR_ROW_STATS], columns, nTensors: n });
  }

  private emitNonFinite(step: number, id: number, ids: number[], stats: Float64Array): void {
    if (this.nonFiniteReported) return;
    this.nonFiniteReported = true;
    const i = ids.indexOf(id);
    const nan = stats[i * ROW_LENGTH + ROW.nanCount];
    const inf = stats[i * ROW_LENGTH + ROW.infCount];
    const name = this.tensors[id]?.info.name ?? `#${id}`;
    this.send({
      type: 'event',
      kind: 'non-finite',
      step,
      tensorId: id,
      message: `first non-finite gradient at step ${step}: ${name} has ${nan} NaN and ${inf} Inf value(s)`,
    });
  }

  /**
   * Automatic detail interval: keep the detail tier's work (the worker's, and the frames' encoding
   * here) under DETAIL_BUDGET of the step interval on average and its frames under
   * DETAIL_BYTES_PER_S for the host; never shorter than AUTO_DETAIL_START steps.
   */
  private tuneDetail(r: WorkerResult, sendMs: number): void {
    if (!(this.stepIntervalMs > 0)) return;
    const bytes = r.details.reduce((a, d) => a + 48 + 4 * d.hist.length + 4 * d.thumb.length + 16, 0);
    const byCpu = Math.ceil((r.detailMs + sendMs) / (DETAIL_BUDGET * this.stepIntervalMs));
    const byBytes = Math.ceil(bytes / (DETAIL_BYTES_PER_S * (this.stepIntervalMs / 1000)));
    this.detailEvery = Math.min(1000, Math.max(AUTO_DETAIL_START, byCpu, byBytes));
  }

  // -------------------------------------------------------------------------------------------
  // Tensor metadata

  private describe(name: string, shape: number[]): TensorInfo {
    const id = this.tensors.length;
    const vs = this.varSites.get(name);
    let layer = vs?.layer?.deref() ?? null;
    // RNN cells and wrappers create weights in an inner layer; the weight name is scoped by the
    // outer layer ("simple_rnn_SimpleRNN1/kernel"): prefer the outermost layer named in the scope.
    const segments = name.split('/').slice(0, -1);
    for (const seg of segments) {
      const outer = this.findLayer(seg);
      if (outer) {
        layer = outer;
        break;
      }
    }
    let source = null;
    let layerName = '';
    let layerType = 'Variable';
    if (layer) {
      const ln = (layer as { name?: unknown }).name;
      layerName = typeof ln === 'string' ? ln : '';
      layerType = layerClass(layer);
      const site = this.layerSites.get(layer);
      if (site) source = firstUserFrameOfSite(site, ctorNames(layer));
    }
    if (!source && vs?.site) source = firstUserFrameOfSite(vs.site);
    return { id, name, layer: layerName, layerType, shape: [...shape], source };
  }

  private findLayer(name: string): object | null {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const l = this.layers[i].deref();
      if (l && (l as { name?: unknown }).name === name) return l;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // End of run

  get isFinished(): boolean {
    return this.finished;
  }

  get stepCount(): number {
    return this.steps;
  }

  /** Drains pending statistics, writes END and flushes, synchronously. Idempotent. */
  finish(reason: ProbeEndReason, error?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    try {
      // Nobody reads what the worker still owes once the host is gone (or the channel was lost).
      if (this.channel.open) this.drain(3000);
    } catch (e) {
      this.warn('draining statistics', e);
    }
    if (this.stepsDropped) this.send({ type: 'event', kind: 'warning', message: `statistics of ${this.stepsDropped} step(s) skipped: the stats worker fell behind` });
    this.send({ type: 'end', reason, steps: this.steps, ...(error !== undefined ? { error: errorInfo(error, this.opts.script) } : {}) });
    this.channel.flushSync();
    this.channel.detach();
  }
}

/**
 * END's error. `script`: the entry script, checked with `node --check` for the site of a SyntaxError
 * that Node's stack does not locate (an ES module's: its location is only in what Node prints).
 */
export function errorInfo(e: unknown, script?: string): ErrorInfo {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    const err = e as Error;
    // A SyntaxError is said as such ("Unexpected end of input" alone reads like a data error). Its
    // site: the broken line that Node's "file:line" head names (CommonJS; for a module required by
    // one that ran, not the require() call in the first user frame), else the first user frame, else
    // (an ES module graph that never linked: no location anywhere) what `node --check` finds.
    const frame = compileErrorSite(err) ?? firstUserFrame(err.stack) ?? (err.name === 'SyntaxError' && script ? checkedSyntaxSite(script) : null);
    const message = String(err.message ?? err);
    const info: ErrorInfo = { message: err.name === 'SyntaxError' ? `SyntaxError: ${message}` : message, stack: String(err.stack ?? '') };
    if (frame) info.frame = frame;
    return info;
  }
  return { message: String(e) };
}

/**
 * Where `node --check` finds a SyntaxError: in the entry script, else in the first local module its
 * static imports reach (an ES module graph is parsed whole before any of it runs, so the error may be
 * in a file the entry imports; Node's rejection of the import names none). Relative specifiers only,
 * breadth first, at most CHECKED_MODULES files; null when none fails the check.
 */
function checkedSyntaxSite(script: string): SourceLocation | null {
  const queue = [resolve(script)];
  const seen = new Set(queue);
  for (let i = 0; i < queue.length && i < CHECKED_MODULES; i++) {
    const file = queue[i];
    if (!/\.(js|mjs|cjs)$/.test(file)) continue; // (TypeScript: compiled by the runner, not by node)
    let checked: SpawnSyncReturns<string>;
    try {
      checked = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
    } catch {
      return null;
    }
    if (checked.status) return compileErrorSite({ name: 'SyntaxError', stack: checked.stderr });
    let source: string;
    try {
      source = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const spec of relativeImports(source)) {
      const target = resolveLocal(dirname(file), spec);
      if (target && !seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  return null;
}

/** How many files checkedSyntaxSite checks at most (a `node --check` is ~40 ms). */
const CHECKED_MODULES = 64;

/** The relative specifiers of a module's static imports and re-exports (`import … from './x.js'`, `import './x.js'`, `export … from '../y.mjs'`). */
export function relativeImports(source: string): string[] {
  const out: string[] = [];
  // A statement (at the start of a line or after `;` / `}`), or a dynamic import() anywhere.
  const re = /(?:(?:^|[;\n}])\s*(?:import|export)\b[^'"`;(]*?|\bimport\s*\(\s*)(['"])(\.{1,2}\/[^'"\n]+)\1/g;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[2]);
  return out;
}

/** A relative specifier's file as Node's ESM resolver finds it (the exact path; no extension search in ESM), or, for a Babel-style extension-less one, the first of `.js`, `.mjs`, `.cjs`, `/index.js` that exists. */
function resolveLocal(from: string, spec: string): string | null {
  const base = resolve(from, spec.split(/[?#]/)[0]);
  for (const f of [base, `${base}.js`, `${base}.mjs`, `${base}.cjs`, join(base, 'index.js')]) {
    try {
      if (statSync(f).isFile()) return f;
    } catch {
      // (not this one)
    }
  }
  return null;
}

function layerClass(layer: object): string {
  const ctor = (layer as { constructor?: { name?: string; className?: string } }).constructor;
  if (ctor && Object.prototype.hasOwnProperty.call(ctor, 'className') && ctor.className) return ctor.className;
  if (ctor?.name) return ctor.name;
  try {
    return String((layer as { getClassName(): string }).getClassName());
  } catch {
    return 'Layer';
  }
}

/** Constructor names along the prototype chain: their `new X` frames are inside the layer's own construction. */
function ctorNames(layer: object): Set<string> {
  const out = new Set<string>();
  for (let p = Object.getPrototypeOf(layer) as object | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    const n = (p.constructor as { name?: string } | undefined)?.name;
    if (n) out.add(n);
  }
  return out;
}
