// A distributed run in the panel (issue 17): the rank picker in the header lists every rank, choosing
// one asks the host for it and the charts then show that rank's numbers, and the cross-rank view
// overlays each rank's global norm. The data is a real 2-rank DDP run read back with the host's code
// (./rankHost.mjs); rank 1 multiplies its gradients by 4 from step 12. Needs `npm run build` first.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { area, bundle, launch, openPanel, posts, send } from './browser.mjs';
import { explodingSnapshot } from './fixtures.mjs';
import { DIVERGE_RUN, loadRankHost } from './rankHost.mjs';

let browser;
let mod;
let host;
before(async () => {
  mod = await loadRankHost();
  host = await mod.rankHost(DIVERGE_RUN);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  mod?.dispose();
});

async function panel(snapshot, theme = 'dark') {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await openPanel(page, { theme });
  await send(page, { type: 'snapshot', snapshot });
  return { page, errors };
}

/** The heatmap's tooltip over (row, step): what the panel says the value is. */
async function heatTip(page, row, step) {
  const a = await area(page, '#gs-heatmap canvas');
  const box = await page.$eval('#gs-heatmap canvas', (c) => c.getBoundingClientRect().toJSON());
  const cols = Number(await page.$eval('#gs-heatmap canvas', (c) => c.dataset.xmax));
  const rows = await page.$$eval('#gs-layer-list input', (l) => l.length);
  await page.mouse.move(box.x + a.left + ((step + 0.5) / cols) * (a.right - a.left), box.y + a.top + ((row + 0.5) / rows) * (a.bottom - a.top));
  return page.$eval('#gs-heatmap .gs-tooltip', (t) => (t.hidden ? '' : t.textContent));
}

const series = async (page, sel) => JSON.parse(await page.$eval(`${sel} canvas`, (c) => c.dataset.series));
const log10At = (curve, step) => Math.log10(curve.values[curve.steps.indexOf(step)]).toFixed(2);

describe('rank picker', () => {
  test('lists every rank that joined with its host, pid and steps; rank 0 is shown first', async () => {
    const s0 = host.snapshot();
    const { page, errors } = await panel(s0);
    assert.equal(await page.$eval('#gs-rank-picker', (e) => e.hidden), false);
    assert.equal(await page.textContent('#gs-rank'), 'Rank 0 ▾');
    assert.equal(await page.$eval('#gs-rank-list', (e) => e.hidden), true, 'closed until clicked');
    await page.click('#gs-rank');
    assert.equal(await page.getAttribute('#gs-rank', 'aria-expanded'), 'true');
    const items = await page.$$eval('#gs-rank-list [role="option"]', (l) =>
      l.map((o) => ({ text: o.textContent, selected: o.getAttribute('aria-selected'), disabled: o.getAttribute('aria-disabled') })),
    );
    assert.equal(items.length, 2);
    for (const [i, r] of s0.ranks.list.entries()) {
      assert.equal(items[i].text, `Rank ${r.rank}${r.host} · pid ${r.pid} · ${r.steps} steps`);
      assert.equal(items[i].selected, String(r.rank === 0));
      assert.equal(items[i].disabled, null);
    }
    // Escape closes it; a click elsewhere too.
    await page.keyboard.press('Escape');
    assert.equal(await page.$eval('#gs-rank-list', (e) => e.hidden), true);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('choosing a rank asks the host for it, and the charts then show that rank’s numbers', async () => {
    const s0 = host.snapshot();
    const { page, errors } = await panel(s0);
    const row = s0.heatmap.layers.indexOf('model.2');
    const step = 20;
    const before = await heatTip(page, row, step);
    assert.ok(before.endsWith(`= ${log10At(s0.layerNorms['model.2'], step)}`), before);
    // A tensor of rank 0 is selected and its detail shown.
    await page.mouse.down();
    await page.mouse.up();
    const sel = (await posts(page)).at(-1);
    assert.equal(sel.type, 'selectTensor');
    await send(page, { type: 'tensorDetail', detail: host.detail(null, sel.tensorId, sel.step) });
    await page.click('#gs-rank');
    await page.click('#gs-rank-list [data-rank="1"]');
    const asked = (await posts(page)).at(-1);
    const pid1 = s0.ranks.list[1].pid;
    assert.deepEqual(asked, { type: 'setRank', rank: 1, pid: pid1 });
    assert.equal(await page.$eval('#gs-rank-list', (e) => e.hidden), true, 'the list closes on a choice');
    // The host answers with rank 1's view.
    const s1 = host.snapshot({ rank: asked.rank, pid: asked.pid });
    await send(page, { type: 'snapshot', snapshot: s1 });
    assert.equal(await page.textContent('#gs-rank'), 'Rank 1 ▾');
    const afterTip = await heatTip(page, row, step);
    assert.ok(afterTip.endsWith(`= ${log10At(s1.layerNorms['model.2'], step)}`), afterTip);
    assert.notEqual(afterTip, before, 'rank 1’s gradients differ after step 12');
    // The norm curve is rank 1's too: a snapshot of the same steps replaces its points (it once kept
    // rank 0's, taking them for the same series grown by nothing).
    const drawnLast = async () => (await series(page, '#gs-norms'))[0].last;
    const lastOf = (snap) => snap.globalNorm.values.at(-1);
    assert.equal(s1.globalNorm.steps.at(-1), s0.globalNorm.steps.at(-1), 'the same steps on both ranks');
    assert.notEqual(lastOf(s1), lastOf(s0));
    assert.equal(await drawnLast(), lastOf(s1));
    // The selected tensor's detail was rank 0's: the panel asks for rank 1's.
    const asks = (await posts(page)).slice((await posts(page)).findLastIndex((m) => m.type === 'setRank'));
    assert.deepEqual(asks.at(-1), { type: 'selectTensor', tensorId: sel.tensorId, step: sel.step });
    await page.click('#gs-rank');
    assert.equal(await page.getAttribute('#gs-rank-list [data-rank="1"]', 'aria-selected'), 'true');
    // The keyboard: arrows move, Enter chooses.
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    assert.deepEqual((await posts(page)).at(-1), { type: 'setRank', rank: 0, pid: s0.ranks.list[0].pid });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a rank the job expected that never joined is listed as missing and cannot be chosen', async () => {
    const s = host.snapshot(null, {});
    const withMissing = { ...s, ranks: mod.buildRanks(host.procs, { shown: host.procs[0], expected: 3 }) };
    const { page, errors } = await panel(withMissing);
    await page.click('#gs-rank');
    const missing = '#gs-rank-list [data-rank="2"]';
    assert.equal(await page.textContent(missing), 'Rank 2never joined: not observed');
    assert.equal(await page.getAttribute(missing, 'aria-disabled'), 'true');
    const n = (await posts(page)).length;
    await page.click(missing, { force: true });
    assert.equal((await posts(page)).length, n, 'nothing asked for a rank with no process');
    assert.match(await page.textContent('#gs-ranks-note'), /1 never joined \(not observed\)/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a single-process run shows no picker and no cross-rank view', async () => {
    const { page, errors } = await panel(explodingSnapshot({ steps: 20, layers: 3 }));
    assert.equal(await page.$eval('#gs-rank-picker', (e) => e.hidden), true);
    assert.equal(await page.$eval('#gs-ranks-section', (e) => e.hidden), true);
    assert.equal(await page.$eval('#gs-rank-picker', (e) => getComputedStyle(e).display), 'none');
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('cross-rank view', () => {
  test('overlays one global-norm line per rank, each in its own colour, and live appends extend them', async () => {
    const full = host.snapshot();
    // The webview first holds each rank's curve up to step 20 (a live run), then an append brings the rest.
    const cursors = new Map(full.ranks.globalNorms.map((c) => [`${c.rank}:${c.pid}`, 20]));
    const cut = (c) => ({ ...c, globalNorm: { steps: c.globalNorm.steps.filter((s) => s <= 20), values: c.globalNorm.values.filter((_, i) => c.globalNorm.steps[i] <= 20) } });
    const { page, errors } = await panel({ ...full, ranks: { ...full.ranks, globalNorms: full.ranks.globalNorms.map(cut) } });
    assert.equal(await page.$eval('#gs-ranks-section', (e) => e.hidden), false);
    let lines = (await series(page, '#gs-ranks-chart')).filter((s) => /^rank /.test(s.label));
    assert.deepEqual(
      lines.map((s) => [s.label, s.points]),
      [
        ['rank 0', 21],
        ['rank 1', 21],
      ],
    );
    assert.notEqual(lines[0].color, lines[1].color);
    const more = mod.buildRanks(host.procs, { shown: host.procs[0], expected: 2, since: cursors });
    const empty = { steps: [], values: [] };
    await send(page, {
      type: 'append',
      header: full.header,
      optimizer: null,
      globalNorm: empty,
      loss: empty,
      byOptimizer: [],
      layerNorms: {},
      heatmap: { metric: 'norm', layers: [], steps: [], values: [] },
      tensors: [],
      layers: [],
      findings: null,
      optimizers: [],
      ranks: more,
    });
    await page.waitForFunction(() => JSON.parse(document.querySelector('#gs-ranks-chart canvas').dataset.series).every((s) => !/^rank /.test(s.label) || s.points === 30), null, {
      timeout: 3000,
    });
    lines = (await series(page, '#gs-ranks-chart')).filter((s) => /^rank /.test(s.label));
    assert.deepEqual(
      lines.map((s) => s.points),
      full.ranks.globalNorms.map((c) => c.globalNorm.steps.length),
    );
    // Both lines are drawn: pixels of each colour on the canvas.
    for (const l of lines) {
      const rgb = await page.evaluate((css) => {
        const c = document.createElement('canvas').getContext('2d');
        c.fillStyle = css;
        c.fillRect(0, 0, 1, 1);
        return Array.from(c.getImageData(0, 0, 1, 1).data.slice(0, 3));
      }, l.color);
      const count = await page.$eval(
        '#gs-ranks-chart canvas',
        (c, want) => {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - want[0]) < 10 && Math.abs(d[i + 1] - want[1]) < 10 && Math.abs(d[i + 2] - want[2]) < 10) n++;
          return n;
        },
        rgb,
      );
      assert.ok(count > 30, `${l.label}: ${count} pixels of its colour`);
    }
    // Rank 1 reaches 4× rank 0: the axis spans both ranks' maxima.
    const [, max] = (await page.$eval('#gs-ranks-chart canvas', (c) => c.dataset.yRange)).split(',').map(Number);
    const peak = Math.max(...full.ranks.globalNorms.flatMap((c) => c.globalNorm.values.filter((v) => typeof v === 'number')));
    assert.ok(max >= peak, `axis max ${max} ≥ ${peak}`);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the cross-rank analysis, when the host sends it, is drawn: its findings and its combined line', async () => {
    const s = host.snapshot();
    const finding = { ...explodingSnapshot().findings[0], id: 'desync-1', message: 'rank 1’s gradients differ from rank 0’s after the all-reduce', layer: null, source: null, remedies: [] };
    const combined = { label: 'combined over ranks', globalNorm: s.ranks.globalNorms[0].globalNorm };
    const { page, errors } = await panel({ ...s, ranks: { ...s.ranks, crossRank: { findings: [finding], combined } } });
    assert.equal(await page.$eval('#gs-rank-findings', (e) => e.hidden), false);
    assert.match(await page.textContent('#gs-rank-findings'), /differ from rank 0/);
    const labels = (await series(page, '#gs-ranks-chart')).map((x) => x.label);
    assert.ok(labels.includes('combined over ranks'), labels.join(', '));
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('the HTML report of a distributed run', () => {
  test('shows every rank offline: which one its charts are, the others not switchable, each rank’s norm, the desync found across ranks', async () => {
    const { snapshot, details, views } = host.report({ rank: 1, pid: host.procs[1].store.hello.pid });
    const dir = mkdtempSync(join(tmpdir(), 'gradscope-rankreport-'));
    const file = join(dir, 'report.html');
    writeFileSync(file, mod.buildReportHtml(snapshot, bundle(), details, views));
    const context = await browser.newContext({ offline: true, viewport: { width: 1100, height: 1400 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await page.goto(pathToFileURL(file).href);
    await page.waitForFunction(() => Number(document.body.dataset.gsRenders ?? 0) > 0);
    assert.equal(await page.textContent('#gs-rank'), 'Rank 1 ▾');
    assert.match(await page.textContent('#gs-ranks-note'), /^global norm of each rank · 2 joined · this report's other charts are rank 1's$/);
    await page.click('#gs-rank');
    assert.deepEqual(await page.$$eval('#gs-rank-list [role="option"]', (l) => l.map((o) => [o.dataset.rank, o.getAttribute('aria-selected'), o.getAttribute('aria-disabled')])), [
      ['0', 'false', 'true'],
      ['1', 'true', 'true'],
    ]);
    assert.match(await page.getAttribute('#gs-rank-list [data-rank="0"]', 'title'), /^A report holds one rank's charts: .*--rank R --report/);
    assert.equal(await page.getAttribute('#gs-rank-list [data-rank="1"]', 'title'), null, 'the rank shown needs no word');
    assert.equal(await page.$eval('#gs-rank-findings', (e) => e.hidden), false);
    assert.match(await page.textContent('#gs-rank-findings'), /rank 1/);
    const lines = await series(page, '#gs-ranks-chart');
    assert.deepEqual(
      lines.map((x) => x.label),
      ['rank 0', 'rank 1'],
    );
    assert.deepEqual(errors, []);
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
