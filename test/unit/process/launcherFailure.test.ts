// torchrun's failure report read for the run's crash message: the root cause's rank, pid and how it
// ended, from the text torch 2.13's launcher prints (copied from real runs of
// test/fixtures/distributed/ddp.py: a rank killed by SIGABRT, a rank that raised).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeRootCause, teardownAbortHint, torchrunRootCause } from '../../../src/process/launcherFailure';

const ABORTED = `terminate called without an active exception
W1204 13:48:49.773000 16839 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 16844 closing signal SIGTERM
E1204 13:48:49.806000 16839 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -6) local_rank: 1 (pid: 16845) of binary: /usr/bin/python
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
=======================================================
ddp.py FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-04_13:48:49
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 16844)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 16844
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-04_13:48:49
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -6 (pid: 16845)  (SIGABRT)
  error_file: <N/A>
  traceback : Signal 6 (SIGABRT) received by PID 16845
=======================================================
`;

const RAISED = `[rank1]: RuntimeError: rank 1 failed on purpose
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
ddp.py FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-04_14:35:40
  host      : node7.cluster
  rank      : 5 (local_rank: 1)
  exitcode  : 1 (pid: 28420) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
`;

describe('torchrun root cause', () => {
  it('a rank killed by a signal: its rank, local rank, pid and the signal by name (not the SIGTERMed rank listed first)', () => {
    const c = torchrunRootCause(ABORTED);
    assert.deepEqual(c, { rank: 1, localRank: 1, host: 'localhost', pid: 16845, exitCode: null, signal: 'SIGABRT' });
    assert.equal(describeRootCause(c), 'rank 1 (pid 16845) was killed by SIGABRT');
  });

  it('a rank that exited with a code, on another host: the host is named', () => {
    const c = torchrunRootCause(RAISED);
    assert.deepEqual(c, { rank: 5, localRank: 1, host: 'node7.cluster', pid: 28420, exitCode: 1, signal: null });
    assert.equal(describeRootCause(c), 'rank 5 (pid 28420, host node7.cluster) exited with code 1');
  });

  it('the signal named from the exit code alone (older launchers print no name)', () => {
    const c = torchrunRootCause(ABORTED.replace('(pid: 16845)  (SIGABRT)', '(pid: 16845)'));
    assert.equal(c?.signal, 'SIGABRT');
  });

  it("torch's teardown abort named where libstdc++'s terminate line came with SIGABRT, and only there", () => {
    const aborted = torchrunRootCause(ABORTED);
    assert.ok(aborted);
    assert.match(teardownAbortHint(aborted, ABORTED), /^: std::terminate while Python shut down, .*gloo.*pytorch\/pytorch#179291\), not a training error$/);
    assert.equal(teardownAbortHint(aborted, ABORTED.replace('terminate called without an active exception\n', '')), '');
    const raised = torchrunRootCause(RAISED);
    assert.ok(raised);
    assert.equal(teardownAbortHint(raised, `terminate called without an active exception\n${RAISED}`), '');
  });

  it('no report, or a report cut before its fields: null', () => {
    assert.equal(torchrunRootCause('Traceback (most recent call last):\nValueError: x\n'), null);
    assert.equal(torchrunRootCause(ABORTED.slice(0, ABORTED.indexOf('  rank      : 1'))), null);
  });
});
