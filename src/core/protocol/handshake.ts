// The handshake of a remote connection (docs/protocol.md, "Remote runs"): before its HELLO, a probe
// that connects over TCP (`--connect HOST:PORT`) sends one AUTH frame with the token, and the host
// answers with one AUTH_REPLY frame, the only bytes a host ever sends. Both use the protocol's frame
// header (magic, version, type, length, seq); neither is a run's message: they are never decoded by
// FrameDecoder (where their types are `unknown-type`), never stored, never written to a run file (the
// token must not end up on disk).
import { frame } from './codec';
import { HEADER_BYTES, MAGIC, PROTOCOL_VERSION } from './messages';

export const HandshakeType = {
  /** probe → host: `{token, job?}`. */
  Auth: 8,
  /** host → probe: `{ok, message}`. */
  AuthReply: 9,
} as const;

/** An AUTH or AUTH_REPLY payload larger than this is refused (a token is short; nothing is buffered beyond it). */
export const MAX_HANDSHAKE_PAYLOAD = 4096;
/** How long a host waits for the AUTH frame, and a probe for the reply. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface AuthMsg {
  token: string;
  /**
   * The same string for every process of one distributed job (the probe builds it from torchrun's
   * MASTER_ADDR, MASTER_PORT and TORCHELASTIC_RUN_ID), so the host records them as one run; absent
   * for a single process.
   */
  job?: string;
}

export interface AuthReplyMsg {
  ok: boolean;
  /** In words, for the probe to print: why it was refused, or what it joined. */
  message: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** A handshake frame: the protocol's frame (codec.ts), sequence number 0, a JSON payload. */
const handshakeFrame = (type: number, body: unknown): Uint8Array => frame(type, enc.encode(JSON.stringify(body)), 0);

export function encodeAuth(m: AuthMsg): Uint8Array {
  return handshakeFrame(HandshakeType.Auth, m.job === undefined ? { token: m.token } : { token: m.token, job: m.job });
}

export function encodeAuthReply(m: AuthReplyMsg): Uint8Array {
  return handshakeFrame(HandshakeType.AuthReply, { ok: m.ok, message: m.message });
}

/** What reading one handshake frame from the front of `buf` gave: more bytes needed, the frame and how many bytes it took, or why it is not one. */
export type HandshakeRead<T> = { kind: 'need-more' } | { kind: 'ok'; msg: T; bytes: number } | { kind: 'bad'; why: string };

function readFrame(buf: Uint8Array, type: number, name: string): HandshakeRead<Record<string, unknown>> {
  if (buf.byteLength < HEADER_BYTES) return { kind: 'need-more' };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) return { kind: 'bad', why: 'not a GradScope probe (bad magic)' };
  if (dv.getUint16(4, true) !== PROTOCOL_VERSION) return { kind: 'bad', why: `protocol version ${dv.getUint16(4, true)}, not ${PROTOCOL_VERSION}` };
  const t = dv.getUint16(6, true);
  if (t !== type) return { kind: 'bad', why: t === 1 ? `no ${name} before its HELLO (a probe without --connect's token?)` : `its first frame was type ${t}, not ${name}` };
  const len = dv.getUint32(8, true);
  if (len > MAX_HANDSHAKE_PAYLOAD) return { kind: 'bad', why: `${name} of ${len} bytes (at most ${MAX_HANDSHAKE_PAYLOAD})` };
  if (buf.byteLength < HEADER_BYTES + len) return { kind: 'need-more' };
  let o: unknown;
  try {
    o = JSON.parse(dec.decode(buf.subarray(HEADER_BYTES, HEADER_BYTES + len)));
  } catch {
    return { kind: 'bad', why: `${name} payload is not UTF-8 JSON` };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { kind: 'bad', why: `${name} payload is not a JSON object` };
  return { kind: 'ok', msg: o as Record<string, unknown>, bytes: HEADER_BYTES + len };
}

export function readAuth(buf: Uint8Array): HandshakeRead<AuthMsg> {
  const r = readFrame(buf, HandshakeType.Auth, 'AUTH');
  if (r.kind !== 'ok') return r;
  const { token, job } = r.msg;
  if (typeof token !== 'string') return { kind: 'bad', why: 'AUTH without a token string' };
  if (job !== undefined && job !== null && typeof job !== 'string') return { kind: 'bad', why: 'AUTH field "job" must be a string' };
  return { kind: 'ok', msg: typeof job === 'string' ? { token, job } : { token }, bytes: r.bytes };
}

export function readAuthReply(buf: Uint8Array): HandshakeRead<AuthReplyMsg> {
  const r = readFrame(buf, HandshakeType.AuthReply, 'AUTH_REPLY');
  if (r.kind !== 'ok') return r;
  const { ok, message } = r.msg;
  if (typeof ok !== 'boolean' || typeof message !== 'string') return { kind: 'bad', why: 'AUTH_REPLY needs "ok" (boolean) and "message" (string)' };
  return { kind: 'ok', msg: { ok, message }, bytes: r.bytes };
}
