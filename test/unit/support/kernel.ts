// A real Jupyter kernel driven line by line: test/fixtures/notebook/kernel_driver.py starts an
// ipykernel with jupyter_client (as the Jupyter extension's kernel.executeCode runs code) and answers
// one JSON line per request. Used by the unit suite's kernel tests and the VS Code host suite.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

/** What the driver answers for one piece of code. */
export interface KernelReply {
  ok: boolean;
  stdout: string;
  stderr: string;
  error: string | null;
}

export class KernelDriver {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  stderr = '';

  constructor(python: string, driver: string, cwd: string) {
    // The probe is NOT on PYTHONPATH: the attach code (or the pasted lines) must make it importable.
    const env = { ...process.env };
    delete env.PYTHONPATH;
    this.child = spawn(python, [driver], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async next(): Promise<string> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`the kernel driver ended: ${this.stderr.slice(-2000)}`);
    return r.value;
  }

  async ready(): Promise<void> {
    assert.deepEqual(JSON.parse(await this.next()), { ready: true });
  }

  /** Runs `code` in the kernel: its reply, an error in the code included (ok false). */
  async exec(code: string): Promise<KernelReply> {
    this.child.stdin.write(`${JSON.stringify({ code })}\n`);
    return JSON.parse(await this.next()) as KernelReply;
  }

  /** Runs `code`, which must succeed: throws with the kernel's error and stderr otherwise. */
  async run(code: string): Promise<KernelReply> {
    const r = await this.exec(code);
    if (!r.ok) throw new Error(`the kernel failed: ${r.error}\n${r.stderr}`);
    return r;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.stdin.end();
    await new Promise((r) => this.child.once('exit', r));
  }
}
