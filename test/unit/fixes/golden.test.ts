// Golden before/after tests of the fix engine:
// - every remedy of every finding of the recorded runs (examples and diagnosis fixtures, replayed
//   with readRunFile + Analyzer for real findings) on the real scripts:
//   test/fixtures/fixes/runs/<run>/<kind>.<remedy>.after.<ext> (or .refused.txt with the reason);
// - script shapes (CJS/ESM/TS, renamed and named bindings, functional models, string optimizers,
//   custom loops, odd formatting, …): test/fixtures/fixes/shapes/<case>/{before.*, case.json,
//   after.<name>.*, refused.<name>.txt}.
// The text after a fix must parse and equal the golden file exactly. A second application of an
// idempotent remedy reports alreadyApplied and changes nothing.
// GRADSCOPE_UPDATE_GOLDEN=1 rewrites the golden files (review the diff before committing).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { activationFromSource } from '../../../src/core/analysis/activation';
import { Analyzer } from '../../../src/core/analysis/analyzer';
import type { Finding } from '../../../src/core/analysis/finding';
import { globalNormsOf } from '../../../src/core/fixes/measure';
import { isPythonFile } from '../../../src/core/fixes/python/index';
import { parse, syntaxErrors } from '../../../src/core/fixes/tfjs/ast';
import type { FixResult } from '../../../src/core/fixes/types';
import type { TensorInfo } from '../../../src/core/protocol/messages';
import { readRunFile } from '../../../src/core/store/runFile';
import { computeFix, prepareFixes } from '../../../src/process/fixEngine';
import { IDEMPOTENT, makeFinding, type CaseFix } from '../support/fixCases';
import { fixture, repoRoot } from '../support/paths';
import { pythonErrorCount } from '../support/pythonParser';

const UPDATE = process.env.GRADSCOPE_UPDATE_GOLDEN === '1';

/** Compares (or, updating, writes) the golden file of one fix. Returns the number of checks made. */
function checkGolden(dir: string, stem: string, ext: string, file: string, before: string, r: FixResult): void {
  const afterPath = join(dir, `${stem}.after${ext}`);
  const refusedPath = join(dir, `${stem}.refused.txt`);
  if (UPDATE) {
    mkdirSync(dir, { recursive: true });
    if (r.ok) writeFileSync(afterPath, r.after);
    else writeFileSync(refusedPath, `${r.alreadyApplied ? 'already applied: ' : ''}${r.reason}\n`);
  }
  if (r.ok) {
    assert.ok(
      existsSync(afterPath),
      `${afterPath} exists (GRADSCOPE_UPDATE_GOLDEN=1 to create)${existsSync(refusedPath) ? ` — the golden says refused: ${readFileSync(refusedPath, 'utf8')}` : ''}`,
    );
    assert.equal(r.after, readFileSync(afterPath, 'utf8'), `${stem}: after text equals ${afterPath}`);
    assert.notEqual(r.after, before);
    if (isPythonFile(file)) assert.equal(pythonErrorCount(r.after), 0, `${stem}: the text after parses (Python)`);
    else
      assert.deepEqual(
        syntaxErrors(parse(r.after, file)).map((d) => d.messageText),
        [],
        `${stem}: the text after parses`,
      );
    assert.ok(r.title.length > 0);
  } else {
    assert.ok(existsSync(refusedPath), `${refusedPath} exists: ${r.reason}`);
    assert.equal(`${r.alreadyApplied ? 'already applied: ' : ''}${r.reason}\n`, readFileSync(refusedPath, 'utf8'));
  }
}

function secondApplication(text: string, f: Finding, remedy: string, ctx: { file: string; globalNorms?: number[] }, r: FixResult): void {
  if (!r.ok || !IDEMPOTENT.has(remedy)) return;
  // The finding's line may have moved (the clip wrapper adds lines above it): shift it.
  const shift = r.after.split('\n').length - text.split('\n').length;
  const moved = f.source && remedy === 'clip-global-norm' ? { ...f, source: { ...f.source, line: f.source.line + shift } } : f;
  const again = computeFix(r.after, moved, remedy, ctx);
  assert.equal(again.ok, false, `${remedy} applied twice: ${again.ok ? again.title : ''}`);
  if (!again.ok) assert.equal(again.alreadyApplied, true, `${remedy} second time: alreadyApplied (${again.reason})`);
}

// --- Recorded runs ----------------------------------------------------------------------------

/** A run file's source paths are those of the machine that recorded it: relocate them here. */
function relocate(file: string): string {
  if (existsSync(file)) return file;
  const m = /[\\/]((?:test[\\/]fixtures|examples)[\\/].*)$/.exec(file);
  return m ? join(repoRoot, m[1]) : file;
}

const texts = new Map<string, string | null>();
function textOf(file: string): string | null {
  if (!texts.has(file)) texts.set(file, existsSync(file) ? readFileSync(file, 'utf8') : null);
  return texts.get(file)!;
}
const activationOf = (t: TensorInfo): ReturnType<typeof activationFromSource> => {
  if (!t.source) return null;
  const text = textOf(relocate(t.source.file));
  return text === null ? null : activationFromSource(text, t.source.line, t.layerType);
};

let goldenCount = 0;

describe('fix engine: every remedy of every finding of the recorded runs', () => {
  before(() => prepareFixes()); // (the recorded PyTorch runs: Python fixes need the parser loaded)
  const runsDir = fixture('diagnosis', 'runs');
  const runs = readdirSync(runsDir)
    .filter((f) => f.endsWith('.gsrun'))
    .sort();
  for (const run of runs) {
    const name = basename(run, '.gsrun');
    const { store, meta } = readRunFile(join(runsDir, run));
    const findings = new Analyzer(store, { activationOf }).finish();
    if (findings.length === 0) continue;
    const script = relocate(meta.script);
    const norms = globalNormsOf(store);
    for (const f0 of findings) {
      const f: Finding = f0.source ? { ...f0, source: { ...f0.source, file: relocate(f0.source.file) } } : f0;
      for (const rem of f.remedies) {
        it(`${name}: ${f.kind} → ${rem.id}`, () => {
          const file = f.source?.file ?? script;
          const text = readFileSync(file, 'utf8');
          const ctx = { file, globalNorms: norms };
          const r = computeFix(text, f, rem.id, ctx);
          checkGolden(fixture('fixes', 'runs', name), `${f.kind}.${rem.id}`, extname(file), file, text, r);
          secondApplication(text, f, rem.id, ctx, r);
          goldenCount++;
        });
      }
    }
  }
});

// --- Script shapes ------------------------------------------------------------------------------

describe('fix engine: script shapes', () => {
  const shapesDir = fixture('fixes', 'shapes');
  for (const dirName of readdirSync(shapesDir).sort()) {
    const dir = join(shapesDir, dirName);
    const beforeName = readdirSync(dir).find((f) => f.startsWith('before.'));
    if (!beforeName) continue;
    const file = join(dir, beforeName);
    const ext = extname(beforeName);
    const spec = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { fixes: CaseFix[] };
    for (const c of spec.fixes) {
      it(`${dirName}: ${c.name} (${c.remedy})`, () => {
        const text = readFileSync(file, 'utf8');
        const f = makeFinding(file, c, 'layer');
        const ctx = { file, globalNorms: c.globalNorms?.map((x) => x ?? NaN), version: 7 };
        const r = computeFix(text, f, c.remedy, ctx);
        checkGolden(dir, c.name, ext, file, text, r);
        if (r.ok) assert.equal(r.version, 7, 'the document version is echoed');
        secondApplication(text, f, c.remedy, ctx, r);
        goldenCount++;
      });
    }
  }

  it('counts the golden cases', () => {
    console.log(`# golden fix cases checked: ${goldenCount}`);
    assert.ok(goldenCount >= 60, `${goldenCount} golden cases`);
  });
});
