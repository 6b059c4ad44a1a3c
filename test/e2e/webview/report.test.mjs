// The exported HTML report: one self-contained file that draws the panel offline (file://, network
// refused) from its embedded snapshot, with the host-only controls hidden and data never executed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { build } from 'esbuild';
import { ROOT, bundle, launch } from './browser.mjs';
import { explodingDetail, explodingSnapshot } from './fixtures.mjs';

let browser;
let dir;
let buildReportHtml;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gradscope-report-'));
  // src/core/view/report.ts is node code compiled into the extension and the CLI; compile it alone here.
  const out = join(dir, 'report.mjs');
  await build({ entryPoints: [join(ROOT, 'src/core/view/report.ts')], bundle: true, platform: 'node', format: 'esm', outfile: out, logLevel: 'warning' });
  ({ buildReportHtml } = await import(pathToFileURL(out).href));
  browser = await launch();
});
after(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the report renders offline from file:// with the same charts, and embedded data stays data', async () => {
  const snapshot = explodingSnapshot({ steps: 40, layers: 6, explodeAt: 20, infAt: 30, nanAt: 33 });
  snapshot.header.script = 'evil</script><script>window.__pwned=1</script>.js';
  snapshot.findings[0].message = '<img src=x onerror="window.__pwned=2"> \u2028 grew';
  const html = buildReportHtml(snapshot, bundle(), [explodingDetail(0, 40)]);
  assert.equal((html.match(/<\/script>/g) ?? []).length, 2, 'only the two real closing tags');
  assert.doesNotMatch(html, /sourceMappingURL/);
  const file = join(dir, 'report.html');
  writeFileSync(file, html);

  const context = await browser.newContext({ offline: true, viewport: { width: 1000, height: 1400 } });
  const requests = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (!url.startsWith('file:')) requests.push(url);
    return url.startsWith('file:') ? route.continue() : route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(pathToFileURL(file).href);
  await page.waitForFunction(() => Number(document.body.dataset.gsRenders ?? 0) > 0);

  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.$eval('#gs-script', (e) => e.textContent), snapshot.header.script);
  assert.match(await page.$eval('#gs-findings', (e) => e.textContent), /<img src=x/);
  // Host-only controls hidden; the charts drawn.
  for (const sel of ['#gs-stop', '#gs-rerun', '#gs-export', 'button[data-remedy]']) {
    assert.equal(await page.$eval(sel, (e) => getComputedStyle(e).display), 'none', `${sel} hidden`);
  }
  assert.equal(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.columns), '40');
  const [l, t, r, b] = (await page.$eval('#gs-heatmap canvas', (c) => c.dataset.area)).split(',').map(Number);
  const px = await page.$eval('#gs-heatmap canvas', (c, [x, y]) => Array.from(c.getContext('2d').getImageData(Math.floor(x), Math.floor(y), 1, 1).data), [
    l + (35.5 / 40) * (r - l),
    t + (0.5 / 6) * (b - t),
  ]);
  assert.deepEqual(px, [255, 0, 255, 255], 'NaN cell in the NaN colour');
  // Selecting a layer uses the embedded details (no host to ask).
  const [cx, cy] = [l + (10.5 / 40) * (r - l), t + (0.5 / 6) * (b - t)];
  const box = await page.$eval('#gs-heatmap canvas', (c) => c.getBoundingClientRect().toJSON());
  await page.mouse.click(box.x + cx, box.y + cy);
  await page.waitForSelector('#gs-hist canvas');
  await page.waitForSelector('#gs-thumb canvas');
  assert.deepEqual(requests, [], 'no network request');
  assert.deepEqual(errors, []);
  await context.close();
});
