// Synthetic panel data for the browser tests, the bench and the screenshots: an exploding run
// (healthy, then norms growing 10× every few steps, then Inf and NaN), shaped like PanelSnapshot.

/** Wire encoding of a curve: NaN/±Inf as null with index lists. */
export function wireCurve(steps, values) {
  return { steps: [...steps], values: values.map(wireCell) };
}

/** A value as src/core/protocol/float.ts encodes it: finite as it is, NaN and ±Inf by name. */
export const wireCell = (v) => (Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Inf' : v === -Infinity ? '-Inf' : v);

// Deterministic noise.
function rng(seed) {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * @param {{ steps?: number, layers?: number, explodeAt?: number, infAt?: number, nanAt?: number, status?: string, clipNorm?: number | null, findings?: boolean }} o
 */
export function explodingSnapshot(o = {}) {
  const nSteps = o.steps ?? 120;
  const nLayers = o.layers ?? 8;
  const explodeAt = o.explodeAt ?? Math.floor(nSteps * 0.5);
  const infAt = o.infAt ?? Math.floor(nSteps * 0.8);
  const nanAt = o.nanAt ?? infAt + 3;
  const r = rng(7);
  const layers = Array.from({ length: nLayers }, (_, i) => (i === nLayers - 1 ? 'output' : `dense_${i + 1}`));
  const tensors = [];
  layers.forEach((l, i) => {
    const fanIn = i === 0 ? 784 : 256;
    const fanOut = i === nLayers - 1 ? 10 : 256;
    const source = { file: '/work/examples/tfjs/exploding-mlp.js', line: 12 + i, column: 3 };
    tensors.push({ id: 2 * i, name: `${l}/kernel`, layer: l, layerType: 'Dense', shape: [fanIn, fanOut], source });
    tensors.push({ id: 2 * i + 1, name: `${l}/bias`, layer: l, layerType: 'Dense', shape: [fanOut], source });
  });
  const steps = Array.from({ length: nSteps }, (_, s) => s);
  // Per-layer norm: a healthy level that depends on depth, then 10× every 4 steps (later layers first).
  const layerNorm = (li, s) => {
    if (s >= nanAt) return NaN;
    if (s >= infAt && li >= Math.floor(nLayers / 2)) return Infinity;
    const base = 0.05 * (1 + li * 0.4) * (1 + 0.25 * Math.sin(s / 7 + li)) * (0.9 + 0.2 * r());
    const grow = s > explodeAt ? 10 ** ((s - explodeAt) / 4) * (1 + li / nLayers) : 1;
    return base * grow;
  };
  const norms = layers.map((_, li) => steps.map((s) => layerNorm(li, s)));
  const global = steps.map((s, k) => {
    let sq = 0;
    for (const n of norms) sq += n[k] * n[k];
    return Number.isNaN(sq) ? NaN : Math.sqrt(sq);
  });
  const loss = steps.map((s) => (s >= nanAt ? NaN : s > explodeAt ? 2.3 * 1.6 ** ((s - explodeAt) / 4) : 2.3 * Math.exp(-s / 40) + 0.3 + 0.05 * r()));
  const values = [];
  for (let li = 0; li < nLayers; li++)
    for (let k = 0; k < nSteps; k++) {
      const v = norms[li][k];
      values.push(wireCell(Number.isFinite(v) ? Math.log10(v) : v));
    }
  const layerNorms = {};
  layers.forEach((l, li) => (layerNorms[l] = wireCurve(steps, norms[li])));
  const findings =
    o.findings === false
      ? []
      : [
          {
            id: 'exploding-gradient:dense_1',
            kind: 'exploding-gradient',
            severity: 'error',
            step: explodeAt + 8,
            stepRange: [explodeAt, infAt],
            tensors: ['dense_1/kernel'],
            layer: 'dense_1',
            source: { file: '/work/examples/tfjs/exploding-mlp.js', line: 12, column: 3 },
            message: 'Gradient norm of dense_1 grew 10× every 4 steps',
            evidence: { growthPerStep: 1.78, normAtStart: 0.05, normAtEnd: 3.2e6, clipNorm: null },
            remedies: [
              { id: 'clip-global-norm', title: 'Clip the global gradient norm' },
              { id: 'he-init', title: 'Use He initialization' },
              { id: 'lower-lr', title: 'Lower the learning rate' },
            ],
          },
          {
            id: 'non-finite-gradient:output',
            kind: 'non-finite-gradient',
            severity: 'error',
            step: infAt,
            stepRange: [infAt, nSteps - 1],
            tensors: ['output/kernel'],
            layer: 'output',
            source: { file: '/work/examples/tfjs/exploding-mlp.js', line: 12 + nLayers - 1, column: 3 },
            message: 'First non-finite gradient (Inf) in output/kernel',
            evidence: { firstStep: infAt, nanFrom: nanAt },
            remedies: [{ id: 'clip-global-norm', title: 'Clip the global gradient norm' }],
          },
        ];
  return {
    header: {
      runId: 'run-2024-exploding',
      script: 'examples/tfjs/exploding-mlp.js',
      backend: 'tensorflow',
      device: 'cpu',
      backendReason: null,
      status: o.status ?? 'running',
      statusMessage: '',
      step: nSteps - 1,
      stepsPerSec: 41.7,
      droppedFrames: 0,
      clipNorm: o.clipNorm === undefined ? null : o.clipNorm,
    },
    tensors,
    layers,
    globalNorm: wireCurve(steps, global),
    loss: wireCurve(steps, loss),
    layerNorms,
    heatmap: { metric: 'norm', layers, steps, values },
    findings,
    compare: null,
    savedRuns: [{ runFile: '/work/.gradscope/runs/healthy.gsrun', label: 'healthy-mlp (yesterday)' }],
  };
}

/** A tensor detail: log10|g| histograms drifting upward, and a thumbnail with a few NaN cells. */
export function explodingDetail(tensorId, nSteps = 120, every = 2) {
  const r = rng(tensorId + 3);
  const histograms = [];
  for (let s = 0; s < nSteps; s += every) {
    const center = s > nSteps / 2 ? -3 + (s - nSteps / 2) / 4 : -3;
    const counts = Array.from({ length: 32 }, (_, k) => {
      const x = -8 + (k + 0.5) * (12 / 32);
      return Math.round(5000 * Math.exp(-((x - center) ** 2) / 1.5) * (0.8 + 0.4 * r()));
    });
    histograms.push({ step: s, histLo: -8, histHi: 4, counts });
  }
  const rows = 16;
  const cols = 16;
  const values = Array.from({ length: rows * cols }, (_, i) => {
    const y = Math.floor(i / cols);
    const x = i % cols;
    return i === 37 || i === 38 ? 'NaN' : 10 ** (-3 + 2 * Math.sin(x / 3) * Math.cos(y / 4) + r());
  });
  return { tensorId, histograms, thumbnail: { step: nSteps - 1, rows, cols, values }, stats: { step: nSteps - 1, mean: 1.2e-4, std: 3.4e-2, zeroFrac: 0.012 } };
}

/** An `append` message with `k` new steps after `after`, for every layer of the snapshot. */
export function appendMessage(snapshot, after, k, valueOf = () => -1) {
  const steps = Array.from({ length: k }, (_, i) => after + 1 + i);
  const layers = snapshot.layers;
  const values = [];
  for (let li = 0; li < layers.length; li++) for (let c = 0; c < k; c++) values.push(wireCell(valueOf(li, steps[c])));
  const layerNorms = {};
  layers.forEach(
    (l, li) =>
      (layerNorms[l] = wireCurve(
        steps,
        steps.map((s) => 10 ** valueOf(li, s)),
      )),
  );
  return {
    type: 'append',
    header: { ...snapshot.header, step: steps[k - 1] },
    globalNorm: wireCurve(
      steps,
      steps.map(() => 0.5),
    ),
    loss: wireCurve(
      steps,
      steps.map(() => 1),
    ),
    layerNorms,
    heatmap: { metric: snapshot.heatmap.metric, layers, steps, values },
    tensors: [],
    layers: [],
    findings: null,
  };
}

/** Wire curve `a` followed by `b`. */
function concatCurve(a, b) {
  return { steps: [...a.steps, ...b.steps], values: [...a.values, ...b.values] };
}

/**
 * The snapshot a host would send after `appends` (as made by appendMessage, same layers and metric):
 * what the panel should show, drawn at once, after it received `snapshot` and then the appends.
 */
export function mergeAppends(snapshot, appends) {
  const s = structuredClone(snapshot);
  for (const a of appends) {
    s.header = a.header;
    s.globalNorm = concatCurve(s.globalNorm, a.globalNorm);
    s.loss = concatCurve(s.loss, a.loss);
    for (const l of Object.keys(a.layerNorms)) s.layerNorms[l] = concatCurve(s.layerNorms[l] ?? { steps: [], values: [] }, a.layerNorms[l]);
    const h = s.heatmap;
    const n = h.steps.length;
    const k = a.heatmap.steps.length;
    const values = [];
    for (let r = 0; r < h.layers.length; r++) values.push(...h.values.slice(r * n, (r + 1) * n), ...a.heatmap.values.slice(r * k, (r + 1) * k));
    s.heatmap = { ...h, steps: [...h.steps, ...a.heatmap.steps], values };
    if (a.findings) s.findings = a.findings;
  }
  return s;
}
