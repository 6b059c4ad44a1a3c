// PyTorch as people train today, under GradScope: each script in test/fixtures/torch-styles/ is one
// training style (Lightning, the HF Trainer, a nanoGPT loop, torch.compile, a GAN, sparse
// embeddings, manual SGD, …). The script writes its own truth (GRADSCOPE_STYLE_TRUTH, see
// _truth.py): per optimizer step, the global gradient norm before clipping and unscaled, the loss
// over the step's micro-batches and which parameters had a gradient. `gradscope run --json` must
// agree with it step by step, put every tensor on the line the script built it, report "no
// gradient" as absent (not NaN), raise no warning or error finding on these healthy runs, and give
// exactly the run warnings each style calls for.
//
// Where an assertion fails, its message says whether the probe sent the wrong thing (the STEP
// frames in the run file) or the host made it wrong (store, JSON): the norm is checked on both.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { EventMsg, Message, StepMsg } from '../../../src/core/protocol/messages';
import type { RunJson } from '../../../src/core/report/runJson';
import { readRunFile } from '../../../src/core/store/runFile';
import { RunStore } from '../../../src/core/store/runStore';
import { repoRoot } from '../support/paths';
import { PYTHON, torchSkip } from './torchEnv';

const bin = join(repoRoot, 'bin', 'gradscope.js');
const stylesDir = join(repoRoot, 'test', 'fixtures', 'torch-styles');
const outDir = mkdtempSync(join(tmpdir(), 'gs-torch-styles-'));
/**
 * Relative tolerance of norms and losses: the scripts measure in float64, the probe reduces float32
 * gradients in float32 (as torch's clip_grad_norm_ does); measured differences are ≤ 1e-7 except
 * where a style says otherwise (Style.tolerance).
 */
const REL = 1e-5;
const CONCURRENCY = 2;
const RUN_TIMEOUT_MS = 150_000;

// ------------------------------------------------------------------------------------------------
// What the interpreter has.

type Feature = 'lightning' | 'transformers' | 'compile' | 'cpuGradScaler';
interface PythonInfo {
  torch: string;
  has: Record<Feature, boolean>;
}

function pythonInfo(): PythonInfo | null {
  if (torchSkip()) return null;
  const code = [
    'import importlib.util, json, torch',
    'has = lambda m: importlib.util.find_spec(m) is not None',
    'print(json.dumps({"torch": torch.__version__, "has": {"lightning": has("lightning"), "transformers": has("transformers"),',
    '  "compile": hasattr(torch, "compile"), "cpuGradScaler": hasattr(getattr(torch, "amp", None), "GradScaler")}}))',
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', code], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`cannot ask ${PYTHON} what it has: ${r.stderr}`);
  return JSON.parse(r.stdout) as PythonInfo;
}

const info = pythonInfo();

// ------------------------------------------------------------------------------------------------
// The styles.

interface Style {
  /** Test title. */
  title: string;
  script: string;
  args?: string[];
  needs?: Feature[];
  /** `--detail-every` given to gradscope (default: the probe's automatic interval). */
  detailEvery?: number;
  /** `--steps` given to gradscope (default 100: more than any script does, so it runs to its end). */
  stepLimit?: number;
  /** Optimizer steps GradScope must report. */
  steps: number;
  /** Tensor name (or alias) pattern → the `# gs:src KEY` markers of the lines that may have built it. */
  sources: [RegExp, string[]][];
  /** Run warnings GradScope must give, by code (none by default; `info` notes are allowed). */
  warnings?: string[];
  /** A looser relative tolerance than REL for the norms, and why. */
  tolerance?: { rel: number; why: string };
  /** No finding at all, not even `info` (the healthy language model of the issue). */
  noFindings?: boolean;
  /** Tied parameters: each group is one tensor listed under all these names (name + aliases). */
  tied?: string[][];
  /** Models a library builds: every tensor's `builtIn` names this package and a file matching `file`. */
  builtIn?: { package: string; file: RegExp };
  /** Optimizer steps a GradScaler skipped, and its scale after the last back-off. */
  skipped?: { count: number; scale: number };
  /** The `clip` event's max norm, when the script clips. */
  clip?: number;
  /** Optimizer names GradScope must report, when the script's own variable names are the natural ones. */
  optimizerNames?: string[];
  /** Optimizer mode GradScope must report for every optimizer (default "optimizer"). */
  mode?: 'optimizer' | 'backward';
  env?: Record<string, string>;
  /** torch.compile: no graph break or recompile may come from GradScope's own code. */
  dynamoLogs?: boolean;
}

const k = (...keys: string[]): string[] => keys;

const STYLES: Style[] = [
  {
    title: 'Lightning LightningModule + Trainer',
    script: 'lightning_module.py',
    needs: ['lightning'],
    steps: 8,
    sources: [
      [/encoder\.0\./, k('encoder.0')],
      [/encoder\.2\./, k('encoder.2')],
      [/classifier\./, k('classifier')],
    ],
  },
  {
    title: 'Lightning Trainer(gradient_clip_val=0.05): norms before the clip inside the closure',
    script: 'lightning_module.py',
    args: ['--clip', '0.05'],
    needs: ['lightning'],
    steps: 8,
    clip: 0.05,
    sources: [
      [/encoder\.0\./, k('encoder.0')],
      [/encoder\.2\./, k('encoder.2')],
      [/classifier\./, k('classifier')],
    ],
  },
  {
    title: 'HF Trainer on BertForSequenceClassification(config), 2-step accumulation, max_grad_norm=1',
    script: 'hf_trainer.py',
    needs: ['transformers'],
    steps: 5,
    clip: 1,
    sources: [[/./, k('model')]],
    builtIn: { package: 'transformers', file: /[\\/]transformers[\\/]models[\\/]bert[\\/]modeling_bert\.py$/ },
  },
  {
    title: 'nanoGPT loop: AdamW decay/no-decay groups, tied wte/lm_head, bf16 autocast, 4-step accumulation, clip_grad_norm_',
    script: 'nanogpt.py',
    args: ['--amp', 'bf16'],
    steps: 6,
    clip: 0.25,
    sources: NANOGPT_SOURCES(),
    tied: [['transformer.wte.weight', 'lm_head.weight']],
  },
  {
    title: 'nanoGPT loop with fp16 autocast and torch.amp.GradScaler (unscale_ then clip)',
    script: 'nanogpt.py',
    args: ['--amp', 'fp16'],
    needs: ['cpuGradScaler'],
    steps: 6,
    clip: 0.25,
    sources: NANOGPT_SOURCES(),
    tied: [['transformer.wte.weight', 'lm_head.weight']],
  },
  {
    // init_scale 2**22: fp16 overflows at the first two scales (2**22, 2**21), so GradScaler skips
    // two optimizer steps and backs off to 2**20, as fp16 runs often do while it calibrates.
    title: 'nanoGPT loop with fp16 GradScaler(init_scale=2**22): 2 overflow steps skipped',
    script: 'nanogpt.py',
    args: ['--amp', 'fp16', '--init-scale', String(2 ** 22)],
    needs: ['cpuGradScaler'],
    steps: 4,
    clip: 0.25,
    skipped: { count: 2, scale: 2 ** 20 },
    sources: NANOGPT_SOURCES(),
    tied: [['transformer.wte.weight', 'lm_head.weight']],
  },
  {
    // aot_eager: dynamo traces exactly as with inductor (where a probe would break graphs), without
    // inductor's C++ compile of every kernel, which costs tens of seconds on two cores.
    title: 'nanoGPT loop with torch.compile(model) (aot_eager backend)',
    script: 'nanogpt.py',
    args: ['--amp', 'bf16', '--compile', '--backend', 'aot_eager'],
    needs: ['compile'],
    steps: 6,
    clip: 0.25,
    sources: NANOGPT_SOURCES(),
    tied: [['transformer.wte.weight', 'lm_head.weight']],
    dynamoLogs: true,
    env: { TORCH_LOGS: 'graph_breaks,recompiles' },
  },
  {
    title: 'frozen backbone, then unfrozen into a second parameter group',
    script: 'frozen_then_unfrozen.py',
    steps: 7,
    sources: [
      [/backbone\.0\./, k('backbone.0')],
      [/backbone\.2\./, k('backbone.2')],
      [/head\./, k('head')],
    ],
  },
  {
    title: 'two optimizers (GAN: opt_d then opt_g)',
    script: 'gan.py',
    steps: 10,
    optimizerNames: ['opt_d', 'opt_g'],
    sources: [
      [/netG\.0\./, k('netG.0')],
      [/netG\.2\./, k('netG.2')],
      [/netD\.0\./, k('netD.0')],
      [/netD\.2\./, k('netD.2')],
    ],
  },
  {
    title: 'a head used on even steps only, zero_grad(set_to_none=True)',
    script: 'unused_head.py',
    steps: 8,
    sources: [
      [/trunk\.0\./, k('trunk.0')],
      [/trunk\.2\./, k('trunk.2')],
      [/main_head\./, k('main_head')],
      [/aux_head\./, k('aux_head')],
    ],
  },
  {
    title: 'sparse embeddings: SparseAdam beside Adam',
    script: 'sparse_embeddings.py',
    steps: 12,
    optimizerNames: ['sparse_opt', 'dense_opt'],
    sources: [
      [/items\./, k('items')],
      [/users\./, k('users')],
      [/mlp\./, k('mlp')],
    ],
  },
  {
    title: 'manual SGD, no torch.optim (p.data.add_): backward passes are steps, --steps 12 stops it',
    script: 'manual_sgd.py',
    stepLimit: 12,
    steps: 12,
    mode: 'backward',
    warnings: ['backward-steps'],
    sources: [[/fc\./, k('fc')]],
  },
  {
    title: 'nn.TransformerEncoder language model, 5000-token embedding (healthy: no finding)',
    script: 'transformer_lm.py',
    steps: 30,
    noFindings: true,
    tolerance: {
      rel: 5e-5,
      why: "torch's own float32 vector_norm of the 5000×32 decoder gradient differs from float64 by 1.4e-5 (measured on 1.13 and 2.13); the probe, like clip_grad_norm_, reduces in float32",
    },
    // A detail sample every 2 steps: enough zero-fraction samples (97 % zero rows in the embedding's
    // gradient) for the dead-units detector to judge within 30 steps.
    detailEvery: 2,
    sources: [
      [/embedding\./, k('embedding')],
      // nn.TransformerEncoder deep-copies its layer: the container's line or the original layer's.
      [/transformer_encoder\.layers\./, k('encoder_layer', 'transformer_encoder')],
      [/decoder\./, k('decoder')],
    ],
  },
  {
    title: 'torch.compile(opt.step) ("compiling the optimizer" recipe, aot_eager backend)',
    script: 'compiled_optimizer_step.py',
    args: ['--backend', 'aot_eager'],
    needs: ['compile'],
    steps: 5,
    sources: [[/./, k('model')]],
    dynamoLogs: true,
    env: { TORCH_LOGS: 'graph_breaks,recompiles' },
  },
];

function NANOGPT_SOURCES(): [RegExp, string[]][] {
  return [
    // Tied: listed once, under either owner's name; either construction line.
    [/transformer\.wte\.weight|lm_head\.weight/, k('wte', 'lm_head')],
    [/transformer\.wpe\./, k('wpe')],
    // A user-defined LayerNorm built five times: each instance's own line, not its nn.Parameter line.
    [/\.ln_1\./, k('ln_1')],
    [/\.ln_2\./, k('ln_2')],
    [/transformer\.ln_f\./, k('ln_f')],
    [/attn\.c_attn\./, k('c_attn')],
    [/attn\.c_proj\./, k('attn.c_proj')],
    [/mlp\.c_fc\./, k('c_fc')],
    [/mlp\.c_proj\./, k('mlp.c_proj')],
  ];
}

// ------------------------------------------------------------------------------------------------
// Running them: `gradscope run SCRIPT --json --steps N --out DIR -- ARGS`, two at a time.

interface TruthStep {
  step: number;
  optimizer: string;
  norm: number;
  loss: number | null;
  withGrad: string[];
  params: string[];
}

interface TruthSkip {
  skipped: number;
  scale: number;
  step: number;
}

interface StyleRun {
  code: number | null;
  stdout: string;
  stderr: string;
  truth: TruthStep[];
  skips: TruthSkip[];
  ms: number;
}

function gradscope(style: Style, truthFile: string): Promise<StyleRun> {
  const args = ['run', join(stylesDir, style.script), '--json', '--steps', String(style.stepLimit ?? 100), '--out', outDir];
  if (style.detailEvery) args.push('--detail-every', String(style.detailEvery));
  if (style.args?.length) args.push('--', ...style.args);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...style.env, GRADSCOPE_PYTHON: PYTHON, GRADSCOPE_STYLE_TRUTH: truthFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(t);
      let lines: (TruthStep | TruthSkip)[] = [];
      try {
        lines = readFileSync(truthFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as TruthStep | TruthSkip);
      } catch {
        // no truth file: the script did not get as far as its first step (stderr says why)
      }
      const truth = lines.filter((l): l is TruthStep => !('skipped' in l));
      const skips = lines.filter((l): l is TruthSkip => 'skipped' in l);
      resolve({ code, stdout, stderr, truth, skips, ms: Date.now() - t0 });
    });
  });
}

/** GRADSCOPE_STYLES=a,b runs only the styles whose script name contains one of these (while working on one). */
const only = (process.env.GRADSCOPE_STYLES ?? '').split(',').filter(Boolean);
const selected = (s: Style): boolean => only.length === 0 || only.some((o) => s.script.includes(o));
const runnable = (s: Style): boolean => !!info && selected(s) && (s.needs ?? []).every((f) => info.has[f]);
let all: Map<Style, Promise<StyleRun>> | null = null;

/** Starts every runnable style on first use, CONCURRENCY at a time, in the order of STYLES. */
function runOf(style: Style): Promise<StyleRun> {
  if (!all) {
    all = new Map();
    const queue: (() => void)[] = [];
    let active = 0;
    const next = (): void => {
      while (active < CONCURRENCY && queue.length) {
        active++;
        queue.shift()!();
      }
    };
    STYLES.filter(runnable).forEach((s, i) => {
      all!.set(
        s,
        new Promise<StyleRun>((resolve) => {
          queue.push(() => {
            void gradscope(s, join(outDir, `truth-${i}.jsonl`)).then((r) => {
              active--;
              resolve(r);
              next();
            });
          });
        }),
      );
    });
    next();
  }
  return all.get(style)!;
}

// ------------------------------------------------------------------------------------------------
// What GradScope reported, in one place: the JSON document and the run file it names (its STEP,
// OPTIMIZER and EVENT frames and the store built from them). The tests read GradScope's output only
// through gsView(), so a change of the JSON's shape is adapted here.

interface GsStep {
  index: number;
  optimizer: number;
  /** Tensors the STEP covers (ids below it). */
  nTensors: number;
  /** The store's global norm of this step (what GradScope shows). */
  norm: number;
  /** sqrt(Σ norm²) over the STEP frame's tensors that had a gradient: what the probe sent. */
  sentNorm: number;
  /** The loss the STEP carried (null: none). */
  loss: number | null;
  /** Tensor ids the STEP says had a gradient. */
  present: Set<number>;
  /** Whether the STEP carried a hasGrad column at all. */
  hasGradColumn: boolean;
  /** Tensors without a gradient whose statistics the STEP still gave as numbers or NaN (no column). */
  nanWithoutColumn: number[];
}

interface GsTensor {
  id: number;
  name: string;
  aliases: string[];
  source: { file: string; line: number } | null;
  /** JSON `builtIn`: where a library constructed the tensor's module. */
  builtIn: { file: string; line: number; package: string } | undefined;
  /** JSON `absentSteps`: steps at which it had no gradient. */
  absentSteps: number;
}

interface GsOptimizer {
  id: number;
  name: string;
  mode: string;
  /** STEPs of this optimizer per the JSON. */
  steps: number;
}

interface GsWarning {
  code: string;
  level: string;
  message: string;
}

interface GsView {
  doc: RunJson;
  steps: GsStep[];
  tensors: GsTensor[];
  /** The JSON's `optimizers`, by id. */
  optimizers: Map<number, GsOptimizer>;
  events: EventMsg[];
  /** Points of the store's loss curve. */
  lossPoints: number;
  warnings: GsWarning[];
  /** Findings of severity error or warning. */
  alarms: GsFinding[];
  /** Every finding. */
  findings: GsFinding[];
}

interface GsFinding {
  kind: string;
  severity: string;
  layer: string | null;
  message: string;
  remedies: string[];
}

class RecordingStore extends RunStore {
  readonly messages: Message[] = [];
  override ingest(msg: Message): void {
    // The decoder's columns are views of its chunk buffer, which it reuses: keep copies.
    this.messages.push(msg.type === 'step' ? { ...msg, columns: msg.columns.map((c) => Float64Array.from(c)) } : msg);
    super.ingest(msg);
  }
}

/** The one place that reads the JSON (gradscope.run/1.1) and the frames of the run file. */
function gsView(doc: RunJson): GsView {
  assert.match(doc.schema, /^gradscope\.run\/1(\.|$)/);
  assert.ok(doc.runFile, 'the JSON names its run file');
  const store = new RecordingStore();
  const back = readRunFile(doc.runFile, store);
  assert.equal(back.error, null, `run file: ${back.error?.message}`);
  const curve = store.globalNorm();
  assert.equal(curve.width, 1, 'no decimation at this size');
  const stepMsgs = store.messages.filter((m): m is StepMsg => m.type === 'step');
  const steps: GsStep[] = stepMsgs.map((m, i) => {
    const col = (name: string): Float64Array | undefined => {
      const at = m.stats.indexOf(name as StepMsg['stats'][number]);
      return at < 0 ? undefined : m.columns[at];
    };
    const norms = col('norm')!;
    const has = col('hasGrad');
    const present = new Set<number>();
    const nanWithoutColumn: number[] = [];
    let sq = 0;
    for (let t = 0; t < m.nTensors; t++) {
      if (has ? has[t] === 1 : true) {
        present.add(t);
        sq += norms[t] * norms[t];
        if (!has && Number.isNaN(norms[t])) nanWithoutColumn.push(t);
      }
    }
    return {
      index: m.step,
      optimizer: m.optimizer,
      nTensors: m.nTensors,
      norm: i < curve.values.length ? curve.values[i] : NaN,
      sentNorm: Math.sqrt(sq),
      loss: m.loss,
      present,
      hasGradColumn: !!has,
      nanWithoutColumn,
    };
  });
  const optimizers = new Map<number, GsOptimizer>(doc.optimizers.map((o) => [o.id, { id: o.id, name: o.name, mode: o.mode, steps: o.steps }]));
  const warnings = doc.warnings.map((w) => ({ code: w.code, level: w.level, message: w.message }));
  const findings = doc.findings.map((f) => ({ kind: f.kind, severity: f.severity, layer: f.layer, message: f.message, remedies: f.remedies.map((r) => r.id) }));
  return {
    doc,
    steps,
    tensors: doc.tensors.map((t) => ({
      id: t.id,
      name: t.name,
      aliases: t.aliases ?? [],
      source: t.source,
      absentSteps: t.absentSteps,
      builtIn: t.builtIn,
    })),
    optimizers,
    events: store.events.slice(),
    lossPoints: store.loss().values.length,
    warnings,
    alarms: findings.filter((f) => f.severity === 'error' || f.severity === 'warning'),
    findings,
  };
}

// ------------------------------------------------------------------------------------------------
// Comparisons.

const close = (a: number, b: number, rel = REL): boolean => Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-12);

/**
 * The GradScope tensor a name of the script's denotes (by its name or an alias): the same name; or
 * GradScope put the root's variable before a name the script gives relative to its model; or the
 * script's name has a root (`model.`) that GradScope leaves out, as long as a module path remains
 * (`transformer.wte.weight` for `model.transformer.wte.weight`, never a bare `bias` for `fc.bias`).
 */
function tensorOf(view: GsView, name: string): GsTensor | undefined {
  const unrooted = name.slice(name.indexOf('.') + 1);
  const is = (n: string): boolean => n === name || n.endsWith('.' + name) || (unrooted.includes('.') && n === unrooted);
  const hits = view.tensors.filter((t) => is(t.name) || t.aliases.some(is));
  return hits.length === 1 ? hits[0] : undefined;
}

function markerLines(script: string): Map<string, number> {
  const out = new Map<string, number>();
  readFileSync(script, 'utf8')
    .split('\n')
    .forEach((l, i) => {
      const m = /#\s*gs:src\s+(\S+)/.exec(l);
      if (m) out.set(m[1], i + 1);
    });
  return out;
}

const fmt = (v: number | null | undefined): string => (v === null || v === undefined ? String(v) : Number.isNaN(v) ? 'NaN' : v.toPrecision(8));

// ------------------------------------------------------------------------------------------------

const title = info ? `torch styles under GradScope (${PYTHON}, torch ${info.torch})` : `torch styles under GradScope (${PYTHON})`;

describe(title, { skip: torchSkip() }, () => {
  for (const style of STYLES) {
    const missing = info ? (style.needs ?? []).filter((f) => !info.has[f]) : [];
    const skip = missing.length ? `${PYTHON} has no ${missing.join(', ')}` : selected(style) ? false : 'not in GRADSCOPE_STYLES';
    const script = join(stylesDir, style.script);
    const rel = style.tolerance?.rel ?? REL;

    describe(`${style.title} [${style.script}${style.args ? ' ' + style.args.join(' ') : ''}]`, { skip }, () => {
      const viewOf = async (): Promise<{ run: StyleRun; view: GsView }> => {
        const run = await runOf(style);
        assert.equal(run.code, 0, `gradscope exited ${run.code}:\n${run.stderr.slice(-3000)}`);
        return { run, view: gsView(JSON.parse(run.stdout) as RunJson) };
      };

      it(`runs to the end with ${style.steps} steps`, async (t) => {
        t.diagnostic(`${style.script}: ${(await runOf(style)).ms} ms`);
        const { run, view } = await viewOf();
        assert.equal(view.doc.framework, 'torch');
        assert.equal(view.doc.backend, 'cpu', 'HELLO backend (right also when the first frame is a clip event)');
        assert.equal(view.doc.exit.reason, style.stepLimit ? 'step-limit' : 'completed', JSON.stringify(view.doc.exit));
        assert.equal(view.doc.steps, style.steps, `steps (the script made ${run.truth.length})`);
        assert.equal(view.steps.length, style.steps, 'STEP frames in the run file');
        assert.ok(run.truth.length >= style.steps, `the script wrote ${run.truth.length} truth lines`);
        if (!style.stepLimit) assert.equal(run.truth.length, style.steps, 'the script made that many steps');
      });

      it('per-step global norm equals the norm the script measured before clipping, unscaled', async (t) => {
        const { run, view } = await viewOf();
        const bad: string[] = [];
        const relErr = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);
        const n = Math.min(view.steps.length, run.truth.length);
        const worst = (f: (i: number) => number): string => (n ? Math.max(...Array.from({ length: n }, (_, i) => f(i))).toExponential(1) : '-');
        const lossErr = (i: number): number => {
          const [got, want] = [view.steps[i].loss, run.truth[i].loss];
          return want === null ? 0 : got === null ? Infinity : relErr(got, want);
        };
        t.diagnostic(`largest relative difference to the script: norm ${worst((i) => relErr(view.steps[i].norm, run.truth[i].norm))}, loss ${worst(lossErr)}`);
        view.steps.slice(0, run.truth.length).forEach((s, i) => {
          const t = run.truth[i];
          if (!close(s.norm, t.norm, rel) || !close(s.sentNorm, t.norm, rel)) {
            const side = close(s.sentNorm, t.norm, rel) ? 'host' : 'probe';
            bad.push(`step ${i} (${t.optimizer}): script ${fmt(t.norm)}, probe sent ${fmt(s.sentNorm)}, GradScope shows ${fmt(s.norm)} [${side}]`);
          }
        });
        assert.deepEqual(bad, [], `relative tolerance ${rel}${style.tolerance ? ` (${style.tolerance.why})` : ''}`);
        if (view.steps.length) {
          const truth = run.truth.slice(0, view.steps.length).map((t) => t.norm);
          const g = view.doc.summary.globalNorm;
          assert.ok(g.first !== null && close(g.first, truth[0], rel), `JSON summary globalNorm.first ${fmt(g.first)} vs ${fmt(truth[0])}`);
          assert.ok(g.max !== null && close(g.max, Math.max(...truth), rel), `JSON summary globalNorm.max ${fmt(g.max)} vs ${fmt(Math.max(...truth))}`);
          assert.ok(g.last !== null && close(g.last, truth[truth.length - 1], rel), `JSON summary globalNorm.last ${fmt(g.last)}`);
        }
      });

      it("per-step loss equals the script's loss over the step's micro-batches, unscaled", async () => {
        const { run, view } = await viewOf();
        const bad: string[] = [];
        view.steps.slice(0, run.truth.length).forEach((s, i) => {
          const t = run.truth[i];
          if (t.loss === null ? s.loss !== null : s.loss === null || !close(s.loss, t.loss)) {
            bad.push(
              `step ${i} (${t.optimizer}): script ${fmt(t.loss)}, GradScope ${s.loss === null ? 'none' : fmt(s.loss)}${t.loss && s.loss ? ` (×${(s.loss / t.loss).toPrecision(4)})` : ''}`,
            );
          }
        });
        assert.deepEqual(bad, [], `relative tolerance ${REL}`);
        const expected = run.truth.slice(0, view.steps.length).filter((t) => t.loss !== null).length;
        assert.equal(view.lossPoints, expected, 'loss points in the store: one per step that had a loss');
      });

      it('parameters without a gradient are absent (not NaN); the others present; no non-finite anywhere', async () => {
        const { run, view } = await viewOf();
        const bad: string[] = [];
        view.steps.slice(0, run.truth.length).forEach((s, i) => {
          const t = run.truth[i];
          const want = new Set<number>();
          for (const n of t.withGrad) {
            const hit = tensorOf(view, n);
            if (hit) want.add(hit.id);
            else bad.push(`step ${i}: no single GradScope tensor for the script's ${n} (${view.tensors.map((x) => x.name).join(', ')})`);
          }
          const extra = [...s.present].filter((id) => !want.has(id)).map((id) => view.tensors[id]?.name ?? `#${id}`);
          const lost = [...want].filter((id) => !s.present.has(id)).map((id) => view.tensors[id]?.name ?? `#${id}`);
          if (extra.length)
            bad.push(`step ${i} (${t.optimizer}): present in GradScope, no gradient in the script: ${extra.join(', ')}${s.hasGradColumn ? '' : ' [probe: STEP has no hasGrad column]'}`);
          if (lost.length) bad.push(`step ${i} (${t.optimizer}): gradient in the script, not in GradScope's step: ${lost.join(', ')}`);
          if (s.nanWithoutColumn.length) bad.push(`step ${i}: NaN sent for tensors without a gradient: ${s.nanWithoutColumn.map((id) => view.tensors[id]?.name).join(', ')} [probe]`);
        });
        assert.deepEqual(bad, []);
        // The JSON counts, per tensor, the steps it was known at (id < nTensors) without a gradient,
        // among the steps of the optimizer that trains it (a GAN's D is not absent at G's steps).
        const trains = new Map(view.doc.optimizers.map((o) => [o.id, new Set(o.tensorIds)]));
        const ownStep = (s: GsStep, id: number): boolean => trains.get(s.optimizer)?.has(id) ?? true;
        const absent = view.tensors.map((x) => {
          const want = view.steps.slice(0, run.truth.length).filter((s, i) => x.id < s.nTensors && ownStep(s, x.id) && !run.truth[i].withGrad.some((n) => tensorOf(view, n) === x)).length;
          return x.absentSteps === want ? null : `${x.name}: absentSteps ${x.absentSteps}, expected ${want}`;
        });
        assert.deepEqual(absent.filter(Boolean), [], 'JSON tensors[].absentSteps [host]');
        assert.equal(view.doc.summary.firstNonFiniteStep, null, 'no first non-finite step on a run without NaN [host]');
        assert.equal(view.events.filter((e) => e.kind === 'non-finite').length, 0, 'no non-finite EVENT [probe]');
        assert.ok(
          view.steps.every((s) => Number.isFinite(s.norm)),
          `finite global norms: ${view.steps.map((s) => fmt(s.norm)).join(' ')}`,
        );
      });

      it('each tensor points at the line of the script that built it', async () => {
        const { view } = await viewOf();
        const lines = markerLines(script);
        const bad: string[] = [];
        assert.ok(view.tensors.length > 0, 'tensors');
        for (const t of view.tensors) {
          const names = [t.name, ...t.aliases];
          const rule = style.sources.find(([re]) => names.some((n) => re.test(n)));
          if (!rule) {
            bad.push(`${t.name}: a tensor this test does not expect`);
            continue;
          }
          const want = rule[1].map((key) => {
            const l = lines.get(key);
            assert.ok(l, `marker gs:src ${key} in ${style.script}`);
            return l;
          });
          if (t.source?.file !== script || !want.includes(t.source.line)) {
            bad.push(`${t.name}: ${t.source ? `${t.source.file === script ? '' : t.source.file + ':'}${t.source.line}` : 'no source'}, expected line ${want.join(' or ')}`);
          }
        }
        assert.deepEqual(bad, []);
      });

      it('tensors are named cleanly, tied weights listed once', async () => {
        const { run, view } = await viewOf();
        // Every parameter of these scripts lives in a module: a name without a module path is not one.
        const bad = view.tensors.filter((t) => /^self\.|(^|\.)(_orig_mod|_fsdp_wrapped_module)\./.test(t.name) || !t.name.includes('.')).map((t) => t.name);
        assert.deepEqual(bad, [], 'names without self. / _orig_mod., each with its module path');
        const params = new Set(run.truth.flatMap((t) => t.params));
        const missing = [...params].filter((n) => !tensorOf(view, n));
        assert.deepEqual(missing, [], `every trained parameter is one GradScope tensor (${view.tensors.map((t) => t.name).join(', ')})`);
        assert.equal(view.tensors.length, params.size, 'one tensor per distinct parameter');
      });

      it('optimizers: each step labelled with its optimizer', async () => {
        const { run, view } = await viewOf();
        assert.ok(view.optimizers.size > 0, 'optimizers in the JSON (from the OPTIMIZER frames)');
        for (const [id, o] of view.optimizers) assert.equal(o.mode, style.mode ?? 'optimizer', `optimizer ${id} (${o.name}) mode`);
        const names = [...new Set(run.truth.map((t) => t.optimizer))];
        assert.equal(view.optimizers.size, names.length, `optimizers: ${JSON.stringify([...view.optimizers.values()])}`);
        const n = Math.min(view.steps.length, run.truth.length);
        for (let i = 0; i < n; i++) {
          const s = view.steps[i];
          assert.ok(view.optimizers.has(s.optimizer), `step ${i} names optimizer ${s.optimizer}, announced`);
          // Steps of the same script optimizer carry the same id, of different ones different ids.
          const first = run.truth.findIndex((t) => t.optimizer === run.truth[i].optimizer);
          assert.equal(s.optimizer, view.steps[first].optimizer, `step ${i} (${run.truth[i].optimizer})`);
        }
        const idOf = (name: string): number => view.steps[run.truth.findIndex((t) => t.optimizer === name)].optimizer;
        if (style.optimizerNames)
          assert.deepEqual(
            names.map((nm) => view.optimizers.get(idOf(nm))?.name),
            style.optimizerNames,
          );
        for (const nm of names) {
          const o = view.optimizers.get(idOf(nm))!;
          const want = run.truth.slice(0, view.steps.length).filter((t) => t.optimizer === nm).length;
          assert.equal(o.steps, want, `steps of ${o.name} in the JSON`);
        }
      });

      it(style.warnings ? `warns: ${style.warnings.join(', ')}` : 'no run warning', async (t) => {
        const { view } = await viewOf();
        const want = style.warnings ?? [];
        const notes = view.warnings.filter((w) => w.level !== 'warning');
        if (notes.length) t.diagnostic(`notes: ${JSON.stringify(notes)}`);
        const unexpected = view.warnings.filter((w) => w.level === 'warning' && !want.includes(w.code));
        assert.deepEqual(unexpected, [], 'warnings this style must not give');
        for (const code of want)
          assert.ok(
            view.warnings.some((w) => w.code === code),
            `a ${code} warning: ${JSON.stringify(view.warnings)}`,
          );
        const probeWarnings = view.events.filter((e) => e.kind === 'warning');
        assert.deepEqual(probeWarnings, [], 'warning EVENTs: the probe failed at something [probe]');
      });

      it(style.noFindings ? 'no finding at all (a healthy run)' : 'no warning or error finding (a healthy run)', async () => {
        const { view } = await viewOf();
        assert.deepEqual(style.noFindings ? view.findings : view.alarms, []);
      });

      if (style.clip !== undefined) {
        it(`records the clip threshold ${style.clip}, and offers no clipping to a script that clips`, async () => {
          const { view } = await viewOf();
          const clips = view.events.filter((e) => e.kind === 'clip').map((e) => e.value);
          assert.ok(
            clips.some((v) => v !== undefined && close(v, style.clip!, 1e-9)),
            `clip events: ${JSON.stringify(clips)}`,
          );
          assert.deepEqual(
            view.findings.filter((f) => f.remedies.includes('clip-global-norm')),
            [],
          );
        });
      }

      if (style.tied) {
        it("a tied weight is one tensor with every owner's name", async () => {
          const { view } = await viewOf();
          for (const group of style.tied!) {
            const names = (t: GsTensor): string[] => [t.name, ...t.aliases];
            const hit = view.tensors.filter((t) => group.every((g) => names(t).some((n) => n === g || n.endsWith('.' + g))));
            assert.equal(hit.length, 1, `one tensor named ${group.join(' = ')}: ${JSON.stringify(view.tensors.map(names).filter((n) => n.length > 1))}`);
          }
        });
      }

      if (style.builtIn) {
        const want = style.builtIn;
        it(`records where ${want.package} built each module (builtIn)`, async () => {
          const { view } = await viewOf();
          const bad = view.tensors
            .filter((t) => !(t.builtIn && t.builtIn.package === want.package && want.file.test(t.builtIn.file) && t.builtIn.line > 0))
            .map((t) => `${t.name}: ${JSON.stringify(t.builtIn)}`);
          assert.deepEqual(bad, []);
        });
      }

      if (style.skipped) {
        const want = style.skipped;
        it(`counts the ${want.count} steps the GradScaler skipped, with its scale`, async () => {
          const { run, view } = await viewOf();
          assert.equal(run.skips.length, want.count, `the script saw ${run.skips.length} skipped steps`);
          const ev = view.events.filter((e) => e.kind === 'skipped-step');
          assert.equal(ev.length, want.count, `skipped-step EVENTs: ${JSON.stringify(ev)} [probe]`);
          ev.forEach((e, i) => {
            assert.equal(e.count, run.skips[i].skipped, `event ${i} count`);
            assert.equal(e.step, run.skips[i].step, `event ${i}: the index the next step will have`);
            assert.equal(e.value, run.skips[i].scale, `event ${i}: the scale after the back-off`);
          });
          assert.equal(run.skips[run.skips.length - 1].scale, want.scale);
          const w = view.warnings.find((x) => x.code === 'skipped-steps');
          assert.ok(w, `a skipped-steps note: ${JSON.stringify(view.warnings)} [host]`);
          assert.equal(w.level, 'info', 'a few skipped steps while the scale calibrates are normal');
        });
      }

      if (style.dynamoLogs) {
        it('adds no graph break and no recompile of its own (TORCH_LOGS=graph_breaks,recompiles)', async () => {
          const { run } = await viewOf();
          const logs = run.stderr.split('\n').filter((l) => /\[__(graph_breaks|recompiles)\]/.test(l));
          // Headers name where dynamo broke or recompiled; the stacks under them always pass through
          // the probe's __main__ (it runs the script), so only the headers are judged.
          const ours = logs.filter((l) => /(Graph break.* in user code at|Recompiling function .* in) \S*gradscope_probe/.test(l));
          assert.deepEqual(ours, [], 'graph breaks and recompiles in the probe [probe]');
          const recompiles = logs.filter((l) => /Recompiling function/.test(l));
          assert.deepEqual(recompiles, [], 'recompiles');
        });
      }
    });
  }
});
