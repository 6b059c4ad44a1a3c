// The editor's one door to the fix engine (src/core/fixes) and to fix verification
// (src/process/verifyFix): the code actions, the panel's remedy buttons and Verify Fix import these.
export { applyEdits, computeFix } from '../core/fixes/index';
export type { FixContext, FixResult, TextEdit } from '../core/fixes/types';
export type { RunMeasure } from '../core/fixes/measure';
export { verifyFix, type VerifyResult } from '../process/verifyFix';
