// The inspection panel. Runs inside the VS Code webview (acquireVsCodeApi present: `ready`
// handshake, one snapshot, then batched appends) or standalone in an exported HTML report (the
// snapshot is embedded as JSON in <script type="application/json" id="gradscope-data">, and the
// controls that need the extension are hidden). Everything the host sends is validated first.
import '../media/panel.css';
import { severityRank, type Finding } from '../src/core/analysis/finding';
import { decodeFloat, formatNumber } from '../src/core/protocol/float';
import {
  HEATMAP_METRICS,
  type HeatmapMetric,
  type HostToWebview,
  type PanelSnapshot,
  type PanelTensor,
  type PanelTensorDetail,
  type PanelView,
  type RunStatus,
  type WebviewToHost,
} from '../src/core/view/messages';
import { applyFont } from './charts/chartSetup';
import { renderHeatmap, type HeatmapCell, type HeatmapHandle } from './charts/heatmap';
import { renderHistogramOverTime, type ChartHandle, type HistogramOptions, type HistogramRow } from './charts/histogram';
import { renderNormCurves, type NormCurvesData, type NormCurvesHandle, type Series } from './charts/normCurves';
import { readPalette, type Palette } from './charts/theme';
import { renderThumbnail, type Thumbnail, type ThumbnailOptions } from './charts/thumbnail';
import { parseDetail, parseHostMessage, tryParseView } from './hostMessages';
import { type FindingDisplay, findingDisplay, headerDisplay, optimizerOption, rankButtonText, rankOptionText, rankSeriesLabel, shownName, tensorOption, warningDisplay } from './display';
import { applyAppend, applyReplace, applyView, modelFromSnapshot, type Curve, type PanelModel } from './model';
import type { ShownText } from '../src/core/text';

interface VsCodeApi {
  postMessage(message: WebviewToHost): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare const acquireVsCodeApi: (() => VsCodeApi) | undefined;

interface ViewState {
  /** The run shown, so VS Code's serializer can reopen it after a reload. */
  runId?: string | null;
  metric: HeatmapMetric | null;
  /** Layers whose norm curves are shown. */
  layers: string[];
  selectedLayer: string | null;
  tensorId: number | null;
  step: number | null;
  /** The optimizer whose steps are shown (null or absent: all). */
  optimizer?: number | null;
}

/** Each heatmap metric's radio label and colour-bar title (a metric added to HEATMAP_METRICS must get its own). */
const METRIC_LABELS: Record<HeatmapMetric, { label: string; value: string }> = {
  norm: { label: 'log10 ‖g‖', value: 'log10 ‖g‖' },
  maxAbs: { label: 'max |g|', value: 'log10 max|g|' },
  updateRatio: { label: 'update / weight', value: 'log10 ‖Δw‖/‖w‖' },
  zeroFrac: { label: 'zero fraction', value: 'zero fraction' },
};
const METRICS = HEATMAP_METRICS.map((id) => ({ id, ...METRIC_LABELS[id] }));

const TEMPLATE = `
<header class="gs-header">
  <div class="gs-header-main">
    <h1 class="gs-script" id="gs-script">GradScope</h1>
    <span class="gs-status" id="gs-status" role="status"></span>
    <div class="gs-rank-picker" id="gs-rank-picker" hidden>
      <button type="button" id="gs-rank" class="gs-secondary gs-rank-button" aria-haspopup="listbox" aria-expanded="false" aria-controls="gs-rank-list"></button>
      <ul id="gs-rank-list" class="gs-rank-list" role="listbox" aria-label="The rank every chart shows" hidden></ul>
    </div>
  </div>
  <dl class="gs-facts">
    <div><dt>Backend</dt><dd id="gs-backend">—</dd></div>
    <div><dt>Step</dt><dd id="gs-step">—</dd></div>
    <div><dt>Steps/s</dt><dd id="gs-rate">—</dd></div>
    <div><dt>Dropped frames</dt><dd id="gs-dropped">0</dd></div>
  </dl>
  <div class="gs-actions">
    <button type="button" id="gs-stop" class="gs-host-only">Stop</button>
    <button type="button" id="gs-rerun" class="gs-host-only gs-secondary">Re-run</button>
    <button type="button" id="gs-export" class="gs-host-only gs-secondary">Export report</button>
  </div>
  <div class="gs-runs gs-host-only">
    <label>Run <select id="gs-run"></select></label>
    <label>Compare with <select id="gs-compare"></select></label>
  </div>
</header>
<ul id="gs-warnings" class="gs-warnings" role="status" aria-label="What GradScope could not see" hidden></ul>
<main>
  <section class="gs-section" aria-labelledby="gs-h-norms">
    <div class="gs-section-head">
      <h2 id="gs-h-norms">Gradient norm</h2>
      <label id="gs-optimizer-label" hidden>Steps of <select id="gs-optimizer"></select></label>
    </div>
    <div class="gs-norms-layout">
      <div id="gs-norms" class="gs-chart"></div>
      <fieldset class="gs-layer-picker"><legend>Layer curves</legend><div id="gs-layer-list" class="gs-layer-list"></div></fieldset>
    </div>
  </section>
  <section class="gs-section" aria-labelledby="gs-h-ranks" id="gs-ranks-section" hidden>
    <div class="gs-section-head">
      <h2 id="gs-h-ranks">Across ranks</h2>
      <span class="gs-muted" id="gs-ranks-note"></span>
    </div>
    <div id="gs-ranks-chart" class="gs-chart"></div>
    <ul id="gs-rank-findings" class="gs-findings" hidden></ul>
  </section>
  <section class="gs-section" aria-labelledby="gs-h-heat">
    <div class="gs-section-head">
      <h2 id="gs-h-heat">Layers × steps</h2>
      <div role="radiogroup" aria-label="Heatmap metric" id="gs-metric" class="gs-metric"></div>
    </div>
    <div id="gs-heatmap" class="gs-chart gs-chart-tall"></div>
  </section>
  <section class="gs-section" aria-labelledby="gs-h-tensor" id="gs-tensor-section">
    <div class="gs-section-head">
      <h2 id="gs-h-tensor">Selected tensor</h2>
      <label>Tensor <select id="gs-tensor"></select></label>
    </div>
    <p id="gs-tensor-empty" class="gs-empty">Click a heatmap cell to select a layer and step.</p>
    <div class="gs-tensor-layout">
      <div id="gs-hist" class="gs-chart"></div>
      <div id="gs-thumb" class="gs-chart gs-chart-thumb"></div>
    </div>
    <p id="gs-tensor-stats" class="gs-muted"></p>
  </section>
  <section class="gs-section" aria-labelledby="gs-h-findings">
    <h2 id="gs-h-findings">Findings</h2>
    <ul id="gs-findings" class="gs-findings"></ul>
  </section>
</main>`;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};

const STATUS_TEXT: Record<RunStatus, string> = {
  starting: 'Starting',
  running: 'Running',
  completed: 'Completed',
  crashed: 'Crashed',
  stopped: 'Stopped',
  'step-limit': 'Step limit reached',
  'time-limit': 'Time limit reached',
  'protocol-error': 'Protocol error',
  'probe-lost': 'Probe lost',
  saved: 'Saved run',
};

class Panel {
  private model: PanelModel | null = null;
  private palette: Palette = readPalette();
  private state: ViewState;
  private norms: NormCurvesHandle | null = null;
  /** The cross-rank overlay: each rank's global norm. */
  private rankNorms: NormCurvesHandle | null = null;
  private heat: HeatmapHandle | null = null;
  private hist: ChartHandle<readonly HistogramRow[], HistogramOptions> | null = null;
  private thumb: ChartHandle<Thumbnail, ThumbnailOptions> | null = null;
  private details = new Map<number, PanelTensorDetail>();
  /** The run and the rank the details are of: another one's tensor ids name other tensors. */
  private detailsOf: string | null = null;
  private renders = 0;
  /** The HTML report's embedded view of each optimizer (by id) and of all steps (the snapshot's). */
  private readonly views = new Map<number, PanelView>();
  private allView: PanelView | null = null;

  constructor(
    private readonly api: VsCodeApi | null,
    embeddedDetails: PanelTensorDetail[] = [],
    embeddedViews: PanelView[] = [],
  ) {
    for (const v of embeddedViews) if (v.optimizer !== null) this.views.set(v.optimizer, v);
    const saved = api?.getState();
    this.state = isViewState(saved) ? saved : { metric: null, layers: [], selectedLayer: null, tensorId: null, step: null };
    for (const d of embeddedDetails) this.details.set(d.tensorId, d);
    document.body.classList.toggle('gs-standalone', api === null);
    const root = document.getElementById('gradscope') ?? document.body.appendChild(document.createElement('div'));
    root.id = 'gradscope';
    root.innerHTML = TEMPLATE; // constant markup: no data is ever interpolated into HTML
    this.wire();
    applyFont(this.palette);
    new MutationObserver(() => this.retheme()).observe(document.body, { attributes: true, attributeFilter: ['class', 'data-vscode-theme-kind', 'style'] });
  }

  private post(m: WebviewToHost): void {
    this.api?.postMessage(m);
  }

  private saveState(): void {
    this.api?.setState(this.state);
  }

  private wire(): void {
    $('gs-stop').addEventListener('click', () => this.post({ type: 'stop' }));
    $('gs-rerun').addEventListener('click', () => this.post({ type: 'rerun' }));
    $('gs-export').addEventListener('click', () => this.post({ type: 'exportReport' }));
    $<HTMLSelectElement>('gs-run').addEventListener('change', (e) => {
      const v = (e.target as HTMLSelectElement).value;
      if (v) this.post({ type: 'openRun', runFile: v });
    });
    $<HTMLSelectElement>('gs-compare').addEventListener('change', (e) => {
      const v = (e.target as HTMLSelectElement).value;
      this.post({ type: 'compareRun', runFile: v === '' ? null : v });
    });
    $<HTMLSelectElement>('gs-tensor').addEventListener('change', (e) => {
      const id = Number((e.target as HTMLSelectElement).value);
      if (Number.isInteger(id)) this.selectTensor(id, this.state.step);
    });
    $<HTMLSelectElement>('gs-optimizer').addEventListener('change', (e) => {
      const v = (e.target as HTMLSelectElement).value;
      this.state.optimizer = v === '' ? null : Number(v);
      this.saveState();
      if (this.api) this.post({ type: 'setOptimizer', optimizer: this.state.optimizer });
      else this.showEmbeddedView(this.state.optimizer);
    });
    this.wireRankPicker();
    const metric = $('gs-metric');
    for (const m of METRICS) {
      const label = document.createElement('label');
      const input = document.createElement('input');
      input.type = 'radio';
      input.name = 'gs-metric';
      input.value = m.id;
      input.addEventListener('change', () => {
        if (!input.checked) return;
        this.state.metric = m.id;
        this.saveState();
        this.post({ type: 'setHeatmapMetric', metric: m.id });
      });
      label.append(input, document.createTextNode(m.label));
      metric.append(label);
    }
  }

  handle(msg: HostToWebview): void {
    switch (msg.type) {
      case 'snapshot':
        this.snapshot(msg.snapshot);
        this.state.runId = msg.snapshot.header.runId;
        this.saveState();
        break;
      case 'append': {
        if (!this.model) return;
        const statusBefore = this.model.header.status;
        const { heatmapReplaced, layersChanged, optimizersChanged } = applyAppend(this.model, msg);
        this.renderHeader();
        if (optimizersChanged) this.renderOptimizers();
        if (!msg.findings && statusBefore !== msg.header.status) this.renderFindings();
        if (layersChanged) this.renderLayerList();
        // The overlay's lines are redrawn with the norm curves (at most 5 times a second).
        if (msg.ranks) this.renderRanks(false);
        this.scheduleNorms();
        this.heat?.update(this.model.heatmap, heatmapReplaced ? this.heatOptions() : undefined);
        if (msg.findings) this.renderFindings();
        this.bump();
        break;
      }
      case 'replace': {
        if (!this.model) return;
        applyReplace(this.model, msg);
        this.renderHeader();
        this.norms?.update(this.normData());
        this.heat?.update(this.model.heatmap, this.heatOptions());
        this.renderFindings();
        if (msg.ranks) this.renderRanks();
        this.syncMetricRadios();
        this.bump();
        break;
      }
      case 'tensorDetail':
        this.details.set(msg.detail.tensorId, msg.detail);
        if (msg.detail.tensorId === this.state.tensorId) this.renderTensor();
        break;
      case 'select': {
        if (!this.model) return;
        const row = this.model.heatmap.layers.indexOf(msg.layer);
        if (row < 0 && !this.model.layers.includes(msg.layer)) return;
        this.selectLayer(msg.layer, msg.step);
        break;
      }
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private snapshot(s: PanelSnapshot): void {
    // Another run: its optimizers are other ones.
    if (this.state.runId !== undefined && this.state.runId !== null && this.state.runId !== s.header.runId) this.state.optimizer = null;
    this.model = modelFromSnapshot(s);
    const of = JSON.stringify([s.header.runId, s.ranks?.shown ?? null]);
    if (this.detailsOf !== null && this.detailsOf !== of) this.details.clear();
    this.detailsOf = of;
    if (!this.api) {
      const { optimizer, globalNorm, loss, byOptimizer, layerNorms, heatmap } = s;
      this.allView = { optimizer, globalNorm, loss, byOptimizer, layerNorms, heatmap };
    }
    const known = new Set(this.model.layers);
    this.state.layers = this.state.layers.filter((l) => known.has(l));
    if (this.state.selectedLayer && !known.has(this.state.selectedLayer)) this.state.selectedLayer = null;
    if (this.state.tensorId !== null && !this.model.tensors.some((t) => t.id === this.state.tensorId)) this.state.tensorId = null;
    this.renderHeader();
    this.renderRunPickers();
    this.renderOptimizers();
    this.renderRanks();
    this.renderLayerList();
    this.syncMetricRadios();
    if (this.norms) this.norms.update(this.normData(), { palette: this.palette });
    else this.norms = renderNormCurves($('gs-norms'), this.normData(), { palette: this.palette, selectedStep: this.state.step });
    if (this.heat) this.heat.update(this.model.heatmap, this.heatOptions());
    else this.heat = renderHeatmap($('gs-heatmap'), this.model.heatmap, this.heatOptions());
    this.renderFindings();
    this.renderTensor();
    // A reload restores the view: ask the host for what the saved state shows.
    if (this.api && this.state.metric && this.state.metric !== this.model.metric) this.post({ type: 'setHeatmapMetric', metric: this.state.metric });
    const want = this.state.optimizer ?? null;
    if (this.api && want !== null && want !== this.model.optimizer && this.model.optimizers.some((o) => o.id === want)) this.post({ type: 'setOptimizer', optimizer: want });
    if (this.api && this.state.tensorId !== null && !this.details.has(this.state.tensorId)) this.post({ type: 'selectTensor', tensorId: this.state.tensorId, step: this.state.step });
    this.bump();
  }

  /**
   * The optimizer picker (All / each by name): shown when the run has two or more; in the report,
   * when it embeds their views (and then it lists those only).
   */
  private renderOptimizers(): void {
    const m = this.model;
    if (!m) return;
    const label = $('gs-optimizer-label');
    const sel = $<HTMLSelectElement>('gs-optimizer');
    const listed = this.api ? m.optimizers : m.optimizers.filter((o) => this.views.has(o.id));
    label.hidden = listed.length < 2;
    const all = document.createElement('option');
    all.value = '';
    all.textContent = 'all optimizers';
    const opts = listed.map((o) => option(String(o.id), optimizerOption(o)));
    sel.replaceChildren(all, ...opts);
    sel.value = m.optimizer === null ? '' : String(m.optimizer);
  }

  /** The report: shows an embedded view (null: all steps), as the host would send it. */
  private showEmbeddedView(optimizer: number | null): void {
    const m = this.model;
    const v = optimizer === null ? this.allView : this.views.get(optimizer);
    if (!m || !v) return;
    applyView(m, v);
    this.renderLayerList();
    this.norms?.update(this.normData());
    this.heat?.update(m.heatmap, this.heatOptions());
    this.bump();
  }

  private normsAt = 0;
  private normsTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Live appends redraw the norm curves at most 5 times a second: a Chart.js update of the line
   * chart (layout, decimation) costs several ms, the heatmap's bitmap update about one.
   */
  private scheduleNorms(): void {
    const wait = this.normsAt + 200 - performance.now();
    const draw = (): void => {
      this.normsAt = performance.now();
      this.norms?.update(this.normData());
      if (this.model?.ranks) this.rankNorms?.update(this.rankNormData());
    };
    if (wait <= 0) draw();
    else if (this.normsTimer === null) {
      this.normsTimer = setTimeout(() => {
        this.normsTimer = null;
        if (this.model) draw();
      }, wait);
    }
  }

  private bump(): void {
    this.renders++;
    document.body.dataset['gsRenders'] = String(this.renders);
  }

  private retheme(): void {
    const p = readPalette();
    if (JSON.stringify(p) === JSON.stringify(this.palette)) return;
    this.palette = p;
    applyFont(p);
    if (!this.model) return;
    this.norms?.update(this.normData(), { palette: p });
    this.rankNorms?.update(this.rankNormData(), { palette: p });
    this.heat?.update(this.model.heatmap, this.heatOptions());
    this.hist?.dispose();
    this.thumb?.dispose();
    this.hist = this.thumb = null;
    this.renderTensor();
  }

  // ---- header -------------------------------------------------------------------------------

  /** Runs on every append: writes only what changed, since each DOM write costs style and layout work at the next frame. */
  private renderHeader(): void {
    const h = this.model!.header;
    const d = headerDisplay(h);
    const script = $('gs-script');
    setText(script, d.script.text);
    setProp(script, 'title', h.script ? d.script.full : '');
    const status = $('gs-status');
    setText(status, STATUS_TEXT[h.status] ?? h.status);
    if (status.dataset['status'] !== h.status) status.dataset['status'] = h.status;
    setProp(status, 'title', d.statusTitle);
    const backend = $('gs-backend');
    setText(backend, d.backend.text);
    setProp(backend, 'title', d.backendTitle || (d.backend.clipped ? d.backend.full : ''));
    setText($('gs-step'), String(h.step));
    setText($('gs-rate'), h.stepsPerSec === null ? '—' : h.stepsPerSec.toFixed(h.stepsPerSec < 10 ? 1 : 0));
    const dropped = $('gs-dropped');
    setText(dropped, String(h.droppedFrames));
    dropped.classList.toggle('gs-warn', h.droppedFrames > 0); // no mutation when already so
    this.renderWarnings();
    const live = h.status === 'running' || h.status === 'starting';
    setProp($<HTMLButtonElement>('gs-stop'), 'disabled', !live);
    setProp($<HTMLButtonElement>('gs-rerun'), 'disabled', live);
  }

  /** The banner above the charts: what GradScope could not see (warnings first, then notes). */
  private renderWarnings(): void {
    const ws = this.model!.header.warnings;
    const list = $('gs-warnings');
    const key = JSON.stringify(ws);
    if (list.dataset['key'] === key) return;
    list.dataset['key'] = key;
    list.replaceChildren(
      ...ws.map((w) => {
        const li = document.createElement('li');
        li.className = `gs-run-warning gs-level-${w.level}`;
        li.dataset['code'] = w.code;
        const tag = document.createElement('span');
        tag.className = 'gs-sev';
        tag.textContent = w.level === 'warning' ? 'warning' : 'note';
        const msg = document.createElement('span');
        show(msg, warningDisplay(w));
        li.append(tag, msg);
        return li;
      }),
    );
    list.hidden = ws.length === 0;
  }

  private renderRunPickers(): void {
    const m = this.model!;
    const run = $<HTMLSelectElement>('gs-run');
    const cmp = $<HTMLSelectElement>('gs-compare');
    run.replaceChildren(option('', shownName(`${m.header.runId} (shown)`)));
    cmp.replaceChildren(option('', 'None'));
    for (const r of m.savedRuns) {
      run.append(option(r.runFile, shownName(r.label)));
      cmp.append(option(r.runFile, shownName(r.label)));
    }
    if (m.compare) {
      const hit = m.savedRuns.find((r) => r.label === m.compare!.label || r.runFile.includes(m.compare!.runId));
      cmp.value = hit ? hit.runFile : '';
    }
  }

  // ---- ranks --------------------------------------------------------------------------------

  /** The rank picker: a button ("Rank 0 ▾") that opens a list of the run's processes; choosing one asks the host for its view. */
  private wireRankPicker(): void {
    const button = $<HTMLButtonElement>('gs-rank');
    const list = $<HTMLUListElement>('gs-rank-list');
    const options = (): HTMLElement[] => [...list.querySelectorAll<HTMLElement>('[role="option"]:not([aria-disabled="true"])')];
    const open = (on: boolean): void => {
      list.hidden = !on;
      button.setAttribute('aria-expanded', String(on));
      if (on) (list.querySelector<HTMLElement>('[aria-selected="true"]') ?? options()[0])?.focus();
    };
    button.addEventListener('click', () => open(list.hidden));
    button.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown') {
        e.preventDefault();
        open(true);
      }
    });
    list.addEventListener('keydown', (e) => {
      const all = options();
      const at = all.indexOf(document.activeElement as HTMLElement);
      if (e.key === 'Escape') {
        open(false);
        button.focus();
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        all[Math.min(all.length - 1, Math.max(0, at + (e.key === 'ArrowDown' ? 1 : -1)))]?.focus();
      } else if ((e.key === 'Enter' || e.key === ' ') && at >= 0) {
        e.preventDefault();
        all[at].click();
      }
    });
    // A click anywhere else closes it.
    document.addEventListener('click', (e) => {
      if (!list.hidden && !$('gs-rank-picker').contains(e.target as Node)) open(false);
    });
  }

  /** The picker (two or more processes, or a rank that never joined) and the cross-rank overlay (drawn now, or by scheduleNorms for an append). */
  private renderRanks(drawChart = true): void {
    const r = this.model!.ranks;
    const picker = $('gs-rank-picker');
    const section = $('gs-ranks-section');
    picker.hidden = r === null;
    section.hidden = r === null;
    if (!r) {
      this.rankNorms?.dispose();
      this.rankNorms = null;
      return;
    }
    const button = $<HTMLButtonElement>('gs-rank');
    setText(button, rankButtonText(r.shown, r.list));
    const list = $<HTMLUListElement>('gs-rank-list');
    const key = JSON.stringify([r.shown, r.list]);
    if (list.dataset['key'] !== key) {
      list.dataset['key'] = key;
      const wasOpen = !list.hidden;
      list.replaceChildren(...r.list.map((x) => this.rankItem(x, r.shown)));
      if (wasOpen) (list.querySelector<HTMLElement>('[aria-selected="true"]') ?? list.querySelector<HTMLElement>('[role="option"]'))?.focus();
    }
    const joined = r.list.filter((x) => x.state === 'joined').length;
    const missing = r.list.length - joined;
    // A report (no host) cannot switch ranks: it says which one its other charts are of.
    const fixed = this.api === null && r.shown ? ` · this report's other charts are rank ${r.shown.rank}'s` : '';
    setText($('gs-ranks-note'), `global norm of each rank · ${joined} joined${missing ? ` · ${missing} never joined (not observed)` : ''}${fixed}`);
    $('gs-ranks-note').classList.toggle('gs-warn', missing > 0);
    if (!this.rankNorms) this.rankNorms = renderNormCurves($('gs-ranks-chart'), this.rankNormData(), { palette: this.palette });
    else if (drawChart) this.rankNorms.update(this.rankNormData(), { palette: this.palette });
    const findings = $('gs-rank-findings');
    const cross = r.crossRank?.findings ?? [];
    findings.hidden = cross.length === 0;
    const crossKey = JSON.stringify(cross);
    // Left alone when a message brings the same (focus, scroll).
    if (findings.dataset['key'] !== crossKey) {
      findings.dataset['key'] = crossKey;
      findings.replaceChildren(...cross.map((f) => this.findingItem(f, findingDisplay(f))));
    }
  }

  private rankItem(x: NonNullable<PanelModel['ranks']>['list'][number], shown: NonNullable<PanelModel['ranks']>['shown']): HTMLLIElement {
    const li = document.createElement('li');
    li.setAttribute('role', 'option');
    li.className = `gs-rank-option gs-rank-${x.state}`;
    li.dataset['rank'] = String(x.rank);
    const selected = shown !== null && shown.rank === x.rank && shown.pid === x.pid;
    li.setAttribute('aria-selected', String(selected));
    const t = rankOptionText(x);
    const name = document.createElement('span');
    name.className = 'gs-rank-name';
    name.textContent = t.name;
    const meta = document.createElement('span');
    meta.className = 'gs-muted';
    show(meta, t.meta);
    li.append(name, meta);
    if (x.state === 'missing' || this.api === null) {
      li.setAttribute('aria-disabled', 'true');
      // A report holds the charts of one rank: say so where a person tries another.
      if (this.api === null && x.state !== 'missing' && !selected)
        li.title = "A report holds one rank's charts: pick the rank in the panel before Export report, or run gradscope run --rank R --report FILE";
      return li;
    }
    li.tabIndex = -1;
    if (x.pid !== null) li.dataset['pid'] = String(x.pid);
    li.addEventListener('click', () => {
      $('gs-rank-list').hidden = true;
      $('gs-rank').setAttribute('aria-expanded', 'false');
      $('gs-rank').focus();
      if (!selected) this.post({ type: 'setRank', rank: x.rank, pid: x.pid });
    });
    return li;
  }

  private rankColor(i: number): string {
    const p = this.palette.optimizers;
    return p[i % p.length] ?? this.palette.foreground;
  }

  /** The overlay: one line per rank ("rank N"), the combined series (FSDP) dashed over them when the host sent one. */
  private rankNormData(): NormCurvesData {
    const r = this.model!.ranks!;
    const dup = new Set(r.globalNorms.filter((c, i) => r.globalNorms.findIndex((d) => d.rank === c.rank) !== i).map((c) => c.rank));
    const combined = r.crossRank?.combined;
    return {
      globalNorms: r.globalNorms.map((c, i) => ({ ...series(rankSeriesLabel(c, dup.has(c.rank)), c.globalNorm, this.rankColor(i)), key: `${c.rank}:${c.pid ?? '-'}` })),
      losses: [],
      layers: [],
      compare: combined ? series(shownName(combined.label).text, combined.globalNorm, this.palette.compare, true) : null,
      clipNorm: null,
    };
  }

  // ---- norm curves --------------------------------------------------------------------------

  private layerColor(layer: string): string {
    const i = this.model ? Math.max(0, this.model.layers.indexOf(layer)) : 0;
    return this.palette.series[i % this.palette.series.length] ?? this.palette.foreground;
  }

  private normData(): NormCurvesData {
    const m = this.model!;
    const shown = new Set(this.state.layers);
    if (this.state.selectedLayer) shown.add(this.state.selectedLayer);
    const layers: Series[] = [];
    for (const l of m.layers) {
      const c = m.layerNorms.get(l);
      // Keyed by the name itself: two long names may show the same cut label.
      if (shown.has(l) && c) layers.push({ ...series(shownName(l).text, c, this.layerColor(l)), key: l });
    }
    return {
      ...this.globalSeries(),
      layers,
      compare: m.compare ? series(`${shownName(m.compare.label).text} (global)`, m.compare.globalNorm, this.palette.compare, true) : null,
      clipNorm: m.header.clipNorm,
    };
  }

  /**
   * The global norm and loss: one line per optimizer when the host sent each one's curves (the
   * run's own would zigzag between optimizers), else the run's or the chosen optimizer's.
   */
  private globalSeries(): Pick<NormCurvesData, 'globalNorms' | 'losses'> {
    const m = this.model!;
    const p = this.palette;
    const color = (i: number): string => p.optimizers[i % p.optimizers.length];
    if (m.byOptimizer.length >= 2) {
      const losses: Series[] = [];
      m.byOptimizer.forEach((o, i) => {
        if (o.loss) losses.push(series(`loss ${shownName(o.name).text}`, o.loss, color(i), true));
      });
      return {
        globalNorms: m.byOptimizer.map((o, i) => series(`‖g‖ ${shownName(o.name).text}`, o.globalNorm, color(i))),
        losses: losses.length > 0 ? losses : m.loss.steps.length > 0 ? [series('loss', m.loss, p.loss, true)] : [],
      };
    }
    const found = m.optimizer === null ? undefined : m.optimizers.find((o) => o.id === m.optimizer);
    const name = found ? shownName(found.name).text : null;
    // A rank holding shards (FSDP2): its norm is of its own blocks, never the model's (the combined one
    // is in the cross-rank view), and the legend must not call it the global norm.
    const shards = m.header.warnings.some((w) => w.code === 'sharded');
    const normLabel = name === null ? (shards ? 'norm of this rank’s shards' : 'global norm') : `‖g‖ ${name}${shards ? ' (this rank’s shards)' : ''}`;
    return {
      globalNorms: [series(normLabel, m.globalNorm, p.norm)],
      losses: m.loss.steps.length > 0 ? [series(name === null ? 'loss' : `loss ${name}`, m.loss, p.loss, true)] : [],
    };
  }

  private renderLayerList(): void {
    const m = this.model!;
    const list = $('gs-layer-list');
    list.replaceChildren();
    for (const l of m.layers) {
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = l;
      box.checked = this.state.layers.includes(l);
      box.disabled = !m.layerNorms.has(l);
      box.addEventListener('change', () => {
        this.state.layers = box.checked ? [...this.state.layers, l] : this.state.layers.filter((x) => x !== l);
        this.saveState();
        this.norms?.update(this.normData());
      });
      const sw = document.createElement('span');
      sw.className = 'gs-swatch-box';
      sw.style.background = this.layerColor(l);
      const shown = shownName(l);
      label.append(box, sw, document.createTextNode(shown.text));
      label.title = shown.full;
      list.append(label);
    }
  }

  // ---- heatmap ------------------------------------------------------------------------------

  private heatOptions(): Parameters<typeof renderHeatmap>[2] {
    const m = this.model!;
    const meta = METRICS.find((x) => x.id === m.metric) ?? METRICS[0];
    const row = this.state.selectedLayer ? m.heatmap.layers.indexOf(this.state.selectedLayer) : -1;
    return {
      palette: this.palette,
      valueLabel: meta.value,
      domain: m.metric === 'zeroFrac' ? [0, 1] : null,
      formatValue: (v) => (m.metric === 'zeroFrac' ? v.toFixed(3) : v.toFixed(2)),
      selected: row >= 0 ? { row, step: this.state.step } : null,
      onSelect: (cell: HeatmapCell) => this.selectLayer(cell.layer, cell.step),
    };
  }

  private syncMetricRadios(): void {
    const m = this.model!;
    for (const input of document.querySelectorAll<HTMLInputElement>('input[name="gs-metric"]')) {
      input.checked = input.value === m.metric;
      // The report carries one metric only.
      input.disabled = this.api === null && input.value !== m.metric;
    }
  }

  // ---- selection ----------------------------------------------------------------------------

  private selectLayer(layer: string, step: number | null): void {
    const m = this.model!;
    this.state.selectedLayer = layer;
    this.state.step = step;
    const t = kernelOf(m.tensors, layer);
    this.state.tensorId = t ? t.id : null;
    this.saveState();
    if (t) this.selectTensor(t.id, step);
    else this.renderTensor();
    this.norms?.update(this.normData(), { selectedStep: step });
    this.heat?.update(m.heatmap, this.heatOptions());
  }

  private selectTensor(id: number, step: number | null): void {
    this.state.tensorId = id;
    this.saveState();
    this.post({ type: 'selectTensor', tensorId: id, step });
    this.renderTensor();
  }

  private renderTensor(): void {
    const m = this.model;
    if (!m) return;
    const select = $<HTMLSelectElement>('gs-tensor');
    const layer = this.state.selectedLayer;
    const tensors = layer ? m.tensors.filter((t) => t.layer === layer) : [];
    select.replaceChildren(...tensors.map((t) => option(String(t.id), tensorOption(t))));
    select.disabled = tensors.length === 0;
    if (this.state.tensorId !== null) select.value = String(this.state.tensorId);
    const detail = this.state.tensorId !== null ? this.details.get(this.state.tensorId) : undefined;
    const empty = $('gs-tensor-empty');
    const stats = $('gs-tensor-stats');
    if (!layer) {
      empty.textContent = 'Click a heatmap cell (or focus it and press Enter) to select a layer and step.';
      empty.hidden = false;
    } else if (!detail) {
      const name = shownName(layer).text;
      empty.textContent = this.api ? `Loading ${name}…` : `No histogram or thumbnail was recorded for ${name}.`;
      empty.hidden = false;
    } else empty.hidden = true;
    const rows = detail?.histograms ?? [];
    if (rows.length > 0) {
      if (this.hist) this.hist.update(rows, { palette: this.palette });
      else this.hist = renderHistogramOverTime($('gs-hist'), rows, { palette: this.palette });
    } else {
      this.hist?.dispose();
      this.hist = null;
    }
    const wire = detail?.thumbnail ?? null;
    // NaN and ±Inf |g| keep their colours; the thumbnail has no absent or empty pixel (drawn as NaN if one came).
    const th = wire && { ...wire, values: wire.values.map((v) => decodeFloat(v, NaN, NaN)) };
    if (th) {
      if (this.thumb) this.thumb.update(th, { palette: this.palette });
      else this.thumb = renderThumbnail($('gs-thumb'), th, { palette: this.palette });
    } else {
      this.thumb?.dispose();
      this.thumb = null;
    }
    $('gs-hist').hidden = rows.length === 0;
    $('gs-thumb').hidden = th === null;
    const s = detail?.stats;
    const zeros = s ? decodeFloat(s.zeroFrac, NaN, NaN) : NaN;
    stats.textContent = s
      ? `step ${s.step}: mean ${formatNumber(s.mean)}, std ${formatNumber(s.std)}, zeros ${Number.isFinite(zeros) ? `${(zeros * 100).toFixed(1)}%` : formatNumber(zeros)}`
      : '';
  }

  // ---- findings -----------------------------------------------------------------------------

  /**
   * Each finding's list item and what it was built from, by finding id. A live run re-sends its
   * findings as their evidence grows; an update rebuilds only the items whose finding changed, and
   * keeps an item's buttons while its actions are the same. A button replaced under the pointer
   * between mousedown and mouseup loses the click (and its focus and hover with it).
   */
  private findingItems = new Map<string, { key: string; actions: string; li: HTMLElement }>();

  private renderFindings(): void {
    const m = this.model!;
    const list = $('gs-findings');
    if (m.findings.length === 0) {
      this.findingItems.clear();
      const done = !(m.header.status === 'running' || m.header.status === 'starting');
      const text = done ? 'No problems found.' : 'No findings yet.';
      const only = list.childElementCount === 1 ? list.firstElementChild : null;
      if (only?.classList.contains('gs-empty') && only.textContent === text) return;
      const li = document.createElement('li');
      li.className = 'gs-empty';
      li.textContent = text;
      list.replaceChildren(li);
      return;
    }
    const items = new Map<string, { key: string; actions: string; li: HTMLElement }>();
    const order: HTMLElement[] = [];
    for (const f of [...m.findings].sort((a, b) => severityRank(a.severity) - severityRank(b.severity) || a.step - b.step)) {
      const key = JSON.stringify(f);
      const prev = items.has(f.id) ? undefined : this.findingItems.get(f.id);
      let li: HTMLElement;
      let actions: string;
      if (prev?.key === key) ({ li, actions } = prev);
      else {
        // (formatted once per changed finding, for its key, its buttons and its text)
        const d = findingDisplay(f);
        actions = actionsKey(f, d);
        if (prev?.actions === actions) {
          li = prev.li;
          this.fillFinding(li, f, d);
        } else li = this.findingItem(f, d);
      }
      // A second finding with the same id (never sent by the host) still shows, without an entry.
      if (!items.has(f.id)) items.set(f.id, { key, actions, li });
      order.push(li);
    }
    this.findingItems = items;
    // Move only what moved: an item that keeps its place is never detached.
    order.forEach((li, i) => {
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
    });
    while (list.childElementCount > order.length) list.lastElementChild!.remove();
  }

  private findingItem(f: Finding, d: FindingDisplay): HTMLElement {
    const li = document.createElement('li');
    const actions = document.createElement('div');
    actions.className = 'gs-finding-actions';
    if (f.layer) {
      const show = button('Show in heatmap', 'gs-secondary', () => this.selectLayer(f.layer!, f.step));
      actions.append(show);
    }
    if (f.source) {
      const go = button('Go to layer', 'gs-secondary gs-host-only', () => this.post({ type: 'goToLayer', findingId: f.id }));
      actions.append(go);
    }
    for (const r of d.remedies) {
      const b = button(r.title.text, 'gs-host-only', () => this.post({ type: 'applyRemedy', findingId: f.id, remedyId: r.id }));
      if (r.title.clipped) b.title = r.title.full;
      b.dataset['remedy'] = r.id;
      actions.append(b);
    }
    li.append(actions);
    this.fillFinding(li, f, d);
    return li;
  }

  /** Sets what an item shows above its actions (the last child, left in place) from `f`. */
  private fillFinding(li: HTMLElement, f: Finding, d: FindingDisplay): void {
    li.className = `gs-finding gs-sev-${f.severity}`;
    li.dataset['findingId'] = f.id;
    const actions = li.lastElementChild!;
    for (const c of [...li.children]) if (c !== actions) c.remove();
    const head = document.createElement('div');
    head.className = 'gs-finding-head';
    const sev = document.createElement('span');
    sev.className = 'gs-sev';
    sev.textContent = f.severity;
    const msg = document.createElement('span');
    msg.className = 'gs-finding-msg';
    show(msg, d.message);
    head.append(sev, msg);
    const meta = document.createElement('div');
    meta.className = 'gs-muted';
    show(meta, d.meta);
    li.insertBefore(head, actions);
    li.insertBefore(meta, actions);
    if (d.evidence.length > 0) {
      const dl = document.createElement('dl');
      dl.className = 'gs-evidence';
      for (const { key, value: v } of d.evidence) {
        const row = document.createElement('div');
        const dt = document.createElement('dt');
        show(dt, key);
        const dd = document.createElement('dd');
        if (v === null) dd.textContent = '—';
        else if (typeof v === 'number') dd.textContent = formatNumber(v);
        else show(dd, v);
        row.append(dt, dd);
        dl.append(row);
      }
      li.insertBefore(dl, actions);
    }
  }
}

/** What a finding's buttons depend on: the same key, the same buttons doing the same thing. */
function actionsKey(f: Finding, d: FindingDisplay): string {
  const remedies = d.remedies.map((r) => [r.id, r.title.text, r.title.full]);
  return JSON.stringify([f.id, f.layer, f.step, f.source !== null, remedies]);
}

function series(label: string, c: Curve, color: string, dashed = false): Series {
  return { label, steps: c.steps, values: c.values, color, dashed };
}

/** The tensor to show for a layer: its kernel / weight matrix when there is one, else the first. */
export function kernelOf(tensors: readonly PanelTensor[], layer: string): PanelTensor | undefined {
  const own = tensors.filter((t) => t.layer === layer);
  return own.find((t) => /kernel|weight/i.test(t.name) && t.shape.length >= 2) ?? own.find((t) => t.shape.length >= 2) ?? own[0];
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function setProp<E extends HTMLElement, K extends keyof E>(el: E, key: K, value: E[K]): void {
  if (el[key] !== value) el[key] = value;
}

/** Writes a name or message as shown (neutralised, cut) into an element, the whole text as its title when cut. */
function show(el: HTMLElement, t: ShownText): void {
  el.textContent = t.text;
  if (t.clipped) el.title = t.full;
  else el.removeAttribute('title');
}

function option(value: string, label: string | ShownText): HTMLOptionElement {
  const o = document.createElement('option');
  o.value = value;
  if (typeof label === 'string') o.textContent = label;
  else show(o, label);
  return o;
}

function button(label: string, cls: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function isViewState(v: unknown): v is ViewState {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    Array.isArray(o['layers']) &&
    (o['layers'] as unknown[]).every((l) => typeof l === 'string') &&
    (o['metric'] === null || typeof o['metric'] === 'string') &&
    (o['selectedLayer'] === null || typeof o['selectedLayer'] === 'string') &&
    (o['tensorId'] === null || Number.isInteger(o['tensorId'])) &&
    (o['step'] === null || Number.isInteger(o['step'])) &&
    (o['runId'] === undefined || o['runId'] === null || typeof o['runId'] === 'string') &&
    (o['optimizer'] === undefined || o['optimizer'] === null || Number.isInteger(o['optimizer']))
  );
}

function boot(): void {
  const api = typeof acquireVsCodeApi === 'function' ? acquireVsCodeApi() : null;
  const warn = (reason: string): void => console.warn(`gradscope: dropped a malformed message: ${reason}`);
  if (api) {
    const panel = new Panel(api);
    window.addEventListener('message', (e: MessageEvent<unknown>) => {
      const msg = parseHostMessage(e.data, warn);
      if (!msg) return;
      try {
        panel.handle(msg);
      } catch (err) {
        console.error('gradscope: failed to apply a message', err);
      }
    });
    api.postMessage({ type: 'ready' });
    return;
  }
  // Standalone report: the data is embedded as JSON (never as script).
  const el = document.getElementById('gradscope-data');
  let raw: unknown = null;
  try {
    raw = el?.textContent ? JSON.parse(el.textContent) : null;
  } catch {
    raw = null;
  }
  const o = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  const details: PanelTensorDetail[] = [];
  if (Array.isArray(o['details'])) {
    for (const d of o['details']) {
      try {
        details.push(parseDetail(d));
      } catch {
        warn('detail');
      }
    }
  }
  const views: PanelView[] = [];
  if (Array.isArray(o['views'])) {
    for (const v of o['views']) {
      const view = tryParseView(v, warn);
      if (view) views.push(view);
    }
  }
  const panel = new Panel(null, details, views);
  const msg = parseHostMessage({ type: 'snapshot', snapshot: o['snapshot'] }, warn);
  if (msg) panel.handle(msg);
  else document.body.dataset['gsError'] = 'no valid snapshot embedded';
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
