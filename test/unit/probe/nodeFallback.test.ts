// The TF.js fallback for scripts written for tfjs-node (nodeFallback.ts): TensorBoard's record
// framing and the file:// handlers, pure parts here; the runner's end-to-end run in runner.test.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { crc32c, encodeEvent, fileHandler, SummaryFileWriter, tfRecord } from '../../../src/probe/tfjs/nodeFallback';

const tmp = mkdtempSync(join(tmpdir(), 'gs-nodefallback-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Reads TFRecord framing back, checking both CRCs (the reader TensorBoard applies). */
function records(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const mask = (c: number): number => (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
  let at = 0;
  while (at < buf.length) {
    const len = Number(buf.readBigUInt64LE(at));
    assert.equal(buf.readUInt32LE(at + 8), mask(crc32c(buf.subarray(at, at + 8))), 'length CRC');
    const data = buf.subarray(at + 12, at + 12 + len);
    assert.equal(buf.readUInt32LE(at + 12 + len), mask(crc32c(data)), 'data CRC');
    out.push(data);
    at += 12 + len + 4;
  }
  return out;
}

describe('tfjs-node fallback', () => {
  it('CRC-32C: the standard check value', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  });

  it('an Event with a scalar: the protocol buffer bytes field by field', () => {
    const e = encodeEvent({ wallTime: 1.5, step: 300, scalars: [['loss', 0.25]] });
    const want = Buffer.concat([
      Buffer.from([0x09]),
      (() => {
        const b = Buffer.alloc(8);
        b.writeDoubleLE(1.5);
        return b;
      })(),
      Buffer.from([0x10, 0xac, 0x02]), // step 300 as a varint
      Buffer.from([0x2a, 13, 0x0a, 11, 0x0a, 4, ...Buffer.from('loss'), 0x15, 0x00, 0x00, 0x80, 0x3e]), // summary{value{tag, simple_value 0.25f}}
    ]);
    assert.deepEqual(e, want);
    assert.equal(records(tfRecord(e))[0].toString('hex'), e.toString('hex'));
  });

  it('a summary writer: the file version first, then one record per scalar', () => {
    const w = new SummaryFileWriter(join(tmp, 'logs'));
    w.scalar('acc', 0.5, 1);
    w.scalar('acc', tf.scalar(0.75), 2);
    const rs = records(readFileSync(w.file));
    assert.equal(rs.length, 3);
    assert.ok(rs[0].includes(Buffer.from('brain.Event:2')));
    assert.ok(rs[2].includes(Buffer.from('acc')));
    assert.ok(rs[2].includes(Buffer.from([0x15, 0x00, 0x00, 0x40, 0x3f]))); // 0.75f
  });

  it('file:// save then load: tfjs-node layout, same predictions', async () => {
    const m = tf.sequential();
    m.add(tf.layers.dense({ units: 3, inputShape: [2], activation: 'relu' }));
    m.add(tf.layers.dense({ units: 1 }));
    m.compile({ optimizer: 'sgd', loss: 'meanSquaredError' });
    const dir = join(tmp, 'model');
    await m.save(fileHandler(tf, `file://${dir}`) as unknown as tf.io.IOHandler);
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[]; weights: { name: string }[] }[] };
    assert.deepEqual(json.weightsManifest[0].paths, ['weights.bin']);
    assert.equal(json.weightsManifest[0].weights.length, 4);
    assert.equal(readFileSync(join(dir, 'weights.bin')).length, (2 * 3 + 3 + 3 * 1 + 1) * 4);
    const back = await tf.loadLayersModel(fileHandler(tf, `file://${join(dir, 'model.json')}`) as unknown as tf.io.IOHandler);
    const x = tf.tensor2d([
      [1, 2],
      [-3, 0.5],
    ]);
    assert.deepEqual(Array.from((back.predict(x) as tf.Tensor).dataSync()), Array.from((m.predict(x) as tf.Tensor).dataSync()));
  });
});
