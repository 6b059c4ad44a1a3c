// The editor's one door to the fix engine (src/core/fixes, with the parsers src/process loads) and to fix verification
// (src/process/verifyFix): the code actions, the panel's remedy buttons and Verify Fix import these.
export { applyEdits } from '../core/fixes/text';
export { computeFix } from '../process/fixEngine';
export type { FixContext, FixResult, TextEdit } from '../core/fixes/types';
export type { RunMeasure } from '../core/fixes/measure';
export { verifyFix, type VerifyResult } from '../process/verifyFix';
