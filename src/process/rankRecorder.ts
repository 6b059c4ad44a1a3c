// The record of one process that joined a run over the socket (./rankListener.ts) and is not the one
// the run's own store shows: its own RunStore, and its own run file in the run's rank folder
// (`<runId>.ranks/rank<R>.gsrun` beside `<runId>.gsrun`, docs/run-file.md "Ranks").
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { DecodedFrame } from '../core/protocol/codec';
import type { HelloMsg } from '../core/protocol/messages';
import { RUN_FILE_EXT, RunFileWriter, readRunFileAsync, type RunExitRecord, type RunMeta } from '../core/store/runFile';
import { RunStore } from '../core/store/runStore';
import type { RunRank } from './runHandle';

/** The folder of a run's rank files: `<runId>.ranks` beside `<runId>.gsrun`. */
export function rankFolder(runFile: string): string {
  const base = basename(runFile, RUN_FILE_EXT);
  return join(runFile.slice(0, runFile.length - basename(runFile).length), `${base}.ranks`);
}

export class RankRecorder implements RunRank {
  readonly store = new RunStore();
  readonly runFile: string;
  private readonly writer: RunFileWriter;

  /** Creates the rank's run file (`rank<R>`, or `rank<R>-<pid>` when that rank already has one). Throws RunFileError like RunFileWriter.create. */
  constructor(mainRunFile: string, meta: RunMeta, hello: HelloMsg) {
    const dir = rankFolder(mainRunFile);
    let id = `rank${hello.rank}`;
    if (existsSync(join(dir, `${id}${RUN_FILE_EXT}`))) id = `rank${hello.rank}-${hello.pid}`;
    this.writer = RunFileWriter.create(dir, { ...meta, runId: id });
    this.runFile = this.writer.path;
  }

  get rank(): number {
    return this.store.hello?.rank ?? -1;
  }

  ingest(f: DecodedFrame): void {
    this.writer.append(f.raw, this.store.stepCount + (f.message.type === 'step' ? 1 : 0));
    this.store.ingest(f.message);
  }

  close(exit: RunExitRecord): Promise<void> {
    return this.writer.close(exit);
  }
}

/**
 * The rank files of a saved run (`<runId>.ranks/*.gsrun`), read back, by rank; [] when the run has
 * none. A rank file that cannot be read is left out (its run, and the others, still open).
 */
export async function readRankFiles(runFile: string): Promise<RunRank[]> {
  const dir = rankFolder(runFile);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(RUN_FILE_EXT));
  } catch {
    return [];
  }
  const out: RunRank[] = [];
  for (const n of names.sort()) {
    const path = join(dir, n);
    const r = await readRunFileAsync(path);
    if (r.meta.runId === '' && r.store.hello === null) continue;
    out.push({ rank: r.store.hello?.rank ?? -1, store: r.store, runFile: path });
  }
  return out.sort((a, b) => a.rank - b.rank);
}
