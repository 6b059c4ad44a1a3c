import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type EventMsg, type StatName, type StepMsg } from '../../../src/core/protocol/messages';
import {
  BUCKET_ALL_ABSENT,
  BUCKET_PRESENT,
  BUCKET_SOME_ABSENT,
  FLAG_NAN,
  FLAG_NEG_INF,
  FLAG_POS_INF,
  RunStore,
  SERIES_STAT_NAMES,
  STORE_DEFAULTS,
  seriesMemoryBound,
} from '../../../src/core/store/runStore';
import { defaultValue, detailMsg, f32, helloMsg, stepMsg, tensorInfos, wire, type ValueFn } from './helpers';

/** Raw values the store saw, for independent expectations: ordinal → { step, values[t] }. */
function feed(store: RunStore, count: number, nTensors: number, value: ValueFn = defaultValue, stepOf = (o: number) => o): StepMsg[] {
  const sent: StepMsg[] = [];
  for (let o = 0; o < count; o++) {
    const { msg } = wire(stepMsg(stepOf(o), nTensors, o, value), o);
    store.ingest(msg);
    sent.push(msg);
  }
  return sent;
}

function valueOf(m: StepMsg, stat: StatName, t: number): number {
  return m.columns[m.stats.indexOf(stat)][t];
}

/** Checks every envelope bucket against the raw values of the steps it covers. */
function checkEnvelope(store: RunStore, sent: StepMsg[], t: number, stat: StatName): void {
  const s = store.series(t, stat);
  const env = s.envelope;
  const byStep = new Map(sent.map((m) => [m.step, m]));
  const steps = sent.map((m) => m.step);
  for (let b = 0; b < env.min.length; b++) {
    const inBucket = steps.filter((x) => x >= env.stepFirst[b] && x <= env.stepLast[b]).map((x) => byStep.get(x)!);
    const vals = inBucket.filter((m) => m.nTensors > t).map((m) => f32(valueOf(m, stat, t)));
    assert.ok(vals.length > 0, `bucket ${b} is not empty`);
    const fin = vals.filter((v) => Number.isFinite(v));
    assert.equal(env.min[b], fin.length ? Math.min(...fin) : NaN, `min of bucket ${b}`);
    assert.equal(env.max[b], fin.length ? Math.max(...fin) : NaN, `max of bucket ${b}`);
    assert.ok(Object.is(env.last[b], vals[vals.length - 1]), `last of bucket ${b}`);
    let flags = 0;
    for (const v of vals) if (!Number.isFinite(v)) flags |= Number.isNaN(v) ? FLAG_NAN : v > 0 ? FLAG_POS_INF : FLAG_NEG_INF;
    assert.equal(env.flags[b], flags, `flags of bucket ${b}`);
    if (b > 0) assert.ok(env.stepFirst[b] > env.stepLast[b - 1], 'buckets are ordered and disjoint');
  }
  // Envelope + recent part cover every step the tensor had, in order, with no gap.
  const had = sent.filter((m) => m.nTensors > t);
  if (env.min.length > 0) {
    assert.equal(env.stepFirst[0], had[0].step);
    const firstRecent = s.steps.length ? s.steps[0] : Infinity;
    const lastFolded = env.stepLast[env.stepLast.length - 1];
    const idx = steps.indexOf(lastFolded);
    assert.equal(steps[idx + 1], firstRecent, 'the recent part starts right after the envelope');
  }
  assert.equal(s.steps.length + had.filter((m) => m.step <= (env.stepLast.length ? env.stepLast[env.stepLast.length - 1] : -1)).length, had.length);
}

describe('RunStore', () => {
  it('keeps series exact at full resolution, with step indices as they came', () => {
    const store = new RunStore({ recentSteps: 64 });
    const sent = feed(store, 50, 5, defaultValue, (o) => 3 * o + 7); // steps skip
    assert.equal(store.stepCount, 50);
    assert.equal(store.lastStep, 3 * 49 + 7);
    for (let t = 0; t < 5; t++) {
      for (const stat of SERIES_STAT_NAMES) {
        const s = store.series(t, stat);
        assert.deepEqual(
          Array.from(s.steps),
          sent.map((m) => m.step),
        );
        assert.deepEqual(
          Array.from(s.values),
          sent.map((m) => f32(valueOf(m, stat, t))),
        );
        assert.equal(s.envelope.min.length, 0);
      }
    }
    assert.equal(store.series(5, 'norm').steps.length, 0, 'unknown tensor: empty series');
  });

  it('folds old steps into envelopes that keep min/max/last, across many width doublings', () => {
    const store = new RunStore({ recentSteps: 8, envelopeBuckets: 4 });
    const sent = feed(store, 1000, 3);
    for (let t = 0; t < 3; t++) {
      for (const stat of ['norm', 'maxAbs', 'updateNorm'] as const) checkEnvelope(store, sent, t, stat);
      const s = store.series(t, 'norm');
      assert.equal(s.steps.length, 8);
      assert.deepEqual(
        Array.from(s.steps),
        sent.slice(-8).map((m) => m.step),
      );
      assert.ok(s.envelope.min.length <= 4 && s.envelope.min.length >= 2);
      assert.ok(s.envelope.width >= 256, `width ${s.envelope.width}`);
    }
  });

  it('keeps NaN and ±Inf visible after folding', () => {
    const special = new Map<string, number>([
      ['5:1', NaN],
      ['7:2', Infinity],
      ['300:0', -Infinity],
      ['301:0', NaN],
    ]);
    const value: ValueFn = (o, t, s) => (s === 'norm' ? (special.get(`${o}:${t}`) ?? defaultValue(o, t, s)) : defaultValue(o, t, s));
    const store = new RunStore({ recentSteps: 8, envelopeBuckets: 4 });
    const sent = feed(store, 2000, 4, value);
    for (let t = 0; t < 4; t++) checkEnvelope(store, sent, t, 'norm');
    const flagsAt = (t: number, step: number): number => {
      const e = store.series(t, 'norm').envelope;
      for (let b = 0; b < e.flags.length; b++) if (step >= e.stepFirst[b] && step <= e.stepLast[b]) return e.flags[b];
      return -1;
    };
    assert.equal(flagsAt(1, 5), FLAG_NAN);
    assert.equal(flagsAt(2, 7), FLAG_POS_INF);
    assert.equal(flagsAt(0, 300), FLAG_NEG_INF | FLAG_NAN);
    assert.equal(flagsAt(3, 5), 0);
    const e1 = store.series(1, 'norm').envelope;
    assert.ok(Number.isFinite(e1.min[0]) && Number.isFinite(e1.max[0]), 'min/max stay finite beside the flag');
  });

  it('stays within the stated bound for 100k steps × 200 tensors', () => {
    const store = new RunStore();
    const n = 200;
    const msg = stepMsg(0, n, 0);
    let at50k = 0;
    for (let o = 0; o < 100_000; o++) {
      msg.step = o;
      const c = msg.columns[0];
      c[o % n] = 1 + (o % 17); // vary a little
      store.ingest(msg);
      if (o === 50_000) at50k = store.memoryBytes();
    }
    const bound = seriesMemoryBound(n, SERIES_STAT_NAMES.length);
    const bytes = store.memoryBytes();
    assert.ok(bytes <= bound, `${bytes} ≤ ${bound}`);
    assert.equal(bytes, at50k, 'memory does not grow with the run');
    const { recentSteps: R, envelopeBuckets: E } = STORE_DEFAULTS;
    assert.equal(bound, n * 6 * (4 * R + 13 * E) + n * (R + E) + 17 * R + 20 * E + 32 * n + 34 * 16384);
    const s = store.series(3, 'norm');
    assert.equal(s.steps.length, STORE_DEFAULTS.recentSteps);
    assert.equal(s.envelope.stepFirst[0], 0);
    assert.equal(s.envelope.stepLast[s.envelope.stepLast.length - 1] + 1, s.steps[0]);
    assert.ok(store.globalNorm().steps.length <= STORE_DEFAULTS.curvePoints);
  });

  it('handles tensors that appear mid-run', () => {
    const store = new RunStore({ recentSteps: 4, envelopeBuckets: 4 });
    store.ingest(wire({ type: 'tensors', tensors: tensorInfos(0, 3) }).msg);
    const sent = feed(store, 10, 3);
    store.ingest(wire({ type: 'tensors', tensors: tensorInfos(3, 5) }).msg);
    for (let o = 10; o < 40; o++) {
      const { msg } = wire(stepMsg(o, 5, o));
      store.ingest(msg);
      sent.push(msg);
    }
    assert.equal(store.tensors.length, 5);
    assert.equal(store.tensors[4].name, 'dense_4/kernel');
    for (let t = 0; t < 5; t++) checkEnvelope(store, sent, t, 'norm');
    const late = store.series(4, 'norm');
    assert.equal(late.envelope.stepFirst[0], 10, 'tensor 4 starts at step 10');
    assert.deepEqual(Array.from(late.steps), [36, 37, 38, 39]);
    assert.deepEqual(
      Array.from(late.values),
      sent.slice(-4).map((m) => f32(valueOf(m, 'norm', 4))),
    );
    const early = store.series(0, 'norm');
    assert.equal(early.envelope.stepFirst[0], 0);
    // A STEP before its TENSORS message: storage follows the STEP.
    const s2 = new RunStore();
    s2.ingest(wire(stepMsg(0, 2, 0)).msg);
    s2.ingest(wire(stepMsg(1, 7, 1)).msg);
    assert.equal(s2.stepTensorCount, 7);
    assert.deepEqual(Array.from(s2.series(6, 'norm').steps), [1]);
    assert.deepEqual(Array.from(s2.series(1, 'norm').steps), [0, 1]);
  });

  it('keeps series for at most maxStoredTensors tensors, counting the rest in the global norm', () => {
    const store = new RunStore({ maxStoredTensors: 3 });
    const value: ValueFn = (o, t, s) => (s === 'norm' ? (t === 4 && o === 2 ? NaN : 2) : s === 'nanCount' || s === 'infCount' ? 0 : 1);
    feed(store, 4, 5, value);
    assert.equal(store.tensorsNotStored, 2);
    assert.equal(store.series(4, 'norm').steps.length, 0);
    assert.deepEqual(Array.from(store.series(2, 'norm').values), [2, 2, 2, 2]);
    assert.equal(store.globalNorm().values[0], Math.sqrt(5 * 4));
    assert.deepEqual(store.summary().firstNonFinite, { step: 2, tensorId: 4 });
    assert.ok(new RunStore().memoryBytes() < 1e6, 'nothing large is allocated before the first STEP');
  });

  it('keeps only the statistics a STEP carried', () => {
    const store = new RunStore({ recentSteps: 4, envelopeBuckets: 2 });
    for (let o = 0; o < 12; o++) store.ingest(wire(stepMsg(o, 2, o, defaultValue, o % 2 ? ['norm', 'updateNorm'] : ['norm'])).msg);
    assert.deepEqual(Array.from(store.series(0, 'norm').steps), [8, 9, 10, 11]);
    assert.deepEqual(Array.from(store.series(0, 'updateNorm').steps), [9, 11]);
    const env = store.series(1, 'updateNorm').envelope;
    assert.ok(
      env.flags.every((f) => f === 0),
      'absent values are not NaN',
    );
    assert.equal(store.series(0, 'paramNorm').steps.length, 0);
  });

  it('computes the global norm and summary, flagging non-finite steps', () => {
    const store = new RunStore();
    const norms: number[][] = [
      [3, 4],
      [6, 8],
      [1e200, 1e200], // overflow-safe
      [1, 1],
      [Infinity, 1],
      [2, 2],
    ];
    const nan = [0, 0, 0, 3, 0, 0];
    norms.forEach((ns, o) => {
      store.ingest(
        wire({
          type: 'step',
          optimizer: 0,
          step: 10 + o,
          loss: NaN,
          wallMs: o,
          nTensors: 2,
          stats: ['norm', 'nanCount', 'infCount'],
          columns: [Float64Array.from(ns), Float64Array.from([0, nan[o]]), new Float64Array(2)],
        }).msg,
      );
    });
    const g = store.globalNorm();
    assert.deepEqual(Array.from(g.steps), [10, 11, 12, 13, 14, 15]);
    assert.equal(g.values[0], 5);
    assert.equal(g.values[1], 10);
    assert.ok(Math.abs(g.values[2] / (Math.SQRT2 * 1e200) - 1) < 1e-12);
    assert.equal(g.values[4], Infinity);
    assert.deepEqual(Array.from(g.nonFinite), [0, 0, 0, 1, 1, 0]);
    const sum = store.summary();
    assert.equal(sum.globalNorm.first, 5);
    assert.ok(Math.abs(sum.globalNorm.max! / (Math.SQRT2 * 1e200) - 1) < 1e-12);
    assert.equal(sum.globalNorm.last, Math.sqrt(8));
    assert.equal(sum.firstNonFiniteStep, 13);
    assert.deepEqual(sum.firstNonFinite, { step: 13, tensorId: 1 });
    assert.equal(store.loss().steps.length, 0, 'no loss seen');

    const empty = new RunStore().summary();
    assert.deepEqual(empty, { globalNorm: { first: null, max: null, last: null }, firstNonFiniteStep: null, firstNonFinite: null });
  });

  it('decimates the global norm and loss keeping spikes and non-finite steps', () => {
    const store = new RunStore({ curvePoints: 16 });
    const value: ValueFn = (o, t, s) => (s === 'norm' ? (o === 500 ? 1e6 : o === 700 && t === 1 ? NaN : 1 + (o % 5)) : defaultValue(o, t, s));
    for (let o = 0; o < 1000; o++) store.ingest(wire(stepMsg(2 * o, 2, o, value, ['norm'], o < 3 ? NaN : o === 800 ? 1e9 : o === 900 ? NaN : 1)).msg);
    const g = store.globalNorm();
    assert.ok(g.steps.length <= 16 + 1);
    assert.ok(g.width >= 64);
    const spike = Array.from(g.steps).indexOf(1000);
    assert.ok(spike >= 0, 'the spike keeps its step');
    assert.equal(g.values[spike], Math.SQRT2 * 1e6);
    const bad = Array.from(g.steps).indexOf(1400);
    assert.ok(bad >= 0 && g.nonFinite[bad] === 1 && Number.isNaN(g.values[bad]), 'the NaN step survives');
    const l = store.loss();
    assert.equal(l.steps[0], 6, 'NaN loss before the first finite one means "not seen"');
    assert.ok(Array.from(l.values).includes(1e9));
    const i900 = Array.from(l.steps).indexOf(1800);
    assert.ok(i900 >= 0 && l.nonFinite[i900] === 1, 'a NaN loss after finite ones is kept');
  });

  it('takes a NaN loss as "not seen" per optimizer: the second optimizer of one backward pass adds no NaN point', () => {
    const store = new RunStore();
    // One backward pass, then opt 0 steps (with the loss) and opt 1 steps (no loss seen: NaN).
    for (let o = 0; o < 6; o++) {
      store.ingest(wire({ ...stepMsg(2 * o, 2, o, defaultValue, ['norm'], 1 / (1 + o)), optimizer: 0 }).msg);
      store.ingest(wire({ ...stepMsg(2 * o + 1, 2, o, defaultValue, ['norm'], NaN), optimizer: 1 }).msg);
    }
    store.ingest(wire({ ...stepMsg(12, 2, 6, defaultValue, ['norm'], NaN), optimizer: 0 }).msg);
    const l = store.loss();
    assert.deepEqual(Array.from(l.steps), [0, 2, 4, 6, 8, 10, 12], 'one point per step of the optimizer that saw the loss');
    assert.deepEqual(Array.from(l.nonFinite), [0, 0, 0, 0, 0, 0, 1], 'a NaN loss after finite ones of the same optimizer is kept');
  });

  it('from a probe that marks "no loss" (HELLO marksNoLoss): null adds no point, a NaN loss is one from the first step', () => {
    const feed = (marks: boolean) => {
      const store = new RunStore();
      store.ingest(wire(helloMsg(marks ? { marksNoLoss: true } : {})).msg);
      // A loss that is NaN from the first step (log(0) in the loss), and a second optimizer's step of
      // the same backward pass, which carries no loss.
      for (let o = 0; o < 4; o++) {
        store.ingest(wire({ ...stepMsg(2 * o, 2, o, defaultValue, ['norm'], o < 2 ? NaN : 0.5), optimizer: 0 }).msg);
        store.ingest(wire({ ...stepMsg(2 * o + 1, 2, o, defaultValue, ['norm'], marks ? null : NaN), optimizer: 1 }).msg);
      }
      return store.loss();
    };
    const marked = feed(true);
    assert.deepEqual(Array.from(marked.steps), [0, 2, 4, 6], 'the NaN losses of steps 0 and 2 are there; the second optimizer has none');
    assert.deepEqual(Array.from(marked.nonFinite), [1, 1, 0, 0]);
    // What an older probe's run file shows: the first NaN losses are taken for "not seen".
    const old = feed(false);
    assert.deepEqual(Array.from(old.steps), [4, 6]);
  });

  it('keeps the latest DETAIL with its thumbnail and a bounded history', () => {
    const store = new RunStore({ detailHistory: 8 });
    for (let k = 0; k < 100; k++) store.ingest(wire(detailMsg(k * 10, 3)).msg);
    const latest = store.latestDetail(3)!;
    assert.equal(latest.step, 990);
    assert.equal(latest.thumb.length, 16);
    assert.deepEqual(Array.from(latest.hist), Array.from(detailMsg(990, 3).hist));
    const h = store.details(3);
    assert.ok(h.length <= 8 && h.length >= 4, `history of ${h.length}`);
    assert.equal(h[h.length - 1].step, 990);
    for (let i = 1; i < h.length; i++) assert.ok(h[i].step > h[i - 1].step);
    assert.equal(h[0].thumb.length, 0);
    assert.equal(store.latestDetail(4), undefined);
    assert.deepEqual(store.details(4), []);
  });

  it('keeps the first N events and counts the rest; keeps HELLO and END', () => {
    const store = new RunStore({ maxEvents: 3 });
    for (let i = 0; i < 10; i++) store.ingest(wire<EventMsg>({ type: 'event', kind: 'warning', message: `w${i}` }).msg);
    assert.deepEqual(
      store.events.map((e) => e.message),
      ['w0', 'w1', 'w2'],
    );
    assert.equal(store.eventsDropped, 7);
    assert.equal(store.hello === null, true);
    store.ingest(wire({ type: 'hello', probeVersion: '0.1.0', framework: 'tfjs', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: '/x.js', detailEvery: 10 }).msg);
    assert.equal(store.hello?.backend, 'cpu');
    assert.equal(store.end === null, true);
    store.ingest(wire({ type: 'end', reason: 'completed', steps: 0 }).msg);
    assert.equal(store.end?.reason, 'completed');
  });

  it('stores an absent cell as absent, never as NaN, in the ring and the envelope', () => {
    // Tensor 2 (a head) has no gradient on odd ordinals; its other columns are NaN on the wire.
    const absentAt = (o: number, t: number): boolean => t === 2 && o % 2 === 1;
    const value: ValueFn = (o, t, s) => (s === 'hasGrad' ? (absentAt(o, t) ? 0 : 1) : absentAt(o, t) ? NaN : defaultValue(o, t, s));
    const store = new RunStore({ recentSteps: 8, envelopeBuckets: 4 });
    const sent = feed(store, 200, 3, value);
    const s = store.series(2, 'norm');
    assert.deepEqual(Array.from(s.steps), [192, 194, 196, 198]);
    assert.deepEqual(Array.from(s.absentSteps), [193, 195, 197, 199]);
    assert.ok(s.values.every((v) => Number.isFinite(v)));
    // Envelope: every bucket folded absent cells beside present ones; none carries a NaN flag.
    assert.ok(s.envelope.absent.length > 0);
    assert.ok(
      Array.from(s.envelope.absent).every((a) => a === BUCKET_SOME_ABSENT),
      `absent ${Array.from(s.envelope.absent).join(',')}`,
    );
    assert.ok(Array.from(s.envelope.flags).every((f) => f === 0));
    assert.ok(Array.from(s.envelope.min).every((v) => Number.isFinite(v)));
    // A bucket's min/max are over present cells only.
    const present = sent.filter((m, o) => !absentAt(o, 2) && m.step <= s.envelope.stepLast[0]).map((m) => f32(valueOf(m, 'norm', 2)));
    assert.equal(s.envelope.min[0], Math.min(...present));
    assert.equal(
      store.series(0, 'norm').envelope.absent.every((a) => a === BUCKET_PRESENT),
      true,
    );
    assert.equal(store.absentSteps(2), 100);
    assert.equal(store.absentSteps(0), 0);
    assert.equal(store.presence(2, 199), 'absent');
    assert.equal(store.presence(2, 198), 'present');
    assert.equal(store.presence(2, 3), 'unknown', 'left the ring');
    // No non-finite step, and the global norm of a step is over present tensors only.
    assert.equal(store.summary().firstNonFinite, null);
    const g = store.globalNorm();
    assert.equal(
      g.nonFinite.every((f) => f === 0),
      true,
    );
    const last = sent[199];
    assert.equal(g.values[g.values.length - 1], Math.hypot(valueOf(last, 'norm', 0), valueOf(last, 'norm', 1)));
  });

  it('keeps a bucket of absent cells only as such, and a real NaN beside absent cells as NaN', () => {
    // Tensor 1 is frozen (never a gradient); tensor 0 has a real NaN at ordinal 3.
    const value: ValueFn = (o, t, s) => {
      if (s === 'hasGrad') return t === 1 ? 0 : 1;
      if (t === 1) return NaN;
      if (o === 3 && s === 'nanCount') return 2;
      return defaultValue(o, t, s);
    };
    const store = new RunStore({ recentSteps: 4, envelopeBuckets: 4 });
    feed(store, 40, 2, value);
    const frozen = store.series(1, 'norm');
    assert.equal(frozen.steps.length, 0);
    assert.equal(frozen.absentSteps.length, 4);
    assert.ok(frozen.envelope.absent.length > 0 && Array.from(frozen.envelope.absent).every((a) => a === BUCKET_ALL_ABSENT));
    assert.ok(
      Array.from(frozen.envelope.flags).every((f) => f === 0),
      'absent is not NaN',
    );
    assert.equal(store.absentSteps(1), 40);
    assert.deepEqual(store.summary().firstNonFinite, { step: 3, tensorId: 0 });
  });

  it('reads tensors beyond a STEP’s nTensors as absent once they are known', () => {
    const store = new RunStore({ recentSteps: 16 });
    feed(store, 3, 2);
    store.ingest(wire(stepMsg(3, 1, 3)).msg);
    const s = store.series(1, 'norm');
    assert.deepEqual(Array.from(s.steps), [0, 1, 2]);
    assert.deepEqual(Array.from(s.absentSteps), [3]);
    assert.equal(store.absentSteps(1), 1);
    assert.equal(store.stepsSince(1), 4);
    store.ingest(wire(stepMsg(4, 3, 4)).msg);
    assert.equal(store.stepsSince(2), 1, 'counted from the STEP that first carried it');
    const row = new Float64Array(2);
    const absent = new Uint8Array(2);
    assert.equal(store.readRecentRow(3, 'norm', row, absent), true);
    assert.deepEqual(Array.from(absent), [0, 1]);
    assert.ok(Number.isNaN(row[1]));
  });

  it('keeps the optimizers and which steps belong to each', () => {
    const store = new RunStore({ recentSteps: 8, envelopeBuckets: 4 });
    store.ingest(wire({ type: 'optimizer', id: 0, name: 'opt_g', className: 'Adam', mode: 'optimizer', tensorIds: [0] }).msg);
    store.ingest(wire({ type: 'optimizer', id: 1, name: 'opt_d', className: 'Adam', mode: 'optimizer', tensorIds: [1] }).msg);
    for (let o = 0; o < 100; o++) {
      const m = stepMsg(o, 2, o, (ord, t, s) => (s === 'hasGrad' ? (t === ord % 2 ? 1 : 0) : defaultValue(ord, t, s)));
      m.optimizer = o % 2;
      store.ingest(wire(m).msg);
    }
    // A later OPTIMIZER with the same id replaces the earlier one and keeps its counts.
    store.ingest(wire({ type: 'optimizer', id: 1, name: 'opt_d', className: 'Adam', mode: 'optimizer', tensorIds: [1, 2] }).msg);
    assert.deepEqual(
      store.optimizers.map((o) => ({ id: o.id, name: o.name, steps: o.steps, first: o.firstStep, last: o.lastStep, tensors: o.tensorIds })),
      [
        { id: 0, name: 'opt_g', steps: 50, first: 0, last: 98, tensors: [0] },
        { id: 1, name: 'opt_d', steps: 50, first: 1, last: 99, tensors: [1, 2] },
      ],
    );
    assert.deepEqual(Array.from(store.optimizerSteps(1)), [93, 95, 97, 99]);
    const d = store.series(1, 'norm', { optimizer: 1 });
    assert.deepEqual(Array.from(d.steps), [93, 95, 97, 99]);
    assert.equal(d.absentSteps.length, 0);
    assert.equal(store.series(1, 'norm', { optimizer: 0 }).steps.length, 0);
    assert.equal(store.series(1, 'norm').absentSteps.length, 4);
    assert.deepEqual(store.recentStep(store.stepCount - 1), { step: 99, optimizer: 1 });
    // Over the whole run, a tensor is not "without a gradient" at the other optimizer's steps.
    assert.deepEqual([store.absentSteps(0), store.ownedSteps(0), store.absentSteps(1), store.ownedSteps(1)], [0, 50, 0, 50]);
  });

  it('counts a tensor absent at its own optimizer’s steps, and at every step where none was announced', () => {
    const store = new RunStore({ recentSteps: 8, envelopeBuckets: 4 });
    store.ingest(wire({ type: 'optimizer', id: 0, name: 'opt_g', className: 'Adam', mode: 'optimizer', tensorIds: [0] }).msg);
    for (let o = 0; o < 30; o++) {
      // opt_g's tensor 0 has no gradient at one of its steps in three; optimizer 1 is never announced.
      const m = stepMsg(o, 2, o, (ord, t, s) => (s === 'hasGrad' ? (t === ord % 2 && !(t === 0 && ord % 3 === 0) ? 1 : 0) : defaultValue(ord, t, s)));
      m.optimizer = o % 2;
      store.ingest(wire(m).msg);
    }
    // Tensor 0: 5 of opt_g's 15 steps, and every one of the unannounced optimizer's 15 (it may train it).
    assert.deepEqual([store.absentSteps(0), store.ownedSteps(0)], [20, 30]);
    // Tensor 1 (not opt_g's): present at each of the unannounced optimizer's steps; opt_g's do not count.
    assert.deepEqual([store.absentSteps(1), store.ownedSteps(1)], [0, 15]);
  });

  it('notifies once per batch of messages', async () => {
    const store = new RunStore();
    const seen: number[] = [];
    const sub = store.onDidChange((c) => seen.push(c.stepCount));
    feed(store, 100, 4);
    assert.deepEqual(seen, []);
    await Promise.resolve();
    assert.deepEqual(seen, [100]);
    feed(store, 5, 4);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [100, 105]);
    sub.dispose();
    feed(store, 1, 4);
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.length, 2);
  });
});
