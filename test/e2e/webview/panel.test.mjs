// The panel in headless chromium: pixels and DOM of the charts, the messages it posts, and its
// handling of bad host messages. Needs `npm run build` first (loads dist/webview/main.js).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { THEMES, area, launch, openPanel, pixel, posts, send } from './browser.mjs';
import { appendMessage, explodingDetail, explodingSnapshot } from './fixtures.mjs';

const hex = (h) => [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)];
const near = (px, rgb, tol = 6) => px.slice(0, 3).every((v, i) => Math.abs(v - rgb[i]) <= tol);
const NAN = hex('#ff00ff');
const INF_DARK = hex(THEMES.dark.vars['--vscode-charts-red']);

// 40 steps × 6 layers: explodes after step 20, Inf in the deeper half from step 30, NaN from 33.
const SMALL = { steps: 40, layers: 6, explodeAt: 20, infAt: 30, nanAt: 33, findings: false };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function panel(opts = {}, snapshot = explodingSnapshot(SMALL)) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await openPanel(page, opts);
  await send(page, { type: 'snapshot', snapshot });
  return { page, errors, snapshot };
}

/** CSS pixel centre of heatmap cell (row, col) relative to the canvas. */
/**
 * How many pixels of the NaN colour (magenta: red and blue ≥ `full`, green ≤ `none`) the norm chart
 * has in `rows` rows from `dy` below the top of its plot area `a`.
 */
function nanPixels(page, a, { dy, rows, full, none }) {
  return page.$eval(
    '#gs-norms canvas',
    (c, [l, t, r, dy, rows, full, none]) => {
      const d = c.getContext('2d').getImageData(Math.round(l), Math.round(t) + dy, Math.round(r - l), rows).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > full && d[i + 1] < none && d[i + 2] > full) n++;
      return n;
    },
    [a.left, a.top, a.right, dy, rows, full, none],
  );
}

/** The norm chart's series labels, legend entries included. */
const normLabels = async (page) => JSON.parse(await page.$eval('#gs-norms canvas', (c) => c.dataset.series)).map((x) => x.label);

async function cellCenter(page, row, col) {
  const a = await area(page, '#gs-heatmap canvas');
  const cols = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax));
  const rows = await page.$$eval('#gs-layer-list input', (l) => l.length);
  return { x: a.left + ((col + 0.5) / cols) * (a.right - a.left), y: a.top + ((row + 0.5) / rows) * (a.bottom - a.top) };
}

describe('webview panel', () => {
  test('posts ready on load, and NaN / Inf heatmap cells have their own colours', async () => {
    const { page, errors } = await panel();
    assert.deepEqual((await posts(page))[0], { type: 'ready' });
    // NaN everywhere from step 33; Inf in rows 3..5 at steps 30..32; finite before.
    const nanAt = await cellCenter(page, 0, 35);
    assert.ok(near(await pixel(page, '#gs-heatmap canvas', nanAt.x, nanAt.y), NAN), 'NaN cell is magenta');
    const infAt = await cellCenter(page, 4, 31);
    assert.ok(near(await pixel(page, '#gs-heatmap canvas', infAt.x, infAt.y), INF_DARK), 'Inf cell has the Inf colour');
    const fin = await cellCenter(page, 1, 5);
    const px = await pixel(page, '#gs-heatmap canvas', fin.x, fin.y);
    assert.ok(!near(px, NAN, 40) && !near(px, INF_DARK, 40) && px[3] === 255, `finite cell drawn in the colour map (${px})`);
    // A NaN next to Inf in the same column: Inf cell row 4 step 30, NaN row 0 step 30 is finite.
    const legend = await page.$$eval('#gs-heatmap .gs-swatch', (s) => s.map((x) => x.textContent));
    assert.deepEqual(legend, ['NaN', 'Inf', 'zero']);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the selected layer curve is drawn, and the log axis spans the data', async () => {
    const { page, errors, snapshot } = await panel();
    const yellow = hex(THEMES.dark.vars['--vscode-charts-yellow']); // dense_3's colour (third layer)
    const count = () =>
      page.$eval(
        '#gs-norms canvas',
        (c, rgb) => {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - rgb[0]) < 8 && Math.abs(d[i + 1] - rgb[1]) < 8 && Math.abs(d[i + 2] - rgb[2]) < 8) n++;
          return n;
        },
        yellow,
      );
    assert.equal(await count(), 0, 'no dense_3 curve before it is picked');
    await page.check('#gs-layer-list input[value="dense_3"]');
    await page.waitForFunction(() => JSON.parse(document.querySelector('#gs-norms canvas').dataset.series).some((s) => s.label === 'dense_3'));
    const series = JSON.parse(await page.$eval('#gs-norms canvas', (c) => c.dataset.series));
    const d3 = series.find((s) => s.label === 'dense_3');
    assert.equal(d3.points, 40);
    assert.ok((await count()) > 30, 'pixels of the dense_3 colour on the canvas');
    assert.ok(
      series.some((s) => s.label === 'NaN'),
      'non-finite points are announced in the legend',
    );
    // The view state is saved for a reload.
    assert.deepEqual((await page.evaluate(() => window.__state)).layers, ['dense_3']);
    // Log axis: spans every finite positive value of the drawn curves.
    const [min, max] = (await page.$eval('#gs-norms canvas', (c) => c.dataset.yRange)).split(',').map(Number);
    const vals = [...snapshot.globalNorm.values, ...snapshot.layerNorms.dense_3.values].filter((v) => typeof v === 'number' && v > 0);
    assert.ok(min <= Math.min(...vals), `axis min ${min} <= ${Math.min(...vals)}`);
    assert.ok(max >= Math.max(...vals), `axis max ${max} >= ${Math.max(...vals)}`);
    assert.ok(Math.log10(max / min) >= 2, 'several decades');
    // NaN markers at the top edge of the plot.
    const a = await area(page, '#gs-norms canvas');
    const top = await nanPixels(page, a, { dy: 1, rows: 3, full: 245, none: 10 });
    assert.ok(top > 5, 'NaN markers drawn at the top edge');
    // The loss is NaN from the same step: its markers are hollow (stroked, so anti-aliased: a looser
    // colour match), one row below the gradients' (9 px in), and the legend says so.
    const lossRow = await nanPixels(page, a, { dy: 10, rows: 2, full: 200, none: 60 });
    assert.ok(lossRow > 5, `the loss's NaN markers below the gradients' (${lossRow} pixels)`);
    const labels = await normLabels(page);
    assert.ok(labels.includes('loss not finite (hollow)'), labels.join(', '));
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a loss that is never a number has its markers but no loss axis (no 0–1 scale for it)', async () => {
    const withAxis = await panel();
    const noAxis = await panel({}, explodingSnapshot({ ...SMALL, nanAt: 0 }));
    const [a, b] = [await area(withAxis.page, '#gs-norms canvas'), await area(noAxis.page, '#gs-norms canvas')];
    // Without the right-hand axis the plot reaches further right.
    assert.ok(b.right > a.right + 15, `plot right edge ${b.right} without the loss axis, ${a.right} with it`);
    const labels = await normLabels(noAxis.page);
    assert.ok(labels.includes('loss not finite (hollow)'), labels.join(', '));
    assert.deepEqual([...withAxis.errors, ...noAxis.errors], []);
    await withAxis.page.close();
    await noAxis.page.close();
  });

  test('clicking a heatmap cell posts selectTensor for the layer kernel at that step, and Enter does too', async () => {
    const { page, errors } = await panel();
    const box = await page.$eval('#gs-heatmap canvas', (c) => c.getBoundingClientRect().toJSON());
    const c = await cellCenter(page, 1, 10);
    await page.mouse.move(box.x + c.x, box.y + c.y);
    const tip = await page.$eval('#gs-heatmap .gs-tooltip', (t) => (t.hidden ? '' : t.textContent));
    assert.match(tip, /dense_2 · step 10 · log10 ‖g‖ = -?\d/);
    await page.mouse.click(box.x + c.x, box.y + c.y);
    assert.deepEqual((await posts(page)).at(-1), { type: 'selectTensor', tensorId: 2, step: 10 });
    assert.equal(await page.$eval('#gs-tensor', (s) => s.value), '2');
    await send(page, { type: 'tensorDetail', detail: explodingDetail(2, 40) });
    await page.waitForSelector('#gs-hist canvas');
    await page.waitForSelector('#gs-thumb canvas');
    // Keyboard: focus the heatmap, move one row down, select.
    await page.focus('#gs-heatmap canvas');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    const last = (await posts(page)).at(-1);
    assert.equal(last.type, 'selectTensor');
    assert.equal(last.tensorId, 4, 'dense_3/kernel');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('an append adds columns and points; a replace switches the heatmap metric', async () => {
    const { page, errors, snapshot } = await panel();
    const m = appendMessage(snapshot, 39, 5, (li, s) => (li === 0 && s === 43 ? NaN : -1));
    await send(page, m);
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '45');
    assert.equal(await page.$eval('#gs-step', (e) => e.textContent), '44');
    const c = await cellCenter(page, 0, 43);
    assert.ok(near(await pixel(page, '#gs-heatmap canvas', c.x, c.y), NAN), 'appended NaN cell drawn');
    // The norm curves follow within 200 ms (they are redrawn at most 5 times a second).
    await page.waitForFunction(() => JSON.parse(document.querySelector('#gs-norms canvas').dataset.series).find((s) => s.label === 'global norm').points === 45, null, { timeout: 2000 });
    // Sending the same append again changes nothing (steps at or before the last are ignored).
    await send(page, m);
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '45');
    // A metric switch: the radio posts, the host answers with a replace.
    await page.check('input[name="gs-metric"][value="zeroFrac"]');
    assert.deepEqual((await posts(page)).at(-1), { type: 'setHeatmapMetric', metric: 'zeroFrac' });
    const steps = Array.from({ length: 10 }, (_, i) => i);
    await send(page, {
      type: 'replace',
      header: snapshot.header,
      globalNorm: snapshot.globalNorm,
      loss: snapshot.loss,
      layerNorms: snapshot.layerNorms,
      findings: [],
      heatmap: { metric: 'zeroFrac', layers: snapshot.layers, steps, values: snapshot.layers.flatMap(() => steps.map((s) => s / 10)) },
    });
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '10');
    assert.match(await page.$eval('#gs-heatmap .gs-colorbar', (e) => e.textContent), /zero fraction/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('malformed host messages are dropped and the page keeps working', async () => {
    const { page, errors, snapshot } = await panel();
    const warnings = [];
    page.on('console', (m) => m.type() === 'warning' && warnings.push(m.text()));
    const bad = [
      null,
      42,
      'snapshot',
      [],
      { type: 'evil' },
      { type: 'snapshot' },
      { type: 'snapshot', snapshot: { header: {} } },
      JSON.parse('{"type":"select","layer":"dense_1","__proto__":{"polluted":true},"step":"x"}'),
      { type: 'append', ...appendMessage(snapshot, 39, 2), heatmap: { metric: 'norm', layers: ['a'], steps: [1, 2], values: [1] } },
      { ...appendMessage(snapshot, 39, 2), globalNorm: { steps: [40], values: ['<img src=x onerror=alert(1)>'] } },
      { ...appendMessage(snapshot, 39, 2), header: { ...snapshot.header, status: 'pwned' } },
      { type: 'tensorDetail', detail: { tensorId: -1, histograms: [] } },
      { type: 'tensorDetail', detail: { tensorId: 1, histograms: [], thumbnail: { step: 0, rows: 1e6, cols: 1e6, values: [] } } },
      { type: 'select', layer: 'x'.repeat(100_000), step: 1 },
    ];
    for (const b of bad) await page.evaluate((m) => window.postMessage(m, '*'), b);
    await page.evaluate(() => new Promise((r) => setTimeout(r, 50)));
    assert.equal(await page.evaluate(() => ({}).polluted), undefined);
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '40', 'nothing was applied');
    assert.ok(warnings.length >= bad.length - 1, `each bad message logged (${warnings.length})`);
    // Still alive: a good append applies.
    await send(page, appendMessage(snapshot, 39, 3));
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '43');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a findings update during a live run keeps the buttons of a finding whose actions stay the same', async () => {
    const snapshot = explodingSnapshot({ ...SMALL, findings: true });
    const { page, errors } = await panel({}, snapshot);
    const sel = (id, remedy) => `[data-finding-id="${id}"] button[data-remedy="${remedy}"]`;
    const he = await page.$(sel('exploding-gradient:dense_1', 'he-init'));
    const clip = await page.$(sel('non-finite-gradient:output', 'clip-global-norm'));
    // The exploding finding's evidence grows; the non-finite one gains a remedy; a third appears first.
    const [exploding, nonFinite] = snapshot.findings;
    const grown = { ...exploding, evidence: { ...exploding.evidence, normAtEnd: 7.7e9 } };
    const more = { ...nonFinite, remedies: [...nonFinite.remedies, { id: 'lower-lr', title: 'Lower the learning rate' }] };
    const dead = {
      ...nonFinite,
      id: 'dead-layer:dense_0',
      kind: 'dead-layer',
      step: 1,
      layer: 'dense_0',
      tensors: ['dense_0/kernel'],
      message: 'dense_0 is dead',
      evidence: {},
      remedies: [],
    };
    await send(page, { ...appendMessage(snapshot, 39, 1), findings: [grown, more, dead] });
    const state = (h) => h.evaluate((b) => ({ connected: b.isConnected, item: b.closest('li').dataset.findingId }));
    assert.deepEqual(await state(he), { connected: true, item: 'exploding-gradient:dense_1' }, 'the same button, still in the list');
    assert.equal((await state(clip)).connected, false, 'a finding whose remedies changed has new buttons');
    const ids = await page.$$eval('#gs-findings > li', (l) => l.map((x) => x.dataset.findingId));
    assert.deepEqual(ids, ['dead-layer:dense_0', 'exploding-gradient:dense_1', 'non-finite-gradient:output'], 'sorted by severity, then step');
    const text = await page.$eval('[data-finding-id="exploding-gradient:dense_1"]', (e) => e.textContent);
    assert.match(text, /normAtEnd\s*7\.70e\+9/, `the evidence shows the new value (${text})`);
    assert.equal(await page.$$eval(sel('non-finite-gradient:output', 'lower-lr'), (b) => b.length), 1);
    await he.click();
    assert.deepEqual((await posts(page)).slice(1), [{ type: 'applyRemedy', findingId: 'exploding-gradient:dense_1', remedyId: 'he-init' }]);
    // Back to none: the empty state, once.
    await send(page, { ...appendMessage(snapshot, 40, 1), findings: [] });
    assert.equal(await page.$eval('#gs-findings', (e) => e.textContent.trim()), 'No findings yet.');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('buttons post their messages; findings list, empty states, reload restores the view', async () => {
    const { page, errors } = await panel({}, explodingSnapshot({ ...SMALL, findings: true }));
    await page.click('#gs-stop');
    await page.click('[data-finding-id="exploding-gradient:dense_1"] button[data-remedy="he-init"]');
    await page.click('[data-finding-id="exploding-gradient:dense_1"] >> text=Go to layer');
    await page.selectOption('#gs-compare', '/work/.gradscope/runs/healthy.gsrun');
    await page.click('#gs-export');
    const p = (await posts(page)).slice(1);
    assert.deepEqual(p, [
      { type: 'stop' },
      { type: 'applyRemedy', findingId: 'exploding-gradient:dense_1', remedyId: 'he-init' },
      { type: 'goToLayer', findingId: 'exploding-gradient:dense_1' },
      { type: 'compareRun', runFile: '/work/.gradscope/runs/healthy.gsrun' },
      { type: 'exportReport' },
    ]);
    assert.match(await page.$eval('#gs-findings', (e) => e.textContent), /growthPerStep\s*1\.78/);
    // "Show in heatmap" selects the layer (kernel) and remembers it.
    await page.click('[data-finding-id="exploding-gradient:dense_1"] >> text=Show in heatmap');
    const state = await page.evaluate(() => window.__state);
    assert.equal(state.selectedLayer, 'dense_1');
    assert.equal(state.tensorId, 0);
    await page.close();
    // Reload with that state: the selection comes back and the detail is asked for again.
    const again = await panel({ state }, explodingSnapshot({ ...SMALL, findings: false }));
    assert.deepEqual((await posts(again.page)).slice(1), [{ type: 'selectTensor', tensorId: 0, step: state.step }]);
    assert.equal(await again.page.$eval('#gs-tensor', (s) => s.value), '0');
    assert.equal(await again.page.$eval('#gs-findings', (e) => e.textContent.trim()), 'No findings yet.');
    await again.page.close();
    const done = await panel({}, explodingSnapshot({ ...SMALL, findings: false, status: 'completed' }));
    assert.equal(await done.page.$eval('#gs-findings', (e) => e.textContent.trim()), 'No problems found.');
    assert.equal(await done.page.$eval('#gs-stop', (b) => b.disabled), true);
    await done.page.close();
    assert.deepEqual(errors, []);
  });

  test('a 200-layer heatmap with more steps than pixels keeps NaN columns visible', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    await openPanel(page);
    const snap = explodingSnapshot({ steps: 5000, layers: 200, explodeAt: 4000, infAt: 4990, nanAt: 4990, findings: false });
    // A single NaN step deep in the healthy part of layer 0.
    snap.heatmap.values[1234] = 'NaN';
    await send(page, { type: 'snapshot', snapshot: snap });
    const bucket = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.bucket));
    assert.ok(bucket > 1, `columns are bucketed (${bucket})`);
    const a = await area(page, '#gs-heatmap canvas');
    const xmax = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax));
    const x = a.left + ((1234 + bucket / 2) / xmax) * (a.right - a.left);
    const rowH = (a.bottom - a.top) / 200;
    assert.ok(near(await pixel(page, '#gs-heatmap canvas', x, a.top + rowH / 2), NAN), 'a lone NaN wins its pixel column');
    await page.close();
  });

  test('a 70,000-step run is drawn as the host sent it (no folding of its own), and single NaN / Inf steps still show', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await openPanel(page);
    const N = 70_000;
    const steps = Array.from({ length: N }, (_, i) => i);
    const values = [...steps.map((s) => (s === 12_345 ? 'NaN' : -2 + Math.sin(s / 900))), ...steps.map((s) => (s === 40_000 ? 'Inf' : -1))];
    const snap = explodingSnapshot({ steps: 20, layers: 2, findings: false });
    snap.heatmap = { metric: 'norm', layers: snap.layers, steps, values };
    await send(page, { type: 'snapshot', snapshot: snap });
    // The host owns resolution: every column it sent is kept, then bucketed by 64 or more to draw.
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), String(N));
    assert.ok(Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.bucket)) >= 64);
    const a = await area(page, '#gs-heatmap canvas');
    const xmax = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax));
    const hits = (row, rgb) =>
      page.$eval(
        '#gs-heatmap canvas',
        (c, [y, x0, x1, col]) => {
          const d = c.getContext('2d').getImageData(Math.ceil(x0), Math.floor(y), Math.floor(x1 - x0), 1).data;
          const xs = [];
          for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - col[0]) < 8 && Math.abs(d[i + 1] - col[1]) < 8 && Math.abs(d[i + 2] - col[2]) < 8) xs.push(Math.ceil(x0) + i / 4);
          return xs;
        },
        [a.top + ((row + 0.5) / 2) * (a.bottom - a.top), a.left, a.right, rgb],
      );
    const expect = (step) => a.left + (step / xmax) * (a.right - a.left);
    const nan = await hits(0, NAN);
    assert.ok(nan.length >= 1 && nan.every((x) => Math.abs(x - expect(12_345)) <= 3), `NaN pixels ${nan} near ${expect(12_345)}`);
    const inf = await hits(1, INF_DARK);
    assert.ok(inf.length >= 1 && inf.every((x) => Math.abs(x - expect(40_000)) <= 3), `Inf pixels ${inf} near ${expect(40_000)}`);
    // Hovering the NaN pixel names the step where the NaN is.
    const box = await page.$eval('#gs-heatmap canvas', (c) => c.getBoundingClientRect().toJSON());
    // (The bucket is about one pixel wide: the pointer may land one pixel off the drawn column.)
    const tips = [];
    for (const dx of [0.5, -0.5, 1.5]) {
      await page.mouse.move(box.x + nan[0] + dx, box.y + a.top + (a.bottom - a.top) / 4);
      tips.push(await page.$eval('#gs-heatmap .gs-tooltip', (t) => t.textContent));
    }
    assert.ok(
      tips.some((t) => /max at 1234[45]\) · log10 ‖g‖ = NaN/.test(t)),
      tips.join(' | '),
    );
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('a live run, from its first message', () => {
  test('the snapshot of a run with no step yet (header.step −1) replaces the previous run, then appends build on it', async () => {
    const { page, errors } = await panel();
    const empty = explodingSnapshot({ steps: 0, layers: 0, findings: false });
    empty.header = { ...empty.header, runId: 'second-run', step: -1, status: 'starting' };
    await send(page, { type: 'snapshot', snapshot: empty });
    const points = () => page.$eval('#gs-norms canvas', (c) => JSON.parse(c.dataset.series).find((s) => s.label === 'global norm')?.points ?? 0);
    await page.waitForFunction(() => JSON.parse(document.querySelector('#gs-norms canvas').dataset.series).find((s) => s.label === 'global norm')?.points === 0);
    assert.equal(await points(), 0, 'the previous run’s 40 points are gone');
    assert.deepEqual(errors, []);
    await page.close();
  });
});
