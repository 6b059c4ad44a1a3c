// Runs with several optimizers (a GAN's opt_d / opt_g): the norm chart draws one global-norm line
// (and loss line) per optimizer, each over its own steps, instead of one line that zigzags between
// them; the optimizer picker narrows every chart, in the live panel and in the HTML report.
// Needs `npm run build` first. Run: node --test test/e2e/webview/optimizers.test.mjs
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import { ROOT, bundle, launch, openPanel, posts, send } from './browser.mjs';
import { explodingSnapshot, wireCurve } from './fixtures.mjs';

const STEPS = 20;
const OPTIMIZERS = [
  { id: 0, name: 'opt_d', className: 'Adam', mode: 'optimizer', steps: STEPS / 2 },
  { id: 1, name: 'opt_g', className: 'Adam', mode: 'optimizer', steps: STEPS / 2 },
];
const dSteps = Array.from({ length: STEPS / 2 }, (_, i) => 2 * i);
const gSteps = dSteps.map((s) => s + 1);
const dNorm = (s) => 1.7 * (1 - s / 100);
const gNorm = (s) => 0.25 * (1 + s / 100);
const stepsOf = (opt) => (opt === null ? [...Array(STEPS).keys()] : opt === 0 ? dSteps : gSteps);

/** What the host sends for a GAN-like run: all steps (`optimizer` null) or one optimizer's. */
function ganSnapshot(optimizer = null) {
  const s = explodingSnapshot({ steps: STEPS, layers: 4, explodeAt: 1000, infAt: 1000, nanAt: 1000, findings: false });
  const all = stepsOf(null);
  const norm = (st) => (st % 2 === 0 ? dNorm(st) : gNorm(st));
  const loss = (st) => (st % 2 === 0 ? 1.6 : 0.7);
  const shown = stepsOf(optimizer);
  const keep = new Set(shown);
  const n = s.heatmap.steps.length;
  const values = [];
  for (let r = 0; r < s.heatmap.layers.length; r++) for (let c = 0; c < n; c++) if (keep.has(s.heatmap.steps[c])) values.push(s.heatmap.values[r * n + c]);
  return {
    ...s,
    optimizers: OPTIMIZERS,
    optimizer,
    globalNorm: wireCurve(shown, shown.map(norm)),
    loss: wireCurve(shown, shown.map(loss)),
    byOptimizer:
      optimizer !== null
        ? []
        : [
            { id: 0, name: 'opt_d', globalNorm: wireCurve(dSteps, dSteps.map(dNorm)), loss: wireCurve(dSteps, dSteps.map(loss)) },
            { id: 1, name: 'opt_g', globalNorm: wireCurve(gSteps, gSteps.map(gNorm)), loss: wireCurve(gSteps, gSteps.map(loss)) },
          ],
    layerNorms: Object.fromEntries(
      Object.entries(s.layerNorms).map(([k, c]) => [
        k,
        wireCurve(
          shown,
          shown.map((st) => c.values[all.indexOf(st)]),
        ),
      ]),
    ),
    heatmap: { ...s.heatmap, steps: shown, values },
  };
}

const legend = async (page) => JSON.parse(await page.$eval('#gs-norms canvas', (c) => c.dataset.series)).map((x) => [x.label, x.points]);

let browser;
let dir;
let buildReportHtml;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gradscope-optimizers-'));
  const out = join(dir, 'report.mjs');
  await build({ entryPoints: [join(ROOT, 'src/core/view/report.ts')], bundle: true, platform: 'node', format: 'esm', outfile: out, logLevel: 'warning' });
  ({ buildReportHtml } = await import(pathToFileURL(out).href));
  browser = await launch();
});
after(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('several optimizers in the norm chart', () => {
  test('one global-norm and one loss line per optimizer, each over its own steps; appends extend them', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1200 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await openPanel(page, { theme: 'dark' });
    await send(page, { type: 'snapshot', snapshot: ganSnapshot() });
    assert.deepEqual(await legend(page), [
      ['‖g‖ opt_d', 10],
      ['‖g‖ opt_g', 10],
      ['loss opt_d', 10],
      ['loss opt_g', 10],
    ]);
    const colors = JSON.parse(await page.$eval('#gs-norms canvas', (c) => c.dataset.series)).map((x) => x.color);
    assert.equal(colors[0], colors[2], 'an optimizer’s loss has its norm line’s colour');
    assert.notEqual(colors[0], colors[1], 'the optimizers’ lines differ in colour');
    // A live append: new points go to each optimizer's own line.
    const s = ganSnapshot();
    await send(page, {
      type: 'append',
      header: { ...s.header, step: 21 },
      globalNorm: wireCurve([20, 21], [1, 0.3]),
      loss: wireCurve([20, 21], [1.5, 0.7]),
      byOptimizer: [
        { id: 0, name: 'opt_d', globalNorm: wireCurve([20], [1]), loss: wireCurve([20], [1.5]) },
        { id: 1, name: 'opt_g', globalNorm: wireCurve([21], [0.3]), loss: wireCurve([21], [0.7]) },
      ],
      layerNorms: {},
      heatmap: { metric: 'norm', layers: [], steps: [], values: [] },
      tensors: [],
      layers: [],
      findings: null,
      optimizers: OPTIMIZERS,
    });
    await page.waitForFunction(() => JSON.parse(document.querySelector('#gs-norms canvas').dataset.series)[0].points === 11);
    assert.deepEqual(await legend(page), [
      ['‖g‖ opt_d', 11],
      ['‖g‖ opt_g', 11],
      ['loss opt_d', 11],
      ['loss opt_g', 11],
    ]);
    // The host answers the picker with one optimizer's steps: one line, named after it.
    await page.selectOption('#gs-optimizer', '1');
    assert.deepEqual((await posts(page)).at(-1), { type: 'setOptimizer', optimizer: 1 });
    await send(page, { type: 'snapshot', snapshot: ganSnapshot(1) });
    assert.deepEqual(await legend(page), [
      ['‖g‖ opt_g', 10],
      ['loss opt_g', 10],
    ]);
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '10');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('one optimizer: one "global norm" line and one "loss" line, as before', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1200 } });
    await openPanel(page, { theme: 'light' });
    const s = explodingSnapshot({ steps: STEPS, layers: 4, explodeAt: 1000, infAt: 1000, nanAt: 1000, findings: false });
    await send(page, { type: 'snapshot', snapshot: { ...s, optimizers: OPTIMIZERS.slice(0, 1), optimizer: null, byOptimizer: [] } });
    assert.deepEqual(await legend(page), [
      ['global norm', STEPS],
      ['loss', STEPS],
    ]);
    assert.equal(await page.$eval('#gs-optimizer-label', (l) => l.hidden), true);
    await page.close();
  });

  test('a rank holding shards (FSDP2): its line is the norm of its shards, not called the global norm', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1200 } });
    await openPanel(page, { theme: 'dark' });
    const s = explodingSnapshot({ steps: STEPS, layers: 4, explodeAt: 1000, infAt: 1000, nanAt: 1000, findings: false });
    const sharded = { code: 'sharded', level: 'info', message: 'rank 1 holds shards of 4 tensors (FSDP2 / DTensor)', count: 4 };
    const header = { ...s.header, warnings: [...(s.header.warnings ?? []), sharded] };
    await send(page, { type: 'snapshot', snapshot: { ...s, header, optimizers: OPTIMIZERS.slice(0, 1), optimizer: null, byOptimizer: [] } });
    assert.deepEqual(await legend(page), [
      ['norm of this rank’s shards', STEPS],
      ['loss', STEPS],
    ]);
    await page.close();
  });

  test('the HTML report has the picker too: it switches to each optimizer’s embedded view offline', async () => {
    const html = buildReportHtml(
      { ...ganSnapshot(), header: { ...ganSnapshot().header, status: 'completed' } },
      bundle(),
      [],
      [ganSnapshot(0), ganSnapshot(1)].map(({ optimizer, globalNorm, loss, byOptimizer, layerNorms, heatmap }) => ({ optimizer, globalNorm, loss, byOptimizer, layerNorms, heatmap })),
    );
    const file = join(dir, 'gan.html');
    writeFileSync(file, html);
    const context = await browser.newContext({ offline: true, viewport: { width: 1000, height: 1200 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(pathToFileURL(file).href);
    await page.waitForFunction(() => Number(document.body.dataset.gsRenders ?? 0) > 0);
    assert.deepEqual(await legend(page), [
      ['‖g‖ opt_d', 10],
      ['‖g‖ opt_g', 10],
      ['loss opt_d', 10],
      ['loss opt_g', 10],
    ]);
    assert.equal(await page.$eval('#gs-optimizer-label', (l) => !l.hidden && getComputedStyle(l).display !== 'none'), true, 'the picker shows in the report');
    const options = await page.$$eval('#gs-optimizer option', (o) => o.map((x) => x.value));
    assert.deepEqual(options, ['', '0', '1']);
    const renders = await page.evaluate(() => Number(document.body.dataset.gsRenders));
    await page.selectOption('#gs-optimizer', '0');
    await page.waitForFunction((b) => Number(document.body.dataset.gsRenders) > b, renders);
    assert.deepEqual(await legend(page), [
      ['‖g‖ opt_d', 10],
      ['loss opt_d', 10],
    ]);
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '10', 'the heatmap shows opt_d’s steps only');
    await page.selectOption('#gs-optimizer', '');
    await page.waitForFunction(() => JSON.parse(document.querySelector('#gs-norms canvas').dataset.series).length === 4);
    assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), String(STEPS));
    assert.deepEqual(errors, []);
    await context.close();
  });
});
