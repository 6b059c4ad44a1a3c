// The CLI on the PyTorch examples: `gradscope run examples/torch/<x>.py --json` with a real torch.
// Each example states what the analyzer must find: `# gs:expect KIND …` (nothing: healthy),
// `# gs:layer KIND` on the line the finding must point at, `# gs:global KIND` for a global finding.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunJson } from '../../../src/core/report/runJson';
import { gradscope as runCli, type CliResult } from '../support/cli';
import { repoRoot } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

const outDir = mkdtempSync(join(tmpdir(), 'gs-torch-cli-'));
const examplesDir = join(repoRoot, 'examples', 'torch');

const gradscope = (args: string[]): Promise<CliResult> => runCli(args, { env: { ...process.env, GRADSCOPE_PYTHON: PYTHON } });

interface Expectation {
  kinds: string[];
  layers: Map<string, number>;
  global: Set<string>;
}

function expectations(file: string): Expectation {
  const lines = readFileSync(file, 'utf8').split('\n');
  const e: Expectation = { kinds: [], layers: new Map(), global: new Set() };
  lines.forEach((l, i) => {
    const ex = /#\s*gs:expect\b(.*)$/.exec(l);
    if (ex) e.kinds.push(...ex[1].trim().split(/\s+/).filter(Boolean));
    const la = /#\s*gs:layer\s+([\w-]+)/.exec(l);
    if (la) e.layers.set(la[1], i + 1);
    const gl = /#\s*gs:global\s+([\w-]+)/.exec(l);
    if (gl) e.global.add(gl[1]);
  });
  return e;
}

// Run every example once, concurrently (each is a few seconds of CPU), before the assertions.
const examples = readdirSync(examplesDir)
  .filter((f) => f.endsWith('.py'))
  .sort();
let runs: Promise<Map<string, CliResult>> | null = null;
function allRuns(): Promise<Map<string, CliResult>> {
  runs ??= (async () => {
    const out = new Map<string, CliResult>();
    const queue = [...examples];
    const worker = async (): Promise<void> => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        out.set(f, await gradscope(['run', `examples/torch/${f}`, '--json', '--steps', '100', '--out', outDir]));
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    return out;
  })();
  return runs;
}

describe('gradscope run on the PyTorch examples', { skip: torchSkip() }, () => {
  it('has the six examples', () => {
    assert.deepEqual(examples, ['dead_relu.py', 'exploding_init.py', 'exploding_lr.py', 'healthy.py', 'nan_loss_log0.py', 'vanishing_sigmoid.py']);
  });

  for (const name of examples) {
    it(`${name}: the analyzer finds what the example states, on the right lines`, async () => {
      const script = join(examplesDir, name);
      const r = (await allRuns()).get(name)!;
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as RunJson;
      assert.equal(doc.framework, 'torch');
      assert.equal(doc.script, script);
      assert.ok(['completed', 'step-limit'].includes(doc.exit.reason), doc.exit.reason);
      assert.ok(doc.steps > 0 && doc.steps <= 100);
      for (const t of doc.tensors) {
        assert.equal(t.source?.file, script, `${t.name} has a source in the example`);
        assert.ok((t.source?.line ?? 0) > 0);
      }
      const e = expectations(script);
      const kinds = [...new Set(doc.findings.map((f) => f.kind))].sort();
      assert.deepEqual(kinds, [...e.kinds].sort(), `findings: ${JSON.stringify(doc.findings.map((f) => [f.kind, f.layer, f.source?.line]))}`);
      for (const [kind, line] of e.layers) {
        const f = doc.findings.find((x) => x.kind === kind);
        assert.equal(f?.source?.line, line, `${kind} points at line ${line}`);
        assert.equal(f?.source?.file, script);
      }
      for (const kind of e.global) {
        const f = doc.findings.find((x) => x.kind === kind);
        assert.equal(f?.layer, null, `${kind} is global`);
      }
      if (e.kinds.includes('non-finite-gradient')) assert.equal(typeof doc.summary.firstNonFiniteStep, 'number');
      else assert.equal(doc.summary.firstNonFiniteStep, null);
    });
  }

  it('--steps stops a torch run cleanly', async () => {
    const r = await gradscope(['run', 'examples/torch/healthy.py', '--json', '--steps', '7', '--out', outDir]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.exit.reason, 'step-limit');
    assert.equal(doc.steps, 7);
    assert.doesNotMatch(r.stderr, /done/, 'the script stopped before its end');
  });

  it('--python picks the interpreter (over GRADSCOPE_PYTHON), and one that is not there is named as the option', async () => {
    const env = { ...process.env, GRADSCOPE_PYTHON: join(outDir, 'no-such-python') };
    const ok = await runCli(['run', 'examples/torch/healthy.py', '--python', PYTHON, '--json', '--steps', '3', '--out', outDir], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as RunJson).steps, 3);
    const missing = join(outDir, 'missing-python');
    const bad = await runCli(['run', 'examples/torch/healthy.py', '--python', missing, '--steps', '3', '--out', outDir], { env: { ...process.env, GRADSCOPE_PYTHON: PYTHON } });
    assert.equal(bad.code, 1);
    assert.ok((bad.stdout + bad.stderr).includes(`${missing} (the --python option)`), bad.stdout + bad.stderr);
    assert.match(bad.stdout + bad.stderr, /--python \/path\/to\/python/, 'says how to choose another');
  });
});
