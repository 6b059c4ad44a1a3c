// Absent gradients in the panel (a layer with no gradient at some steps: torch's set_to_none, a
// frozen layer): drawn as their own faint state with a "no gradient" legend entry, never as NaN;
// the layer's norm curve has no NaN marker there. Needs `npm run build` first.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { area, launch, openPanel, pixel, posts, send } from './browser.mjs';
import { explodingSnapshot } from './fixtures.mjs';

const hex = (h) => [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)];
const near = (px, rgb, tol = 6) => px.slice(0, 3).every((v, i) => Math.abs(v - rgb[i]) <= tol);
const NAN = hex('#ff00ff');
const STEPS = 40;

/**
 * 40 steps × 6 layers, healthy but for NaN everywhere from step 36; `dense_1` (row 0) is frozen (no
 * gradient at any step), `output` (row 5) has none on odd steps.
 */
export function absentSnapshot() {
  const s = explodingSnapshot({ steps: STEPS, layers: 6, explodeAt: 1000, infAt: 1000, nanAt: 36, findings: false });
  const n = s.heatmap.steps.length;
  for (let c = 0; c < n; c++) {
    s.heatmap.values[0 * n + c] = 'absent';
    if (c % 2 === 1 && c < 36) s.heatmap.values[5 * n + c] = 'absent';
  }
  s.layerNorms.dense_1 = { steps: [...s.heatmap.steps], values: s.heatmap.steps.map(() => 'absent') };
  const out = s.layerNorms.output;
  s.layerNorms.output = { steps: out.steps, values: out.values.map((v, i) => (i % 2 === 1 && i < 36 ? 'absent' : i >= 36 ? 'NaN' : v)) };
  return s;
}

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function cellCenter(page, row, col) {
  const a = await area(page, '#gs-heatmap canvas');
  const cols = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax));
  const rows = await page.$$eval('#gs-layer-list input', (l) => l.length);
  return { x: a.left + ((col + 0.5) / cols) * (a.right - a.left), y: a.top + ((row + 0.5) / rows) * (a.bottom - a.top) };
}

describe('absent gradients in the panel', () => {
  test('absent cells are a faint wash, not NaN and not empty; the legend says "no gradient"; the hover too', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await openPanel(page, { theme: 'dark', state: { metric: 'norm', layers: ['output'], selectedLayer: null, tensorId: null, step: null } });
    await send(page, { type: 'snapshot', snapshot: absentSnapshot() });
    const at = async (row, col) => pixel(page, '#gs-heatmap canvas', ...Object.values(await cellCenter(page, row, col)));
    const frozen = await at(0, 10);
    const headOdd = await at(5, 11);
    const headEven = await at(5, 10);
    const nan = await at(5, 37);
    const empty = await pixel(page, '#gs-heatmap canvas', 2, 2);
    assert.ok(near(nan, NAN), `NaN stays magenta (${nan})`);
    for (const px of [frozen, headOdd]) {
      assert.ok(!near(px, NAN, 60), `absent is not drawn as NaN (${px})`);
      assert.ok(px[3] > 0 && px[3] < 255, `absent is a translucent wash over the background (${px})`);
    }
    assert.deepEqual(frozen, headOdd, 'every absent cell looks the same');
    assert.equal(empty[3], 0, 'outside the cells nothing is drawn');
    assert.equal(headEven[3], 255, 'a present cell is drawn opaque in the colour map');
    const legend = await page.$$eval('#gs-heatmap .gs-swatch', (s) => s.map((x) => x.textContent));
    assert.deepEqual(legend, ['NaN', 'Inf', 'zero', 'no gradient']);
    // Hovering an absent cell says so.
    const box = await page.$eval('#gs-heatmap canvas', (c) => {
      const r = c.getBoundingClientRect();
      return { x: r.x, y: r.y };
    });
    const c = await cellCenter(page, 0, 10);
    await page.mouse.move(box.x + c.x, box.y + c.y);
    const tip = await page.$eval('#gs-heatmap .gs-tooltip', (t) => t.textContent);
    assert.match(tip, /dense_1 · .* = no gradient/);
    // The output layer's curve: its absent steps are gaps (dotted), not NaN markers; NaN from 36 on is marked.
    const gaps = JSON.parse(await page.$eval('#gs-norms canvas', (c) => c.dataset.gaps));
    assert.equal(gaps['layer:output'], 18);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the optimizer picker lists each optimizer and asks the host for one optimizer’s steps', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    await openPanel(page, { theme: 'dark' });
    const snapshot = {
      ...absentSnapshot(),
      optimizers: [
        { id: 0, name: 'opt_g', className: 'Adam', mode: 'optimizer', steps: 20 },
        { id: 1, name: 'opt_d', className: 'SGD', mode: 'optimizer', steps: 20 },
      ],
      optimizer: null,
    };
    await send(page, { type: 'snapshot', snapshot });
    assert.equal(await page.$eval('#gs-optimizer-label', (l) => l.hidden), false);
    const options = await page.$$eval('#gs-optimizer option', (o) => o.map((x) => [x.value, x.textContent]));
    assert.deepEqual(options, [
      ['', 'all optimizers'],
      ['0', 'opt_g (Adam) · 20 steps'],
      ['1', 'opt_d (SGD) · 20 steps'],
    ]);
    await page.selectOption('#gs-optimizer', '1');
    assert.deepEqual((await posts(page)).at(-1), { type: 'setOptimizer', optimizer: 1 });
    // The host answers with a snapshot of that optimizer's steps; the picker shows the choice.
    await send(page, { type: 'snapshot', snapshot: { ...snapshot, optimizer: 1 } });
    assert.equal(await page.$eval('#gs-optimizer', (s) => s.value), '1');
    await page.selectOption('#gs-optimizer', '');
    assert.deepEqual((await posts(page)).at(-1), { type: 'setOptimizer', optimizer: null });
    // A reload restores the choice: the webview asks the host for it again.
    const reloaded = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    await openPanel(reloaded, { theme: 'dark', state: await page.evaluate(() => window.__state) });
    await send(reloaded, { type: 'snapshot', snapshot });
    assert.deepEqual(
      (await posts(reloaded)).filter((m) => m.type === 'setOptimizer'),
      [],
      'all optimizers was the last choice',
    );
    await page.selectOption('#gs-optimizer', '0');
    const again = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    await openPanel(again, { theme: 'dark', state: await page.evaluate(() => window.__state) });
    await send(again, { type: 'snapshot', snapshot });
    assert.deepEqual(
      (await posts(again)).filter((m) => m.type === 'setOptimizer'),
      [{ type: 'setOptimizer', optimizer: 0 }],
    );
    await reloaded.close();
    await again.close();
    // One optimizer: no picker.
    await send(page, { type: 'snapshot', snapshot: { ...snapshot, optimizers: snapshot.optimizers.slice(0, 1) } });
    assert.equal(await page.$eval('#gs-optimizer-label', (l) => l.hidden), true);
    await page.close();
  });

  test('a run without absent cells has no "no gradient" legend entry', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    await openPanel(page, { theme: 'light' });
    await send(page, { type: 'snapshot', snapshot: explodingSnapshot({ steps: STEPS, layers: 6, findings: false }) });
    const legend = await page.$$eval('#gs-heatmap .gs-swatch', (s) => s.map((x) => x.textContent));
    assert.ok(!legend.includes('no gradient'), legend.join(','));
    await page.close();
  });
});
