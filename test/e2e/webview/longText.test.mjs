// Long names and messages, and names with bidirectional controls, in the panel and the HTML report.
// A string over 4,096 characters (a 100-block model's dead-units message) used to make the webview
// refuse the whole snapshot: a blank panel, a blank report. Needs `npm run build` first.
// GRADSCOPE_SCREENSHOT_DIR=dir writes long-text-panel.png and long-text-report.png there.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { build } from 'esbuild';
import { ROOT, area, bundle, launch, openPanel, send } from './browser.mjs';
import { explodingSnapshot } from './fixtures.mjs';

const RLO = '\u202E';
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;
const EVIL = `dense_2_evil${RLO}gnp.exe`;
const LONG = `dense_3_${'very_long_module_name_'.repeat(227)}end`; // 5,000+ characters
const MESSAGE = `Dead units in dense_1: its gradient has been exactly zero from the first step; ${Array.from({ length: 120 }, (_, i) => `model.transformer.blocks.${i}.feed_forward.w1`).join(', ')} below it get no gradient either.`;
const shots = process.env.GRADSCOPE_SCREENSHOT_DIR;

let browser;
let dir;
let buildReportHtml;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gradscope-longtext-'));
  const out = join(dir, 'report.mjs');
  await build({ entryPoints: [join(ROOT, 'src/core/view/report.ts')], bundle: true, platform: 'node', format: 'esm', outfile: out, logLevel: 'warning' });
  ({ buildReportHtml } = await import(pathToFileURL(out).href));
  browser = await launch();
  if (shots) mkdirSync(shots, { recursive: true });
});
after(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The exploding fixture with dense_2 renamed to a bidi name, dense_3 to a 5,000-character one, and a 5,000-character finding. */
function snapshot() {
  const json = JSON.stringify(explodingSnapshot({ steps: 40, layers: 6, explodeAt: 20, infAt: 30, nanAt: 33, status: 'completed' }))
    .replaceAll('dense_2', EVIL)
    .replaceAll('dense_3', LONG);
  const s = JSON.parse(json);
  s.header.script = `examples/${EVIL}.js`;
  s.findings[0].message = MESSAGE;
  s.findings[0].evidence.layersBelowDead = MESSAGE;
  s.findings[1].layer = EVIL;
  s.findings[1].message = `First non-finite gradient (Inf) in ${EVIL}/kernel`;
  return s;
}

/** What a person sees: the finding's text and title, the layer list, the page's whole text. */
async function checkShown(page) {
  assert.ok(MESSAGE.length > 4096 && LONG.length > 4096);
  const msg = await page.$eval('.gs-finding[data-finding-id="exploding-gradient:dense_1"] .gs-finding-msg', (e) => {
    const r = e.getBoundingClientRect();
    return { text: e.textContent, title: e.title, w: r.width, h: r.height, right: r.right, page: document.documentElement.clientWidth };
  });
  assert.ok(msg.w > 0 && msg.h > 0, 'the long finding is visible');
  assert.ok(msg.right <= msg.page, 'and wraps inside the page');
  assert.ok(msg.text.startsWith('Dead units in dense_1: its gradient has been exactly zero'), msg.text.slice(0, 80));
  assert.ok(msg.text.endsWith('…') && msg.text.length <= 600, `shown cut: ${msg.text.length} characters`);
  assert.equal(msg.title, MESSAGE, 'the whole message on hover');

  const labels = await page.$$eval('#gs-layer-list label', (ls) => ls.map((l) => ({ text: l.textContent, title: l.title })));
  const evil = labels.find((l) => l.text.includes('gnp'));
  assert.equal(evil?.text, 'dense_2_evil\\u202Egnp.exe');
  const long = labels.find((l) => l.text.startsWith('dense_3_'));
  assert.ok(long && long.text.length <= 160 && long.title === LONG, 'a long layer name: cut, whole on hover');

  const other = await page.$eval('.gs-finding[data-finding-id="non-finite-gradient:output"]', (e) => e.textContent);
  assert.match(other, /dense_2_evil\\u202Egnp\.exe\/kernel/);
  assert.equal(await page.$eval('#gs-script', (e) => e.textContent), 'examples/dense_2_evil\\u202Egnp.exe.js');
  const text = await page.evaluate(() => document.body.innerText);
  assert.doesNotMatch(text, BIDI, 'no bidi control anywhere on screen');
}

test('the panel shows a 5,000-character finding and names, cut with the whole text on hover, bidi controls neutralised', async () => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => (m.type() === 'error' || m.type() === 'warning') && errors.push(m.text()));
  await openPanel(page);
  const s = snapshot();
  await send(page, { type: 'snapshot', snapshot: s });
  await checkShown(page);
  // The heatmap's tooltip over the bidi layer's row (the second of six).
  const a = await area(page, '#gs-heatmap canvas');
  const box = await page.$eval('#gs-heatmap canvas', (c) => c.getBoundingClientRect().toJSON());
  await page.mouse.move(box.x + (a.left + a.right) / 2, box.y + a.top + (1.5 / 6) * (a.bottom - a.top));
  await page.waitForSelector('.gs-tooltip:not([hidden])');
  assert.match(await page.$eval('.gs-tooltip', (e) => e.textContent), /^dense_2_evil\\u202Egnp\.exe · step/);
  // Selecting the bidi layer: its tensors in the picker, neutralised; the empty-state text too.
  await send(page, { type: 'select', layer: EVIL, step: 25 });
  await page.waitForFunction(() => document.querySelectorAll('#gs-tensor option').length > 0);
  const options = await page.$$eval('#gs-tensor option', (os) => os.map((o) => o.textContent));
  assert.deepEqual(options, ['dense_2_evil\\u202Egnp.exe/kernel [256×256]', 'dense_2_evil\\u202Egnp.exe/bias [256]']);
  assert.doesNotMatch(await page.$eval('#gs-tensor-empty', (e) => e.textContent), BIDI);
  // "Show in heatmap" of a finding on the bidi layer selects that layer (the real name, not the shown one).
  await send(page, { type: 'select', layer: 'output', step: 25 });
  await page.waitForFunction(() => !document.querySelector('#gs-tensor option')?.textContent?.includes('gnp'));
  await page.click('.gs-finding[data-finding-id="non-finite-gradient:output"] button:has-text("Show in heatmap")');
  await page.waitForFunction(() => document.querySelector('#gs-tensor option')?.textContent?.includes('gnp'));
  if (shots) await page.screenshot({ path: join(shots, 'long-text-panel.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('the report with the same data renders (it was blank), the same text shown', async () => {
  const html = buildReportHtml(snapshot(), bundle());
  assert.doesNotMatch(html, BIDI, 'no bidi control in the file itself');
  const file = join(dir, 'report.html');
  writeFileSync(file, html);
  const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => (m.type() === 'error' || m.type() === 'warning') && errors.push(m.text()));
  await page.goto(pathToFileURL(file).href);
  await page.waitForFunction(() => Number(document.body.dataset.gsRenders ?? 0) > 0 || document.body.dataset.gsError);
  assert.equal(await page.evaluate(() => document.body.dataset.gsError), undefined);
  await checkShown(page);
  assert.equal(await page.title(), 'GradScope report · examples/dense_2_evil\\u202Egnp.exe.js');
  if (shots) await page.screenshot({ path: join(shots, 'long-text-report.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
