// The stats worker: reduces each step's gradients (copies handed over by the main thread) to the
// per-step statistics and, on detail steps and anomalies, the detail tier, in one JS pass per array,
// off the training thread. Replies on the port it was given, handing the job's buffers back for
// reuse; after each reply it bumps a shared counter and notifies, so the main thread can wait for
// results synchronously when it must (at exit, at the step limit) without turning the event loop.
import { workerData, type MessagePort } from 'node:worker_threads';
import { StatsState, resultTransfer, runJob } from './statsJob';
import { jobBuffers, type WorkerJob, type WorkerReply } from './workerProtocol';

const { port, signal } = workerData as { port: MessagePort; signal: SharedArrayBuffer };
const counter = new Int32Array(signal);
const state = new StatsState();

function reply(msg: WorkerReply, transfer: ArrayBuffer[]): void {
  port.postMessage(msg, transfer);
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
}

port.on('message', (job: WorkerJob) => {
  try {
    const r = runJob(state, job);
    reply(r, resultTransfer(r));
  } catch (e) {
    const recycle = jobBuffers(job);
    reply({ kind: 'error', seq: job.seq, message: String((e as Error)?.stack ?? e), recycle }, recycle);
  }
});
