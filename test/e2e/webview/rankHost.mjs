// The host side of a distributed run's panel, for the browser tests and the screenshots: a real
// 2-rank DDP run (test/fixtures/distributed/diverge.py, recorded with `gradscope run --nproc-per-node 2`)
// read back with the extension's own code (readRunFile, readRankFiles, savedRunHandle) and turned into
// the messages the inspection panel sends (buildSnapshot, buildRanks), compiled here by esbuild.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { ROOT } from './browser.mjs';

export const DIVERGE_RUN = join(ROOT, 'test/fixtures/distributed/runs/diverge.gsrun');

const ENTRY = `
import { readRunFile } from './src/core/store/runFile';
import { readRankFiles } from './src/process/rankRecorder';
import { analyzerFor, savedRunHandle, shownStore } from './src/process/runHandle';
import { analyzeRanks } from './src/core/analysis/crossRank';
import { buildRanks, crossRankView, expectedRankCount, findRank, runProcesses, wholeRanks } from './src/core/view/ranks';
import { buildReportHtml } from './src/core/view/report';
import { buildSnapshot, buildTensorDetail, reportData, runHeader } from './src/core/view/snapshot';
export { buildRanks, buildReportHtml };

/** A saved distributed run as the panel's host shows it: a snapshot of the rank picked (null: the default). */
export async function rankHost(runFile, { expected = 0 } = {}) {
  const run = savedRunHandle(runFile, readRunFile(runFile), await readRankFiles(runFile));
  const procs = runProcesses(run.store, run.ranks);
  const analyzers = new Map();
  const findings = (store) => {
    if (store === run.store) return [...run.analyzer.findings];
    if (!analyzers.has(store)) analyzers.set(store, analyzerFor(store).finish());
    return [...analyzers.get(store)];
  };
  const crossRank = crossRankView();
  const storeOf = (key) => findRank(procs, key)?.store ?? shownStore(run);
  return {
    procs,
    detail: (key, tensorId, step) => buildTensorDetail(storeOf(key), tensorId, step),
    snapshot(key = null, opts = {}) {
      const store = storeOf(key);
      const shown = procs.find((r) => r.store === store);
      const header = runHeader(store, { runId: run.id, script: run.script, status: run.exit?.reason ?? 'saved', statusMessage: run.exit?.message ?? 'saved' });
      const snapshot = buildSnapshot(store, { header, findings: findings(store), metric: 'norm', compare: null, savedRuns: [], ...opts });
      snapshot.ranks = buildRanks(procs, { shown, expected: expectedRankCount(procs, expected), crossRank: crossRank(procs) ?? undefined });
      return snapshot;
    },
    /** What \`gradscope run --report\` embeds for the rank picked (null: the default): reportData with the ranks part. */
    report(key = null) {
      const store = storeOf(key);
      const header = runHeader(store, { runId: run.id, script: run.script, status: 'saved', statusMessage: 'saved' });
      return reportData(store, header, findings(store), wholeRanks(run, store, analyzeRanks(procs)));
    },
  };
}
`;

/** Compiles the host code above; returns its module and a cleanup. */
export async function loadRankHost() {
  const dir = mkdtempSync(join(tmpdir(), 'gradscope-rankhost-'));
  const out = join(dir, 'rankHost.mjs');
  await build({
    stdin: { contents: ENTRY, resolveDir: ROOT, loader: 'ts', sourcefile: 'rankHost.ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile: out,
    logLevel: 'warning',
    // The activation lookup reads the user's files with the Python parser (wasm); not needed to draw.
    external: ['web-tree-sitter', '@vscode/tree-sitter-wasm'],
  });
  const mod = await import(pathToFileURL(out).href);
  return { ...mod, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
