// The analyzer on real recorded runs (test/fixtures/diagnosis/runs, recorded by record.sh from the
// scripts beside them): expected kinds, the responsible layer's line, explosions flagged before the
// first non-finite step, healthy runs silent, live (incremental) = replay, and the cost per update.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { Analyzer } from '../../../src/core/analysis/analyzer';
import type { Finding } from '../../../src/core/analysis/finding';
import { readRunFile } from '../../../src/core/store/runFile';
import { TappedStore } from '../support/tappedStore';
import { repoRoot } from '../support/paths';
import { expectations, type Expectation } from './expectations';

const strip = (fs: readonly Finding[]): unknown => JSON.parse(JSON.stringify(fs));

function replay(e: Expectation): { findings: Finding[]; firstNonFinite: number | null } {
  const { store, error } = readRunFile(e.runFile);
  assert.equal(error, null, `${e.name}: run file reads cleanly`);
  assert.ok(store.stepCount > 0, `${e.name}: run file has steps`);
  const findings = new Analyzer(store).finish();
  return { findings, firstNonFinite: store.summary().firstNonFiniteStep };
}

const all = expectations();

describe('analyzer on recorded runs', () => {
  it('has at least 15 scripts of our own, each recorded, plus the examples', () => {
    const own = all.filter((e) => !e.name.startsWith('example-'));
    assert.ok(own.length >= 15, `${own.length} scripts`);
    for (const e of own) assert.ok(existsSync(e.runFile), `${e.name} is recorded (run test/fixtures/diagnosis/record.sh)`);
    const kinds = new Set(own.flatMap((e) => e.kinds));
    for (const k of ['exploding-gradient', 'vanishing-gradient', 'non-finite-gradient', 'dead-units', 'update-ratio']) assert.ok(kinds.has(k), `a script covers ${k}`);
    assert.ok(own.filter((e) => e.kinds.length === 0).length >= 5, 'healthy scripts');
  });

  for (const e of all) {
    it(`${e.name}: ${e.kinds.length ? e.kinds.join(', ') : 'healthy, no findings'}`, () => {
      const { findings, firstNonFinite } = replay(e);
      const found = [...new Set(findings.map((f) => f.kind))].sort();
      assert.deepEqual(found, [...e.kinds].sort(), `${e.name}: kinds (${findings.map((f) => f.message).join(' | ')})`);
      for (const [kind, line] of e.where) {
        const f = findings.find((x) => x.kind === kind);
        assert.ok(f, `${e.name}: a ${kind} finding`);
        if (line === null) {
          assert.equal(f.layer, null, `${e.name}: ${kind} is global (${f.message})`);
        } else {
          assert.ok(f.source, `${e.name}: ${kind} has a source`);
          assert.equal(basename(f.source.file), basename(e.script), `${e.name}: ${kind} points into the script`);
          assert.equal(f.source.line, line, `${e.name}: ${kind} on the line that builds ${f.layer}`);
        }
      }
      const ex = findings.find((f) => f.kind === 'exploding-gradient');
      if (ex && firstNonFinite !== null) assert.ok(ex.step < firstNonFinite, `${e.name}: explosion flagged at ${ex.step}, before the first non-finite step ${firstNonFinite}`);
      for (const f of findings) {
        assert.equal(f.id, `${f.kind}:${f.layer ?? 'global'}`);
        assert.ok(f.remedies.length > 0, `${f.id} has remedies`);
        assert.ok(Object.keys(f.evidence).length > 0, `${f.id} has evidence`);
        assert.ok(f.stepRange[0] <= f.step && f.step <= f.stepRange[1], `${f.id}: step within its range`);
      }
    });
  }

  it('incremental update() after every step gives the same final findings as one finish()', () => {
    const costs: string[] = [];
    for (const e of all) {
      let analyzer: Analyzer | null = null;
      let steps = 0;
      const store = new TappedStore((m) => {
        if (m.type !== 'step') return;
        steps++;
        analyzer!.update();
      });
      analyzer = new Analyzer(store);
      readRunFile(e.runFile, store);
      const live = analyzer.finish();
      const once = new Analyzer(readRunFile(e.runFile).store).finish();
      assert.deepEqual(strip(live), strip(once), `${e.name}: live = replay`);
      const st = analyzer.stats;
      costs.push(`${e.name.padEnd(28)} ${String(steps).padStart(4)} steps  ${(st.ms / st.updates).toFixed(3)} ms/update (max ${st.maxMs.toFixed(2)} ms)`);
    }
    console.log('analyzer cost per update (each update reads the whole ring once per statistic):\n' + costs.join('\n'));
  });

  it('findings appear live no later than at the end, and the explosion before the first NaN', () => {
    for (const e of all.filter((x) => x.kinds.includes('exploding-gradient'))) {
      let analyzer: Analyzer | null = null;
      // Assigned in the callback: the cast keeps TypeScript from narrowing them to `null` for good.
      let flaggedAt = null as number | null;
      let firstBad = null as number | null;
      const store = new TappedStore((m) => {
        if (m.type !== 'step') return;
        const fs = analyzer!.update();
        if (flaggedAt === null && fs.some((f) => f.kind === 'exploding-gradient')) flaggedAt = m.step;
        if (firstBad === null && store.summary().firstNonFiniteStep !== null) firstBad = m.step;
      });
      analyzer = new Analyzer(store);
      readRunFile(e.runFile, store);
      assert.ok(flaggedAt !== null, `${e.name}: flagged live`);
      if (firstBad !== null) assert.ok(flaggedAt < firstBad, `${e.name}: shown live at step ${flaggedAt}, before step ${firstBad} went non-finite`);
    }
  });
});

describe('CLI: gradscope run --json fills findings (live runs)', () => {
  const cli = join(repoRoot, 'bin', 'gradscope.js');
  const built = existsSync(join(repoRoot, 'dist', 'cli.js')) && existsSync(join(repoRoot, 'dist', 'probe', 'tfjs', 'runner.js'));
  const picks = ['explode-init-deep', 'nan-log0', 'healthy-clip-norm'];
  for (const name of picks) {
    it(`${name}: a fresh run finds what the recorded run shows`, { skip: built ? false : 'not built', timeout: 120_000 }, () => {
      const e = all.find((x) => x.name === name)!;
      const out = mkdtempSync(join(tmpdir(), 'gs-diag-'));
      try {
        const r = spawnSync(process.execPath, [cli, 'run', e.script, '--steps', '100', '--json', '--out', out], { cwd: repoRoot, encoding: 'utf8', timeout: 110_000 });
        assert.ok(r.stdout, `CLI printed JSON (stderr: ${r.stderr.slice(-500)})`);
        const doc = JSON.parse(r.stdout) as { findings: { id: string; kind: string; layer: string | null; source: { line: number } | null; remedies: { id: string; title: string }[] }[] };
        const recorded = replay(e).findings;
        const key = (f: { id: string; kind: string; layer: string | null; source: { line: number } | null }): string => `${f.id}@${f.source?.line ?? '-'}`;
        assert.deepEqual(doc.findings.map(key).sort(), recorded.map(key).sort(), `${name}: same findings live as recorded`);
        for (const f of doc.findings) assert.ok(f.remedies.every((x) => x.id && x.title));
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  }
});
