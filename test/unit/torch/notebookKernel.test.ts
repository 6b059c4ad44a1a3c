// "Inspect This Notebook's Kernel" against a real kernel (issue 18): the host's listener
// (src/process/kernelRun.ts) open, a real ipykernel started by test/fixtures/notebook/kernel_driver.py
// (jupyter_client, as the Jupyter extension's kernel.executeCode would run code), the attach code the
// extension sends executed in it, then the notebook's cells: the steps arrive live (before any
// detach), the finding's location is the cell and line that built the layer, the live numbers are
// the ones of the run file the kernel wrote, Detach ends the run, and attaching again does not
// stack hooks (one STEP per optimizer step, and every hooked function is the original after off).
// Needs .venv-torch2 (torch 2, ipykernel, jupyter_client); GRADSCOPE_NB_PYTHON overrides.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readRunFile } from '../../../src/core/store/runFile';
import { cellSourceOf, notebookCodeCells } from '../../../src/core/fixes/notebookCell';
import { attachCode, detachCode, KernelListener, kernelRunFolder, pasteLines, type KernelRun } from '../../../src/process/kernelRun';
import { KernelDriver } from '../support/kernel';
import { fixture, repoRoot } from '../support/paths';
import { readFileSync } from 'node:fs';

const PY = process.env.GRADSCOPE_NB_PYTHON || join(repoRoot, '.venv-torch2', 'bin', 'python');
const missing = existsSync(PY) ? null : `no ${PY} (scripts/setup-torch.sh makes .venv-torch2 with ipykernel)`;
// As torchSkip: under `npm test` and in CI a missing interpreter is a failure, not a skip.
if (missing && (process.env.CI || process.env.GRADSCOPE_REQUIRE_TORCH)) throw new Error(`the notebook kernel tests cannot run: ${missing}`);
const skip = missing ?? false;
const PROBE_DIR = join(repoRoot, 'dist', 'probe', 'torch');

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('notebook kernel attach (real ipykernel, real socket)', { skip, timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'gs-nbk-'));
  const nb = join(dir, 'train.ipynb');
  copyFileSync(fixture('notebook', 'train.ipynb'), nb);
  const nbText = readFileSync(nb, 'utf8');
  const cell = (i: number): string => cellSourceOf(nbText, i)!;
  let kernel: KernelDriver;
  let listener: KernelListener;
  const runs: KernelRun[] = [];

  before(async () => {
    kernel = new KernelDriver(PY, fixture('notebook', 'kernel_driver.py'), dir);
    listener = await KernelListener.open(nb, async () => {
      await kernel.exec(detachCode());
      return true;
    });
    listener.onDidStartRun((r) => runs.push(r));
    await kernel.ready();
  });

  after(async () => {
    listener?.dispose();
    await kernel?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('attaches, streams the steps live, and puts the finding on its cell line', async () => {
    assert.ok(notebookCodeCells(nbText)!.some((c) => c.index === 3));
    const setup = await kernel.exec(cell(1));
    assert.ok(setup.ok, setup.error ?? '');
    const a = await kernel.exec(attachCode(PROBE_DIR, listener.address, nb));
    assert.ok(a.ok, `${a.error} ${a.stderr}`);
    assert.match(a.stdout, /GradScope is on: writing .*\.gsrun, streaming to GradScope/);
    const train = await kernel.exec(cell(3));
    assert.ok(train.ok, train.error ?? '');
    // Live: the steps are here while the kernel is still attached (no detach, no kernel exit yet).
    await until('the 6 steps of cell 3', () => runs.length === 1 && runs[0].store.stepCount === 6);
    const run = runs[0];
    assert.equal(run.exited, false);
    assert.equal(run.script, nb);
    assert.equal(run.store.hello?.framework, 'torch');
    const first = run.store.tensors.find((t) => t.name === 'net.0.weight')!;
    assert.deepEqual({ file: first.source?.file, cell: first.source?.cell, line: first.source?.line }, { file: nb, cell: 3, line: 4 });
    assert.match(cell(3).split('\n')[first.source!.line - 1], /torch\.nn\.Linear\(16, 16\)/);
    run.analyzer.update();
    const f = run.analyzer.findings.find((x) => x.source?.cell === 3);
    assert.ok(f, `a finding in cell 3: ${run.analyzer.findings.map((x) => `${x.kind}@${JSON.stringify(x.source)}`).join('; ')}`);
    assert.match(cell(3).split('\n')[f.source!.line - 1], /torch\.nn\.Linear\(/);
  });

  it('Detach (Stop) runs %gradscope off: the run ends completed, its numbers those of the run file the kernel wrote', async () => {
    const run = runs[0];
    const exit = await run.stop();
    assert.equal(exit.reason, 'completed', exit.message);
    assert.equal(exit.steps, 6);
    const files = readdirSync(kernelRunFolder(nb)).filter((n) => n.endsWith('.gsrun'));
    assert.equal(files.length, 1);
    const saved = readRunFile(join(kernelRunFolder(nb), files[0]));
    assert.equal(saved.exit?.reason, 'completed');
    assert.equal(saved.store.stepCount, run.store.stepCount);
    assert.deepEqual(Array.from(saved.store.globalNorm().values), Array.from(run.store.globalNorm().values));
  });

  it('attaching again (pasted lines, then the attach code) does not stack hooks: one STEP per step, and every hook gone after Detach', async () => {
    for (let i = 0; i < 2; i++) {
      // The first time as a person pastes the lines (no Jupyter extension), then as the extension sends it.
      const a = await kernel.exec(i === 0 ? pasteLines(PROBE_DIR, listener.address, nb) : attachCode(PROBE_DIR, listener.address, nb));
      assert.match(a.stdout, /streaming to GradScope/, a.stderr);
      const steps = await kernel.exec(cell(4));
      assert.ok(steps.ok, steps.error ?? '');
      await until(`run ${i + 2}'s 3 steps`, () => runs.length === i + 2 && runs[i + 1].store.stepCount === 3);
      // Attached over an attached run: the first run ended (its file complete), the new one streams.
      if (i === 1) await until('the previous run ended', () => runs[1].exited);
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(runs[2].store.stepCount, 3, 'no step counted twice');
    const off = await kernel.exec(detachCode());
    assert.match(off.stdout, /GradScope is off: 3 step\(s\)/);
    await until('the last run ended', () => runs[2].exited);
    const check = await kernel.exec(cell(5).split('\n').slice(2).join('\n'));
    assert.match(check.stdout, /UNHOOKED True/, check.stdout + check.stderr);
    assert.equal(readdirSync(kernelRunFolder(nb)).filter((n) => n.endsWith('.gsrun')).length, 3);
  });

  it('a kernel that cannot reach the listener still writes its run file and says so', async () => {
    const a = await kernel.exec(attachCode(PROBE_DIR, `unix:${join(dir, 'nobody-listens')}`, nb));
    assert.match(a.stdout, /not streaming \(GradScope not reachable\)/);
    assert.match(a.stderr, /cannot connect to GradScope/);
    const off = await kernel.exec(detachCode());
    assert.match(off.stdout, /GradScope is off/);
  });

  it('Stop without a way to run code in the kernel (pasted lines): the run ends stopped, the kernel keeps its run file and stops streaming', async () => {
    const other = await KernelListener.open(nb, () => Promise.resolve(false));
    try {
      const joined: KernelRun[] = [];
      other.onDidStartRun((r) => joined.push(r));
      const a = await kernel.exec(pasteLines(PROBE_DIR, other.address, nb));
      assert.match(a.stdout, /streaming to GradScope/, a.stderr);
      await kernel.exec(cell(4));
      await until('the 3 steps', () => joined.length === 1 && joined[0].store.stepCount === 3);
      const exit = await joined[0].stop();
      assert.equal(exit.reason, 'stopped');
      assert.match(exit.message, /still records to its run file until %gradscope off/);
      const more = await kernel.exec(cell(4));
      assert.ok(more.ok, more.error ?? '');
      const status = await kernel.exec('%gradscope status');
      assert.match(status.stdout, /GradScope is on: 6 step\(s\) so far.*not streaming \(the connection to .* is gone\)/, status.stdout + status.stderr);
      assert.equal(joined[0].store.stepCount, 3, 'nothing after Stop');
      const off = await kernel.exec(detachCode());
      assert.match(off.stdout, /GradScope is off: 6 step\(s\)/);
    } finally {
      other.dispose();
    }
  });
});
