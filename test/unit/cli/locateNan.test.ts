// `gradscope run --locate-nan` on real TF.js runs: the bounded re-run names the kernel that made the
// first non-finite value and the user's line (forward: Log of 0; backward: the gradient of Sqrt at 0),
// in the table and in the JSON (findings[].cause and locateNan), and the flag parses.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseArgs } from '../../../src/cli/args';
import { locateNan } from '../../../src/process/locateNan';
import { gradscopeSync, type CliResult } from '../support/cli';
import { repoRoot } from '../support/paths';

const outDir = mkdtempSync(join(tmpdir(), 'gs-locate-cli-'));
const fixtures = join(repoRoot, 'test', 'fixtures', 'locate-nan');

const gradscope = (args: string[]): CliResult => gradscopeSync(args);

/** 1-based line and column of the first occurrence of `needle`. */
function posOf(file: string, needle: string): { line: number; column: number } {
  const lines = readFileSync(file, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `${needle} in ${file}`);
  return { line: i + 1, column: lines[i].indexOf(needle) + 1 };
}

interface LocatedJson {
  findings: { kind: string; source: { file: string; line: number } | null; cause?: { op: string; file: string; line: number; column: number }; remedies: { id: string; title: string }[] }[];
  locateNan?: { status: string; message: string; cause: { op: string; phase: string; line: number } | null; steps: number };
}

describe('gradscope run --locate-nan (TF.js)', () => {
  it('parses the flag', () => {
    const a = parseArgs(['run', 'train.js', '--locate-nan', '--steps', '5']);
    assert.equal(a.command, 'run');
    if (a.command === 'run') assert.equal(a.locateNan, true);
    const b = parseArgs(['run', 'train.js']);
    if (b.command === 'run') assert.equal(b.locateNan, false);
  });

  it('names tf.log of a probability that reached 0, on its line and column (JSON)', () => {
    const script = join(fixtures, 'tfjs_log.mjs');
    const r = gradscope(['run', script, '--steps', '20', '--json', '--out', outDir, '--locate-nan']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as LocatedJson;
    const f = doc.findings.find((x) => x.kind === 'non-finite-gradient');
    assert.ok(f?.cause, r.stderr);
    const at = posOf(script, 'log(p)'); // V8 places a call at its property name
    assert.equal(f.cause.op, 'Log');
    assert.equal(f.cause.file, script);
    assert.equal(f.cause.line, at.line);
    assert.equal(f.cause.column, at.column);
    assert.equal(f.source!.line, at.line, 'the finding points at the operation');
    assert.equal(f.remedies[0].id, 'guard-loss');
    assert.match(f.remedies[0].title, /epsilon inside the log/);
    assert.equal(doc.locateNan?.status, 'located');
    assert.match(r.stderr, /first non-finite operation: Log at .*tfjs_log\.mjs:\d+/);
  });

  it('names the gradient of tf.sqrt at 0 (backward), on the forward line (table)', () => {
    const script = join(fixtures, 'tfjs_sqrt.mjs');
    const r = gradscope(['run', script, '--steps', '20', '--out', outDir, '--locate-nan']);
    assert.equal(r.code, 0, r.stderr);
    const line = posOf(script, 'tf.sqrt(').line;
    assert.match(r.stdout, new RegExp(`non-finite-gradient at step 2 · .*tfjs_sqrt\\.mjs:${line}\\b`));
    assert.match(r.stdout, /made by SqrtGrad \(its gradient\)/);
  });

  it('says so when there is nothing to locate', () => {
    const r = gradscope(['run', join(repoRoot, 'examples', 'tfjs', 'healthy-custom-loop.mjs'), '--steps', '3', '--out', outDir, '--locate-nan']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /--locate-nan: no non-finite gradient in this run/);
  });

  it('bounds the re-run: a budget below the non-finite step does not reproduce it, and says so', async () => {
    // firstStep 1 → 2 steps: the log only reaches 0 at step 3.
    const r = await locateNan({ script: join(fixtures, 'tfjs_log.mjs'), firstStep: 1, runDir: outDir, timeoutSec: 60 });
    assert.equal(r.steps, 2);
    assert.equal(r.exit.steps, 2);
    assert.equal(r.status, 'not-reproduced');
    assert.match(r.message, /did not reproduce/);
  });
});
