import type { TextEdit } from '../types';

export type Outcome = { ok: true; title: string; edits: TextEdit[] } | { ok: false; reason: string; alreadyApplied?: boolean };
