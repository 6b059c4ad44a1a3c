import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalise, reduceSeries, sparklineBlocks, sparklineDataUri, sparklineSvg } from '../../../src/core/analysis/sparkline';

describe('sparkline', () => {
  it('reduces long series keeping maxima and non-finite values', () => {
    const v = Array.from({ length: 100 }, (_, i) => i);
    v[57] = NaN;
    const r = reduceSeries(v, 10);
    assert.equal(r.length, 10);
    assert.equal(r[0], 9);
    assert.ok(Number.isNaN(r[5]));
    assert.deepEqual(reduceSeries([1, 2], 10), [1, 2]);
  });
  it('normalises on a log scale, flat series in the middle', () => {
    assert.deepEqual(normalise([1, 10, 100]), [0, 0.5, 1]);
    assert.deepEqual(normalise([3, 3]), [0.5, 0.5]);
    assert.ok(Number.isNaN(normalise([1, Infinity])[1]));
  });
  it('renders unicode blocks with × for non-finite steps', () => {
    assert.equal(sparklineBlocks([1, 10, 100, 1000, NaN, Infinity]), '▁▃▆█××');
    assert.equal(sparklineBlocks([]), '');
  });
  it('renders an SVG with a polyline and alarm marks, as a base64 data URI', () => {
    const svg = sparklineSvg([1, 2, 4, NaN], { width: 100, height: 20 });
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="100" height="20"/);
    assert.match(svg, /<polyline /);
    assert.match(svg, /<line [^>]*stroke="#f14c4c"/);
    const uri = sparklineDataUri([1, 2, 3]);
    assert.match(uri, /^data:image\/svg\+xml;base64,[A-Za-z0-9+/=]+$/);
    assert.match(Buffer.from(uri.split(',')[1], 'base64').toString(), /<svg/);
  });
});
