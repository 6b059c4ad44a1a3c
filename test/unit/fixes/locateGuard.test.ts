// guard-loss with a located cause (locate-nan): only the operation on the cause's line is guarded,
// with the guard that matches it (eps in the log, clamp/floor before the sqrt, eps in the
// denominator), in PyTorch and TF.js. Golden files: test/fixtures/fixes/locate-nan/after.<case>.{py,ts}
// (GRADSCOPE_UPDATE_GOLDEN=1 rewrites them; review the diff).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type { Finding, FindingCause } from '../../../src/core/analysis/finding';
import { computeFix, prepareFixes } from '../../../src/process/fixEngine';
import { fixture } from '../support/paths';

const UPDATE = process.env.GRADSCOPE_UPDATE_GOLDEN === '1';
const dir = fixture('fixes', 'locate-nan');

function finding(file: string, cause: FindingCause | undefined, line = 3): Finding {
  return {
    id: 'non-finite-gradient:global',
    kind: 'non-finite-gradient',
    severity: 'error',
    step: 3,
    stepRange: [3, 3],
    tensors: [],
    layer: null,
    source: cause ? { file, line: cause.line, column: cause.column } : { file, line, column: 1 },
    ...(cause ? { cause } : {}),
    message: '',
    evidence: {},
    remedies: [{ id: 'guard-loss', title: '' }],
  };
}

const CASES: { name: string; op: string; needle: string; changed: RegExp | null }[] = [
  { name: 'log', op: 'log', needle: 'ce =', changed: /1e-7/ },
  { name: 'log-backward', op: 'LogBackward0', needle: 'ce =', changed: /1e-7/ },
  { name: 'sqrt-fn', op: 'SqrtBackward0', needle: 'dist =', changed: /1e-12/ },
  { name: 'sqrt-method', op: 'sqrt', needle: 'norm =', changed: /1e-12/ },
  { name: 'div-op', op: 'truediv', needle: 'ratio =', changed: /1e-7/ },
  { name: 'div-call', op: 'div', needle: 'share =', changed: /1e-7/ },
  { name: 'sqrt-guarded', op: 'sqrt', needle: 'safe =', changed: null },
];

for (const ext of ['py', 'ts'] as const) {
  const file = join(dir, `before.${ext}`);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const lineOf = (needle: string): number => lines.findIndex((l) => l.includes(needle)) + 1;
  describe(`guard-loss on a located cause (${ext})`, () => {
    before(async () => {
      await prepareFixes(file);
    });
    for (const c of CASES) {
      it(c.name, () => {
        const line = lineOf(c.needle);
        assert.ok(line > 0);
        const r = computeFix(text, finding(file, { op: c.op, file, line, column: 1 }), 'guard-loss', { file, version: 1 });
        const golden = join(dir, `after.${c.name}.${ext}`);
        if (c.changed === null) {
          assert.equal(r.ok, false);
          if (!r.ok) assert.equal(r.alreadyApplied, true, r.reason);
          return;
        }
        assert.ok(r.ok, r.ok ? '' : r.reason);
        if (!r.ok) return;
        if (UPDATE) writeFileSync(golden, r.after);
        assert.ok(existsSync(golden), `${golden} exists (GRADSCOPE_UPDATE_GOLDEN=1 to create)`);
        assert.equal(r.after, readFileSync(golden, 'utf8'));
        // Only the located line changed.
        const after = r.after.split('\n');
        assert.equal(after.length, lines.length);
        for (let i = 0; i < lines.length; i++) if (i !== line - 1) assert.equal(after[i], lines[i], `line ${i + 1} unchanged`);
        assert.match(after[line - 1], c.changed);
        assert.match(r.title, /located/);
        // Applied twice: already guarded.
        const again = computeFix(r.after, finding(file, { op: c.op, file, line, column: 1 }), 'guard-loss', { file, version: 2 });
        assert.equal(again.ok, false);
        if (!again.ok) assert.equal(again.alreadyApplied, true, again.reason);
      });
    }
    it('without a cause, the guard is unchanged (every log/sqrt on the line, then the file)', () => {
      const r = computeFix(text, finding(file, undefined, lineOf('ratio =')), 'guard-loss', { file, version: 1 });
      assert.ok(r.ok);
      if (r.ok) assert.doesNotMatch(r.after.split('\n')[lineOf('ratio =') - 1], /1e-7/, 'no division is guarded without a located cause');
    });
  });
}
