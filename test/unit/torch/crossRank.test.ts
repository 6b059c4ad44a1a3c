// The cross-rank view of distributed runs (issue 17 item 3) with real ranks, a real torch and gloo on
// the CPU: DDP replicas that agree, a desync injected in one rank, FSDP2 shards combined into the
// model's global norm (checked against the norms the script computes itself), and --rank.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readRunFile } from '../../../src/core/store/runFile';
import { fixture } from '../support/paths';
import { cliJson, gradscope, norms } from './distributedCli';
import { PYTHON, torchSkip } from './torchEnv';

const ddp = fixture('distributed', 'ddp.py');
const fsdp2 = fixture('distributed', 'fsdp2.py');

interface Finding {
  kind: string;
  step: number;
  stepRange: [number, number];
  tensors: string[];
  message: string;
  evidence: Record<string, unknown>;
}
interface Tensor {
  name: string;
  shape: number[];
  shard?: { offset: number[]; localShape: number[] };
}
interface Summary {
  globalNorm: { first: number | null; max: number | null; last: number | null };
  globalNormScope?: string;
}
interface Doc {
  exit: { reason: string };
  runFile: string;
  summary: Summary;
  tensors: Tensor[];
  findings: Finding[];
  warnings: { code: string; message: string }[];
  shownRank: number | null;
  ranks: { rank: number; steps: number; tensors: Tensor[]; summary: Summary; findings: Finding[]; runFile: string }[];
  crossRank: {
    ranks: number[];
    sharded: boolean;
    compared: { steps: number; groups: number };
    findings: Finding[];
    combined: null | {
      ranks: number[];
      series: { steps: number[]; globalNorm: number[] };
      tensors: { name: string; blocks: number; norm: { last: number | null } }[];
    };
  };
}

/** A reason to skip when the interpreter cannot run what the test needs (its launcher, FSDP2), said on stderr; false otherwise. */
function needs(what: string, code: string): false | string {
  if (torchSkip()) return false; // the suite skips anyway
  const r = spawnSync(PYTHON, ['-c', code], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 0) return false;
  const why = `skipped: ${what} with ${PYTHON} (${(r.stderr || '').trim().split('\n').pop()})`;
  process.stderr.write(`[cross-rank tests] ${why}\n`);
  return why;
}
// Debian's torch 1.13 on Python 3.11 cannot start torch.distributed.run at all (distributed.test.ts).
const noLauncher = needs('torch.distributed.run does not start', 'from torch.distributed.elastic.multiprocessing.api import Std, to_map; to_map(Std.from_str("0"), 2)');
// FSDP2 is torch ≥ 2.4 (torch.distributed._composable.fsdp; torch.distributed.fsdp from 2.6).
const noFsdp2 =
  noLauncher ||
  needs(
    'FSDP2 (fully_shard) is not in this torch',
    'try:\n from torch.distributed.fsdp import fully_shard\nexcept ImportError:\n from torch.distributed._composable.fsdp import fully_shard',
  );

describe('cross-rank analysis of real distributed runs (gloo, CPU)', { skip: torchSkip(), timeout: 600_000 }, () => {
  it('DDP, 2 ranks: identical norms on both, every replicated tensor compared, no desync; each rank in the JSON with its tensors, summary and findings', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-xrank-'));
    const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', ddp]);
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.deepEqual(doc.crossRank.findings, []);
    assert.deepEqual(doc.crossRank.ranks, [0, 1]);
    assert.equal(doc.crossRank.sharded, false);
    assert.equal(doc.crossRank.combined, null);
    assert.deepEqual(doc.crossRank.compared, { steps: 4, groups: 4 });
    assert.ok(!doc.findings.some((f) => f.kind === 'rank-desync'));
    assert.equal(doc.shownRank, 0);
    assert.deepEqual(
      doc.ranks.map((k) => [k.rank, k.tensors.map((t) => t.name), Array.isArray(k.findings), k.tensors.some((t) => t.shard)]),
      [
        [0, ['model.0.weight', 'model.0.bias', 'model.2.weight', 'model.2.bias'], true, false],
        [1, ['model.0.weight', 'model.0.bias', 'model.2.weight', 'model.2.bias'], true, false],
      ],
    );
    // The replicas' norms are bit-identical (the tolerance's measurement, docs/findings.md rank-desync).
    const [a, b] = doc.ranks.map((k) => norms(readRunFile(k.runFile).store));
    assert.deepEqual(a, b);
    assert.equal(doc.ranks[0].summary.globalNorm.last, doc.ranks[1].summary.globalNorm.last);
    assert.equal(doc.ranks[0].summary.globalNormScope, undefined);

    // The same run read as a table, rank 1 picked: it says which rank it shows and that the ranks agree.
    const t = await gradscope(['run', '--out', out, '--nproc-per-node', '2', '--rank', '1', ddp]);
    assert.equal(t.code, 0, t.stderr.slice(-3000));
    assert.match(t.stdout, /^rank {6}1 is shown, of ranks 0, 1 \(--rank R shows another\)$/m);
    assert.match(t.stdout, /^ranks {5}2 ranks in step: 4 replicated tensors compared over 4 steps, the same gradient norms on every rank$/m);
  });

  it(
    'DDP, 2 ranks, rank 1 scales its gradients after the all-reduce at step 2: rank-desync at step 2 naming rank 1 (its parameters apart from then on), in the JSON and the table',
    { skip: noLauncher },
    async () => {
      const out = mkdtempSync(join(tmpdir(), 'gs-xrank-'));
      const env = { DESYNC_RANK: '1', DESYNC_STEP: '2', STEPS: '5' };
      const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', ddp], env);
      const doc = cliJson<Doc>(r);
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const [f, ...more] = doc.crossRank.findings;
      assert.equal(more.length, 0);
      assert.equal(f.kind, 'rank-desync');
      assert.equal(f.step, 2);
      // The all-reduce of the next step makes the gradients the same again; the parameters stay apart.
      assert.deepEqual(f.stepRange, [2, 4]);
      assert.equal(f.evidence.statistic, 'norm');
      assert.equal(f.evidence.stepsDisagreeing, 3);
      assert.equal(f.evidence.ranks, '1');
      assert.equal(f.evidence.referenceRank, 0);
      assert.deepEqual(f.tensors, ['model.0.weight', 'model.0.bias', 'model.2.weight', 'model.2.bias']);
      // ×3 on rank 1: (3x − x) / 3x, within float32.
      assert.ok(Math.abs((f.evidence.relDiff as number) - 2 / 3) < 1e-5, String(f.evidence.relDiff));
      assert.deepEqual(
        doc.findings.filter((x) => x.kind === 'rank-desync').map((x) => x.step),
        [2],
      );
      const report = join(out, 'report.html');
      const t = await gradscope(['run', '--out', out, '--nproc-per-node', '2', '--report', report, ddp], env);
      assert.match(t.stdout, /^ {2}error {3}rank-desync at step 2 · ranks 1$/m);
      assert.match(t.stdout, /ranks out of step: rank 1 disagrees with rank 0 at step 2: model\.0\.weight's gradient norm is/);
      // The HTML report carries every rank: the list, each one's global norm, the desync across ranks.
      const html = readFileSync(report, 'utf8');
      const data = JSON.parse(/<script type="application\/json" id="gradscope-data">([^<]*)<\/script>/.exec(html)![1]) as {
        snapshot: {
          ranks: {
            shown: { rank: number };
            list: { rank: number; state: string; steps: number }[];
            globalNorms: { rank: number; globalNorm: { steps: number[] } }[];
            crossRank: { findings: Finding[] };
          };
        };
      };
      const ranks = data.snapshot.ranks;
      assert.equal(ranks.shown.rank, 0);
      assert.deepEqual(
        ranks.list.map((x) => [x.rank, x.state, x.steps]),
        [
          [0, 'joined', 5],
          [1, 'joined', 5],
        ],
      );
      assert.deepEqual(
        ranks.globalNorms.map((c) => [c.rank, c.globalNorm.steps]),
        [
          [0, [0, 1, 2, 3, 4]],
          [1, [0, 1, 2, 3, 4]],
        ],
      );
      assert.deepEqual(
        ranks.crossRank.findings.map((x) => [x.kind, x.step, x.evidence.ranks]),
        [['rank-desync', 2, '1']],
      );
    },
  );

  it(
    'FSDP2 fully_shard, 2 ranks: the combined global norm and per-parameter norms equal those the script computes with full_tensor(); each rank says it shows shards',
    { skip: noFsdp2 },
    async () => {
      const out = mkdtempSync(join(tmpdir(), 'gs-xrank-'));
      const normsOut = join(out, 'norms.jsonl');
      const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', fsdp2], { NORMS_OUT: normsOut, STEPS: '5' });
      const doc = cliJson<Doc>(r);
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const script = readFileSync(normsOut, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step: number; total: number; norms: Record<string, number> });
      assert.equal(script.length, 5);
      const c = doc.crossRank.combined;
      assert.ok(c, 'a sharded run has combined series');
      assert.equal(doc.crossRank.sharded, true);
      assert.deepEqual(c.ranks, [0, 1]);
      assert.deepEqual(c.series.steps, [0, 1, 2, 3, 4]);
      const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `${what}: GradScope ${a}, the script ${b}`);
      script.forEach((s, i) => close(c.series.globalNorm[i], s.total, `global norm at step ${s.step}`));
      const last = script[script.length - 1];
      for (const t of c.tensors) close(t.norm.last as number, last.norms[t.name.replace(/^model\./, '')], `${t.name} at the last step`);
      assert.deepEqual(
        c.tensors.map((t) => [t.name, t.blocks]),
        [
          ['model.0.weight', 2],
          ['model.0.bias', 2],
          ['model.2.weight', 2],
          ['model.2.bias', 2],
        ],
      );
      // Each rank's own norms are its shards': said in its summary, its warnings, its tensors' blocks.
      assert.equal(doc.summary.globalNormScope, 'shard');
      assert.ok((doc.summary.globalNorm.last as number) < last.total * (1 - 1e-3), 'rank 0 alone is not the model');
      assert.deepEqual(
        doc.ranks.map((k) => [k.rank, k.summary.globalNormScope, k.tensors.map((t) => t.shard)]),
        [
          [
            0,
            'shard',
            [
              { offset: [0, 0], localShape: [4, 4] },
              { offset: [0], localShape: [4] },
              { offset: [0, 0], localShape: [1, 8] },
              { offset: [0], localShape: [1] },
            ],
          ],
          [
            1,
            'shard',
            [
              { offset: [4, 0], localShape: [4, 4] },
              { offset: [4], localShape: [4] },
              { offset: [1, 0], localShape: [0, 8] },
              { offset: [1], localShape: [0] },
            ],
          ],
        ],
      );
      assert.ok(doc.warnings.some((w) => w.code === 'sharded' && /rank 0 holds shards of 4 tensors/.test(w.message)));
      assert.deepEqual(
        doc.warnings.filter((w) => w.code === 'probe-warning'),
        [],
      );
      assert.deepEqual(doc.crossRank.findings, [], 'distinct shards are not compared with each other');
      assert.deepEqual(doc.crossRank.compared.groups, 0);
    },
  );

  it('--rank R names a rank the run does not have: a clear error, exit 2, and the table of rank 0 still shown (the run file keeps every rank)', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-xrank-'));
    const r = await gradscope(['run', '--out', out, '--rank', '5', '--', PYTHON, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'ddp.py'], { STEPS: '2' });
    assert.equal(r.code, 2, r.stderr.slice(-3000));
    assert.match(r.stderr, /^gradscope: --rank 5: this run has ranks 0, 1; showing rank 0 instead \(the run file keeps every rank: .+\.gsrun\)$/m);
    assert.match(r.stdout, /^rank {6}0 is shown, of ranks 0, 1/m);
  });
});
