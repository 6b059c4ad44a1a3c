// The handshake of a remote connection (src/core/protocol/handshake.ts) against the golden files that
// make_golden.py wrote with an encoder of its own: AUTH and AUTH_REPLY decode to expected.json and
// encode to the same bytes; the run's FrameDecoder never takes them for a run's frames.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { decodeAll } from '../../../src/core/protocol/codec';
import { encodeAuth, encodeAuthReply, readAuth, readAuthReply, type AuthMsg, type AuthReplyMsg } from '../../../src/core/protocol/handshake';
import { fixture } from '../support/paths';

const golden = (name: string): Buffer => readFileSync(fixture('protocol', name));
const expected = JSON.parse(readFileSync(fixture('protocol', 'expected.json'), 'utf8')) as { handshake: Record<string, Record<string, unknown>> };

describe('remote handshake golden frames', () => {
  it('has the four files', () => assert.deepEqual(Object.keys(expected.handshake).sort(), ['auth-job.bin', 'auth-reply-ok.bin', 'auth-reply-refused.bin', 'auth.bin']));
  for (const [file, want] of Object.entries(expected.handshake)) {
    const isAuth = !file.startsWith('auth-reply');
    it(`reads and writes ${file}`, () => {
      const bytes = golden(file);
      const r = isAuth ? readAuth(bytes) : readAuthReply(bytes);
      assert.equal(r.kind, 'ok');
      if (r.kind !== 'ok') return;
      assert.deepEqual(r.msg, want);
      assert.equal(r.bytes, bytes.byteLength);
      const again = isAuth ? encodeAuth(want as unknown as AuthMsg) : encodeAuthReply(want as unknown as AuthReplyMsg);
      assert.deepEqual(Buffer.from(again), bytes);
      // Cut anywhere before its end: more bytes are needed, never a wrong answer.
      for (const cut of [0, 5, 16, bytes.byteLength - 1]) assert.equal((isAuth ? readAuth : readAuthReply)(bytes.subarray(0, cut)).kind, 'need-more');
      // Not a run's frame: the stream decoder refuses it.
      assert.equal(decodeAll(bytes).error?.code, 'unknown-type');
    });
  }

  it('says what is wrong with a first frame that is no AUTH', () => {
    const hello = golden('hello.bin');
    const r = readAuth(hello);
    assert.equal(r.kind, 'bad');
    assert.match(r.kind === 'bad' ? r.why : '', /no AUTH before its HELLO/);
    const junk = readAuth(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(junk.kind, 'bad');
    assert.match(junk.kind === 'bad' ? junk.why : '', /not a GradScope probe/);
    const big = Buffer.from(golden('auth.bin'));
    big.writeUInt32LE(5000, 8);
    assert.match((readAuth(big) as { why: string }).why, /at most 4096/);
    assert.equal(readAuth(golden('auth-reply-ok.bin')).kind, 'bad');
  });
});
