// Run warnings: what GradScope could NOT see in a run, said plainly. Findings are about the
// gradients; warnings are about the observation itself (no optimizer step seen, the probe never
// connected, a probe failure, frames dropped, steps that are really backward passes, mixed-precision
// steps the GradScaler skipped) and about what it could not stop (processes that outlived the run).
// The CLI summary, the run JSON (`warnings`), the panel's banner and the HTML report all show this
// same list. Pure TypeScript: no Node, no vscode.
import type { EndMsg, EventMsg, HelloMsg, OptimizerMode } from '../protocol/messages';
import { formatNumber } from '../protocol/float';

export const RUN_WARNING_CODES = [
  /** The run ended and the probe never said HELLO: GradScope saw nothing of the script. */
  'no-probe',
  /** The probe ran, the run ended, and not one optimizer step was observed. */
  'no-steps',
  /** A `warning` EVENT of the probe: a failure of its own, or training it cannot follow. */
  'probe-warning',
  /** The probe dropped frames (the pipe was full): the statistics of some steps are missing. */
  'dropped-frames',
  /** The probe started but did not send END although the script completed: the end of the run may be missing. */
  'no-end',
  /** Events past the store's cap were counted but not kept (later warnings among them are not shown). */
  'events-dropped',
  /** No torch.optim optimizer: each backward pass is counted as a step. */
  'backward-steps',
  /** Mixed precision: the GradScaler skipped optimizer steps on Inf/NaN in the scaled gradients. */
  'skipped-steps',
  /** An `info` EVENT of the probe (e.g. update norms reported only for the first N MiB of parameters). */
  'probe-note',
  /** The run file could not be written to the end (a full disk): it holds only the first steps. */
  'recording-failed',
  /** Processes the script started outlived the run: they left its process group (setsid daemons), which a stop cannot reach. */
  'survivors',
  /** Some tensors are held as shards (FSDP2, DTensor): this process's norms and global norm are of its shards, not of the model. */
  'sharded',
  /** The script clips its gradients (a `clip` EVENT: clip_grad_norm_, clip_grad_value_, …, in the probe's words): the norms shown are those before clipping. */
  'clipping',
] as const;
export type RunWarningCode = (typeof RUN_WARNING_CODES)[number];

/** `warning`: part of the run was not seen (or seen wrongly); `info`: how it was seen, worth knowing. */
export type RunWarningLevel = 'warning' | 'info';

export interface RunWarning {
  code: RunWarningCode;
  level: RunWarningLevel;
  /** One sentence a person can act on. */
  message: string;
  /** The step it concerns, when it concerns one. */
  step?: number;
  /** How many (frames dropped, steps skipped, events not kept), when it counts something. */
  count?: number;
}

/** What the warnings are read from: a RunStore satisfies it. */
export interface RunWarningFacts {
  readonly hello: HelloMsg | null;
  readonly end: EndMsg | null;
  readonly events: readonly EventMsg[];
  /** Events past the store's cap, counted but not kept. */
  readonly eventsDropped: number;
  readonly stepCount: number;
  readonly optimizers?: readonly { readonly name: string; readonly className: string; readonly mode: OptimizerMode }[];
  /** The host could not write the run file to the end (RunStore.recordingFailure). */
  readonly recordingFailure?: { readonly reason: string; readonly steps: number; readonly file: string } | null;
  /** Processes of the run alive after it ended, outside its process group (RunStore.survivors). */
  readonly survivors?: { readonly marker: string; readonly processes: readonly { readonly pid: number; readonly command: string }[] } | null;
  /** The tensors (TENSORS): a `shard` among them makes the `sharded` note. */
  readonly tensors?: readonly ({ readonly shard?: unknown } | undefined)[];
}

/** Survivors named in the message; the rest are counted. */
const SURVIVORS_LISTED = 5;

/**
 * How the run ended, as far as the caller knows: `null` while it is live (nothing is concluded
 * from what has not happened yet); `{ reason: null }` for a saved run without an exit record.
 */
export type RunWarningExit = { reason: string | null } | null;

const LEVEL_RANK: Record<RunWarningLevel, number> = { warning: 0, info: 1 };
const BACKWARD_NOTE = /backward pass/i;

/** The run's warnings, `warning`s first, each group in the order things happened. */
export function runWarnings(run: RunWarningFacts, exit: RunWarningExit): RunWarning[] {
  const out: RunWarning[] = [];
  const rec = run.recordingFailure;
  if (rec) {
    // First: the run file is what survives a restart, and it is short of what the views show.
    out.push({
      code: 'recording-failed',
      level: 'warning',
      message:
        `the run file could not be written (${rec.reason}): recording stopped after ${rec.steps} step(s). ` +
        `${rec.file} keeps those steps and no exit record; the rest of the run is shown from memory only and is lost when this closes.`,
      count: rec.steps,
    });
  }
  const ended = exit !== null;
  const reason = exit?.reason ?? null;
  // A crash or a corrupt stream is already the run's headline (and a non-zero exit): do not add
  // "nothing was seen" on top of it. A saved run without an exit record is judged only when the
  // probe's END is in it.
  const judgeEmpty = ended && (reason === null ? run.end !== null : reason !== 'crashed' && reason !== 'protocol-error');
  if (judgeEmpty && !run.hello) {
    out.push({
      code: 'no-probe',
      level: 'warning',
      message:
        'the script ran but the GradScope probe never connected (no HELLO): nothing of it was observed. ' +
        'It may have replaced its own process (os.exec*), or been started through a launcher that does not inherit the probe.',
    });
  } else if (judgeEmpty && run.stepCount === 0) {
    const when = reason === 'stopped' ? ' before the run was stopped' : reason === 'time-limit' ? ' before the time limit' : '';
    out.push({
      code: 'no-steps',
      level: 'warning',
      message:
        `the script ran but no optimizer step was seen${when}: no gradient statistics were recorded. ` +
        'It may train in child processes GradScope does not follow (mp.spawn, torchrun ranks, hogwild workers, a launcher), ' +
        'never reach its training loop (check its arguments), or update weights without backward().',
    });
  }

  // The probe also says it counts backward passes in an `info` EVENT: that note becomes the
  // `backward-steps` one (its words, which say more), not a second line.
  const backward = run.optimizers?.find((o) => o.mode === 'backward');
  const backwardNote = backward ? run.events.find((e) => e.kind === 'info' && BACKWARD_NOTE.test(e.message)) : undefined;

  let dropped = 0;
  let firstDropStep: number | undefined;
  const skipped: { events: number; count: number; scale?: number; step?: number } = { events: 0, count: 0 };
  // An event said again with the same words (each step's, each rank's) is listed once.
  const seen = new Set<string>();
  const firstTime = (e: EventMsg): boolean => {
    const key = `${e.kind}\0${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  };
  for (const e of run.events) {
    switch (e.kind) {
      case 'warning':
      case 'info': {
        if (e === backwardNote || !firstTime(e)) break;
        out.push({
          code: e.kind === 'warning' ? 'probe-warning' : 'probe-note',
          level: e.kind,
          message: e.message,
          ...(e.step !== undefined ? { step: e.step } : {}),
          ...(e.count !== undefined ? { count: e.count } : {}),
        });
        break;
      }
      case 'dropped':
        dropped += e.count ?? 0;
        if (firstDropStep === undefined && e.step !== undefined) firstDropStep = e.step;
        break;
      case 'skipped-step': {
        // `count` is cumulative (skipped so far), `value` the loss scale after the back-off.
        skipped.events++;
        skipped.count = Math.max(skipped.count, e.count ?? skipped.count + 1);
        if (e.value !== undefined) skipped.scale = e.value;
        if (skipped.step === undefined) skipped.step = e.step;
        break;
      }
      case 'clip':
        // (one per threshold: a script may clip at several, two networks of a GAN each its own)
        if (firstTime(e)) out.push({ code: 'clipping', level: 'info', message: e.message, ...(e.step !== undefined ? { step: e.step } : {}) });
        break;
      case 'non-finite':
      case 'backend':
        break;
    }
  }
  if (dropped > 0) {
    out.push({
      code: 'dropped-frames',
      level: 'warning',
      message: `${dropped} frame(s) were dropped because the pipe to GradScope was full: the statistics of those steps are missing.`,
      count: dropped,
      ...(firstDropStep !== undefined ? { step: firstDropStep } : {}),
    });
  }
  if (reason === 'completed' && run.hello && !run.end) {
    out.push({
      code: 'no-end',
      level: 'warning',
      message: 'the script completed but the probe did not report the end of the run (no END): it may have exited through os._exit, and its last steps may be missing.',
    });
  }
  if (run.eventsDropped > 0) {
    out.push({
      code: 'events-dropped',
      level: 'info',
      message: `${run.eventsDropped} later probe event(s) were counted but not kept (only the first ones are stored); warnings among them are not listed.`,
      count: run.eventsDropped,
    });
  }
  if (backward) {
    out.push({
      code: 'backward-steps',
      level: 'info',
      message: backwardNote?.message ?? 'no torch.optim optimizer stepped: each completed backward pass is counted as a step (the script updates its weights by hand).',
    });
  }
  if (skipped.events > 0) {
    // A few skipped steps are how GradScaler calibrates its scale; more skipped than taken is a run
    // whose fp16 gradients overflow persistently.
    const persistent = skipped.count > run.stepCount;
    out.push({
      code: 'skipped-steps',
      level: persistent ? 'warning' : 'info',
      message:
        `mixed precision: the GradScaler skipped ${skipped.count} optimizer step(s) because the scaled gradients held Inf/NaN` +
        `${skipped.scale !== undefined ? `; the loss scale is now ${formatNumber(skipped.scale)}` : ''}` +
        (persistent ? ` — more steps were skipped than taken (${run.stepCount}): the gradients overflow in fp16 persistently.` : ' (a few are normal while it calibrates the scale).'),
      count: skipped.count,
      ...(skipped.step !== undefined ? { step: skipped.step } : {}),
    });
  }
  const shards = run.tensors?.filter((t) => t?.shard).length ?? 0;
  if (shards > 0) {
    const rank = run.hello ? `rank ${run.hello.rank}` : 'this process';
    out.push({
      code: 'sharded',
      level: 'info',
      message: `${rank} holds ${shards === 1 ? 'a shard of 1 tensor' : `shards of ${shards} tensors`} (FSDP2 / DTensor): its norms, and its global norm, are of its shards only, not of the model; the model's global norm combines every rank's shards (the JSON's crossRank.combined)`,
      count: shards,
    });
  }
  const survivors = run.survivors;
  if (survivors && survivors.processes.length > 0) {
    const left = survivors.processes;
    const n = left.length;
    const listed = left
      .slice(0, SURVIVORS_LISTED)
      .map((p) => `pid ${p.pid} (${p.command})`)
      .join(', ');
    const pids = left.map((p) => p.pid).join(' ');
    out.push({
      code: 'survivors',
      level: 'warning',
      message:
        `${n === 1 ? '1 process' : `${n} processes`} started by the script ${n === 1 ? 'is' : 'are'} still running after the run ended: ${listed}${n > SURVIVORS_LISTED ? `, and ${n - SURVIVORS_LISTED} more` : ''}. ` +
        `${n === 1 ? 'It' : 'They'} left the run's process group (setsid, e.g. a daemon), which stopping the run cannot reach, so GradScope leaves ${n === 1 ? 'it' : 'them'} alone. ` +
        `Find the run's processes with \`grep -ls ${survivors.marker} /proc/[0-9]*/environ\`; stop ${n === 1 ? 'it' : 'them'} with \`kill ${pids}\`.`,
      count: n,
    });
  }
  return out
    .map((w, i) => [w, i] as const)
    .sort((a, b) => LEVEL_RANK[a[0].level] - LEVEL_RANK[b[0].level] || a[1] - b[1])
    .map(([w]) => w);
}

/** True when the run observed nothing (`gradscope run` exits 6 then; see README "Exit code"). */
export function observedNothing(warnings: readonly RunWarning[]): boolean {
  return warnings.some((w) => w.code === 'no-probe' || w.code === 'no-steps');
}
