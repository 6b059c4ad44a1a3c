// Renders the panel with a synthetic exploding run in VS Code's Dark+ and Light+ themes:
// screenshots/panel-dark.png, screenshots/panel-light.png; and a real 2-rank DDP run with its rank
// picker open and the cross-rank view: screenshots/panel-ranks-dark.png, panel-ranks-light.png.
// Run: node test/e2e/webview/screenshots.mjs
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, launch, openPanel, send } from './browser.mjs';
import { explodingDetail, explodingSnapshot } from './fixtures.mjs';
import { DIVERGE_RUN, loadRankHost } from './rankHost.mjs';

const out = join(ROOT, 'screenshots');
mkdirSync(out, { recursive: true });
const browser = await launch();
const rankHost = await loadRankHost();
try {
  for (const theme of ['dark', 'light']) {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1500 } });
    page.on('console', (m) => m.type() === 'error' && console.error(`[${theme}]`, m.text()));
    page.on('pageerror', (e) => console.error(`[${theme}]`, e));
    await openPanel(page, { theme, state: { metric: 'norm', layers: ['dense_4'], selectedLayer: null, tensorId: null, step: null } });
    const snapshot = explodingSnapshot({ clipNorm: 5 });
    await send(page, { type: 'snapshot', snapshot });
    // Click the heatmap cell of dense_2 at step 70, as a user would.
    const box = await page.$eval('#gs-heatmap canvas', (c) => {
      const r = c.getBoundingClientRect();
      return { x: r.x, y: r.y, area: c.dataset.area.split(',').map(Number) };
    });
    const [l, t, r, b] = box.area;
    await page.mouse.click(box.x + l + (70.5 / 120) * (r - l), box.y + t + (1.5 / 8) * (b - t));
    await send(page, { type: 'tensorDetail', detail: explodingDetail(2) });
    await page.mouse.move(box.x + l + (100.5 / 120) * (r - l), box.y + t + (6.5 / 8) * (b - t));
    await page.waitForTimeout(50);
    await page.screenshot({ path: join(out, `panel-${theme}.png`), fullPage: true });
    console.log(`wrote screenshots/panel-${theme}.png`);
    await page.close();
  }
  // A distributed run: rank 1 of a real 2-rank DDP run shown, the picker open over the charts.
  const host = await rankHost.rankHost(DIVERGE_RUN);
  for (const theme of ['dark', 'light']) {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.on('console', (m) => m.type() === 'error' && console.error(`[${theme}]`, m.text()));
    page.on('pageerror', (e) => console.error(`[${theme}]`, e));
    await openPanel(page, { theme, state: { metric: 'norm', layers: [], selectedLayer: null, tensorId: null, step: null } });
    const pid = host.procs[1].store.hello.pid;
    await send(page, { type: 'snapshot', snapshot: host.snapshot({ rank: 1, pid }) });
    await page.click('#gs-rank');
    await page.hover('#gs-rank-list [data-rank="0"]');
    await page.waitForTimeout(50);
    await page.screenshot({ path: join(out, `panel-ranks-${theme}.png`) });
    console.log(`wrote screenshots/panel-ranks-${theme}.png`);
    await page.close();
  }
} finally {
  await browser.close();
  rankHost.dispose();
}
