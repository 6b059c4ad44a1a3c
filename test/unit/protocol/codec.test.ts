import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { FrameDecoder, ProtocolError, decodeAll, encodeMessage, type DecodedFrame } from '../../../src/core/protocol/codec';
import { MAX_PAYLOAD_BYTES, type Message, type StepMsg } from '../../../src/core/protocol/messages';
import { fixture } from '../support/paths';

const golden = (name: string): Uint8Array => new Uint8Array(readFileSync(fixture('protocol', name)));
const expected = JSON.parse(readFileSync(fixture('protocol', 'expected.json'), 'utf8')) as {
  valid: Record<string, Record<string, unknown>>;
  stream: string[];
  malformed: Record<string, string>;
};

/**
 * Message → plain JSON for comparison with expected.json: typed arrays to arrays, NaN to null, but a
 * STEP's NaN loss to "NaN" (its null is "no loss").
 */
function plain(m: Message): unknown {
  return JSON.parse(
    JSON.stringify(m, (k, v: unknown) => {
      if (v instanceof Float64Array || v instanceof Float32Array || v instanceof Uint32Array) return Array.from(v);
      if (typeof v === 'number' && Number.isNaN(v)) return k === 'loss' ? 'NaN' : null;
      return v;
    }),
  );
}

/** expected.json → Message, so the TypeScript encoder can be checked byte for byte. */
function toMessage(o: Record<string, unknown>): Message {
  const m = structuredClone(o);
  if (m.type === 'step') {
    m.columns = (m.columns as (number | null)[][]).map((c) => Float64Array.from(c, (v) => (v === null ? NaN : v)));
    if (m.loss === 'NaN') m.loss = NaN;
  }
  if (m.type === 'detail') {
    m.hist = Uint32Array.from(m.hist as number[]);
    m.thumb = Float32Array.from(m.thumb as number[]);
  }
  return m as unknown as Message;
}

function decodeChunked(bytes: Uint8Array, chunkSize: number): { frames: DecodedFrame[]; error: ProtocolError | null } {
  const d = new FrameDecoder();
  const frames: DecodedFrame[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) {
    const err = d.push(bytes.subarray(i, i + chunkSize), (f) => frames.push(f));
    if (err) return { frames, error: err };
  }
  return { frames, error: d.end() };
}

describe('protocol v1 golden frames (written by an independent Python encoder)', () => {
  for (const [file, want] of Object.entries(expected.valid)) {
    it(`decodes ${file}`, () => {
      const { messages, error } = decodeAll(golden(file));
      assert.equal(error, null);
      assert.equal(messages.length, 1);
      assert.deepEqual(plain(messages[0].message), want);
    });
    it(`encodes ${file} to the same bytes`, () => {
      // A frame outside stream.bin (hello-rank.bin) was written with sequence number 0.
      const seq = Math.max(0, expected.stream.indexOf(file));
      assert.deepEqual(Buffer.from(encodeMessage(toMessage(want), seq)), Buffer.from(golden(file)));
    });
  }

  it('decodes the whole stream with sequence numbers and offsets', () => {
    const { messages, error } = decodeAll(golden('stream.bin'));
    assert.equal(error, null);
    assert.deepEqual(
      messages.map((m) => m.message.type),
      ['hello', 'tensors', 'step', 'detail', 'event', 'optimizer', 'step', 'event', 'event', 'end', 'tensors', 'step', 'step'],
    );
    assert.deepEqual(
      messages.map((m) => m.seq),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    );
    let off = 0;
    for (const m of messages) {
      assert.equal(m.offset, off);
      off += m.raw.byteLength;
    }
  });

  it('gives the same messages when bytes arrive one at a time, or in odd chunks', () => {
    const bytes = golden('stream.bin');
    const whole = decodeAll(bytes).messages.map((m) => plain(m.message));
    for (const size of [1, 3, 7, 16, 17, 100]) {
      const { frames, error } = decodeChunked(bytes, size);
      assert.equal(error, null, `chunk size ${size}`);
      assert.deepEqual(
        frames.map((f) => plain(f.message)),
        whole,
        `chunk size ${size}`,
      );
    }
  });

  it('keeps the raw bytes of each frame so a run file can store them verbatim', () => {
    const { messages } = decodeAll(golden('stream.bin'));
    assert.deepEqual(Buffer.concat(messages.map((m) => m.raw)), Buffer.from(golden('stream.bin')));
  });
});

describe('notebook cells in source locations', () => {
  it('keeps a cell index where the probe gave one, and none where it did not (older frames)', () => {
    const [cellMsg] = decodeAll(golden('tensors-cell.bin')).messages.map((m) => m.message);
    const [plainMsg] = decodeAll(golden('tensors.bin')).messages.map((m) => m.message);
    assert.equal(cellMsg.type, 'tensors');
    assert.equal(plainMsg.type, 'tensors');
    if (cellMsg.type !== 'tensors' || plainMsg.type !== 'tensors') return;
    assert.deepEqual(cellMsg.tensors[0].source, { file: '/work/notebooks/train.ipynb', line: 3, column: 9, cell: 2 });
    assert.ok(plainMsg.tensors.every((t) => t.source === null || !('cell' in t.source)));
  });

  it('refuses a cell that is not a non-negative integer', () => {
    const bad = encodeMessage(
      { type: 'tensors', tensors: [{ id: 0, name: 'w', layer: 'w', layerType: 'Linear', shape: [1], source: { file: '/a.ipynb', line: 1, column: 1, cell: -1 } }] },
      0,
    );
    assert.equal(decodeAll(bad).error?.code, 'bad-field');
  });
});

describe('malformed input gives a typed error and never throws', () => {
  for (const [file, code] of Object.entries(expected.malformed)) {
    it(`${file} → ${code}`, () => {
      const bytes = golden(`malformed/${file}`);
      for (const size of [bytes.length || 1, 1]) {
        const { error } = decodeChunked(bytes, size);
        assert.ok(error instanceof ProtocolError, `chunk size ${size}`);
        assert.equal(error.code, code);
        assert.match(error.message, new RegExp(`protocol error \\(${code}\\) at byte \\d+: .+`));
      }
    });
  }

  it('reports frames decoded before the error, and stays failed afterwards', () => {
    const good = golden('hello.bin');
    const bad = golden('malformed/bad-magic.bin');
    const d = new FrameDecoder();
    const got: string[] = [];
    const err = d.push(Buffer.concat([good, bad, good]), (f) => got.push(f.message.type));
    assert.deepEqual(got, ['hello']);
    assert.equal(err?.code, 'bad-magic');
    assert.equal(err?.offset, good.length);
    assert.equal(
      d.push(good, () => got.push('late')),
      err,
    );
    assert.deepEqual(got, ['hello']);
  });

  it('rejects a declared length over the cap before buffering it', () => {
    const d = new FrameDecoder();
    const h = new Uint8Array(16);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, 0x50435347, true);
    dv.setUint16(4, 1, true);
    dv.setUint16(6, 3, true);
    dv.setUint32(8, MAX_PAYLOAD_BYTES + 1, true);
    assert.equal(d.push(h, () => assert.fail('no frame expected'))?.code, 'oversize');
  });

  it('random garbage never throws out of push()', () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const stream = golden('stream.bin');
    for (let trial = 0; trial < 500; trial++) {
      const bytes = new Uint8Array(stream);
      // Flip a few bytes anywhere (header or payload).
      for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
      const d = new FrameDecoder();
      assert.doesNotThrow(() => {
        d.push(bytes.subarray(0, Math.floor(rnd() * bytes.length)), () => {});
        d.push(bytes.subarray(Math.floor(rnd() * bytes.length)), () => {});
        d.end();
      });
    }
  });
});

describe('encoder', () => {
  it('round-trips a large step and rejects columns of the wrong length', () => {
    const n = 200;
    const stats = ['norm', 'maxAbs', 'nanCount', 'infCount', 'paramNorm', 'updateNorm'] as const;
    const columns = stats.map((_, s) => Float64Array.from({ length: n }, (_, i) => s * 1000 + i + 0.5));
    const bytes = encodeMessage({ type: 'step', step: 99, optimizer: 0, loss: NaN, wallMs: 5, nTensors: n, stats: [...stats], columns }, 9);
    const { messages, error } = decodeAll(bytes);
    assert.equal(error, null);
    const m = messages[0].message;
    assert.equal(m.type, 'step');
    if (m.type !== 'step') return;
    assert.ok(m.loss !== null && Number.isNaN(m.loss), 'a NaN loss stays a NaN loss');
    assert.deepEqual(
      m.columns.map((c) => Array.from(c)),
      columns.map((c) => Array.from(c)),
    );
    assert.throws(() => encodeMessage({ type: 'step', step: 1, optimizer: 0, loss: 0, wallMs: 0, nTensors: 3, stats: ['norm'], columns: [new Float64Array(2)] }, 0));
  });

  it('keeps "no loss" (null) and a NaN loss apart, whatever NaN the loss is', () => {
    const step = (loss: number | null): StepMsg => ({ type: 'step', step: 1, optimizer: 0, loss, wallMs: 0, nTensors: 1, stats: ['norm'], columns: [Float64Array.of(1)] });
    const lossOf = (bytes: Uint8Array): number | null | undefined => {
      const m = decodeAll(bytes).messages[0]?.message;
      return m?.type === 'step' ? m.loss : undefined;
    };
    assert.equal(lossOf(encodeMessage(step(null), 0)), null);
    assert.ok(Number.isNaN(lossOf(encodeMessage(step(NaN), 0))));
    assert.equal(lossOf(encodeMessage(step(2.5), 0)), 2.5);
    // The NaNs arithmetic makes on x86 (the sign bit set: 0/0, inf - inf) and other payloads are NaN losses.
    const bytes = encodeMessage(step(0), 0);
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    for (const [lo, hi] of [
      [0, 0xfff80000],
      [0x7a3, 0x7ff80000],
      [0x7a2, 0xfff80000],
    ]) {
      dv.setUint32(16 + 16, lo, true);
      dv.setUint32(16 + 20, hi, true);
      assert.ok(Number.isNaN(lossOf(bytes)), `NaN loss ${hi.toString(16)}:${lo.toString(16)}`);
    }
  });

  it('carries the optimizer id at offset 12 of STEP and the hasGrad column', () => {
    const bytes = encodeMessage(
      { type: 'step', step: 4, optimizer: 70000, loss: 1, wallMs: 2, nTensors: 2, stats: ['norm', 'hasGrad'], columns: [Float64Array.of(1, NaN), Float64Array.of(1, 0)] },
      0,
    );
    assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(16 + 12, true), 70000);
    assert.equal(bytes[16 + 32 + 1], 7);
    const m = decodeAll(bytes).messages[0].message;
    assert.ok(m.type === 'step');
    assert.equal(m.optimizer, 70000);
    assert.deepEqual(m.stats, ['norm', 'hasGrad']);
    assert.deepEqual(Array.from(m.columns[1]), [1, 0]);
  });

  it('round-trips an OPTIMIZER message and rejects a bad one with bad-field', () => {
    const msg = { type: 'optimizer', id: 2, name: 'self.optimizer', className: 'SGD', mode: 'backward', tensorIds: [3, 4] } as const;
    const { messages, error } = decodeAll(encodeMessage({ ...msg, tensorIds: [...msg.tensorIds] }, 1));
    assert.equal(error, null);
    assert.deepEqual(messages[0].message, msg);
    const bad = encodeMessage({ ...msg, tensorIds: [...msg.tensorIds], name: 3 as unknown as string }, 1);
    assert.equal(decodeAll(bad).error?.code, 'bad-field');
    assert.match(decodeAll(bad).error?.message ?? '', /OPTIMIZER: field "name" must be a string/);
  });

  it('writes non-finite numbers in JSON messages as null', () => {
    const bytes = encodeMessage({ type: 'event', kind: 'warning', message: 'x', step: 3 }, 0);
    assert.equal(decodeAll(bytes).error, null);
  });
});

describe('TENSORS optional fields: aliases and builtIn', () => {
  const base = { id: 0, name: 'transformer.wte.weight', layer: 'transformer.wte', layerType: 'Embedding', shape: [40, 8], source: { file: '/w/train.py', line: 7, column: 7 } };
  const tensors = (t: Record<string, unknown>): Uint8Array => encodeMessage({ type: 'tensors', tensors: [t as unknown as typeof base] }, 0);

  it('decodes them when present and leaves them out when absent or null', () => {
    const builtIn = { file: '/site-packages/transformers/models/gpt2/modeling_gpt2.py', line: 492, column: 20, package: 'transformers' };
    const { messages, error } = decodeAll(tensors({ ...base, aliases: ['lm_head.weight'], builtIn }));
    assert.equal(error, null);
    assert.deepEqual(messages[0].message, { type: 'tensors', tensors: [{ ...base, aliases: ['lm_head.weight'], builtIn }] });
    for (const t of [base, { ...base, aliases: null, builtIn: null }]) {
      const m = decodeAll(tensors(t)).messages[0].message;
      assert.ok(m.type === 'tensors');
      assert.deepEqual(m.tensors[0], base);
      assert.ok(!('aliases' in m.tensors[0]) && !('builtIn' in m.tensors[0]));
    }
  });

  it('rejects a wrong type with bad-field', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, aliases: 'lm_head.weight' }, /TENSORS: field "aliases" must be an array of strings/],
      [{ ...base, aliases: ['a', 3] }, /field "aliases" must be an array of strings/],
      [{ ...base, builtIn: 'transformers' }, /field "builtIn" must be an object/],
      [{ ...base, builtIn: { file: '/x.py', line: 1, column: 1 } }, /field "package" must be a string/],
      [{ ...base, builtIn: { file: '/x.py', line: -1, column: 1, package: 'timm' } }, /field "line" must be a non-negative integer/],
    ];
    for (const [t, re] of cases) {
      const { messages, error } = decodeAll(tensors(t));
      assert.equal(messages.length, 0);
      assert.equal(error?.code, 'bad-field');
      assert.match(error?.message ?? '', re);
    }
  });
});
