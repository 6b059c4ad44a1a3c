// The TF.js runner's remote mode: `node dist/probe/tfjs/runner.js --connect HOST:PORT train.js`, with
// the token in GRADSCOPE_TOKEN, streams the run over TCP to `gradscope listen` (docs/protocol.md
// "Remote runs"), as `python -m gradscope_probe --connect` does.
//
// The handshake runs before the script: connect (10 s), AUTH, AUTH_REPLY (10 s). The channel
// (./channel.ts) then writes to the connected socket's descriptor with synchronous writes, as it does
// to the host's pipe, so END still goes out from `process.on('exit')`. Node exposes no public way to
// get a socket's descriptor; `_handle.fd` is where libuv keeps it (Linux, macOS; -1 on Windows, where
// the runner says remote mode is not available). The socket object stays referenced with its handle's
// reading stopped (`_handle.readStop()`), so nothing else reads the descriptor or closes it at the
// peer's end-of-file.
import { connect as netConnect, type Socket } from 'node:net';
import { HANDSHAKE_TIMEOUT_MS, encodeAuth, readAuthReply } from '../../core/protocol/handshake';

export class RemoteError extends Error {
  override readonly name = 'RemoteError';
}

/** `HOST:PORT` (`[::1]:PORT` for IPv6); throws RemoteError with a readable message. */
export function parseAddress(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const host = i > 0 ? text.slice(0, i).replace(/^\[|\]$/g, '') : '';
  const port = Number(text.slice(i + 1));
  if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) throw new RemoteError(`--connect needs HOST:PORT (e.g. localhost:7865), got ${JSON.stringify(text)}`);
  return { host, port };
}

/** Kept alive for the life of the process: its descriptor is the channel's. */
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- only holds the reference
let held: Socket | null = null;

/** Connects and authenticates; resolves to the connected socket's descriptor. Rejects with RemoteError, saying why in words. */
export function connectRemote(address: string, token: string, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<number> {
  const { host, port } = parseAddress(address);
  return new Promise<number>((resolve, reject) => {
    const s = netConnect({ host, port });
    let data = Buffer.alloc(0);
    let done = false;
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      reject(new RemoteError(why));
    };
    const timer = setTimeout(() => fail(`no answer from ${address} within ${timeoutMs / 1000}s`), timeoutMs);
    s.once('error', (e: NodeJS.ErrnoException) =>
      fail(
        e.code === 'ECONNREFUSED'
          ? `cannot connect to ${address}: nothing listens there (is \`gradscope listen\` running, and the SSH tunnel open?)`
          : `cannot connect to ${address}: ${e.code ?? e.message}`,
      ),
    );
    s.once('connect', () => {
      s.setNoDelay(true);
      s.write(Buffer.from(encodeAuth({ token })));
    });
    s.on('data', (chunk: Buffer) => {
      if (done) return;
      data = Buffer.concat([data, chunk]);
      const r = readAuthReply(data);
      if (r.kind === 'need-more') return;
      if (r.kind === 'bad') return fail(`${address} is not a GradScope listener (${r.why})`);
      if (!r.msg.ok) return fail(`GradScope at ${address} refused the connection: ${r.msg.message}`);
      const handle = (s as unknown as { _handle?: { fd?: number; reading?: boolean; readStop?: () => number } })._handle;
      const fd = handle?.fd;
      if (typeof fd !== 'number' || fd < 0) return fail('remote mode needs a socket descriptor, which Node does not give on this platform');
      done = true;
      clearTimeout(timer);
      // No read watcher from here on: the channel reads the descriptor itself (for the hang-up). A
      // paused stream still reads into its buffer (Readable's read-ahead calls _read, which restarts the
      // handle's reading), and its end-of-file would shut the socket down and close the descriptor:
      // no more _read, and the handle's reading stopped.
      s.pause();
      s.removeAllListeners('data');
      (s as unknown as { _read: () => void })._read = () => undefined;
      handle?.readStop?.();
      if (handle) handle.reading = false;
      s.on('error', () => undefined);
      s.unref();
      held = s;
      resolve(fd);
    });
    s.once('close', () => fail(`${address} closed the connection without answering (not a GradScope listener, or it refused: see its output)`));
  });
}

/** A warning nobody misses in a training log: framed, on stderr (synchronously: the process may be about to exit). */
export function loud(text: string, write: (t: string) => void): void {
  const bar = `[gradscope] ${'!'.repeat(60)}`;
  write(`${bar}\n[gradscope] warning: ${text}\n${bar}\n`);
}
