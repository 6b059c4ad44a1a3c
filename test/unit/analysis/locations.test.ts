// Every offending layer on its line, on real recorded runs (test/fixtures/diagnosis/runs): the
// scripts' gs:layer / gs:also lines must all be among the finding's `locations`, each location must
// be a layer whose own evidence meets the kind's threshold (byLayer), the JSON must carry them, and
// a finding about one layer carries none.
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { describe, it } from 'node:test';
import { Analyzer } from '../../../src/core/analysis/analyzer';
import { DEAD_UNITS } from '../../../src/core/analysis/detectors/deadUnits';
import { VANISHING } from '../../../src/core/analysis/detectors/vanishing';
import type { Finding } from '../../../src/core/analysis/finding';
import { buildRunJson } from '../../../src/core/report/runJson';
import { readRunFile } from '../../../src/core/store/runFile';
import { affectedLines, expectations, parseMarkers } from './expectations';

const all = expectations();
const findingsOf = (runFile: string): { fs: Finding[]; store: ReturnType<typeof readRunFile>['store'] } => {
  const { store } = readRunFile(runFile);
  return { fs: new Analyzer(store).finish(), store };
};

/** byLayer's entry of one layer ("name value…"), as the hover reads it. */
const entryOf = (f: Finding, layer: string): string | undefined =>
  String(f.evidence.byLayer ?? '')
    .split('; ')
    .find((e) => e.startsWith(layer + ' '));

describe('markers for several affected layers', () => {
  it('gs:layer and gs:also lines are the affected lines; gs:related is kept apart', () => {
    const m = parseMarkers(['// gs:expect dead-units', 'a // gs:also dead-units', 'b // gs:layer dead-units', 'c # gs:related dead-units', 'd // gs:global update-ratio'].join('\n'));
    assert.deepEqual(m.kinds, ['dead-units']);
    assert.equal(m.where.get('dead-units'), 3);
    assert.equal(m.where.get('update-ratio'), null);
    assert.deepEqual(m.affected.get('dead-units'), [2, 3]);
    assert.deepEqual(m.related.get('dead-units'), [4]);
    assert.equal(m.affected.has('update-ratio'), false);
  });

  it('covers several layers of each kind, TF.js and PyTorch, with healthy twins', () => {
    const multi = all.filter((e) => [...e.affected.values()].some((ls) => ls.length >= 2));
    for (const k of ['dead-units', 'vanishing-gradient']) {
      assert.ok(
        multi.some((e) => e.script.endsWith('.js') && (e.affected.get(k)?.length ?? 0) >= 2),
        `a TF.js script marks several ${k} layers`,
      );
      assert.ok(
        multi.some((e) => e.script.endsWith('.py') && (e.affected.get(k)?.length ?? 0) >= 2),
        `a PyTorch script marks several ${k} layers`,
      );
    }
    assert.ok(all.filter((e) => e.name.startsWith('loc') && e.kinds.length === 0).length >= 2, 'healthy loc-* scripts');
  });
});

describe('locations on recorded runs', () => {
  for (const e of all.filter((x) => x.affected.size > 0)) {
    it(`${e.name}: every marked layer on its line`, () => {
      const { fs } = findingsOf(e.runFile);
      for (const [kind, lines] of e.affected) {
        const f = fs.find((x) => x.kind === kind);
        assert.ok(f, `${e.name}: a ${kind} finding`);
        const got = affectedLines(f, e.script);
        for (const l of lines) assert.ok(got.includes(l), `${e.name}: ${kind} marks line ${l} (located: ${got.join(', ')}; ${f.message})`);
      }
    });
  }

  it('each location is a distinct layer, input side first, with the primary among them and its own evidence', () => {
    let checked = 0;
    for (const e of all) {
      const { fs, store } = findingsOf(e.runFile);
      for (const f of fs) {
        if (!f.locations) continue;
        checked++;
        const layers = f.locations.map((l) => l.layer);
        assert.equal(new Set(layers).size, layers.length, `${f.id}: distinct layers`);
        if (f.layer !== null) {
          assert.ok(f.locations.length >= 2, `${f.id}: a layer finding carries locations only for several layers`);
          const primary = f.locations.find((l) => l.layer === f.layer);
          assert.ok(primary, `${f.id}: the primary is among its locations`);
          assert.equal(primary.line, f.source?.line);
        } else {
          assert.equal(f.kind, 'exploding-gradient', `${f.id}: only a global explosion names where it starts`);
          assert.equal(f.locations.length, 1);
          assert.equal(f.evidence.startLayer, f.locations[0].layer);
        }
        const firstIndex = (layer: string): number => store.tensors.findIndex((t) => t.layer === layer || t.name.startsWith(layer + '/'));
        const order = layers.map(firstIndex);
        assert.deepEqual(
          order,
          [...order].sort((a, b) => a - b),
          `${f.id}: input side first`,
        );
        for (const l of f.locations) {
          assert.ok(l.tensors.length > 0 && l.line >= 1 && l.column >= 1, `${f.id}: ${l.layer} has tensors and a line`);
          const entry = entryOf(f, l.layer);
          assert.ok(entry, `${f.id}: byLayer has ${l.layer}'s own numbers`);
          // The layer's own evidence against the kind's threshold.
          if (f.kind === 'dead-units') assert.ok(Number(/ ([\d.]+)% zero/.exec(entry)![1]) / 100 >= DEAD_UNITS.zeroFrac, `${f.id}: ${entry}`);
          if (f.kind === 'vanishing-gradient') {
            assert.ok(Number(/ratio ([\d.e+-]+)/.exec(entry)![1]) < VANISHING.ratio, `${f.id}: ${entry}`);
            assert.ok(Number(/for (\d+) steps/.exec(entry)![1]) >= VANISHING.steps, `${f.id}: ${entry}`);
          }
        }
      }
    }
    assert.ok(checked >= 8, `${checked} findings with locations`);
  });

  it('a global explosion names where it starts: the recurrent layer of an RNN', () => {
    const e = all.find((x) => x.name === 'explode-lr-rnn')!;
    const f = findingsOf(e.runFile).fs.find((x) => x.kind === 'exploding-gradient')!;
    assert.equal(f.layer, null);
    assert.match(f.locations![0].layer, /rnn/i);
    assert.match(f.message, /starts in .*recurrent layer/);
  });

  it('healthy runs carry no locations (no findings at all)', () => {
    for (const e of all.filter((x) => x.kinds.length === 0)) assert.deepEqual(findingsOf(e.runFile).fs, [], e.name);
  });

  it('the JSON carries findings[].locations as the finding does, and leaves it out otherwise', () => {
    const e = all.find((x) => x.name === 'loc-dead-relu-stack')!;
    const { fs, store } = findingsOf(e.runFile);
    const doc = JSON.parse(JSON.stringify(buildRunJson(store, e.script, { reason: 'completed', code: 0, signal: null, error: null }, null, fs))) as {
      findings: { kind: string; locations?: { file: string; line: number; column: number; layer: string; tensors: string[] }[] }[];
    };
    const dead = doc.findings.find((f) => f.kind === 'dead-units')!;
    assert.deepEqual(dead.locations, JSON.parse(JSON.stringify(fs.find((f) => f.kind === 'dead-units')!.locations)));
    assert.deepEqual(
      dead.locations!.map((l) => `${basename(l.file)}:${l.line}`),
      e.affected.get('dead-units')!.map((l) => `${basename(e.script)}:${l}`),
    );
    const single = all.find((x) => x.name === 'loc-custom-bias')!;
    const r = findingsOf(single.runFile);
    const sdoc = buildRunJson(r.store, single.script, { reason: 'completed', code: 0, signal: null, error: null }, null, r.fs);
    assert.ok(sdoc.findings.length > 0 && sdoc.findings.every((f) => !('locations' in f)), 'one dead layer: no locations');
  });
});
