// RunSession when the probe's channel closes without END (fault row 4), with real child processes:
// fake probes (written here, frames from the real codec) that say HELLO and a few STEPs and then
// leave without END, at once or while the script goes on.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeMessage } from '../../../src/core/protocol/codec';
import type { Message } from '../../../src/core/protocol/messages';
import { runWarnings } from '../../../src/core/report/warnings';
import { readRunFile } from '../../../src/core/store/runFile';
import { RunSession } from '../../../src/process/runSession';
import { stepMsg, tensorInfos } from '../store/helpers';

const root = mkdtempSync(join(tmpdir(), 'gs-lost-'));
after(() => rmSync(root, { recursive: true, force: true }));
const runDir = join(root, 'runs');
const script = join(root, 'train.js');
writeFileSync(script, '// not run: the fake probe stands in for the runner\n');

const msgs: Message[] = [
  { type: 'hello', probeVersion: '0.1.0', framework: 'tfjs', backend: 'cpu', device: 'CPU', backendReason: 'test', pid: 1, rank: 0, script, detailEvery: 0 },
  { type: 'tensors', tensors: tensorInfos(0, 2) },
  ...Array.from({ length: 5 }, (_, i) => stepMsg(10 + i, 2)),
];
const bytes = Buffer.concat(msgs.map((m, i) => encodeMessage(m, i)));

/** A fake probe folder: `<dir>/tfjs/runner.js` sends the frames, closes the channel, then runs `after` (JS). */
function fakeProbe(name: string, afterClose: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'tfjs'), { recursive: true });
  writeFileSync(
    join(dir, 'tfjs', 'runner.js'),
    [
      "const net = require('node:net');",
      'const sock = new net.Socket({ fd: Number(process.env.GRADSCOPE_CHANNEL_FD), readable: true, writable: true });',
      `sock.end(Buffer.from('${bytes.toString('base64')}', 'base64'), () => { ${afterClose} });`,
      '',
    ].join('\n'),
  );
  return dir;
}

describe('RunSession: the probe lost without END', () => {
  it('HELLO, 5 steps, then exit 0 without END: probe-lost with the last step seen, not completed', async () => {
    const s = RunSession.start({ script, runDir, probeDir: fakeProbe('quick', 'process.exit(0);'), graceMs: 300 });
    const exit = await s.done;
    assert.equal(exit.reason, 'probe-lost');
    assert.equal(exit.code, 0);
    assert.equal(exit.steps, 5);
    assert.equal(exit.lastStep, 14);
    assert.match(exit.message, /^probe lost: the probe's channel closed without an END after step 14 \(5 steps seen\)/);
    assert.deepEqual(
      runWarnings(s.store, { reason: exit.reason }).map((w) => w.code),
      [],
      'no "completed without END" warning on top of the reason',
    );
    assert.equal(readRunFile(s.runFile).exit?.reason, 'probe-lost');
  });

  it('the channel closes while the script goes on: said while it runs, then probe-lost at its exit', async () => {
    const s = RunSession.start({ script, runDir, probeDir: fakeProbe('slow', 'setTimeout(() => process.exit(0), 1800);'), graceMs: 300 });
    let err = '';
    s.onOutput((c) => (err += c.stream === 'stderr' ? c.text : ''));
    const exit = await s.done;
    assert.equal(exit.reason, 'probe-lost');
    assert.match(err, /warning: the probe's channel closed without an END after step 14 \(5 steps seen\); the script is still running, unobserved/);
  });

  it('control: a probe that never said HELLO is not "lost" (nothing was observed: completed, no-probe)', async () => {
    const dir = join(root, 'silent');
    mkdirSync(join(dir, 'tfjs'), { recursive: true });
    writeFileSync(join(dir, 'tfjs', 'runner.js'), 'process.exit(0);\n');
    const s = RunSession.start({ script, runDir, probeDir: dir, graceMs: 300 });
    const exit = await s.done;
    assert.equal(exit.reason, 'completed');
    assert.deepEqual(
      runWarnings(s.store, { reason: exit.reason }).map((w) => w.code),
      ['no-probe'],
    );
  });
});
