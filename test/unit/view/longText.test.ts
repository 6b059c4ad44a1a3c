// Long names and messages, and names with bidirectional controls, as the panel, the HTML report, the
// CLI and the editor show them. A 100-block model whose blocks are all dead gives a dead-units message
// over 4,096 characters, which used to make the webview refuse the whole snapshot (a blank panel and
// a blank report); a name with U+202E reordered the text shown around it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSummary } from '../../../src/cli/summary';
import { analyzeStore } from '../../../src/core/analysis/analyzer';
import type { Finding } from '../../../src/core/analysis/finding';
import type { StatName, TensorInfo } from '../../../src/core/protocol/messages';
import { RunStore } from '../../../src/core/store/runStore';
import { MAX_TEXT, SHOWN, clip, neutralise, shownText } from '../../../src/core/text';
import { diagnosticMessage, mdEscape } from '../../../src/features/diagnosisModel';
import { parseWebviewMessage, type PanelRunHeader, type PanelSnapshot } from '../../../src/core/view/messages';
import { buildReportHtml } from '../../../src/core/view/report';
import { reportData } from '../../../src/core/view/snapshot';
import type { RunExit } from '../../../src/process/runSession';
import { findingDisplay, headerDisplay, shownNameEnd, tensorOption } from '../../../webview/display';
import { parseFinding, parseHostMessage } from '../../../webview/hostMessages';

const RLO = '\u202E';
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;
const EVIL = `evil${RLO}gnp.exe`;
const LONG_NAME = `model.${'very_long_module_name_'.repeat(230)}end`; // 5,069 characters
const STATS: StatName[] = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'];
const SCRIPT = '/tmp/deep.py';

/**
 * A torch run of a 100-block model: an input layer, 100 blocks whose gradient is exactly zero from
 * the first step (all ReLUs dead), an output layer, a layer with a bidi control in its name and one
 * with a 5,069-character name.
 */
function deadBlocksRun(steps = 30): RunStore {
  const layers = ['model.inp', ...Array.from({ length: 100 }, (_, i) => `model.transformer.blocks.${i}.feed_forward.w1`), 'model.out', `model.${EVIL}`, LONG_NAME];
  const alive = (l: number): boolean => l >= 101;
  const tensors: TensorInfo[] = layers.map((layer, id) => ({ id, name: `${layer}.weight`, layer, layerType: 'Linear', shape: [8, 8], source: { file: SCRIPT, line: 10 + id, column: 5 } }));
  const store = new RunStore();
  store.ingest({ type: 'hello', probeVersion: 't', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: '', pid: 1, rank: 0, script: SCRIPT, detailEvery: 2 });
  store.ingest({ type: 'tensors', tensors });
  for (let step = 0; step < steps; step++) {
    const col = (stat: StatName): Float64Array =>
      Float64Array.from(tensors, (_t, l) => {
        const norm = alive(l) ? 0.5 + 0.01 * Math.sin(step + l) : 0;
        return stat === 'norm' ? norm : stat === 'maxAbs' ? norm / 10 : stat === 'paramNorm' ? 2 : stat === 'updateNorm' ? 2e-3 : 0;
      });
    store.ingest({ type: 'step', step, optimizer: 0, loss: 1, wallMs: step, stats: STATS, columns: STATS.map(col), nTensors: tensors.length });
  }
  return store;
}

const header = (script: string): PanelRunHeader => ({
  runId: 'r1',
  script,
  backend: 'cpu',
  device: 'CPU',
  backendReason: null,
  status: 'completed',
  statusMessage: 'completed',
  step: 29,
  stepsPerSec: null,
  droppedFrames: 0,
  clipNorm: null,
  warnings: [],
});

/** The snapshot embedded in a report, read back as the report's page reads it. */
function embedded(html: string): { snapshot: unknown; details: unknown; views: unknown } {
  const m = /<script type="application\/json" id="gradscope-data">([^<]*)<\/script>/.exec(html);
  assert.ok(m, 'the report embeds its data');
  return JSON.parse(m[1]) as { snapshot: unknown; details: unknown; views: unknown };
}

const ASSETS = { js: 'void 0;', css: '' };

describe('text helpers (core/text.ts)', () => {
  it('neutralise shows bidi controls and terminal controls as escapes, keeps line breaks unless single-line', () => {
    assert.equal(neutralise(EVIL), 'evil\\u202Egnp.exe');
    for (const c of ['\u061C', '\u200E', '\u200F', '\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069']) {
      const out = neutralise(`a${c}b`);
      assert.doesNotMatch(out, BIDI, `U+${c.charCodeAt(0).toString(16)}`);
      assert.equal(out, `a\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}b`);
    }
    assert.equal(neutralise('a\u001B[2Jb\u0085c\u007F'), 'a\\u001B[2Jb\\u0085c\\u007F');
    // Styling only (SGR): dropped, not escaped; a cursor or erase sequence beside it stays visible.
    assert.equal(neutralise('options, \u001B[1mdo those steps\u001B[0m. \u001B[38;5;9mx\u001B[m\u001B[2J'), 'options, do those steps. x\\u001B[2J');
    assert.equal(neutralise('line 1\n\tline 2'), 'line 1\n\tline 2');
    assert.equal(neutralise('a\nb\tc', true), 'a\\u000Ab\\u0009c');
    const plain = 'dense_1/kernel · ‖g‖ 日本語 ok';
    assert.equal(neutralise(plain), plain);
  });

  it('clip cuts with an ellipsis, from either end, never splitting a surrogate pair', () => {
    assert.equal(clip('abcdef', 6), 'abcdef');
    assert.equal(clip('abcdef', 4), 'abc…');
    assert.equal(clip('abcdef', 4, 'end'), '…def');
    assert.equal(clip('ab😀cd', 4), 'ab…'); // the pair at 2–3 would be cut: dropped whole
    assert.equal(clip('ab😀cd', 4, 'end'), '…cd');
    assert.equal(clip('x'.repeat(MAX_TEXT + 10), MAX_TEXT).length, MAX_TEXT);
  });

  it('shownText: neutralised text cut for the screen, the whole neutralised text for the hover', () => {
    const t = shownText(`${'a'.repeat(300)}${RLO}z`, 100);
    assert.equal(t.clipped, true);
    assert.equal(t.text.length, 100);
    assert.ok(t.text.endsWith('…'));
    assert.equal(t.full, `${'a'.repeat(300)}\\u202Ez`);
    assert.deepEqual(shownText('short', 100), { text: 'short', full: 'short', clipped: false });
  });
});

describe('a long dead-units message and long or bidi names: the panel and the report', () => {
  const store = deadBlocksRun();
  const findings = analyzeStore(store);
  const dead = findings.find((f) => f.kind === 'dead-units');

  it('the 100-block run gives a dead-units message over 4,096 characters (the case that blanked the views)', () => {
    assert.ok(dead, `dead-units found: ${findings.map((f) => f.kind).join(', ')}`);
    assert.ok(dead.message.length > 4096, `message of ${dead.message.length} characters`);
  });

  it('the report embeds a snapshot the webview accepts, with the whole message and the long name', () => {
    const data = reportData(store, header(`/tmp/${EVIL}.py`), findings);
    const html = buildReportHtml(data.snapshot, ASSETS, data.details, data.views);
    const raw = embedded(html);
    const reasons: string[] = [];
    const msg = parseHostMessage({ type: 'snapshot', snapshot: raw.snapshot }, (r) => reasons.push(r));
    assert.ok(msg && msg.type === 'snapshot', `snapshot refused: ${reasons.join('; ')}`);
    const s: PanelSnapshot = msg.snapshot;
    assert.equal(s.findings.find((f) => f.kind === 'dead-units')?.message, dead!.message, 'the whole message arrives');
    assert.ok(
      s.tensors.some((t) => t.name === `${LONG_NAME}.weight`),
      'the 5,069-character name arrives whole',
    );
    assert.ok(s.layers.includes(LONG_NAME));
    assert.ok(s.heatmap.layers.includes(LONG_NAME));
    assert.ok(
      s.tensors.some((t) => t.name === `model.${EVIL}.weight`),
      'data is not altered: a name is neutralised where shown',
    );
  });

  it('a string beyond MAX_TEXT is cut, not a reason to refuse the snapshot', () => {
    const data = reportData(store, header('s.py'), findings);
    const snapshot = JSON.parse(JSON.stringify(data.snapshot)) as PanelSnapshot;
    snapshot.findings[0].message = 'y'.repeat(MAX_TEXT * 2);
    snapshot.header.statusMessage = 'z'.repeat(MAX_TEXT + 1);
    const msg = parseHostMessage({ type: 'snapshot', snapshot });
    assert.ok(msg && msg.type === 'snapshot');
    assert.equal(msg.snapshot.findings[0].message.length, MAX_TEXT);
    assert.ok(msg.snapshot.findings[0].message.endsWith('…'));
    assert.equal(msg.snapshot.header.statusMessage.length, MAX_TEXT);
    // What validation is for still holds: a wrong type is refused.
    (snapshot.findings[0] as unknown as Record<string, unknown>).message = 42;
    assert.equal(parseHostMessage({ type: 'snapshot', snapshot }), null);
  });

  it('the panel shows the message cut, with the whole text as its title, and names neutralised', () => {
    const d = findingDisplay(dead!);
    assert.equal(d.message.clipped, true);
    assert.ok(d.message.text.length <= SHOWN.message, `shown ${d.message.text.length} characters`);
    assert.ok(d.message.text.startsWith('Dead units in '));
    assert.equal(d.message.full, dead!.message);
    const below = d.evidence.find((e) => e.key.text === 'layersBelowDead')?.value;
    assert.ok(below && typeof below === 'object' && below.clipped && below.text.length <= SHOWN.value, 'the evidence list of layers is cut too');

    const evilTensor = { id: 1, name: `model.${EVIL}.weight`, layer: `model.${EVIL}`, layerType: 'Linear', shape: [1, 1], source: null };
    const opt = tensorOption(evilTensor);
    assert.doesNotMatch(opt.text, BIDI);
    assert.equal(opt.text, 'model.evil\\u202Egnp.exe.weight [1×1]');
    const longOpt = tensorOption({ ...evilTensor, name: LONG_NAME });
    assert.ok(longOpt.clipped && longOpt.text.length <= SHOWN.name + 10 && longOpt.full.startsWith(LONG_NAME));
    assert.equal(shownNameEnd(`model.${EVIL}`, 22).text.includes(RLO), false, 'heatmap tick');

    const evilFinding: Finding = {
      ...dead!,
      layer: `model.${EVIL}`,
      message: `Dead units in model.${EVIL}.`,
      source: { file: `/tmp/${EVIL}.py`, line: 3, column: 1 },
      evidence: { layersBelowDead: EVIL },
    };
    const e = findingDisplay(evilFinding);
    for (const t of [e.message.text, e.message.full, e.meta.text, e.meta.full, ...e.evidence.map((x) => (typeof x.value === 'object' && x.value ? x.value.text : ''))])
      assert.doesNotMatch(t, BIDI);
    assert.match(e.meta.text, /model\.evil\\u202Egnp\.exe · steps 0–\d+ · evil\\u202Egnp\.exe\.py:3$/);
    const h = headerDisplay(header(`/tmp/${EVIL}.py`));
    assert.equal(h.script.text, '/tmp/evil\\u202Egnp.exe.py');
  });

  it("a finding in a notebook cell names the cell (counted from 1) and the cell's line, through the webview's parser", () => {
    const inCell: Finding = { ...dead!, source: { file: '/w/train.ipynb', line: 5, column: 3, cell: 3 } };
    const parsed = parseFinding(JSON.parse(JSON.stringify(inCell)));
    assert.deepEqual(parsed.source, { file: '/w/train.ipynb', line: 5, column: 3, cell: 3 });
    assert.match(findingDisplay(parsed).meta.text, / · train\.ipynb cell 4 line 5$/);
    assert.throws(() => parseFinding(JSON.parse(JSON.stringify({ ...inCell, source: { ...inCell.source, cell: -1 } }))));
  });

  it('the HTML report holds no bidi control anywhere in its source: title neutralised, JSON escaped', () => {
    const data = reportData(store, header(`/tmp/${EVIL}.py`), findings);
    const html = buildReportHtml(data.snapshot, ASSETS, data.details, data.views);
    assert.doesNotMatch(html, BIDI);
    assert.match(html, /<title>GradScope report · \/tmp\/evil\\u202Egnp\.exe\.py<\/title>/);
    // JSON.parse restores the data exactly.
    assert.ok((embedded(html).snapshot as PanelSnapshot).layers.includes(`model.${EVIL}`));
  });

  it('a finding id of a long layer name comes back from the webview (Go to layer, remedies)', () => {
    const id = `dead-units:${LONG_NAME}`;
    assert.deepEqual(parseWebviewMessage({ type: 'goToLayer', findingId: id }), { type: 'goToLayer', findingId: id });
    assert.equal(parseWebviewMessage({ type: 'goToLayer', findingId: 'x'.repeat(MAX_TEXT + 1) }), null);
  });
});

describe('the CLI summary and the editor show names neutralised', () => {
  const store = deadBlocksRun();
  const findings = analyzeStore(store);
  const exit: RunExit = { reason: 'completed', code: 0, signal: null, error: null, message: `completed ${RLO}\u001B[2J`, steps: 30 };

  it('no bidi control or ESC reaches the terminal, and the table stays aligned', () => {
    const text = formatSummary(store, exit, { script: `${EVIL}.py`, runFile: 'r.gsrun' }, findings);
    assert.doesNotMatch(text, BIDI);
    assert.ok(!text.includes('\u001B'), 'no ESC');
    assert.match(text, /GradScope · evil\\u202Egnp\.exe\.py/);
    const rows = text.split('\n').filter((l) => l.startsWith('model.inp.weight') || l.startsWith('model.evil'));
    assert.equal(rows.length, 2);
    assert.ok(rows[1].startsWith('model.evil\\u202Egnp.exe.weight '));
    // The shape column starts at the same place on both rows.
    assert.equal(rows[0].indexOf('[8,8]'), rows[1].indexOf('[8,8]'));
    assert.match(text, /Dead units in model\.transformer\.blocks\.99\.feed_forward\.w1/, 'the CLI prints the whole message');
  });

  it('the diagnostic and the hover neutralise the finding text', () => {
    const f: Finding = { ...findings[0], message: `Dead units in model.${EVIL}.`, evidence: {} };
    assert.equal(diagnosticMessage({ ...f, locations: undefined }, 'layer'), 'Dead units in model.evil\\u202Egnp.exe.');
    // With its affected layers (this run's 101 dead ones), each line's text is neutralised too.
    assert.doesNotMatch(diagnosticMessage(f, 'layer'), BIDI);
    for (const l of f.locations ?? []) assert.doesNotMatch(diagnosticMessage(f, 'location', l.layer), BIDI);
    assert.doesNotMatch(mdEscape(`model.${EVIL}`), BIDI);
  });
});
