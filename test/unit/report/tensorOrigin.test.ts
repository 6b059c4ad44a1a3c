// TENSORS' aliases and builtIn from the wire to the run file, the store, the run JSON and the hover.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Message, TensorInfo } from '../../../src/core/protocol/messages';
import { buildRunJson } from '../../../src/core/report/runJson';
import { RunFileWriter, readRunFile } from '../../../src/core/store/runFile';
import { RunStore } from '../../../src/core/store/runStore';
import { hoverMarkdown, layerStats, originMarkdown } from '../../../src/features/diagnosisModel';
import { stepMsg, wire } from '../store/helpers';

const root = mkdtempSync(join(tmpdir(), 'gradscope-origin-'));
after(() => rmSync(root, { recursive: true, force: true }));

const MODELING_GPT2 = '/venv/lib/python3.11/site-packages/transformers/models/gpt2/modeling_gpt2.py';
const TENSORS: TensorInfo[] = [
  {
    id: 0,
    name: 'transformer.wte.weight',
    layer: 'transformer.wte',
    layerType: 'Embedding',
    shape: [40, 8],
    source: { file: '/w/train.py', line: 6, column: 7 },
    aliases: ['lm_head.weight'],
    builtIn: { file: MODELING_GPT2, line: 492, column: 20, package: 'transformers' },
  },
  { id: 1, name: 'head.weight', layer: 'head', layerType: 'Linear', shape: [2, 8], source: { file: '/w/train.py', line: 9, column: 12 } },
];

function frames(): Message[] {
  return [
    { type: 'hello', probeVersion: '0.1.0', framework: 'torch', backend: 'cpu', device: 'CPU', backendReason: 'test', pid: 1, rank: 0, script: '/w/train.py', detailEvery: 5 },
    { type: 'tensors', tensors: TENSORS },
    stepMsg(0, 2),
    stepMsg(1, 2),
    { type: 'end', reason: 'completed', steps: 2 },
  ];
}

describe('tensor aliases and library sites', () => {
  it('survive the run file and reach the run JSON; tensors without them have neither key', async () => {
    const w = RunFileWriter.create(root, { runId: 'origin-1', script: '/w/train.py', args: [], cwd: '/w', startedAt: '2026-01-01T00:00:00.000Z', framework: 'torch' });
    frames().forEach((m, i) => w.append(wire(m, i).raw));
    await w.close({ reason: 'completed', code: 0, signal: null, error: null, endedAt: '2026-01-01T00:00:01.000Z', steps: 2 });
    const read = readRunFile(w.path);
    assert.equal(read.error, null);
    assert.deepEqual(read.store.tensors, TENSORS);
    const json = buildRunJson(read.store, '/w/train.py', { reason: 'completed', code: 0, signal: null, error: null }, w.path);
    assert.deepEqual(json.tensors[0].aliases, ['lm_head.weight']);
    assert.deepEqual(json.tensors[0].builtIn, { file: MODELING_GPT2, line: 492, column: 20, package: 'transformers' });
    assert.ok(!('aliases' in json.tensors[1]) && !('builtIn' in json.tensors[1]));
    assert.ok(JSON.stringify(json).includes('"builtIn":{"file"'));
  });

  it('show in the hover: where the library built the layer, and its other names', () => {
    const store = new RunStore();
    for (const m of frames()) store.ingest(wire(m).msg);
    const st = layerStats(store, 'transformer.wte')!;
    assert.deepEqual(st.aliases, ['lm_head.weight']);
    assert.equal(st.builtIn?.package, 'transformers');
    const line = originMarkdown(st);
    assert.equal(
      line,
      'built in transformers: [modeling\\_gpt2\\.py:492](file:///venv/lib/python3.11/site-packages/transformers/models/gpt2/modeling_gpt2.py#L492,20) · also: lm\\_head\\.weight',
    );
    const md = hoverMarkdown({ stats: st, findings: [], runLabel: 'train.py, run ended at step 1', panelLink: null, svg: false });
    assert.ok(md.includes(line));
    const plain = layerStats(store, 'head')!;
    assert.equal(originMarkdown(plain), null);
    assert.ok(!hoverMarkdown({ stats: plain, findings: [], runLabel: 'x', panelLink: null, svg: false }).includes('built in'));
    assert.equal(originMarkdown({ aliases: ['a.w', 'b.w'] }), 'also: a\\.w, b\\.w');
  });
});
