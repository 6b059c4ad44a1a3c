// Quick fixes for GradScope's diagnostics, linked by the diagnostic's code (the finding kind): one
// action per remedy the fix engine can apply here (its title), and "Verify fix" for the top one.
// Each action runs `gradscope.applyRemedy` with the edit and the document version it was computed
// for, so applying it to a changed document is refused.
import * as vscode from 'vscode';
import { LOCATE_NAN_COMMAND, LOCATE_NAN_TITLE, registerLocateNanCommand, type LocateNanArgs } from './commands';
import type { GradScopeContext } from './context';
import { isFindingKind } from './diagnosisModel';
import { DIAGNOSTIC_SOURCE, type DiagnosticsFeature } from './diagnostics';
import { SCRIPT_SELECTOR } from './hover';
import { APPLY_REMEDY_COMMAND, prepareFix, VERIFY_FIX_COMMAND, verifySteps, type RemedyArgs, type VerifyArgs } from './remedies';

export class GradScopeCodeActions implements vscode.CodeActionProvider {
  static readonly kinds = [vscode.CodeActionKind.QuickFix];
  /** Fixes computed for the current version of each document (the engine parses the file). */
  private cache = new Map<string, { version: number; results: Map<string, ReturnType<typeof prepareFix>> }>();

  constructor(
    private readonly ctx: GradScopeContext,
    private readonly diagnostics: DiagnosticsFeature,
  ) {}

  provideCodeActions(doc: vscode.TextDocument, _range: vscode.Range | vscode.Selection, context: vscode.CodeActionContext): vscode.CodeAction[] {
    const out: vscode.CodeAction[] = [];
    for (const d of context.diagnostics) {
      if (d.source !== DIAGNOSTIC_SOURCE || !isFindingKind(typeof d.code === 'object' ? d.code.value : d.code)) continue;
      const hit = this.diagnostics.findingFor(doc.uri, d);
      if (!hit) continue;
      const { run, placed } = hit;
      let verify: vscode.CodeAction | undefined;
      for (const remedy of placed.finding.remedies) {
        let r: ReturnType<typeof prepareFix>;
        try {
          r = this.cached(doc, `${run.run.id}#${placed.finding.id}@${placed.finding.stepRange[1]}#${remedy.id}`, () => prepareFix(run, placed, doc, remedy.id));
        } catch (e) {
          this.ctx.log.error(`code actions: ${remedy.id} on ${placed.finding.id}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
          continue;
        }
        if ('stale' in r) break;
        const args: RemedyArgs = { runId: run.run.id, findingId: placed.finding.id, remedyId: remedy.id };
        if (!r.result.ok) {
          // Already applied, or not applicable to this code: say why, greyed out.
          if (r.result.alreadyApplied) continue;
          const a = new vscode.CodeAction(remedy.title, vscode.CodeActionKind.QuickFix);
          a.disabled = { reason: r.result.reason };
          a.diagnostics = [d];
          out.push(a);
          continue;
        }
        const a = new vscode.CodeAction(r.result.title, vscode.CodeActionKind.QuickFix);
        a.diagnostics = [d];
        a.isPreferred = !out.some((x) => x.isPreferred && x.diagnostics?.includes(d));
        a.command = { command: APPLY_REMEDY_COMMAND, title: r.result.title, arguments: [{ ...args, prepared: r.prepared! }] };
        out.push(a);
        // A notebook's cells run in its kernel: verification (re-running a script) does not apply.
        if (!verify && placed.cell === undefined) {
          const steps = verifySteps(placed.finding);
          verify = new vscode.CodeAction(`Verify fix (re-run ${steps} steps): ${remedy.title}`, vscode.CodeActionKind.QuickFix);
          verify.diagnostics = [d];
          const vargs: VerifyArgs = { ...args, prepared: r.prepared! };
          verify.command = { command: VERIFY_FIX_COMMAND, title: verify.title, arguments: [vargs] };
          if (!vscode.workspace.isTrusted) verify.disabled = { reason: 'verifying runs the training script: trust this workspace first' };
        }
      }
      if (verify) out.push(verify);
      // A non-finite finding not yet traced to its operation: offer the bounded checked re-run.
      if (placed.finding.kind === 'non-finite-gradient' && !placed.finding.cause && placed.cell === undefined && (!run.run.live || run.run.live.exited)) {
        const locate = new vscode.CodeAction(LOCATE_NAN_TITLE, vscode.CodeActionKind.QuickFix);
        locate.diagnostics = [d];
        const largs: LocateNanArgs = { runId: run.run.id, findingId: placed.finding.id };
        locate.command = { command: LOCATE_NAN_COMMAND, title: LOCATE_NAN_TITLE, arguments: [largs] };
        if (!vscode.workspace.isTrusted) locate.disabled = { reason: 'locating the operation re-runs the training script: trust this workspace first' };
        out.push(locate);
      }
    }
    return out;
  }

  private cached(doc: vscode.TextDocument, key: string, compute: () => ReturnType<typeof prepareFix>): ReturnType<typeof prepareFix> {
    const uri = doc.uri.toString();
    let c = this.cache.get(uri);
    if (!c || c.version !== doc.version) {
      c = { version: doc.version, results: new Map() };
      this.cache.set(uri, c);
    }
    let r = c.results.get(key);
    if (!r) {
      r = compute();
      c.results.set(key, r);
    }
    return r;
  }
}

export function registerCodeActions(ctx: GradScopeContext, diagnostics: DiagnosticsFeature): vscode.Disposable {
  const provider = new GradScopeCodeActions(ctx, diagnostics);
  return vscode.Disposable.from(
    vscode.languages.registerCodeActionsProvider(SCRIPT_SELECTOR, provider, { providedCodeActionKinds: GradScopeCodeActions.kinds }),
    // Its command lives with the action that offers it (it needs the diagnostics to refresh).
    registerLocateNanCommand(ctx, diagnostics),
  );
}
