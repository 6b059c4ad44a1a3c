import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { USAGE, UsageError, parseArgs, pythonOf } from '../../../src/cli/args';
import { REMEDY_IDS } from '../../../src/core/analysis/finding';

describe('gradscope argument parsing', () => {
  it('takes our flags anywhere and gives the rest to the script in order', () => {
    const a = parseArgs(['run', 'train.js', '--epochs', '3', '--steps', '50', '--json', 'data.csv', '--timeout=2.5', '--out', 'o']);
    assert.equal(a.command, 'run');
    if (a.command !== 'run') return;
    assert.equal(a.script, 'train.js');
    assert.deepEqual(a.scriptArgs, ['--epochs', '3', 'data.csv']);
    assert.equal(a.steps, 50);
    assert.equal(a.timeoutSec, 2.5);
    assert.equal(a.json, true);
    assert.equal(a.outDir, 'o');
  });

  it('passes everything after -- verbatim, even our own flag names', () => {
    const a = parseArgs(['run', '--steps', '5', 'train.js', '--', '--steps', '9', '--json']);
    assert.equal(a.command, 'run');
    if (a.command !== 'run') return;
    assert.equal(a.steps, 5);
    assert.equal(a.json, false);
    assert.deepEqual(a.scriptArgs, ['--steps', '9', '--json']);
  });

  it('--node-arg: Node flags for a TF.js script, repeatable, with = or as the next argument', () => {
    const a = parseArgs(['run', 'train.js', '--node-arg=--max-old-space-size=8192', '--node-arg', '--expose-gc', '--epochs', '2']);
    assert.equal(a.command, 'run');
    if (a.command !== 'run') return;
    assert.deepEqual(a.nodeArgs, ['--max-old-space-size=8192', '--expose-gc']);
    assert.deepEqual(a.scriptArgs, ['--epochs', '2']);
    assert.throws(
      () => parseArgs(['run', 'train.js', '--node-arg', 'oops']),
      (e: Error) => e instanceof UsageError && /--node-arg needs a Node flag/.test(e.message),
    );
  });

  it('--rank R: the rank the table shows; a rank the job cannot have, or not a rank at all, is a usage error before anything runs', () => {
    const a = parseArgs(['run', '--nproc-per-node', '2', '--rank', '1', 'train.py']);
    assert.ok(a.command === 'run');
    assert.equal(a.rank, 1);
    const d = parseArgs(['run', 'train.py']);
    assert.ok(d.command === 'run');
    assert.equal(d.rank, null);
    const t = parseArgs(['run', '--rank=3', '--', 'torchrun', '--nproc-per-node', '4', 'train.py']);
    assert.ok(t.command === 'run');
    assert.equal(t.rank, 3);
    assert.throws(
      () => parseArgs(['run', '--nproc-per-node', '2', '--rank', '2', 'train.py']),
      (e: Error) => e instanceof UsageError && e.message === '--rank 2 is not a rank of --nproc-per-node 2 (ranks 0 to 1)',
    );
    for (const bad of ['-1', 'one', '1.5'])
      assert.throws(
        () => parseArgs(['run', '--rank', bad, 'train.py']),
        (e: Error) => e instanceof UsageError && e.message === `--rank must be a non-negative integer, got "${bad}"`,
      );
  });

  it('--nproc-per-node N: the script as N ranks; a launcher after -- runs as given, its .py the script', () => {
    const a = parseArgs(['run', '--nproc-per-node', '2', 'train.py', '--lr', '0.1']);
    assert.ok(a.command === 'run');
    assert.deepEqual([a.nprocPerNode, a.launcher, a.script, a.scriptArgs], [2, null, 'train.py', ['--lr', '0.1']]);
    const t = parseArgs(['run', '--steps', '5', '--', 'torchrun', '--nproc-per-node', '2', '--standalone', 'train.py', '--lr', '0.1']);
    assert.ok(t.command === 'run');
    assert.deepEqual([t.steps, t.nprocPerNode, t.script, t.scriptArgs], [5, 0, 'train.py', ['--lr', '0.1']]);
    assert.deepEqual(t.launcher, ['torchrun', '--nproc-per-node', '2', '--standalone', 'train.py', '--lr', '0.1']);
    const p = parseArgs(['run', '--', '/usr/bin/python3', '-m', 'torch.distributed.run', '--nproc_per_node=4', 'ddp.py']);
    assert.ok(p.command === 'run');
    assert.deepEqual([p.script, p.launcher?.length], ['ddp.py', 5]);
    // Not a launcher: python with a script is a script's command line, as before.
    const q = parseArgs(['run', '--', 'python3', 'ddp.py']);
    assert.ok(q.command === 'run');
    assert.deepEqual([q.script, q.launcher], ['python3', null]);
    assert.throws(
      () => parseArgs(['run', '--', 'torchrun', '--nproc-per-node', '2']),
      (e: Error) => e instanceof UsageError && /names no \.py script/.test(e.message),
    );
    assert.throws(
      () => parseArgs(['run', '--nproc-per-node', '0', 'train.py']),
      (e: Error) => e instanceof UsageError && /--nproc-per-node must be a positive integer/.test(e.message),
    );
  });

  it('--python PATH: the interpreter of a PyTorch script, for run and fix; not for a TF.js script or a launcher', () => {
    const a = parseArgs(['run', 'train.py', '--lr', '3', '--python', '/opt/venv/bin/python', '--steps', '5']);
    assert.equal(a.command, 'run');
    if (a.command !== 'run') return;
    assert.equal(a.python, '/opt/venv/bin/python');
    assert.deepEqual(a.scriptArgs, ['--lr', '3']);
    assert.deepEqual(pythonOf(a), { pythonPath: '/opt/venv/bin/python', pythonSource: 'cli-option' });
    const none = parseArgs(['run', 'train.py']);
    assert.ok(none.command === 'run' && none.python === null);
    if (none.command === 'run') assert.deepEqual(pythonOf(none), {});
    const f = parseArgs(['fix', 'train.py', '--python=python3.12', '--verify']);
    assert.ok(f.command === 'fix' && f.python === 'python3.12' && f.verify);
    const usage = (argv: string[], re: RegExp): void =>
      assert.throws(
        () => parseArgs(argv),
        (e: Error) => e instanceof UsageError && re.test(e.message),
      );
    usage(['run', 'train.js', '--python', '/usr/bin/python3'], /--python is for a PyTorch script \(\.py\), not train\.js/);
    usage(['run', '--python', '/usr/bin/python3', '--', 'torchrun', '--nproc-per-node', '2', 'train.py'], /--python is for a script; a launcher runs with its own interpreter/);
    usage(['run', 'train.py', '--python'], /--python needs the path of a Python interpreter/);
    // (after --, the script's own --python)
    const own = parseArgs(['run', 'train.py', '--', '--python', 'x']);
    assert.ok(own.command === 'run' && own.python === null && own.scriptArgs.join(' ') === '--python x');
  });

  it('rejects bad values with a message naming the flag', () => {
    assert.throws(
      () => parseArgs(['run', 'x.js', '--steps', '0']),
      (e: Error) => e instanceof UsageError && /--steps must be a positive integer/.test(e.message),
    );
    assert.throws(() => parseArgs(['run', 'x.js', '--steps', 'ten']), /--steps/);
    assert.throws(() => parseArgs(['run', 'x.js', '--timeout', '-1']), /--timeout/);
    assert.throws(() => parseArgs(['run', 'x.js', '--steps']), /--steps needs a value/);
    assert.throws(() => parseArgs(['run']), /needs a script/);
    assert.throws(() => parseArgs(['fly']), /unknown command "fly"/);
  });

  it('--optimizer names the optimizer the table shows, and needs a value', () => {
    const a = parseArgs(['run', 'gan.py', '--optimizer', 'opt_d', '--lr', '1e-3']);
    assert.ok(a.command === 'run');
    assert.equal(a.optimizer, 'opt_d');
    assert.deepEqual(a.scriptArgs, ['--lr', '1e-3']);
    const b = parseArgs(['run', 'gan.py', '--optimizer=1']);
    assert.ok(b.command === 'run' && b.optimizer === '1');
    assert.equal((parseArgs(['run', 'x.py']) as { optimizer: string | null }).optimizer, null);
    assert.throws(() => parseArgs(['run', 'x.py', '--optimizer']), /--optimizer needs a name/);
  });

  it('help and version', () => {
    assert.equal(parseArgs([]).command, 'help');
    assert.equal(parseArgs(['--help']).command, 'help');
    assert.equal(parseArgs(['run', 'x.js', '--help']).command, 'help');
    assert.equal(parseArgs(['-v']).command, 'version');
  });

  it('the help names every remedy --remedy takes, in lines of at most 100 columns', () => {
    const block = USAGE.slice(USAGE.indexOf('  --remedy ID'), USAGE.indexOf('  --verify'));
    assert.deepEqual(
      block
        .replace(/^ {2}--remedy ID {8}the remedy: /, '')
        .split(/,\s+/)
        .map((s) => s.trim()),
      [...REMEDY_IDS],
    );
    for (const line of block.trimEnd().split('\n')) assert.ok(line.length <= 100, line);
  });
});
