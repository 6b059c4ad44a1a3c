// What each recorded diagnosis run should produce, read from markers in its script (`#` instead of
// `//` in the PyTorch scripts, *.py, recorded with /usr/bin/python3's torch):
//   // gs:expect KIND KIND …      the finding kinds expected (none: a healthy run)
//   … // gs:layer KIND            the finding of KIND must point at this line (its layer's construction)
//   … // gs:global KIND           the finding of KIND must be global (layer null)
//   … // gs:also KIND             a further affected layer of the finding of KIND: its line must be
//                                 among the finding's `locations` (as must a gs:layer line, when the
//                                 finding has locations). Several lines may carry it.
//   … // gs:related KIND          a line that belongs to the finding without being a layer (the
//                                 addWeight / nn.Parameter line of a custom layer): reported only.
// The examples (examples/tfjs, not ours to annotate) are described in EXAMPLES.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { repoRoot } from '../support/paths';

export interface Expectation {
  name: string;
  script: string;
  runFile: string;
  kinds: string[];
  /** Kind → expected 1-based source line, or null for a global finding. */
  where: Map<string, number | null>;
  /** Kind → every affected layer's line (its gs:layer line and gs:also lines), input side first. */
  affected: Map<string, number[]>;
  /** Kind → gs:related lines. */
  related: Map<string, number[]>;
}

export interface Markers {
  kinds: string[];
  where: Map<string, number | null>;
  affected: Map<string, number[]>;
  related: Map<string, number[]>;
}

export const DIAGNOSIS_DIR = join(repoRoot, 'test', 'fixtures', 'diagnosis');
export const RUNS_DIR = join(DIAGNOSIS_DIR, 'runs');

export function parseMarkers(text: string): Markers {
  const lines = text.split('\n');
  let kinds: string[] | null = null;
  const where = new Map<string, number | null>();
  const affected = new Map<string, number[]>();
  const related = new Map<string, number[]>();
  const add = (m: Map<string, number[]>, k: string, line: number): void => void m.set(k, [...(m.get(k) ?? []), line]);
  lines.forEach((l, i) => {
    const e = /(?:\/\/|#) gs:expect\b(.*)$/.exec(l);
    if (e) kinds = e[1].trim().split(/\s+/).filter(Boolean);
    for (const m of l.matchAll(/(?:\/\/|#) gs:(layer|global|also|related) ([a-z-]+)/g)) {
      if (m[1] === 'layer' || m[1] === 'global') where.set(m[2], m[1] === 'layer' ? i + 1 : null);
      if (m[1] === 'layer' || m[1] === 'also') add(affected, m[2], i + 1);
      if (m[1] === 'related') add(related, m[2], i + 1);
    }
  });
  if (!kinds) throw new Error('no // gs:expect marker');
  return { kinds, where, affected, related };
}

/** The examples' expectations (their scripts carry no markers). Lines are those of examples/tfjs. */
export const EXAMPLES: { name: string; script: string; kinds: string[]; where: [string, number | null][] }[] = [
  // The script's comment: too large for 64 inputs, i.e. from the second Dense layer on.
  { name: 'example-exploding-mlp', script: 'exploding-mlp.js', kinds: ['exploding-gradient', 'non-finite-gradient'], where: [['exploding-gradient', 17]] },
  // The recurrent layer's weights blow up first.
  { name: 'example-exploding-rnn', script: 'exploding-rnn.js', kinds: ['exploding-gradient', 'non-finite-gradient'], where: [['exploding-gradient', 13]] },
  { name: 'example-vanishing-deep', script: 'vanishing-deep.js', kinds: ['vanishing-gradient'], where: [['vanishing-gradient', 13]] },
  { name: 'example-healthy-mlp', script: 'healthy-mlp.js', kinds: [], where: [] },
  { name: 'example-healthy-custom-loop', script: 'healthy-custom-loop.mjs', kinds: [], where: [] },
  { name: 'example-conv-net', script: 'conv-net.js', kinds: [], where: [] },
];

/**
 * Affected-layer lines of a finding in the script: its `locations` that point into the script, or
 * its own source line when it has no locations. Global findings without locations have none.
 */
export function affectedLines(f: { source: { file: string; line: number } | null; layer: string | null; locations?: { file: string; line: number }[] }, script: string): number[] {
  const inScript = (file: string): boolean => basename(file) === basename(script);
  if (f.locations?.length) return [...new Set(f.locations.filter((l) => inScript(l.file)).map((l) => l.line))];
  return f.source && f.layer !== null && inScript(f.source.file) ? [f.source.line] : [];
}

export function expectations(): Expectation[] {
  const out: Expectation[] = [];
  for (const f of readdirSync(DIAGNOSIS_DIR).sort()) {
    const ext = extname(f);
    if (ext !== '.js' && ext !== '.py') continue;
    const script = join(DIAGNOSIS_DIR, f);
    const { kinds, where, affected, related } = parseMarkers(readFileSync(script, 'utf8'));
    out.push({ name: basename(f, ext), script, runFile: join(RUNS_DIR, basename(f, ext) + '.gsrun'), kinds, where, affected, related });
  }
  for (const e of EXAMPLES) {
    const runFile = join(RUNS_DIR, e.name + '.gsrun');
    if (!existsSync(runFile)) continue;
    const affected = new Map(e.where.filter((w): w is [string, number] => w[1] !== null).map(([k, l]) => [k, [l]]));
    out.push({ name: e.name, script: join(repoRoot, 'examples', 'tfjs', e.script), runFile, kinds: e.kinds, where: new Map(e.where), affected, related: new Map() });
  }
  return out;
}
