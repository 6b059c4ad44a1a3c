// Distributed runs (issue 17) with real processes and a real torch on CPU (gloo): `gradscope run
// --nproc-per-node 2`, `gradscope run -- torchrun …`, a script that starts its ranks with mp.spawn, a
// rank that crashes, and Stop (SIGINT to the CLI) with no rank left running.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { RUN_MARK_ENV } from '../../../src/process/survivors';
import { readRunFile } from '../../../src/core/store/runFile';
import { readRankFiles } from '../../../src/process/rankRecorder';
import { fixture } from '../support/paths';
import { cliJson, gradscope, norms } from './distributedCli';
import { PYTHON, torchSkip } from './torchEnv';

const ddp = fixture('distributed', 'ddp.py');
const spawnScript = fixture('distributed', 'spawn.py');

interface Rank {
  rank: number;
  localRank: number | null;
  worldSize: number | null;
  pid: number;
  steps: number;
  end: { reason: string } | null;
  runFile: string;
}
interface Doc {
  exit: { reason: string; message: string; steps: number };
  runFile: string;
  ranks: Rank[];
  expectedRanks: number;
  missingRanks: number[];
  summary?: unknown;
}

/** Live processes whose environment holds the run's mark (what a stop must not leave). */
function marked(runId: string): number[] {
  const needle = Buffer.from(`${RUN_MARK_ENV}=${runId}\0`);
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      if (!readFileSync(`/proc/${n}/environ`).includes(needle)) continue;
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      out.push(Number(n));
    } catch {
      // gone, or not ours
    }
  }
  return out;
}

const runIdOf = (runFile: string): string => basename(runFile).replace(/\.gsrun$/, '');

/**
 * torch's launcher cannot start at all with some interpreters: Debian's torch 1.13 on Python 3.11
 * fails in torch.distributed.run itself (`to_map`: 'NoneType' object has no attribute 'get', a
 * Python 3.11 enum change), with or without GradScope. The launcher tests skip there, saying why;
 * mp.spawn still runs.
 */
function launcherSkip(): false | string {
  if (torchSkip()) return false; // the suite skips anyway
  const r = spawnSync(PYTHON, ['-c', 'from torch.distributed.elastic.multiprocessing.api import Std, to_map; to_map(Std.from_str("0"), 2)'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 0) return false;
  const why = `skipped: torch.distributed.run does not start with ${PYTHON} (${(r.stderr || '').trim().split('\n').pop()})`;
  process.stderr.write(`[distributed tests] ${why}\n`);
  return why;
}
const noLauncher = launcherSkip();

describe('distributed runs: every rank observed (gloo, CPU)', { skip: torchSkip(), timeout: 600_000 }, () => {
  it('--nproc-per-node 2: one run folder, both ranks recorded, their norms identical after the all-reduce', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', ddp]);
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'completed');
    assert.match(doc.exit.message, /2 ranks seen \(rank 0: 4 steps, rank 1: 4 steps\)/);
    assert.deepEqual(
      doc.ranks.map((k) => [k.rank, k.localRank, k.worldSize, k.steps, k.end?.reason]),
      [
        [0, 0, 2, 4, 'completed'],
        [1, 1, 2, 4, 'completed'],
      ],
    );
    assert.deepEqual(doc.missingRanks, []);
    assert.notEqual(doc.ranks[0].pid, doc.ranks[1].pid);
    // Rank 0 is the run file; rank 1 has its own in the run's rank folder; both read back.
    assert.equal(doc.ranks[0].runFile, doc.runFile);
    assert.equal(doc.ranks[1].runFile, join(out, `${runIdOf(doc.runFile)}.ranks`, 'rank1.gsrun'));
    const main = readRunFile(doc.runFile);
    const saved = await readRankFiles(doc.runFile);
    assert.deepEqual(
      saved.map((k) => [k.rank, k.store.stepCount]),
      [[1, 4]],
    );
    assert.equal(main.exit?.reason, 'completed');
    const a = norms(main.store);
    const b = norms(saved[0].store);
    assert.equal(a.length, 4, 'four tensors');
    assert.deepEqual(a, b, 'DDP averages the gradients: both ranks see the same norms');
    // Each rank had its own data: before the all-reduce the gradients differ, so equal norms are not a given.
    assert.ok(a.every((s) => s.length === 4 && s.every((v) => Number.isFinite(v) && v > 0)));
  });

  it('-- torchrun --nproc-per-node 2 script.py is run as given, every rank observed', { skip: noLauncher }, async () => {
    const torchrun = join(dirname(PYTHON), 'torchrun');
    // Where the interpreter has no torchrun script beside it, the same launcher as `python -m`.
    const launcher = existsSync(torchrun) ? [torchrun] : [PYTHON, '-m', 'torch.distributed.run'];
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--json', '--out', out, '--', ...launcher, '--standalone', '--nproc_per_node=2', basename(ddp)], { STEPS: '3' });
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'completed');
    assert.deepEqual(
      doc.ranks.map((k) => [k.rank, k.steps]),
      [
        [0, 3],
        [1, 3],
      ],
    );
  });

  it('a script that starts its ranks with mp.spawn: both children observed, the summary shows rank 0', async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--json', '--out', out, spawnScript]);
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'completed');
    assert.deepEqual(
      doc.ranks.map((k) => [k.rank, k.worldSize, k.steps, k.end?.reason]),
      [
        [0, 2, 3, 'completed'],
        [1, 2, 3, 'completed'],
      ],
    );
    assert.match(doc.exit.message, /0 steps in the script's own process; 2 ranks seen/);
    // Both ranks have files of their own (the script's own process is the run file); no "child processes not observed" warning.
    assert.ok(doc.ranks.every((k) => k.runFile.startsWith(join(out, `${runIdOf(doc.runFile)}.ranks`))));
    assert.doesNotMatch(JSON.stringify(doc), /training in the children is not captured/);
    assert.deepEqual(norms(readRunFile(doc.ranks[0].runFile).store), norms(readRunFile(doc.ranks[1].runFile).store));
  });

  it('a script that calls torch.distributed.run.main itself: its ranks are observed through the environment', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--json', '--out', out, fixture('distributed', 'launch.py')], { STEPS: '3' });
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'completed');
    assert.deepEqual(
      doc.ranks.map((k) => [k.rank, k.steps, k.end?.reason]),
      [
        [0, 3, 'completed'],
        [1, 3, 'completed'],
      ],
    );
  });

  it('a rank the job expected that never joined is a warning in the run line and the JSON, not a silent "completed"', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--out', out, '--nproc-per-node', '2', fixture('distributed', 'rank0only.py')]);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.match(r.stdout, /^run {7}completed, 2 steps; only 1 of 2 ranks seen: rank 1 never connected \(not observed\)$/m);
    assert.match(r.stderr, /\[gradscope\] warning: only 1 of 2 ranks seen: rank 1 never connected/);
    const j = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', fixture('distributed', 'rank0only.py')]);
    const doc = cliJson<Doc>(j);
    assert.deepEqual(
      doc.ranks.map((k) => [k.rank, k.steps]),
      [[0, 2]],
    );
    assert.equal(doc.expectedRanks, 2);
    assert.deepEqual(doc.missingRanks, [1]);
  });

  it('a rank that crashes ends the run as crashed, naming the rank and its line; no rank left running', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', ddp], { CRASH_RANK: '1', STEPS: '50' });
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 1, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'crashed');
    const line =
      readFileSync(ddp, 'utf8')
        .split('\n')
        .findIndex((l) => l.includes('gs:crash')) + 1;
    assert.match(doc.exit.message, new RegExp(`^crashed in rank 1 at ${ddp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:\\d+: RuntimeError: rank 1 failed on purpose`));
    assert.equal(doc.ranks.find((k) => k.rank === 1)?.end?.reason, 'crashed');
    assert.deepEqual(marked(runIdOf(doc.runFile)), []);
  });

  it(
    "a rank that dies on its way out, after its END: crashed, naming the rank, its signal, that its steps are all recorded and torch's teardown abort (torchrun's root cause, not its banner)",
    { skip: noLauncher },
    async () => {
      const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
      const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', ddp], { ABORT_AT_EXIT_RANK: '1' });
      const doc = cliJson<Doc>(r);
      assert.equal(r.code, 1, r.stderr.slice(-3000));
      assert.equal(doc.exit.reason, 'crashed');
      assert.match(
        doc.exit.message,
        /^crashed: rank 1 \(pid \d+\) was killed by SIGABRT after its END, on its way out \(its 4 steps are all recorded\): std::terminate while Python shut down, .*\(pytorch\/pytorch#179291\), not a training error; the launcher exited with code 1; 2 ranks seen \(rank 0: 4 steps, rank 1: 4 steps\)$/,
      );
      assert.deepEqual(
        doc.ranks.map((k) => [k.rank, k.steps, k.end?.reason]),
        [
          [0, 4, 'completed'],
          [1, 4, 'completed'],
        ],
      );
    },
  );

  it('a rank started by mp.spawn that crashes: the run is crashed, naming that rank and its line', async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    const r = await gradscope(['run', '--json', '--out', out, spawnScript], { CRASH_RANK: '1' });
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 1, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'crashed');
    const line =
      readFileSync(spawnScript, 'utf8')
        .split('\n')
        .findIndex((l) => l.includes('gs:crash')) + 1;
    assert.match(doc.exit.message, new RegExp(`^crashed in rank 1 at ${spawnScript.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:\\d+: ValueError: spawned rank 1 failed on purpose`));
    assert.equal(doc.ranks.find((k) => k.rank === 1)?.end?.reason, 'crashed');
    assert.deepEqual(marked(runIdOf(doc.runFile)), []);
  });

  it('Stop (SIGINT to the CLI) ends every rank: the run is stopped, no process of it is left', { skip: noLauncher }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'gs-dist-'));
    let sent = false;
    const r = await gradscope(['run', '--json', '--out', out, '--nproc-per-node', '2', ddp], { STEPS: '100000', STEP_SLEEP: '0.05' }, (child) => {
      // Once rank 1 has recorded steps (its rank file grows), interrupt.
      const poll = setInterval(() => {
        const dirs = existsSync(out) ? readdirSync(out).filter((n) => n.endsWith('.ranks')) : [];
        const f = dirs.length ? join(out, dirs[0], 'rank1.gsrun') : '';
        if (f && existsSync(f) && readRunFile(f).store.stepCount >= 3) {
          clearInterval(poll);
          sent = true;
          child.kill('SIGINT');
        }
      }, 250);
      child.on('close', () => clearInterval(poll));
    });
    assert.ok(sent, `the ranks never recorded steps: ${r.stderr.slice(-3000)}`);
    const doc = cliJson<Doc>(r);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.equal(doc.exit.reason, 'stopped');
    assert.match(doc.exit.message, /^stopped by the user after \d+ steps; 2 ranks seen/);
    assert.equal(doc.ranks.length, 2);
    assert.deepEqual(marked(runIdOf(doc.runFile)), [], 'no process of the run is left');
    for (const k of doc.ranks) assert.throws(() => process.kill(k.pid, 0), /ESRCH/, `rank ${k.rank} (pid ${k.pid}) is gone`);
  });
});
