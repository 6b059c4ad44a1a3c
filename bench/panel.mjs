// Panel bench in headless chromium: full render of a 200-layer × 100,000-step heatmap, one 20 Hz
// update, the page's memory, and ImageData versus one fillRect per cell (what a matrix chart of one
// element per cell does). Prints figures; asserts nothing. Needs `npm run build` (dist/webview).
//   node bench/panel.mjs            (or import { run } from './bench/panel.mjs')
/* global GS -- the charts bundle's iife global in the page (globalName below) */
import { build } from 'esbuild';
import { pathToFileURL } from 'node:url';
import { launch, openPanel } from '../test/e2e/webview/browser.mjs';
import { appendMessage, explodingSnapshot } from '../test/e2e/webview/fixtures.mjs';

const ROOT = new URL('../', import.meta.url).pathname;

async function chartsBundle() {
  const r = await build({
    stdin: {
      contents: `export { renderHeatmap, drawCellsNaive } from './webview/charts/heatmap';
        export { HeatmapMatrix } from './webview/charts/heatmapMatrix';
        export { readPalette } from './webview/charts/theme';`,
      resolveDir: ROOT,
      loader: 'ts',
    },
    bundle: true,
    format: 'iife',
    globalName: 'GS',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'warning',
  });
  return r.outputFiles[0].text;
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const p95 = (a) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * 0.95))];
const ms = (x) => `${x.toFixed(2)} ms`;
const mb = (x) => `${(x / 2 ** 20).toFixed(1)} MB`;

export async function run({ layers = 200, steps = 100_000, print = console.log } = {}) {
  const browser = await launch(['--enable-precise-memory-info', '--js-flags=--expose-gc']);
  const results = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const js = await chartsBundle();
    await page.setContent(
      `<!DOCTYPE html><html><body style="margin:0"><div id="h" style="width:1000px;height:600px"></div><canvas id="n" width="880" height="540"></canvas><script>${js}</script></body></html>`,
    );
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const heap = async () => {
      await cdp.send('HeapProfiler.collectGarbage');
      const { metrics } = await cdp.send('Performance.getMetrics');
      return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    };
    const base = await heap();

    // Fill the matrix in the page (typed arrays, as the model holds it), in 1,000-step chunks.
    results.ingestMs = await page.evaluate(
      ([L, N]) => {
        const m = new GS.HeatmapMatrix(
          Array.from({ length: L }, (_, i) => `layer_${i}`),
          N,
        );
        const k = 1000;
        const vals = new Float32Array(L * k);
        const st = new Float64Array(k);
        const t0 = performance.now();
        for (let c0 = 0; c0 < N; c0 += k) {
          for (let r = 0; r < L; r++)
            for (let c = 0; c < k; c++) {
              const s = c0 + c;
              vals[r * k + c] = s > N * 0.9 && r > L / 2 ? NaN : -3 + r / L + Math.sin(s / 500) + (s > N * 0.6 ? (s - N * 0.6) / (N * 0.05) : 0);
            }
          for (let c = 0; c < k; c++) st[c] = c0 + c;
          m.append(vals, st);
        }
        window.__m = m;
        return performance.now() - t0;
      },
      [layers, steps],
    );

    // Full render: reduction of every cell to one bucket per pixel column, ImageData, Chart.js axes.
    const full = await page.evaluate(() => {
      const times = [];
      for (let i = 0; i < 7; i++) {
        const el = document.getElementById('h');
        el.replaceChildren();
        const t0 = performance.now();
        const h = GS.renderHeatmap(el, window.__m, { palette: GS.readPalette(), valueLabel: 'log10 ‖g‖' });
        times.push(performance.now() - t0);
        if (i < 6) h.dispose();
        else window.__h = h;
      }
      return { times, bucket: Number(document.querySelector('#h canvas').dataset.bucket), buckets: Number(document.querySelector('#h canvas').dataset.buckets) };
    });
    results.fullRenderMs = median(full.times.slice(1));
    results.fullRenderFirstMs = full.times[0];

    // One 20 Hz update: a couple of new steps appended, then the chart updated (incremental buckets).
    const upd = await page.evaluate(
      ([L]) => {
        const times = [];
        const k = 2;
        const vals = new Float32Array(L * k).fill(-1);
        for (let i = 0; i < 60; i++) {
          const s = window.__m.lastStep + 1;
          const t0 = performance.now();
          window.__m.append(vals, [s, s + 1]);
          window.__h.update(window.__m);
          times.push(performance.now() - t0);
        }
        return times;
      },
      [layers],
    );
    results.updateMs = median(upd);
    results.updateP95Ms = p95(upd);

    const mem = await heap();
    results.jsHeapMB = mem.JSHeapUsedSize / 2 ** 20;
    results.jsHeapDeltaMB = (mem.JSHeapUsedSize - base.JSHeapUsedSize) / 2 ** 20;
    results.matrixMB = await page.evaluate(() => (window.__m.rows * Math.ceil(window.__m.columns / 4096) * 4096 * 4) / 2 ** 20);

    // ImageData vs one fillRect per cell, on the same matrices (the drawing part only: no Chart.js).
    results.compare = [];
    for (const n of [1_000, 10_000, steps]) {
      const r = await page.evaluate(
        ([L, N]) => {
          const m = new GS.HeatmapMatrix(
            Array.from({ length: L }, (_, i) => `l${i}`),
            N,
          );
          const vals = new Float32Array(L * N);
          for (let i = 0; i < vals.length; i++) vals[i] = Math.sin(i / 97);
          m.append(
            vals,
            Float64Array.from({ length: N }, (_, i) => i),
          );
          const el = document.createElement('div');
          el.style.cssText = 'width:1000px;height:600px';
          document.body.append(el);
          let t0 = performance.now();
          const h = GS.renderHeatmap(el, m, { palette: GS.readPalette(), valueLabel: 'v' });
          const imageData = performance.now() - t0;
          h.dispose();
          el.remove();
          const c = document.getElementById('n');
          const ctx = c.getContext('2d');
          ctx.clearRect(0, 0, c.width, c.height);
          t0 = performance.now();
          GS.drawCellsNaive(ctx, m, { left: 0, top: 0, width: c.width, height: c.height }, GS.readPalette(), [-1, 1]);
          ctx.getImageData(0, 0, 1, 1); // flush
          const rects = performance.now() - t0;
          return { imageData, rects };
        },
        [layers, n],
      );
      results.compare.push({ steps: n, cells: layers * n, ...r });
    }

    // The whole panel (bundle, validation, model, all charts) with a host-folded 200 × 4,096 snapshot,
    // then 20 Hz appends through postMessage.
    const p2 = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    await openPanel(p2);
    const snap = explodingSnapshot({ steps: 4096, layers, explodeAt: 3000, infAt: 4000, nanAt: 4050, findings: true });
    const json = JSON.stringify({ type: 'snapshot', snapshot: snap });
    results.panelSnapshotMs = await p2.evaluate((j) => {
      const m = JSON.parse(j);
      const t0 = performance.now();
      window.postMessage(m, '*');
      return new Promise((res) => {
        const check = () => (document.body.dataset.gsRenders === '1' ? res(performance.now() - t0) : setTimeout(check, 0));
        check();
      });
    }, json);
    const appends = [];
    for (let i = 0; i < 20; i++) appends.push(JSON.stringify(appendMessage(snap, 4095 + 2 * i, 2, (li, s) => -1 + Math.sin(s + li))));
    const appendTimes = await p2.evaluate(async (list) => {
      const times = [];
      for (const j of list) {
        const m = JSON.parse(j);
        const before = Number(document.body.dataset.gsRenders);
        const t0 = performance.now();
        window.postMessage(m, '*');
        await new Promise((res) => {
          const check = () => (Number(document.body.dataset.gsRenders) > before ? res() : setTimeout(check, 0));
          check();
        });
        times.push(performance.now() - t0);
      }
      return times;
    }, appends);
    results.panelAppendMs = median(appendTimes);
    const m2 = await (async () => {
      const c2 = await p2.context().newCDPSession(p2);
      await c2.send('Performance.enable');
      await c2.send('HeapProfiler.collectGarbage');
      const { metrics } = await c2.send('Performance.getMetrics');
      return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    })();
    results.panelJsHeapMB = m2.JSHeapUsedSize / 2 ** 20;

    print(`GradScope panel bench (headless chromium, ${layers} layers × ${steps.toLocaleString('en')} steps)`);
    print(`  fill matrix in page (typed blocks)        ${ms(results.ingestMs)}`);
    print(
      `  full heatmap render, first / median of 6  ${ms(results.fullRenderFirstMs)} / ${ms(results.fullRenderMs)}   (target ≤ 50 ms; bucket ${full.bucket} steps → ${full.buckets} px columns; reads the 64-column summary kept on append)`,
    );
    print(`  one 20 Hz update (+2 steps), median / p95  ${ms(results.updateMs)} / ${ms(results.updateP95Ms)}   (target ≤ 4 ms)`);
    print(
      `  JS heap after GC                          ${results.jsHeapMB.toFixed(1)} MB (+${results.jsHeapDeltaMB.toFixed(1)} MB for the run); matrix ArrayBuffers ${results.matrixMB.toFixed(1)} MB   (target ≤ 150 MB)`,
    );
    print('  ImageData bitmap vs one fillRect per cell (drawing only, same matrix):');
    for (const c of results.compare)
      print(
        `    ${String(c.cells.toLocaleString('en')).padStart(12)} cells   ImageData ${ms(c.imageData).padStart(11)}   per-cell rects ${ms(c.rects).padStart(12)}   ×${(c.rects / c.imageData).toFixed(0)}`,
      );
    print(
      `  whole panel: 200 × 4,096 snapshot rendered ${ms(results.panelSnapshotMs)}; one append message (validate + merge + all charts) median ${ms(results.panelAppendMs)}; JS heap ${results.panelJsHeapMB.toFixed(1)} MB`,
    );
    void mb;
    return results;
  } finally {
    await browser.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await run();
