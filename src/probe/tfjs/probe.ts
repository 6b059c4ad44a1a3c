// The probe proper: turns what the capture hooks see into protocol messages.
//
// Per optimizer step (inside the wrapped applyGradients, on the training thread) it does only what
// must happen there: note new tensors (TENSORS), copy each gradient and parameter once, and hand the
// copies to the stats worker. The worker's results come back as STEP / DETAIL / EVENT frames. On the
// native backend the per-step statistics are computed on the device instead, with one read.
//
// Results are also pulled synchronously at every step (receiveMessageOnPort), so a training loop
// that never yields to the event loop still streams its steps; and at the end of the run (exit,
// crash, step limit) everything pending is drained synchronously before END is written.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type * as tfTypes from '@tensorflow/tfjs';
import { type ErrorInfo, type StatName, type Message, type ProbeEndReason, type TensorInfo } from '../../core/protocol/messages';
import type { BackendSelection } from './backend';
import { Capture, type CaptureSink, type NamedGrad } from './capture';
import { Channel } from './channel';
import { DeviceStats } from './deviceStats';
import { firstUserFrame, firstUserFrameOfSite, type Site } from './sourceSite';
import { AnomalyTracker } from './stats';
import { StatsState, runJob } from './statsJob';
import { STATS_PER_TENSOR, type DetailJob, type StepJob, type WorkerJob, type WorkerReply, type WorkerResult } from './workerProtocol';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

export interface ProbeOptions {
  channelFd: number;
  script: string;
  /** 0: no limit. */
  maxSteps: number;
  /** 0: automatic. */
  detailEvery: number;
  /** 'device' forces the on-device statistics path (default: device on tensorflow, worker elsewhere). */
  statsMode?: 'host' | 'device' | '';
  /** Called when the host end of the channel goes away. */
  onHostGone: (why: string) => void;
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
  w0: Float32Array | null;
}

interface StepCtx {
  entries: StepEntry[];
  loss: number;
  lossTensor: Tensor | null;
}

interface PendingStep {
  step: number;
  nTensors: number;
  loss: number;
  wallMs: number;
}

/**
 * Bounds on work handed to the worker and not yet answered. Past them a step's statistics are
 * skipped (and counted) rather than letting copies pile up: training is never slowed by the probe.
 * The byte bound is the one that matters for big models; the count bounds a burst of tiny steps
 * (a synchronous loop that runs before the worker has even started).
 */
/** The statistics the stats worker computes per tensor, in its row order (STATS_PER_TENSOR of them). */
const TFJS_STATS: readonly StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
const MAX_WORKER_BACKLOG = 512;
const AUTO_DETAIL_START = 10;

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
  private sel!: BackendSelection;
  private capture!: Capture;
  private readonly t0 = performance.now();
  private steps = 0;
  private finished = false;
  private readonly tensors: Known[] = [];
  private readonly byName = new Map<string, Known>();
  private readonly layerSites = new WeakMap<object, Site>();
  private readonly layers: WeakRef<object>[] = [];
  private readonly varSites = new Map<string, { site: Site | null; layer: WeakRef<object> | null }>();
  private pendingLoss = NaN;
  private pendingLossTensor: Tensor | null = null;
  private readonly warned = new Set<string>();
  private detailEvery: number;
  private readonly autoDetail: boolean;
  private lastApplyAt = 0;
  private stepIntervalMs = 0;
  private deviceMode = false;
  private device: DeviceStats | null = null;
  private deviceAnomalies = new AnomalyTracker();
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

  constructor(private readonly opts: ProbeOptions) {
    this.channel = new Channel(opts.channelFd, (why) => {
      if (!this.finished) opts.onHostGone(why);
    });
    this.autoDetail = !(opts.detailEvery > 0);
    this.detailEvery = this.autoDetail ? AUTO_DETAIL_START : Math.floor(opts.detailEvery);
  }

  private send(msg: Message): boolean {
    return this.channel.send(msg);
  }

  warn(where: string, e: unknown): void {
    const key = `${where}: ${errMsg(e)}`;
    if (this.warned.has(key) || this.warned.size > 50) return;
    this.warned.add(key);
    this.send({ type: 'event', kind: 'warning', message: `probe ${key}` });
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
    });
    if (sel) {
      let message = sel.reason;
      if (sel.composedKernels.length) message += ` (GradScope added wasm kernels: ${sel.composedKernels.join(', ')})`;
      this.send({ type: 'event', kind: 'backend', message });
    } else if (failure) {
      this.send({ type: 'event', kind: 'warning', message: failure });
    }
  }

  /** Installs the hooks on the chosen tfjs and starts the stats worker. */
  start(sel: BackendSelection): void {
    this.sel = sel;
    this.tf = sel.tf;
    this.deviceMode = this.opts.statsMode === 'device' || (this.opts.statsMode !== 'host' && sel.backend === 'tensorflow');
    if (this.deviceMode) this.device = new DeviceStats(this.tf);
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
      port1.on('message', (m: WorkerReply) => this.onReply(m));
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
  }

  onVariable(name: string, site: Site | null, layer: object | null): void {
    this.varSites.set(name, { site, layer: layer ? new WeakRef(layer) : null });
  }

  onGradientsValue(value: Tensor): void {
    if (this.deviceMode) {
      this.pendingLossTensor?.dispose();
      this.pendingLossTensor = this.tf.keep(this.tf.clone(value));
    } else {
      // cpu/wasm compute eagerly: the value is there already, reading a scalar costs nothing.
      this.pendingLoss = Number(value.dataSync()[0]);
    }
  }

  beforeApply(_optimizer: object, grads: NamedGrad[], outer: unknown): StepCtx {
    const vars = this.capture.engine.registeredVariables;
    const fresh: TensorInfo[] = [];
    const entries: StepEntry[] = [];
    for (const { name, tensor } of grads) {
      let known = this.byName.get(name);
      if (!known || !sameShape(known.info.shape, tensor.shape)) {
        known = { info: this.describe(name, tensor.shape), seen: false };
        this.tensors.push(known);
        this.byName.set(name, known);
        fresh.push(known.info);
      }
      const v = vars[name] ?? null;
      let w0: Float32Array | null = null;
      if (!known.seen && v) {
        if (this.device) this.device.snapshot(known.info.id, v);
        else w0 = this.copyOut(v);
      }
      entries.push({ known, g: tensor, v, w0 });
    }
    if (fresh.length) this.send({ type: 'tensors', tensors: fresh });
    const ctx: StepCtx = { entries, loss: this.pendingLoss, lossTensor: this.pendingLossTensor };
    this.pendingLoss = NaN;
    this.pendingLossTensor = null;
    const o = outer as StepCtx | null;
    if (o) {
      // A nested call (super.applyGradients): the loss seen before the outer call belongs to this step.
      ctx.loss = o.loss;
      ctx.lossTensor = o.lossTensor;
      o.loss = NaN;
      o.lossTensor = null;
    }
    return ctx;
  }

  afterApply(raw: unknown): void {
    const ctx = raw as StepCtx;
    const step = this.steps++;
    const now = performance.now();
    if (this.lastApplyAt) {
      const dt = now - this.lastApplyAt;
      this.stepIntervalMs = this.stepIntervalMs ? 0.8 * this.stepIntervalMs + 0.2 * dt : dt;
    }
    this.lastApplyAt = now;
    for (const e of ctx.entries) e.known.seen = true;
    const wallMs = now - this.t0;
    const detail = step % this.detailEvery === 0;
    if (this.device) this.deviceStep(ctx, step, wallMs, detail);
    else this.hostStep(ctx, step, wallMs, detail);
    this.poll();
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
      this.stepsDropped++;
      this.channel.noteDropped(1);
      return;
    }
    const job: StepJob = { kind: 'step', seq: this.jobSeq++, step, detail, tensors: [] };
    const transfer: ArrayBuffer[] = [];
    for (const e of ctx.entries) {
      const g = this.copyOut(e.g);
      const w = e.v ? this.copyOut(e.v) : null;
      job.tensors.push({ id: e.known.info.id, shape: e.known.info.shape, g, w, w0: e.w0 });
      transfer.push(g.buffer as ArrayBuffer);
      if (w) transfer.push(w.buffer as ArrayBuffer);
      if (e.w0) transfer.push(e.w0.buffer as ArrayBuffer);
    }
    this.pending.set(job.seq, { step, nTensors: this.tensors.length, loss: ctx.loss, wallMs });
    this.post(job, transfer);
  }

  private deviceStep(ctx: StepCtx, step: number, wallMs: number, detail: boolean): void {
    const dev = this.device!;
    const { stats, loss } = dev.compute(
      ctx.entries.map((e) => ({ id: e.known.info.id, g: e.g, v: e.v })),
      ctx.lossTensor,
    );
    ctx.lossTensor?.dispose();
    const ids = ctx.entries.map((e) => e.known.info.id);
    const norms = ids.map((_, i) => stats[i * STATS_PER_TENSOR]);
    const nonFinite = ids.map((_, i) => stats[i * STATS_PER_TENSOR + 2] + stats[i * STATS_PER_TENSOR + 3]);
    const { firstNonFinite, jump } = this.deviceAnomalies.observe(ids, norms, nonFinite);
    const lossValue = ctx.lossTensor ? loss : ctx.loss;
    this.emitStep({ step, nTensors: this.tensors.length, loss: lossValue, wallMs }, ids, stats);
    if (firstNonFinite !== null) this.emitNonFinite(step, firstNonFinite, ids, stats);
    if (detail || firstNonFinite !== null || jump) {
      // Detail tier: one read of each gradient, reduced in the worker.
      const job: DetailJob = { kind: 'detail', seq: this.jobSeq++, step, tensors: [] };
      const transfer: ArrayBuffer[] = [];
      for (const e of ctx.entries) {
        const g = this.copyOut(e.g);
        job.tensors.push({ id: e.known.info.id, shape: e.known.info.shape, g });
        transfer.push(g.buffer as ArrayBuffer);
      }
      this.pending.set(job.seq, { step, nTensors: this.tensors.length, loss: lossValue, wallMs });
      this.post(job, transfer);
    }
  }

  /** A private float32 copy of a tensor's values, safe to transfer to the worker. */
  private copyOut(t: Tensor): Float32Array {
    const d = t.dataSync() as ArrayLike<number> & { buffer?: ArrayBufferLike; byteOffset?: number; byteLength?: number };
    // wasm's readSync already returns a fresh copy of the heap; cpu (and others) may return the
    // backend's own array, which must not be detached by a transfer.
    if (d instanceof Float32Array && this.readIsFresh(t) && d.byteOffset === 0 && d.byteLength === d.buffer.byteLength) return d;
    return Float32Array.from(d);
  }

  private readIsFresh(t: Tensor): boolean {
    if (this.sel.backend !== 'wasm') return false;
    try {
      const state = (this.tf.engine() as unknown as { state: { tensorInfo: WeakMap<object, { backend: unknown }> } }).state;
      return state.tensorInfo.get(t.dataId)?.backend === this.tf.engine().findBackend('wasm');
    } catch {
      return false;
    }
  }

  private post(job: WorkerJob, transfer: ArrayBuffer[]): void {
    const bytes = transfer.reduce((a, b) => a + b.byteLength, 0);
    this.inFlightBytes += bytes;
    this.jobBytes.set(job.seq, bytes);
    if (this.port) {
      this.port.postMessage(job, transfer);
      return;
    }
    this.inlineState ??= new StatsState();
    this.onReply(runJob(this.inlineState, job));
  }

  // -------------------------------------------------------------------------------------------
  // Results

  /** Takes every result that is ready, without waiting. */
  poll(): void {
    if (this.port) {
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) this.onReply(m.message as WorkerReply);
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
    }
    for (const d of r.details) this.send({ type: 'detail', step: p.step, ...d });
    if (this.autoDetail && r.details.length) this.tuneDetail(r);
  }

  private emitStep(p: PendingStep, ids: number[], stats: Float64Array): void {
    const n = p.nTensors;
    // Every tensor of a tfjs step has a gradient: no hasGrad column (the protocol reads its absence
    // as "all present").
    const columns = TFJS_STATS.map(() => new Float64Array(n).fill(NaN));
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id >= n) continue;
      for (let s = 0; s < STATS_PER_TENSOR; s++) columns[s][id] = stats[i * STATS_PER_TENSOR + s];
    }
    this.send({ type: 'step', step: p.step, loss: p.loss, wallMs: p.wallMs, optimizer: 0, stats: [...TFJS_STATS], columns, nTensors: n });
  }

  private emitNonFinite(step: number, id: number, ids: number[], stats: Float64Array): void {
    if (this.nonFiniteReported) return;
    this.nonFiniteReported = true;
    const i = ids.indexOf(id);
    const nan = stats[i * STATS_PER_TENSOR + 2];
    const inf = stats[i * STATS_PER_TENSOR + 3];
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
   * Automatic detail interval: keep the worker's detail work under a quarter of a step on average
   * and the detail frames under ~1 MB/s for the host.
   */
  private tuneDetail(r: WorkerResult): void {
    if (!(this.stepIntervalMs > 0)) return;
    const bytes = r.details.reduce((a, d) => a + 48 + 4 * d.hist.length + 4 * d.thumb.length + 16, 0);
    const byCpu = Math.ceil(r.detailMs / (0.25 * this.stepIntervalMs));
    const byBytes = Math.ceil(bytes / (1e6 * (this.stepIntervalMs / 1000)));
    this.detailEvery = Math.min(1000, Math.max(1, byCpu, byBytes));
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
      this.drain(3000);
    } catch (e) {
      this.warn('draining statistics', e);
    }
    if (this.stepsDropped) this.send({ type: 'event', kind: 'warning', message: `statistics of ${this.stepsDropped} step(s) skipped: the stats worker fell behind` });
    this.send({ type: 'end', reason, steps: this.steps, ...(error !== undefined ? { error: errorInfo(error) } : {}) });
    this.channel.flushSync();
    this.channel.detach();
  }
}

export function errorInfo(e: unknown): ErrorInfo {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    const err = e as Error;
    const info: ErrorInfo = { message: String(err.message ?? err), stack: String(err.stack ?? '') };
    const frame = firstUserFrame(err.stack);
    if (frame) info.frame = frame;
    return info;
  }
  return { message: String(e) };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
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
