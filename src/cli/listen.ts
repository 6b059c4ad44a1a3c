// `gradscope listen`: waits for remote runs (src/process/remoteListener.ts) and prints each like
// `gradscope run` prints its run: a line when it starts, a progress line while it trains, and its
// summary (or its JSON document, one line per run) when it ends.
import { relative, resolve } from 'node:path';
import { DESYNC_RELATIVE_TOLERANCE, crossRankOf } from '../core/analysis/crossRank';
import { crossRankJson, ranksJson } from '../core/report/ranksJson';
import { buildRunJson } from '../core/report/runJson';
import { observedNothing, runWarnings } from '../core/report/warnings';
import { formatNumber } from '../core/protocol/float';
import { RemoteListener, TOKEN_ENV, connectHints, generateToken, isLoopback } from '../process/remoteListener';
import type { RemoteRun } from '../process/remoteRun';
import type { Finding } from '../core/analysis/finding';
import type { RunStore } from '../core/store/runStore';
import { analyzerFor, shownStore, type RunExit } from '../process/runHandle';
import type { ListenArgs } from './args';
import { formatSummary } from './summary';

/** How often a live run's progress line is printed, ms. */
const PROGRESS_MS = 10_000;

export interface ListenDeps {
  exitCodeFor(exit: RunExit, nothingObserved: boolean): number;
  /** Exit code when the listener cannot start (the port is taken, …). */
  failed: number;
}

const say = (line: string): void => void process.stderr.write(`gradscope: ${line}\n`);

export async function listen(a: ListenArgs, deps: ListenDeps): Promise<number> {
  const cwd = process.cwd();
  const runDir = resolve(cwd, a.outDir ?? '.gradscope/runs');
  const fromEnv = process.env[TOKEN_ENV];
  const token = a.token ?? (fromEnv || generateToken());
  let l: RemoteListener;
  try {
    l = await RemoteListener.open({ host: a.host, port: a.port, token, runDir });
  } catch (e) {
    say(`${(e as Error).message}; not listening`);
    return deps.failed;
  }
  const hints = connectHints(l.port, token);
  say(`listening for remote runs on ${a.host}:${l.port}; run files go to ${relative(cwd, runDir) || runDir}`);
  if (!isLoopback(a.host)) say(`warning: ${a.host} is not loopback: the token is all that guards this port, and the stream is not encrypted; an SSH tunnel is safer`);
  say(`token: ${a.token ? '(as given with --token)' : fromEnv ? `(from ${TOKEN_ENV})` : token}`);
  say(`on this machine, open the tunnel:  ${hints.tunnel}`);
  say(`on the remote machine, run:        ${a.token || fromEnv ? hints.python.replace(token, '<token>') : hints.python}`);
  say(`                    (TF.js:         ${a.token || fromEnv ? hints.tfjs.replace(token, '<token>') : hints.tfjs})`);
  say('Ctrl-C stops listening (the remote scripts go on training)');

  let firstDone: ((code: number) => void) | null = null;
  const first = new Promise<number>((r) => (firstDone = r));
  l.onDidRefuse(({ why, peer }) => say(`refused a connection from ${peer}: ${why} (nothing recorded)`));
  l.onDidConnect(({ peer }) => say(`a probe connected from ${peer}; its run starts with its first step`));
  l.onDidStartRun((run) => {
    const h = run.hello;
    const rank = run.job !== undefined ? `, rank ${h.rank} of ${h.worldSize ?? '?'}` : '';
    say(`remote run ${run.id} from ${run.peer}${run.host ? ` (${run.host})` : ''}: ${run.script} (${h.framework}, ${h.device}, pid ${h.pid}${rank})`);
    run.onWarning((w) => say(`warning: ${run.id}: ${w}`));
    const timer = setInterval(() => {
      const s = shownStore(run);
      say(`${run.id}: step ${s.lastStep}, ${s.stepCount} steps seen, last global norm ${formatNumber(s.summary().globalNorm.last)}`);
    }, PROGRESS_MS);
    timer.unref();
    void run.done.then((exit) => {
      clearInterval(timer);
      const code = report(run, exit, a, deps);
      firstDone?.(code);
      firstDone = null;
    });
  });

  let interrupted = 0;
  const stopped = new Promise<void>((r) => {
    const onSignal = (): void => {
      interrupted++;
      if (interrupted === 1) {
        process.stderr.write('\ngradscope: stopping listening (Ctrl-C again to quit now)…\n');
        r();
      } else process.exit(130);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  const code = await Promise.race([a.once ? first : new Promise<number>(() => undefined), stopped.then(() => null)]);
  // Runs still live are stopped being watched (their scripts go on); their summaries print as they close.
  const live = l.liveRuns;
  await l.close();
  await Promise.all(live.map((r) => r.done));
  // give the report printing (on `done`) its turn
  await new Promise((r) => setImmediate(r));
  say(`stopped listening; ${l.runs.length} run${l.runs.length === 1 ? '' : 's'} received`);
  return code ?? 0;
}

/** Prints one ended run (summary, or its JSON on one line) and returns its exit code as `gradscope run` would. */
function report(run: RemoteRun, exit: RunExit, a: ListenArgs, deps: ListenDeps): number {
  const store = shownStore(run);
  const findings = store === run.store ? [...run.analyzer.findings] : [...finished(store)];
  if (a.json) {
    // As `gradscope run` writes a distributed run: the shown rank's findings then the cross-rank ones, every rank's own.
    const cross = crossRankOf(run.ranks);
    const doc = buildRunJson(store, run.script, exit, run.runFile, [...findings, ...(cross?.findings ?? [])]);
    Object.assign(doc, { remote: { peer: run.peer, host: run.host ?? null, runId: run.id } });
    if (run.ranks.length || run.expectedRanks) {
      const each = run.ranks.map((r) => ({ rank: r.rank, store: r.store, runFile: r.runFile, findings: r.store === run.store ? run.analyzer.findings : finished(r.store) }));
      const shownRank = run.ranks.find((r) => r.store === store)?.rank ?? null;
      Object.assign(doc, ranksJson(each, run.expectedRanks, shownRank, cross ? crossRankJson(cross, DESYNC_RELATIVE_TOLERANCE) : null));
    }
    process.stdout.write(JSON.stringify(doc) + '\n');
  } else {
    process.stdout.write(formatSummary(store, exit, { script: run.script, runFile: relative(process.cwd(), run.runFile) }, findings, {}));
  }
  return deps.exitCodeFor(exit, observedNothing(runWarnings(store, { reason: exit.reason })));
}

function finished(store: RunStore): readonly Finding[] {
  const an = analyzerFor(store);
  an.finish();
  return an.findings;
}
