// Headless Debian chromium via playwright-core, and pages that load the built webview bundle.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export function launch(extraArgs = []) {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: [...CHROMIUM_ARGS, ...extraArgs] });
}

export function bundle() {
  return { js: readFileSync(join(ROOT, 'dist/webview/main.js'), 'utf8'), css: readFileSync(join(ROOT, 'dist/webview/main.css'), 'utf8') };
}

/** VS Code Dark+ / Light+ variables, as the webview host sets them on <html>. */
export const THEMES = {
  dark: {
    cls: 'vscode-dark',
    vars: {
      '--vscode-font-family': 'system-ui, sans-serif',
      '--vscode-font-size': '13px',
      '--vscode-foreground': '#cccccc',
      '--vscode-editor-foreground': '#cccccc',
      '--vscode-editor-background': '#1f1f1f',
      '--vscode-descriptionForeground': '#9d9d9d',
      '--vscode-panel-border': '#2b2b2b',
      '--vscode-focusBorder': '#0078d4',
      '--vscode-button-background': '#0078d4',
      '--vscode-button-foreground': '#ffffff',
      '--vscode-button-hoverBackground': '#026ec1',
      '--vscode-button-secondaryBackground': '#313131',
      '--vscode-button-secondaryForeground': '#cccccc',
      '--vscode-dropdown-background': '#313131',
      '--vscode-dropdown-foreground': '#cccccc',
      '--vscode-dropdown-border': '#3c3c3c',
      '--vscode-charts-foreground': '#cccccc',
      '--vscode-charts-lines': 'rgba(204, 204, 204, 0.5)',
      '--vscode-charts-red': '#f14c4c',
      '--vscode-charts-blue': '#3794ff',
      '--vscode-charts-yellow': '#cca700',
      '--vscode-charts-orange': '#d18616',
      '--vscode-charts-green': '#89d185',
      '--vscode-charts-purple': '#b180d7',
      '--vscode-errorForeground': '#f85149',
      '--vscode-editorWarning-foreground': '#cca700',
      '--vscode-editorInfo-foreground': '#3794ff',
      '--vscode-textBlockQuote-background': '#2b2b2b',
    },
  },
  light: {
    cls: 'vscode-light',
    vars: {
      '--vscode-font-family': 'system-ui, sans-serif',
      '--vscode-font-size': '13px',
      '--vscode-foreground': '#3b3b3b',
      '--vscode-editor-foreground': '#3b3b3b',
      '--vscode-editor-background': '#ffffff',
      '--vscode-descriptionForeground': '#717171',
      '--vscode-panel-border': '#e5e5e5',
      '--vscode-focusBorder': '#005fb8',
      '--vscode-button-background': '#005fb8',
      '--vscode-button-foreground': '#ffffff',
      '--vscode-button-hoverBackground': '#0258a8',
      '--vscode-button-secondaryBackground': '#e5e5e5',
      '--vscode-button-secondaryForeground': '#3b3b3b',
      '--vscode-dropdown-background': '#ffffff',
      '--vscode-dropdown-foreground': '#3b3b3b',
      '--vscode-dropdown-border': '#cecece',
      '--vscode-charts-foreground': '#616161',
      '--vscode-charts-lines': 'rgba(97, 97, 97, 0.5)',
      '--vscode-charts-red': '#e51400',
      '--vscode-charts-blue': '#1a85ff',
      '--vscode-charts-yellow': '#bf8803',
      '--vscode-charts-orange': '#d18616',
      '--vscode-charts-green': '#388a34',
      '--vscode-charts-purple': '#652d90',
      '--vscode-errorForeground': '#e51400',
      '--vscode-editorWarning-foreground': '#bf8803',
      '--vscode-editorInfo-foreground': '#1a85ff',
      '--vscode-textBlockQuote-background': '#f2f2f2',
    },
  },
};

/**
 * Opens the panel as the VS Code webview would show it: theme variables on <html>, a stubbed
 * acquireVsCodeApi that records posts in window.__posts, the bundle inlined (dist/webview's, or
 * `code` = { js, css } built elsewhere, e.g. by the bench from an older commit). Nothing is sent yet.
 */
export async function openPanel(page, { theme = 'dark', state = null, code = null } = {}) {
  const { js, css } = code ?? bundle();
  const t = THEMES[theme];
  const style = Object.entries(t.vars)
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ');
  const stub = `window.__posts = []; window.__state = ${JSON.stringify(state)};
    window.acquireVsCodeApi = () => ({ postMessage: (m) => window.__posts.push(m), getState: () => window.__state, setState: (s) => { window.__state = s; } });`;
  await page.setContent(`<!DOCTYPE html><html style="${style}"><head><meta charset="utf-8"><style>${css}</style></head>
    <body class="${t.cls}" data-vscode-theme-kind="${t.cls}"><div id="gradscope"></div><script>${stub}</script><script>${js.replace(/<\/script/g, '<\\/script')}</script></body></html>`);
}

/** Sends a host message and waits for the panel to have rendered it (body[data-gs-renders] bumps). */
export async function send(page, message) {
  const before = await page.evaluate(() => Number(document.body.dataset.gsRenders ?? 0));
  // A JSON string crosses to the page far faster than a large structured argument.
  await page.evaluate((json) => window.postMessage(JSON.parse(json), '*'), JSON.stringify(message));
  if (message.type === 'snapshot' || message.type === 'append' || message.type === 'replace') {
    await page.waitForFunction((b) => Number(document.body.dataset.gsRenders ?? 0) > b, before);
  }
}

export const posts = (page) => page.evaluate(() => window.__posts);

/** Colour of the canvas pixel at CSS pixel (x, y) of the canvas. */
export function pixel(page, selector, x, y) {
  return page.evaluate(
    ([sel, px, py]) => {
      const c = document.querySelector(sel);
      const s = c.width / c.clientWidth;
      return Array.from(c.getContext('2d').getImageData(Math.floor(px * s), Math.floor(py * s), 1, 1).data);
    },
    [selector, x, y],
  );
}

/** Parses data-area="left,top,right,bottom" of a chart canvas. */
export async function area(page, selector) {
  const a = await page.$eval(selector, (c) => c.dataset.area);
  const [left, top, right, bottom] = a.split(',').map(Number);
  return { left, top, right, bottom };
}
