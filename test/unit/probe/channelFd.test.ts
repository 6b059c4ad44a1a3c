// The host hands the probe its channel on fd 15 (src/process/channelFd.ts), and Program puts it
// there: a Node child finds a socket on that number, close-on-exec (Node makes 0–15 so at start-up),
// so a program it starts does not inherit it; nothing of ours is on 3.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HIGH_CHANNEL_FD, LOW_CHANNEL_FD, childChannelFd, openFilesLimit } from '../../../src/process/channelFd';
import { Program } from '../../../src/process/program';
import { probeLostCause } from '../../../src/process/runSession';

const LIMITS = (soft: string): string =>
  ['Limit                     Soft Limit           Hard Limit           Units     ', `Max open files            ${soft}                 1048576              files     `, ''].join('\n');

describe('the channel descriptor the host gives the child', () => {
  it('reads the open-files limit; the high number when it leaves room, 3 when it does not', () => {
    assert.equal(openFilesLimit(LIMITS('1024')), 1024);
    assert.equal(openFilesLimit(LIMITS('unlimited')), Number.POSITIVE_INFINITY);
    assert.equal(openFilesLimit('nothing here'), null);
    if (process.platform === 'win32') return;
    assert.equal(childChannelFd(1024), HIGH_CHANNEL_FD);
    assert.equal(childChannelFd(null), HIGH_CHANNEL_FD);
    assert.equal(childChannelFd(32), LOW_CHANNEL_FD);
    assert.equal(HIGH_CHANNEL_FD, 15, 'the highest number Node makes close-on-exec at start-up');
  });

  it(
    'Program puts the channel there: a socket in the Node child, close-on-exec, not inherited by what the child starts',
    { skip: process.platform !== 'linux' ? 'reads /proc' : false },
    async () => {
      const fd = childChannelFd();
      assert.equal(fd, HIGH_CHANNEL_FD, 'this machine allows the high number');
      const probe = [
        "const fs = require('fs');",
        "const link = (n) => { try { return fs.readlinkSync('/proc/self/fd/' + n); } catch { return 'closed'; } };",
        `const flags = parseInt(/^flags:\\s*(\\d+)/m.exec(fs.readFileSync('/proc/self/fdinfo/${fd}', 'utf8'))[1], 8);`,
        `const grandchild = require('child_process').execFileSync('sh', ['-c', 'readlink /proc/$$/fd/${fd} || echo closed'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();`,
        `fs.writeSync(${fd}, JSON.stringify({ at: link(${fd}), three: link(3), cloexec: (flags & 0o2000000) !== 0, grandchild }));`,
      ].join('\n');
      const p = Program.start({ command: process.execPath, args: ['-e', probe], cwd: process.cwd(), env: process.env, channelFd: fd });
      assert.ok(p.channel, 'the host side of the channel');
      let got = '';
      p.channel.on('data', (b: Buffer) => (got += b.toString()));
      const exit = await p.exited;
      assert.equal(exit.code, 0, exit.stderrTail);
      const seen = JSON.parse(got) as { at: string; three: string; cloexec: boolean; grandchild: string };
      assert.match(seen.at, /^socket:/);
      assert.ok(!seen.three.startsWith('socket:'), `fd 3 is not the channel: ${seen.three}`);
      assert.equal(seen.cloexec, true, 'close-on-exec in the child');
      assert.equal(seen.grandchild, 'closed', 'a program the child starts does not have it');
    },
  );
});

describe("the cause of a probe-lost run, from the probe's warning on stderr", () => {
  it("takes the cause from either probe's line, and nothing from other text", () => {
    const tfjs =
      "[gradscope] wasm backend\n[gradscope] warning: the script closed the channel's descriptor (fd 15) and opened something else under its number: GradScope sees nothing more of this run; the script goes on without inspection\nmore\n";
    assert.equal(probeLostCause(tfjs), "the script closed the channel's descriptor (fd 15) and opened something else under its number");
    // The PyTorch probe's wording (src/probe/torch/gradscope_probe/channel.py, _lost).
    const torch = "[gradscope] warning: the script closed the channel's descriptor (Bad file descriptor); the script goes on without inspection\n";
    assert.equal(probeLostCause(torch), "the script closed the channel's descriptor (Bad file descriptor)");
    assert.equal(probeLostCause('[gradscope] warning: something else\nError: boom\n'), null);
  });
});
