// Run warnings: what GradScope could not see, from hand-built stores; and how the CLI summary, the
// run JSON and the panel header carry them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSummary } from '../../../src/cli/summary';
import type { EventMsg, Message, StatName } from '../../../src/core/protocol/messages';
import { RUN_JSON_SCHEMA, buildRunJson } from '../../../src/core/report/runJson';
import { observedNothing, runWarnings, type RunWarning } from '../../../src/core/report/warnings';
import { RunStore } from '../../../src/core/store/runStore';
import { buildSnapshot, runHeader } from '../../../src/core/view/snapshot';
import type { RunExit } from '../../../src/process/runSession';
import { parseHostMessage } from '../../../webview/hostMessages';

const STATS: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
const hello: Message = { type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: '/tmp/t.py', detailEvery: 4 };
const tensors: Message = { type: 'tensors', tensors: [{ id: 0, name: 'fc.weight', layer: 'fc', layerType: 'Linear', shape: [2, 2], source: null }] };
const step = (i: number): Message => ({ type: 'step', step: i, optimizer: 0, loss: 1, wallMs: i, stats: STATS, columns: STATS.map(() => Float64Array.of(0.5)), nTensors: 1 });
const event = (kind: EventMsg['kind'], message: string, more: Partial<EventMsg> = {}): Message => ({ type: 'event', kind, message, ...more });
const end = (steps: number): Message => ({ type: 'end', reason: 'completed', steps });

function store(...msgs: Message[]): RunStore {
  const s = new RunStore();
  for (const m of msgs) s.ingest(m);
  return s;
}

const codes = (ws: readonly RunWarning[]): string[] => ws.map((w) => w.code);
const completed = { reason: 'completed' };

describe('runWarnings', () => {
  it('a run with steps and nothing else has no warning', () => {
    assert.deepEqual(runWarnings(store(hello, tensors, step(0), step(1), end(2)), completed), []);
  });

  it("a rank holding shards (FSDP2): a note that its norms are its shards', the JSON summary says so, the panel accepts the note", () => {
    const shardTensors: Message = {
      type: 'tensors',
      tensors: [{ id: 0, name: 'fc.weight', layer: 'fc', layerType: 'Linear', shape: [4, 2], source: null, shard: { offset: [2, 0], localShape: [2, 2] } }],
    };
    const s = store({ ...hello, rank: 1 }, shardTensors, step(0), end(1));
    const ws = runWarnings(s, completed);
    assert.deepEqual(codes(ws), ['sharded']);
    assert.equal(ws[0].level, 'info');
    assert.match(ws[0].message, /^rank 1 holds a shard of 1 tensor \(FSDP2 \/ DTensor\): its norms, and its global norm, are of its shards only, not of the model/);
    const doc = buildRunJson(s, '/tmp/t.py', { reason: 'completed', code: 0, signal: null, error: null }, null);
    assert.equal(doc.summary.globalNormScope, 'shard');
    assert.deepEqual(doc.tensors[0].shard, { offset: [2, 0], localShape: [2, 2] });
    assert.equal(buildRunJson(store(hello, tensors, step(0)), '/tmp/t.py', { reason: 'completed', code: 0, signal: null, error: null }, null).summary.globalNormScope, undefined);
    const header = runHeader(s, { runId: 'r', script: 's', status: 'completed', statusMessage: '' });
    const reasons: string[] = [];
    const snapshot = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    const msg = parseHostMessage(JSON.parse(JSON.stringify({ type: 'snapshot', snapshot })), (r) => reasons.push(r));
    assert.deepEqual(reasons, []);
    assert.deepEqual(msg?.type === 'snapshot' ? codes(msg.snapshot.header.warnings) : null, ['sharded']);
    // The CLI table says whose norm it shows, and each tensor's block of the whole.
    const text = formatSummary(s, { reason: 'completed', code: 0, signal: null, error: null, message: 'completed, 1 steps', steps: 1 }, { script: 't.py', runFile: 'r.gsrun' });
    assert.match(text, /\n‖g‖ shard first \S+ · max \S+ · last \S+ \(rank 1's shards only\)\n/);
    assert.match(text, /\nfc\.weight {2}\[2,2\] of \[4,2\] /);
    assert.match(text, /last ‖shard‖/);
  });

  it('0 optimizer steps: a warning that says the script ran but no step was seen, and why it may be', () => {
    const ws = runWarnings(store(hello, tensors, end(0)), completed);
    assert.deepEqual(codes(ws), ['no-steps']);
    assert.equal(ws[0].level, 'warning');
    assert.match(ws[0].message, /^the script ran but no optimizer step was seen: /);
    assert.match(ws[0].message, /child processes/);
    assert.ok(observedNothing(ws));
    assert.match(runWarnings(store(hello), { reason: 'time-limit' })[0].message, /before the time limit/);
    assert.match(runWarnings(store(hello), { reason: 'stopped' })[0].message, /before the run was stopped/);
  });

  it('the probe never connected (no HELLO): one warning, not two', () => {
    const ws = runWarnings(store(), completed);
    assert.deepEqual(codes(ws), ['no-probe']);
    assert.match(ws[0].message, /never connected \(no HELLO\)/);
    assert.ok(observedNothing(ws));
  });

  it('a crash or a corrupt stream is the headline already: no "nothing seen" warning on top', () => {
    assert.deepEqual(runWarnings(store(hello), { reason: 'crashed' }), []);
    assert.deepEqual(runWarnings(store(), { reason: 'protocol-error' }), []);
  });

  it('a live run concludes nothing from what has not happened yet; a saved run only when the probe ended', () => {
    assert.deepEqual(runWarnings(store(), null), []);
    assert.deepEqual(runWarnings(store(hello), null), []);
    assert.deepEqual(runWarnings(store(hello), { reason: null }), []);
    assert.deepEqual(codes(runWarnings(store(hello, end(0)), { reason: null })), ['no-steps']);
  });

  it('every probe warning event, once each, with its step; info events are notes after the warnings', () => {
    const s = store(
      hello,
      event('info', 'update norms are reported for the first 256 MiB of parameters only'),
      event('warning', 'probe step hook: RuntimeError: boom', { step: 3 }),
      event('warning', 'probe step hook: RuntimeError: boom', { step: 4 }),
      event('warning', 'the script starts child processes (mp.spawn): their training is not observed'),
      step(0),
      end(1),
    );
    const ws = runWarnings(s, completed);
    assert.deepEqual(codes(ws), ['probe-warning', 'probe-warning', 'probe-note']);
    assert.deepEqual(
      ws.map((w) => w.level),
      ['warning', 'warning', 'info'],
    );
    assert.equal(ws[0].step, 3);
    assert.match(ws[1].message, /child processes/);
  });

  it('dropped frames are summed into one warning', () => {
    const ws = runWarnings(store(hello, step(0), event('dropped', '3 frames dropped', { count: 3, step: 10 }), event('dropped', '', { count: 4 }), end(1)), completed);
    assert.deepEqual(codes(ws), ['dropped-frames']);
    assert.equal(ws[0].count, 7);
    assert.equal(ws[0].step, 10);
    assert.match(ws[0].message, /^7 frame\(s\) were dropped/);
  });

  it('steps counted as backward passes: a note, not a warning', () => {
    const s = store(hello, { type: 'optimizer', id: 0, name: '<backward>#0', className: '', mode: 'backward', tensorIds: [0] }, step(0), end(1));
    const ws = runWarnings(s, completed);
    assert.deepEqual(codes(ws), ['backward-steps']);
    assert.equal(ws[0].level, 'info');
    assert.match(ws[0].message, /each completed backward pass is counted as a step/);
    assert.ok(!observedNothing(ws));
  });

  it("the probe's own note about counting backward passes becomes that note, not a second line", () => {
    const note = 'the script built no torch.optim optimizer: GradScope counts each backward pass as a step';
    const s = store(
      hello,
      event('info', note),
      { type: 'optimizer', id: 0, name: 'backward', className: '', mode: 'backward', tensorIds: [0] },
      event('info', 'another note'),
      step(0),
      end(1),
    );
    const ws = runWarnings(s, completed);
    assert.deepEqual(codes(ws), ['probe-note', 'backward-steps']);
    assert.equal(ws[1].message, note);
    assert.equal(ws[0].message, 'another note');
  });

  it('GradScaler skipped steps: one note with the count and the scale; a warning when more were skipped than taken', () => {
    const skipped = (at: number, count: number, scale: number): Message => event('skipped-step', 'skipped', { step: at, count, value: scale });
    const few = runWarnings(store(hello, skipped(0, 1, 32768), step(0), skipped(1, 2, 16384), step(1), step(2), end(3)), completed);
    assert.deepEqual(codes(few), ['skipped-steps']);
    assert.equal(few[0].level, 'info');
    assert.equal(few[0].count, 2);
    assert.equal(few[0].step, 0);
    assert.match(few[0].message, /skipped 2 optimizer step\(s\).*loss scale is now 16384/);
    const many = runWarnings(store(hello, skipped(0, 5, 2048), step(0), end(1)), completed);
    assert.equal(many[0].level, 'warning');
    assert.match(many[0].message, /more steps were skipped than taken \(1\)/);
  });

  it('the script completed but the probe sent no END', () => {
    assert.deepEqual(codes(runWarnings(store(hello, step(0)), completed)), ['no-end']);
    assert.deepEqual(runWarnings(store(hello, step(0)), { reason: 'stopped' }), []);
  });

  it('processes that outlived the run: one warning naming each (pid, command), how to find and stop them; the run still counts as observed', () => {
    const s = store(hello, tensors, step(0), end(1));
    s.noteSurvivors({ marker: 'GS_RUN_MARK=r1', processes: [{ pid: 4242, command: 'sleep 300' }] });
    const ws = runWarnings(s, completed);
    assert.deepEqual(codes(ws), ['survivors']);
    assert.equal(ws[0].level, 'warning');
    assert.equal(ws[0].count, 1);
    assert.match(ws[0].message, /^1 process started by the script is still running after the run ended: pid 4242 \(sleep 300\)\. /);
    assert.match(ws[0].message, /left the run's process group \(setsid/);
    assert.match(ws[0].message, /`grep -ls GS_RUN_MARK=r1 \/proc\/\[0-9\]\*\/environ`; stop it with `kill 4242`\.$/);
    assert.ok(!observedNothing(ws));
    // Also after a crash or a stop: the processes are there whatever the outcome.
    assert.deepEqual(codes(runWarnings(s, { reason: 'crashed' })), ['survivors']);
  });

  it('many survivors: five named, the rest counted, every pid in the kill command', () => {
    const s = store(hello, tensors, step(0), end(1));
    const processes = Array.from({ length: 7 }, (_, i) => ({ pid: 100 + i, command: `worker ${i}` }));
    s.noteSurvivors({ marker: 'GS_RUN_MARK=r2', processes });
    const [w] = runWarnings(s, completed);
    assert.equal(w.count, 7);
    assert.match(w.message, /^7 processes started by the script are still running after the run ended: pid 100 \(worker 0\), .*pid 104 \(worker 4\), and 2 more\. They left/);
    assert.ok(!w.message.includes('worker 5'));
    assert.match(w.message, /stop them with `kill 100 101 102 103 104 105 106`\.$/);
    s.noteSurvivors({ marker: 'GS_RUN_MARK=r2', processes: [] });
    assert.deepEqual(runWarnings(s, completed), [], 'none left: no warning');
  });

  it("events past the store's cap are said to be missing", () => {
    const s = new RunStore({ maxEvents: 2 });
    for (const m of [hello, event('info', 'a'), event('info', 'b'), event('warning', 'c'), step(0), end(1)]) s.ingest(m);
    const ws = runWarnings(s, completed);
    assert.deepEqual(codes(ws), ['probe-note', 'probe-note', 'events-dropped']);
    assert.equal(ws[2].count, 1);
  });
});

describe('where the warnings are shown', () => {
  const exit = (reason: RunExit['reason'], steps: number): RunExit => ({ reason, code: 0, signal: null, error: null, message: `${reason}, ${steps} steps`, steps });
  const where = { script: 't.py', runFile: 'r.gsrun' };

  it('the summary of "completed, 0 steps" prints the warning under the outcome', () => {
    const text = formatSummary(store(hello, tensors, end(0)), exit('completed', 0), where);
    const lines = text.split('\n');
    const run = lines.findIndex((l) => l.startsWith('run       completed, 0 steps'));
    assert.ok(run >= 0, text);
    const warn = lines.findIndex((l) => l.startsWith('warning   the script ran but no optimizer step was seen'));
    assert.ok(warn > run, text);
    assert.ok(!/findings {2}none/.test(text), 'no "findings none" that would read as a clean run');
  });

  it('the summary lists notes, and dropped frames once (as a warning)', () => {
    const text = formatSummary(
      store(hello, tensors, step(0), event('dropped', '', { count: 2, step: 0 }), event('info', 'detail tier skipped on 1 step(s)'), end(1)),
      exit('completed', 1),
      where,
    );
    assert.match(text, /\nwarning {3}2 frame\(s\) were dropped .* \(step 0\)\n/);
    assert.match(text, /\nnote {6}detail tier skipped on 1 step\(s\)\n/);
    assert.equal(text.match(/dropped/g)?.length, 1, text);
  });

  it('a script that clips: a note per threshold saying the norms are before clipping, in the summary, the JSON and the banner', () => {
    const said = 'the script clips gradients with clip_grad_norm_(max_norm=0.25, norm_type=2); GradScope reports the gradients before clipping';
    const clip = (value: number, message: string, at: number): Message => event('clip', message, { value, step: at });
    const s = store(hello, tensors, step(0), clip(0.25, said, 0), step(1), clip(0.25, said, 1), clip(1, said.replace('0.25', '1'), 2), end(2));
    const ws = runWarnings(s, completed);
    assert.deepEqual(
      ws.map((w) => [w.code, w.level, w.message, w.step]),
      [
        ['clipping', 'info', said, 0],
        ['clipping', 'info', said.replace('0.25', '1'), 2],
      ],
    );
    assert.match(
      formatSummary(s, exit('completed', 2), where),
      /\nnote {6}the script clips gradients with clip_grad_norm_\(max_norm=0\.25, norm_type=2\); GradScope reports the gradients before clipping \(step 0\)\n/,
    );
    assert.deepEqual(codes(buildRunJson(s, '/tmp/t.py', exit('completed', 2), null).warnings), ['clipping', 'clipping']);
    const header = runHeader(s, { runId: 'r', script: 's', status: 'completed', statusMessage: '' });
    const reasons: string[] = [];
    const snapshot = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    const msg = parseHostMessage(JSON.parse(JSON.stringify({ type: 'snapshot', snapshot })), (r) => reasons.push(r));
    assert.deepEqual(reasons, []);
    assert.deepEqual(msg?.type === 'snapshot' ? codes(msg.snapshot.header.warnings) : null, ['clipping', 'clipping']);
  });

  it('the run JSON has `warnings` and the 1.1 schema; a clean run has an empty list', () => {
    const doc = buildRunJson(store(hello, tensors, end(0)), '/tmp/t.py', exit('completed', 0), null);
    assert.equal(doc.schema, RUN_JSON_SCHEMA);
    assert.match(doc.schema, /^gradscope\.run\/1\./);
    assert.deepEqual(codes(doc.warnings), ['no-steps']);
    const parsed = JSON.parse(JSON.stringify(doc)) as typeof doc;
    assert.equal(parsed.warnings[0].level, 'warning');
    assert.deepEqual(buildRunJson(store(hello, tensors, step(0), end(1)), '/tmp/t.py', exit('completed', 1), null).warnings, []);
  });

  it('the panel header carries them (the banner): event warnings while live, "no steps" once ended', () => {
    const s = store(hello, tensors, event('warning', 'probe hook failed'));
    const live = runHeader(s, { runId: 'r', script: 's', status: 'running', statusMessage: '' });
    assert.deepEqual(codes(live.warnings), ['probe-warning']);
    s.ingest(end(0));
    const done = runHeader(s, { runId: 'r', script: 's', status: 'completed', statusMessage: '' });
    assert.deepEqual(codes(done.warnings), ['no-steps', 'probe-warning']);
  });

  it('survivors are in the summary, the JSON and the panel banner (which the webview accepts)', () => {
    const s = store(hello, tensors, step(0), end(1));
    s.noteSurvivors({ marker: 'GS_RUN_MARK=r3', processes: [{ pid: 77, command: 'sleep 300' }] });
    assert.match(formatSummary(s, exit('completed', 1), where), /\nwarning {3}1 process started by the script is still running after the run ended: pid 77 \(sleep 300\)/);
    assert.deepEqual(codes(buildRunJson(s, '/tmp/t.py', exit('completed', 1), null).warnings), ['survivors']);
    const header = runHeader(s, { runId: 'r', script: 's', status: 'completed', statusMessage: '' });
    assert.deepEqual(codes(header.warnings), ['survivors']);
    const reasons: string[] = [];
    const snapshot = buildSnapshot(s, { header, findings: [], metric: 'norm', compare: null, savedRuns: [] });
    const msg = parseHostMessage(JSON.parse(JSON.stringify({ type: 'snapshot', snapshot })), (r) => reasons.push(r));
    assert.deepEqual(reasons, []);
    assert.equal(msg?.type, 'snapshot');
    assert.deepEqual(msg?.type === 'snapshot' ? codes(msg.snapshot.header.warnings) : null, ['survivors']);
  });
});
