// Live appends draw incrementally (new heatmap columns only, unless the colour domain moved; the
// norm curves at most 5 times a second): after them the panel must show exactly what it shows when
// the same data arrives as one snapshot. Needs `npm run build` first.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { area, launch, openPanel, send } from './browser.mjs';
import { appendMessage, explodingSnapshot, mergeAppends } from './fixtures.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Every pixel of a canvas, as a data URL. */
const pixels = (page, selector) => page.$eval(selector, (c) => c.toDataURL());

/** Waits until the norm curves show `n` points of the global norm (their redraw is throttled). */
const normsAt = (page, n) =>
  page.waitForFunction((k) => JSON.parse(document.querySelector('#gs-norms canvas').dataset.series).find((s) => s.label === 'global norm')?.points === k, n, { timeout: 3000 });

async function panelWith(messages) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await openPanel(page);
  for (const m of messages) await send(page, m);
  return { page, errors };
}

describe('live appends', () => {
  test('after appends, the heatmap, its legend, the norm curves and the header equal a snapshot of the same data', async () => {
    // 3,070 steps: bucketed columns (4 steps per pixel column at this width), so appends of 3 steps
    // leave a partly filled last bucket; the appended values go below and above the range shown so
    // far (a new colour domain), with a NaN and an Inf, and the last append crosses the x axis end.
    const snap = explodingSnapshot({ steps: 3070, layers: 8, explodeAt: 2500, infAt: 3000, nanAt: 3040, findings: true });
    const appends = [];
    for (let i = 0; i < 7; i++)
      appends.push(
        appendMessage(snap, 3069 + 3 * i, 3, (li, s) => {
          if (li === 2 && s === 3075) return NaN;
          if (li === 6 && s === 3080) return Infinity;
          // Layer 0 holds the lowest values: the first step of each 4-step bucket far below the
          // others, so the colour domain's low end drops, then rises again once the bucket fills.
          if (li === 0) return s % 4 === 0 ? -6 : -2;
          return li === 1 ? 30 + (s - 3070) : -1 + Math.sin(s + li);
        }),
      );
    const live = await panelWith([{ type: 'snapshot', snapshot: snap }, ...appends]);
    const whole = await panelWith([{ type: 'snapshot', snapshot: mergeAppends(snap, appends) }]);
    const total = 3070 + 21;
    await normsAt(live.page, total);
    await normsAt(whole.page, total);
    for (const { page } of [live, whole]) {
      assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), String(total));
      assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.bucket), '4');
    }
    for (const sel of ['#gs-heatmap canvas', '#gs-norms canvas']) assert.ok((await pixels(live.page, sel)) === (await pixels(whole.page, sel)), `${sel}: same pixels`);
    for (const sel of ['#gs-heatmap .gs-colorbar', '.gs-header', '#gs-findings'])
      assert.equal(await live.page.$eval(sel, (e) => e.textContent), await whole.page.$eval(sel, (e) => e.textContent), sel);
    assert.deepEqual(live.errors, []);
    assert.deepEqual(whole.errors, []);
    await live.page.close();
    await whole.page.close();
  });

  test('an append with new steps paints the new heatmap column, and only the heatmap columns it brings change', async () => {
    // 39 steps: the x axis ends at 40, so the 40th column fits without a new layout.
    const snap = explodingSnapshot({ steps: 39, layers: 6, explodeAt: 1000, infAt: 1000, nanAt: 1000, findings: false });
    const { page, errors } = await panelWith([{ type: 'snapshot', snapshot: snap }]);
    const a = await area(page, '#gs-heatmap canvas');
    const xmax = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax));
    // One row of pixels through the middle of layer 0; column c spans [x(c), x(c + 1)).
    const x = (c) => a.left + (c / xmax) * (a.right - a.left);
    const rowPixels = () =>
      page.$eval('#gs-heatmap canvas', (c, [y, x0, x1]) => Array.from(c.getContext('2d').getImageData(x0, y, x1 - x0, 1).data), [
        Math.round(a.top + (a.bottom - a.top) / 12),
        Math.ceil(a.left),
        Math.floor(a.right),
      ]);
    const before = await rowPixels();
    // Within the colour domain shown: nothing else may change.
    await send(
      page,
      appendMessage(snap, 38, 1, () => Math.log10(0.08)),
    );
    const after = await rowPixels();
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '40');
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax), String(xmax));
    const changed = [];
    for (let i = 0; i < before.length; i += 4) if (before.slice(i, i + 4).some((v, k) => v !== after[i + k])) changed.push(Math.ceil(a.left) + i / 4);
    assert.ok(changed.length > 0, 'the new column is painted');
    assert.ok(
      changed.every((px) => px >= Math.floor(x(39)) && px <= Math.ceil(x(40))),
      `only pixels of column 39 (x ${x(39).toFixed(1)}–${x(40).toFixed(1)}) changed: ${changed[0]}…${changed.at(-1)}`,
    );
    assert.deepEqual(errors, []);
    await page.close();
  });
});
