// Applying a remedy: `gradscope.applyRemedy` (the quick fixes and the panel's remedy buttons run
// this same code) and `gradscope.verifyFix` (re-run the script with the fix on a temporary copy for
// a bounded number of steps, show before/after, then apply on request).
//
// An edit carries the version of the document it was computed for; applying it to any other
// version is refused (the offsets would land in the wrong place), never silently rebased.
//
// Which file an edit may change is the fix scope rule (src/core/fixes/scope.ts), the one the CLI
// applies: the run's script, or a file next to it that the run's source map names, and for a saved
// run only inside a workspace folder. Anything else is edited (or its script run for verification)
// only after the person says so in a modal dialog.
import { basename } from 'node:path';
import * as vscode from 'vscode';
import type { Finding } from '../core/analysis/finding';
import { computeCellFix } from '../core/fixes/notebookCell';
import { fixScope, type FixScope } from '../core/fixes/scope';
import type { TextEdit } from '../core/fixes/types';
import { realPath } from '../process/files';
import type { GradScopeContext } from './context';
import { fmt } from './diagnosisModel';
import type { DiagnosticsFeature, PlacedFinding, RunDiagnostics } from './diagnostics';
import { asGradScopeError, describeError, GradScopeError } from './errors';
import { computeFix, verifyFix, type FixResult, type RunMeasure, type VerifyResult } from './fixEngine';
import { cellOfDocument, cellsAbove, openDocumentFor } from './notebookCells';
import { pickInterpreter } from './pythonInterpreter';

export const APPLY_REMEDY_COMMAND = 'gradscope.applyRemedy';
export const VERIFY_FIX_COMMAND = 'gradscope.verifyFix';

/** A fix computed for one version of one document. */
export interface PreparedEdit {
  uri: string;
  version: number;
  edits: TextEdit[];
  title: string;
  /** The text after the edits (what verification runs). */
  after: string;
}

export interface RemedyArgs {
  runId: string;
  findingId: string;
  remedyId: string;
  /** Set by a quick fix: the edit it showed, to be applied only to that document version. */
  prepared?: PreparedEdit;
}

export type ApplyOutcome =
  | { applied: true; title: string; file: string }
  | { applied: false; reason: 'changed' | 'not-found' | 'not-applicable' | 'already-applied' | 'stale-line' | 'rejected' | 'outside-scope' | 'failed'; message: string };

export type ApplyFailure = Extract<ApplyOutcome, { applied: false }>;

export interface VerifyOutcome {
  verified: boolean;
  message: string;
  title?: string;
  steps?: number;
  before?: RunMeasure;
  after?: RunMeasure;
  cured?: boolean;
  applied?: ApplyOutcome;
}

export interface VerifyArgs extends RemedyArgs {
  /** false: return the comparison without asking (and without applying). Default true. */
  prompt?: boolean;
}

/** Steps of a verification run: enough to pass the step the problem was seen at, bounded. */
export function verifySteps(f: Finding): number {
  return Math.min(100, Math.max(20, Math.ceil(f.stepRange[1] * 1.5) + 5));
}

/** The fix for a finding of a diagnosed run, computed on the document's current text. */
export function prepareFix(
  run: RunDiagnostics,
  p: PlacedFinding,
  doc: vscode.TextDocument,
  remedyId: string,
): { result: FixResult; prepared: PreparedEdit | null; finding: Finding } | { stale: true } {
  const finding = run.current(p);
  if (!finding) return { stale: true };
  const text = doc.getText();
  const globalNorms = Array.from(run.run.store.globalNorm().values);
  // In a notebook the fix works on the cell's text, with the cell's own line numbers (after the imports of the cells above it).
  const result =
    p.cell !== undefined
      ? computeCellFix(computeFix, { notebook: p.file, cell: p.cell, cellText: text, cellsAbove: cellsAbove(doc) }, finding, remedyId, { globalNorms, version: doc.version })
      : computeFix(text, finding, remedyId, { file: doc.uri.fsPath, globalNorms, version: doc.version });
  const prepared: PreparedEdit | null = result.ok ? { uri: doc.uri.toString(), version: doc.version, edits: result.edits, title: result.title, after: result.after } : null;
  return { result, prepared, finding };
}

export function registerRemedies(ctx: GradScopeContext, diagnostics: DiagnosticsFeature): vscode.Disposable {
  return vscode.Disposable.from(
    vscode.commands.registerCommand(APPLY_REMEDY_COMMAND, (arg: unknown) =>
      commandBoundary<ApplyOutcome>(
        ctx,
        'Apply Fix',
        () => applyRemedy(ctx, diagnostics, arg),
        (message) => ({ applied: false, reason: 'failed', message }),
      ),
    ),
    vscode.commands.registerCommand(VERIFY_FIX_COMMAND, (arg: unknown) =>
      commandBoundary<VerifyOutcome>(
        ctx,
        'Verify Fix',
        () => verifyRemedy(ctx, diagnostics, arg),
        (message) => ({ verified: false, message }),
      ),
    ),
  );
}

async function commandBoundary<T>(ctx: GradScopeContext, title: string, body: () => Promise<T>, onError: (message: string) => T): Promise<T> {
  try {
    return await body();
  } catch (e) {
    const err = asGradScopeError(e);
    if (err.category === 'internal') ctx.log.error(`${title}: ${describeError(e)}`);
    else ctx.log.warn(`${title}: ${err.message}`);
    if (err.category === 'user') void vscode.window.showWarningMessage(`GradScope ${title}: ${err.message}`);
    else void vscode.window.showErrorMessage(`GradScope ${title}: ${err.message}`, 'Show Log').then((pick) => pick && ctx.log.show());
    return onError(err.message);
  }
}

function parseArgs(arg: unknown): RemedyArgs {
  const a = (typeof arg === 'object' && arg !== null ? arg : {}) as Record<string, unknown>;
  if (typeof a.runId !== 'string' || typeof a.findingId !== 'string' || typeof a.remedyId !== 'string') {
    throw new GradScopeError('user', 'choose a remedy from a GradScope quick fix or the panel (this command needs a run, a finding and a remedy).');
  }
  let prepared: PreparedEdit | undefined;
  const p = a.prepared as Record<string, unknown> | undefined;
  if (p && typeof p === 'object') {
    if (typeof p.uri !== 'string' || typeof p.version !== 'number' || !Array.isArray(p.edits) || typeof p.title !== 'string' || typeof p.after !== 'string') {
      throw new GradScopeError('internal', 'malformed prepared edit');
    }
    const edits = (p.edits as unknown[]).map((e) => {
      const x = e as Record<string, unknown>;
      if (typeof x?.start !== 'number' || typeof x.end !== 'number' || typeof x.newText !== 'string') throw new GradScopeError('internal', 'malformed edit');
      return { start: x.start, end: x.end, newText: x.newText };
    });
    prepared = { uri: p.uri, version: p.version, edits, title: p.title, after: p.after };
  }
  return { runId: a.runId, findingId: a.findingId, remedyId: a.remedyId, prepared };
}

/** The run and finding named by the arguments: a diagnosed run, or the saved run the panel shows. */
function locate(ctx: GradScopeContext, diagnostics: DiagnosticsFeature, args: RemedyArgs): { run: RunDiagnostics; placed: PlacedFinding } | undefined {
  let run = diagnostics.runById(args.runId);
  if (!run) {
    const shown = ctx.openRuns.shown;
    if (shown && shown.id === args.runId) run = diagnostics.show(shown);
  }
  if (!run) return undefined;
  run.refresh();
  const placed = run.placed.find((p) => p.finding.id === args.findingId);
  return placed && { run, placed };
}

/** The fix scope rule for an edit of `file` from this run, on real paths (symbolic links resolved). */
export function scopeOfEdit(run: RunDiagnostics, file: string): FixScope {
  const view = run.run;
  const sourceFiles = [...new Set(view.store.tensors.flatMap((t) => (t.source ? [t.source.file] : [])))].map(realPath);
  return fixScope({
    file: realPath(file),
    script: realPath(view.script),
    // A live run's script is the file the person ran; a saved run's comes from its run file.
    scriptNamedByUser: view.live !== null,
    sourceFiles,
    roots: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => realPath(f.uri.fsPath)),
    caseInsensitive: process.platform === 'win32' || process.platform === 'darwin',
  });
}

/** Null when the edit is in scope or the person agreed in a modal dialog; else why not. */
async function consentToEdit(run: RunDiagnostics, file: string, what: 'apply' | 'verify'): Promise<ApplyFailure | null> {
  const scope = scopeOfEdit(run, file);
  if (scope.allowed) return null;
  const action = what === 'verify' ? 'Verify fix runs a fixed copy of it, and applying edits it' : 'Apply Fix would edit it';
  const pick = await vscode.window.showWarningMessage(
    `GradScope: this fix is for ${basename(file)}, which is outside what GradScope edits without asking.`,
    { modal: true, detail: `${scope.message}. ${action}.` },
    what === 'verify' ? 'Run and Verify' : 'Edit Anyway',
  );
  if (pick) return null;
  return { applied: false, reason: 'outside-scope', message: `not edited: ${scope.message}.` };
}

/** Computes (or takes the quick fix's) edit and applies it if the document is still that version. */
async function resolveEdit(
  ctx: GradScopeContext,
  diagnostics: DiagnosticsFeature,
  args: RemedyArgs,
): Promise<{ prepared: PreparedEdit; finding: Finding; run: RunDiagnostics } | ApplyFailure> {
  const hit = locate(ctx, diagnostics, args);
  if (!hit) return { applied: false, reason: 'not-found', message: 'that finding is no longer diagnosed (the run was discarded or replaced by a newer run). Run Train & Inspect again.' };
  if (args.prepared) {
    // A prepared edit is for the document of its diagnostic, never another file (the arguments of a
    // command can come from elsewhere than our own quick fix).
    const target = vscode.Uri.parse(args.prepared.uri);
    const cell = hit.placed.cell !== undefined ? cellOfDocument(target) : undefined;
    const sameCell = cell !== undefined && cell.cell === hit.placed.cell && realPath(cell.file) === realPath(hit.placed.file);
    if (hit.placed.cell !== undefined ? !sameCell : target.scheme !== 'file' || realPath(target.fsPath) !== realPath(hit.placed.file)) {
      return { applied: false, reason: 'rejected', message: `that edit is for ${target.fsPath}, not ${basename(hit.placed.file)} where the finding is; nothing was edited.` };
    }
    return { prepared: args.prepared, finding: hit.placed.finding, run: hit.run };
  }
  const doc = await documentOf(hit.placed);
  const r = prepareFix(hit.run, hit.placed, doc, args.remedyId);
  if ('stale' in r) {
    return {
      applied: false,
      reason: 'stale-line',
      message: `the line that built ${hit.placed.finding.layer ?? 'the optimizer'} was edited since the run; run Train & Inspect again to diagnose the current code.`,
    };
  }
  if (!r.result.ok) {
    return r.result.alreadyApplied
      ? { applied: false, reason: 'already-applied', message: `already applied: ${r.result.reason}` }
      : { applied: false, reason: 'not-applicable', message: r.result.reason };
  }
  return { prepared: r.prepared!, finding: r.finding, run: hit.run };
}

/** The document a placement's fix edits: the file's, or the cell's of its notebook (opened when it is not). */
async function documentOf(p: PlacedFinding): Promise<vscode.TextDocument> {
  if (p.cell === undefined) return vscode.workspace.openTextDocument(vscode.Uri.file(p.file));
  const open = openDocumentFor(p.file, p.cell);
  if (open) return open;
  const nb = await vscode.workspace.openNotebookDocument(vscode.Uri.file(p.file));
  const c = p.cell < nb.cellCount ? nb.cellAt(p.cell) : undefined;
  if (!c || c.kind !== vscode.NotebookCellKind.Code) throw new GradScopeError('user', `${basename(p.file)} has no code cell ${p.cell + 1} any more; run the notebook again to diagnose it.`);
  return c.document;
}

/** Applies a prepared edit to exactly the document version it was computed for. */
export async function applyPrepared(prepared: PreparedEdit): Promise<ApplyOutcome> {
  const uri = vscode.Uri.parse(prepared.uri);
  const doc = await vscode.workspace.openTextDocument(uri);
  if (doc.version !== prepared.version) {
    return {
      applied: false,
      reason: 'changed',
      message: `${basename(uri.fsPath)} changed since this fix was computed (version ${prepared.version}, now ${doc.version}); nothing was edited. Open the quick fixes again to recompute it.`,
    };
  }
  const edit = new vscode.WorkspaceEdit();
  for (const e of prepared.edits) edit.replace(uri, new vscode.Range(doc.positionAt(e.start), doc.positionAt(e.end)), e.newText);
  const ok = await vscode.workspace.applyEdit(edit);
  if (!ok) return { applied: false, reason: 'rejected', message: `VS Code did not apply the edit to ${basename(uri.fsPath)}.` };
  return { applied: true, title: prepared.title, file: uri.fsPath };
}

async function applyRemedy(ctx: GradScopeContext, diagnostics: DiagnosticsFeature, arg: unknown): Promise<ApplyOutcome> {
  const args = parseArgs(arg);
  const r = await resolveEdit(ctx, diagnostics, args);
  let outcome: ApplyOutcome;
  if ('prepared' in r) outcome = (await consentToEdit(r.run, vscode.Uri.parse(r.prepared.uri).fsPath, 'apply')) ?? (await applyPrepared(r.prepared));
  else outcome = r;
  report(ctx, outcome);
  // A cell's edit shows in its notebook's editor; a file is shown.
  if (outcome.applied && !('prepared' in r && cellOfDocument(vscode.Uri.parse(r.prepared.uri)))) {
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(outcome.file));
    await vscode.window.showTextDocument(doc, { preserveFocus: false, preview: false });
  }
  return outcome;
}

function report(ctx: GradScopeContext, outcome: ApplyOutcome): void {
  if (outcome.applied) {
    ctx.log.info(`applied: ${outcome.title} (${outcome.file})`);
    return;
  }
  ctx.log.warn(`fix not applied (${outcome.reason}): ${outcome.message}`);
  if (outcome.reason === 'already-applied') void vscode.window.showInformationMessage(`GradScope: ${outcome.message}`);
  else void vscode.window.showWarningMessage(`GradScope: ${outcome.message}`);
}

async function verifyRemedy(ctx: GradScopeContext, diagnostics: DiagnosticsFeature, arg: unknown): Promise<VerifyOutcome> {
  const args = parseArgs(arg);
  const prompt = (arg as VerifyArgs).prompt !== false;
  // Verification runs the user's script: the same rule as Train & Inspect.
  if (!vscode.workspace.isTrusted) {
    const message = 'Nothing ran: verifying a fix runs the training script, and this workspace is not trusted.';
    void vscode.window.showWarningMessage(`GradScope: ${message}`, 'Manage Workspace Trust').then((pick) => pick && vscode.commands.executeCommand('workbench.trust.manage'));
    return { verified: false, message };
  }
  const r = await resolveEdit(ctx, diagnostics, args);
  if (!('prepared' in r)) {
    report(ctx, r);
    return { verified: false, message: r.message };
  }
  const { prepared, finding, run } = r;
  const script = run.run.script;
  if (cellOfDocument(vscode.Uri.parse(prepared.uri))) {
    throw new GradScopeError('user', `verification re-runs a script, and ${basename(script)}'s cells run in its kernel: apply the fix and run the cell again.`);
  }
  if (vscode.Uri.parse(prepared.uri).fsPath !== script) {
    throw new GradScopeError(
      'user',
      `this fix edits ${basename(vscode.Uri.parse(prepared.uri).fsPath)}, not the script ${basename(script)}; verification re-runs only the script. Apply it and run again.`,
    );
  }
  if (ctx.runs.current()) throw new GradScopeError('user', 'a run is in progress; stop it before verifying a fix.');
  // Verification runs the script and may then edit it: the scope rule first (a saved run names its script).
  const refused = await consentToEdit(run, script, 'verify');
  if (refused) {
    report(ctx, refused);
    return { verified: false, message: refused.message };
  }
  const steps = verifySteps(finding);
  // PyTorch: the same interpreter as Train & Inspect would use (Python extension, else gradscope.pythonPath).
  const python = /\.py$/i.test(script)
    ? await pickInterpreter(vscode.Uri.file(script), vscode.workspace.getConfiguration('gradscope', vscode.Uri.file(script)).get<string>('pythonPath', ''), { extensions: vscode.extensions })
    : undefined;
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `GradScope: verifying "${prepared.title}" (${steps} steps, before and after)`, cancellable: true },
    async (_progress, token) => {
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      try {
        return await verifyFix({
          script,
          args: [...run.run.args],
          cwd: run.run.cwd,
          fixedText: prepared.after,
          steps,
          kind: finding.kind,
          timeoutSec: 120,
          signal: abort.signal,
          pythonPath: python?.python,
          pythonSource: python?.source,
        });
      } catch (e) {
        if (abort.signal.aborted) return null;
        throw new GradScopeError('environment', `verification failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      } finally {
        sub.dispose();
      }
    },
  );
  if (!result) return { verified: false, message: 'cancelled' };
  const cured = result.cured;
  const lines = compareLines(result);
  const summary = `${cured ? 'Cured' : 'Not cured'} in ${steps} steps: ${prepared.title}`;
  lines.unshift(result.summary);
  ctx.log.info(`verify ${finding.id} / ${args.remedyId}: ${summary}\n${lines.join('\n')}`);
  const outcome: VerifyOutcome = { verified: true, message: summary, title: prepared.title, steps, before: result.before, after: result.after, cured };
  if (!prompt) return outcome;
  const pick = await vscode.window.showInformationMessage(`GradScope: ${summary}`, { modal: true, detail: lines.join('\n') }, 'Apply');
  if (pick === 'Apply') {
    outcome.applied = await applyPrepared(prepared);
    report(ctx, outcome.applied);
  }
  return outcome;
}

export function compareLines(r: VerifyResult): string[] {
  const row = (name: string, b: string, a: string): string => `${name}: ${b} → ${a}`;
  const loss = (s: RunMeasure): string => `${fmt(s.loss.first)} → ${fmt(s.loss.last)} (${s.loss.trend})`;
  const kinds = (s: RunMeasure): string => (s.kinds.length ? s.kinds.join(', ') : 'none');
  const nf = (s: RunMeasure): string => (s.firstNonFiniteStep === null ? 'none' : String(s.firstNonFiniteStep));
  return [
    row('max ‖g‖', fmt(r.before.maxNorm), fmt(r.after.maxNorm)),
    row('first non-finite step', nf(r.before), nf(r.after)),
    `loss before: ${loss(r.before)}`,
    `loss after: ${loss(r.after)}`,
    row('findings', kinds(r.before), kinds(r.after)),
    row('steps run', String(r.before.steps), String(r.after.steps)),
  ];
}
