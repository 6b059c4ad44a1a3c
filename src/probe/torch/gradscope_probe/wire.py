"""GradScope wire protocol v1 (docs/protocol.md): frame encoding, and a decoder for the tests.

Byte-for-byte the layout of src/core/protocol/codec.ts: a 16-byte little-endian header
(u32 magic "GSCP", u16 version, u16 type, u32 payload length, u32 sequence number) and a payload
that is UTF-8 JSON (HELLO, TENSORS, EVENT, END) or a fixed binary layout (STEP, DETAIL).
Messages are plain dicts shaped like the TypeScript interfaces in messages.ts, with a "type" key
("hello", "tensors", "step", "detail", "event", "end", "optimizer"). Stdlib only.
"""
from __future__ import annotations

import json
import math
import struct

MAGIC = 0x50435347  # the bytes b"GSCP" read as a little-endian u32
VERSION = 1
HEADER_BYTES = 16
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

HELLO, TENSORS, STEP, DETAIL, EVENT, END, OPTIMIZER = 1, 2, 3, 4, 5, 6, 7
TYPE_CODES = {"hello": HELLO, "tensors": TENSORS, "step": STEP, "detail": DETAIL, "event": EVENT, "end": END,
              "optimizer": OPTIMIZER}
TYPE_NAMES = {v: k for k, v in TYPE_CODES.items()}

# hasGrad (7): 1 when the tensor had a gradient at this step, 0 when it had none (absent, not NaN).
STAT_IDS = {"norm": 1, "maxAbs": 2, "nanCount": 3, "infCount": 4, "paramNorm": 5, "updateNorm": 6, "hasGrad": 7}
STAT_NAMES = list(STAT_IDS)
STAT_BY_ID = {v: k for k, v in STAT_IDS.items()}

# The per-tensor row of statistics the probes compute before they fill a STEP's columns, in this
# order, read and written by these names, never by bare offsets (src/core/protocol/messages.ts
# TENSOR_ROW_STATS and ROW: test/unit/protocol/statLayout.test.ts checks that the two agree). The
# gradient rows of this probe (stats.grad_stats) hold the first GRAD_ROW_LENGTH: the gradient's own.
TENSOR_ROW_STATS = ("norm", "maxAbs", "nanCount", "infCount", "paramNorm", "updateNorm")
ROW_NORM, ROW_MAX_ABS, ROW_NAN_COUNT, ROW_INF_COUNT, ROW_PARAM_NORM, ROW_UPDATE_NORM = range(len(TENSOR_ROW_STATS))
GRAD_ROW_LENGTH = ROW_INF_COUNT + 1

EVENT_KINDS = ("non-finite", "warning", "dropped", "backend", "info", "clip", "skipped-step", "input-scale")
OPTIMIZER_MODES = ("optimizer", "backward")

STEP_FIXED_BYTES = 32
DETAIL_FIXED_BYTES = 48
MAX_HIST_BINS = 256
MAX_THUMB_SIDE = 64

_HEADER = struct.Struct("<IHHII")
_STEP_HEAD = struct.Struct("<IIIIdd")
# A STEP's loss when the probe saw none: this quiet NaN (payload 1954, as R marks NA), never a NaN
# loss, which is any other NaN (docs/protocol.md, *Loss*). Written and read as its bits: a float
# NaN's payload is not something to rely on through arithmetic.
NO_LOSS_BITS = 0x7FF80000000007A2
_STEP_HEAD_NO_LOSS = struct.Struct("<IIIIQd")
_U64 = struct.Struct("<Q")
_DETAIL_HEAD = struct.Struct("<IIHHHHffddd")


class ProtocolError(Exception):
    """A violation of the wire format; `code` is one of the codes of docs/protocol.md."""

    def __init__(self, code: str, message: str, offset: int = 0):
        super().__init__("protocol error (%s) at byte %d: %s" % (code, offset, message))
        self.code = code
        self.offset = offset


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _finite_or_none(v):
    """JSON has no NaN/Infinity: non-finite numbers travel as null (as JSON.stringify writes them)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_none(x) for x in v]
    return v


def json_payload(msg: dict) -> bytes:
    body = {k: v for k, v in msg.items() if k != "type"}
    return json.dumps(_finite_or_none(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def frame(mtype: int, payload: bytes, seq: int) -> bytes:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError("payload of %d bytes exceeds the %d-byte cap" % (len(payload), MAX_PAYLOAD_BYTES))
    return _HEADER.pack(MAGIC, VERSION, mtype, len(payload), seq & 0xFFFFFFFF) + payload


def step_payload(step: int, loss, wall_ms: float, stats, columns, n_tensors: int, optimizer: int = 0) -> bytes:
    """`loss`: a float, or None when the probe saw no loss (written as NO_LOSS_BITS); `columns`: one
    sequence of n_tensors floats per statistic, in the order of `stats`; `optimizer`: the id
    (OPTIMIZER message) of the optimizer whose step this is."""
    n_stats = len(stats)
    ids = bytes(STAT_IDS[s] for s in stats)
    ids += b"\0" * (_pad8(n_stats) - n_stats)
    if loss is None:
        head = _STEP_HEAD_NO_LOSS.pack(step, n_tensors, n_stats, optimizer, NO_LOSS_BITS, float(wall_ms))
    else:
        head = _STEP_HEAD.pack(step, n_tensors, n_stats, optimizer, float(loss), float(wall_ms))
    parts = [head, ids]
    flat = []
    for s, col in zip(stats, columns):
        if len(col) != n_tensors:
            raise ValueError("column %s has %d values for %d tensors" % (s, len(col), n_tensors))
        flat.extend(col)
    parts.append(struct.pack("<%dd" % len(flat), *flat))
    return b"".join(parts)


def step_payload_size(msg: dict) -> int:
    """The size of a STEP message's payload (step_payload's length), its columns checked against
    nTensors: what the channel checks before it hands the encoding to its writer thread."""
    n, stats, columns = msg["nTensors"], msg["stats"], msg["columns"]
    if len(columns) != len(stats):
        raise ValueError("%d columns for %d statistics" % (len(columns), len(stats)))
    for s, col in zip(stats, columns):
        if len(col) != n:
            raise ValueError("column %s has %d values for %d tensors" % (s, len(col), n))
    return STEP_FIXED_BYTES + _pad8(len(stats)) + 8 * len(stats) * n


def detail_payload(msg: dict) -> bytes:
    hist = msg["hist"]
    thumb = msg["thumb"]
    rows, cols = msg["thumbRows"], msg["thumbCols"]
    if len(thumb) != rows * cols:
        raise ValueError("thumbnail has %d cells, declared %d" % (len(thumb), rows * cols))
    return b"".join((
        _DETAIL_HEAD.pack(msg["step"], msg["tensorId"], len(hist), rows, cols, 0, msg["histLo"], msg["histHi"],
                          msg["mean"], msg["std"], msg["zeroFrac"]),
        struct.pack("<%dI" % len(hist), *hist),
        struct.pack("<%df" % len(thumb), *thumb),
    ))


def encode_payload(msg: dict) -> tuple:
    """(type code, payload) of one message: everything of its frame but the header, which holds the
    sequence number (the channel numbers frames as it queues them)."""
    t = msg["type"]
    if t == "step":
        payload = step_payload(msg["step"], msg["loss"], msg["wallMs"], msg["stats"], msg["columns"], msg["nTensors"],
                               msg.get("optimizer", 0))
    elif t == "detail":
        payload = detail_payload(msg)
    elif t in TYPE_CODES:
        payload = json_payload(msg)
    else:
        raise ValueError("unknown message type %r" % (t,))
    return TYPE_CODES[t], payload


def encode(msg: dict, seq: int) -> bytes:
    """One message as one frame."""
    code, payload = encode_payload(msg)
    return frame(code, payload, seq)


# ---------------------------------------------------------------------------------------------
# Decoding (the tests' reference; the host decodes with codec.ts)

class _FieldError(Exception):
    pass


def _req(o, k, check, what):
    v = o.get(k)
    if not check(v):
        raise _FieldError('field "%s" must be %s' % (k, what))
    return v


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0 or (isinstance(v, float) and v.is_integer() and v >= 0)


def _is_str(v):
    return isinstance(v, str)


def _source(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _FieldError("source must be an object or null")
    out = {"file": _req(v, "file", _is_str, "a string"), "line": _req(v, "line", _is_uint, "a non-negative integer"),
           "column": _req(v, "column", _is_uint, "a non-negative integer")}
    if v.get("cell") is not None:  # a notebook's cell index (file is the .ipynb; line and column in the cell)
        out["cell"] = _req(v, "cell", _is_uint, "a non-negative integer")
    return out


def _shard(v, shape):
    """A shard's block (FSDP2 / DTensor): its offset in the tensor and its own shape, per dimension."""
    if not isinstance(v, dict):
        raise _FieldError('field "shard" must be an object')
    out = {}
    for k in ("offset", "localShape"):
        a = v.get(k)
        if not isinstance(a, list) or not all(_is_uint(d) for d in a):
            raise _FieldError('field "shard.%s" must be an array of non-negative integers' % k)
        if len(a) != len(shape):
            raise _FieldError("shard offset and localShape must have one entry per dimension of shape")
        out[k] = list(a)
    if any(o + n > d for o, n, d in zip(out["offset"], out["localShape"], shape)):
        raise _FieldError("shard block must lie inside shape")
    return out


def _decode_json(mtype: int, payload: bytes) -> dict:
    try:
        o = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError("bad-json", "%s payload is not UTF-8 JSON: %s" % (TYPE_NAMES[mtype].upper(), e))
    if not isinstance(o, dict):
        raise _FieldError("payload must be a JSON object")
    out = dict(type=TYPE_NAMES[mtype])
    if mtype == HELLO:
        for k in ("probeVersion", "framework", "backend", "device", "script"):
            _req(o, k, _is_str, "a string")
        if o["framework"] not in ("tfjs", "torch"):
            raise _FieldError('field "framework" must be "tfjs" or "torch"')
        _req(o, "pid", _is_uint, "a non-negative integer")
        out.update(o)
    elif mtype == TENSORS:
        ts = _req(o, "tensors", lambda v: isinstance(v, list), "an array")
        out["tensors"] = []
        for t in ts:
            if not isinstance(t, dict):
                raise _FieldError("each tensor must be an object")
            shape = _req(t, "shape", lambda v: isinstance(v, list), "an array")
            if not all(_is_uint(d) for d in shape):
                raise _FieldError("shape must hold non-negative integers")
            info = {"id": _req(t, "id", _is_uint, "a non-negative integer"),
                    "name": _req(t, "name", _is_str, "a string"),
                    "layer": _req(t, "layer", _is_str, "a string"),
                    "layerType": _req(t, "layerType", _is_str, "a string"),
                    "shape": shape, "source": _source(t.get("source"))}
            if t.get("aliases") is not None:
                if not isinstance(t["aliases"], list) or not all(_is_str(a) for a in t["aliases"]):
                    raise _FieldError('field "aliases" must be an array of strings')
                info["aliases"] = list(t["aliases"])
            if t.get("builtIn") is not None:
                b = t["builtIn"]
                if not isinstance(b, dict):
                    raise _FieldError('field "builtIn" must be an object')
                info["builtIn"] = dict(_source(b), package=_req(b, "package", _is_str, "a string"))
            if t.get("shard") is not None:
                info["shard"] = _shard(t["shard"], shape)
            out["tensors"].append(info)
    elif mtype == EVENT:
        if o.get("kind") not in EVENT_KINDS:
            raise _FieldError('field "kind" must be a known event kind')
        _req(o, "message", _is_str, "a string")
        out.update(o)
    elif mtype == OPTIMIZER:
        _req(o, "id", _is_uint, "a non-negative integer")
        _req(o, "name", _is_str, "a string")
        _req(o, "className", _is_str, "a string")
        if o.get("mode") not in OPTIMIZER_MODES:
            raise _FieldError('field "mode" must be "optimizer" or "backward"')
        ids = _req(o, "tensorIds", lambda v: isinstance(v, list), "an array")
        if not all(_is_uint(i) for i in ids):
            raise _FieldError("tensorIds must hold non-negative integers")
        out.update(o)
    elif mtype == END:
        if o.get("reason") not in ("completed", "crashed", "step-limit"):
            raise _FieldError('field "reason" must be "completed", "crashed" or "step-limit"')
        _req(o, "steps", _is_uint, "a non-negative integer")
        err = o.get("error")
        if err is not None:
            if not isinstance(err, dict):
                raise _FieldError("error must be an object")
            _req(err, "message", _is_str, "a string")
            if err.get("frame") is not None:
                _source(err["frame"])
        out.update(o)
    return out


def _decode_step(p: bytes) -> dict:
    if len(p) < STEP_FIXED_BYTES:
        raise ProtocolError("shape-mismatch", "STEP payload of %d bytes is shorter than its fixed part" % len(p))
    step, n, n_stats, optimizer, loss, wall = _STEP_HEAD.unpack_from(p, 0)
    if n_stats > 64:
        raise ProtocolError("shape-mismatch", "STEP declares %d statistics (at most 64)" % n_stats)
    base = STEP_FIXED_BYTES + _pad8(n_stats)
    if len(p) != base + 8 * n_stats * n:
        raise ProtocolError("shape-mismatch", "STEP declares %d tensors x %d statistics but its payload has %d bytes" % (n, n_stats, len(p)))
    stats = []
    for s in range(n_stats):
        name = STAT_BY_ID.get(p[STEP_FIXED_BYTES + s])
        if name is None:
            raise _FieldError("STEP names unknown statistic id %d" % p[STEP_FIXED_BYTES + s])
        stats.append(name)
    flat = struct.unpack_from("<%dd" % (n_stats * n), p, base)
    columns = [list(flat[s * n:(s + 1) * n]) for s in range(n_stats)]
    if _U64.unpack_from(p, 16)[0] == NO_LOSS_BITS:
        loss = None
    return {"type": "step", "step": step, "optimizer": optimizer, "loss": loss, "wallMs": wall, "nTensors": n,
            "stats": stats, "columns": columns}


def _decode_detail(p: bytes) -> dict:
    if len(p) < DETAIL_FIXED_BYTES:
        raise ProtocolError("shape-mismatch", "DETAIL payload of %d bytes is shorter than its fixed part" % len(p))
    step, tid, n_bins, rows, cols, _r, lo, hi, mean, std, zero = _DETAIL_HEAD.unpack_from(p, 0)
    if n_bins > MAX_HIST_BINS or rows > MAX_THUMB_SIDE or cols > MAX_THUMB_SIDE:
        raise ProtocolError("shape-mismatch", "DETAIL declares too many bins or too large a thumbnail")
    if len(p) != DETAIL_FIXED_BYTES + 4 * n_bins + 4 * rows * cols:
        raise ProtocolError("shape-mismatch", "DETAIL payload size differs from its declared shape")
    hist = list(struct.unpack_from("<%dI" % n_bins, p, DETAIL_FIXED_BYTES))
    thumb = list(struct.unpack_from("<%df" % (rows * cols), p, DETAIL_FIXED_BYTES + 4 * n_bins))
    return {"type": "detail", "step": step, "tensorId": tid, "histLo": lo, "histHi": hi, "mean": mean, "std": std,
            "zeroFrac": zero, "hist": hist, "thumbRows": rows, "thumbCols": cols, "thumb": thumb}


def decode_payload(mtype: int, payload: bytes, offset: int = 0) -> dict:
    try:
        if mtype == STEP:
            return _decode_step(payload)
        if mtype == DETAIL:
            return _decode_detail(payload)
        if mtype in (HELLO, TENSORS, EVENT, END, OPTIMIZER):
            return _decode_json(mtype, payload)
        raise ProtocolError("unknown-type", "unknown message type %d" % mtype)
    except ProtocolError as e:
        e.offset = offset
        raise
    except (_FieldError, KeyError, TypeError) as e:
        raise ProtocolError("bad-field", "%s: %s" % (TYPE_NAMES.get(mtype, "?").upper(), e), offset)


def decode_all(data: bytes):
    """Decodes a complete byte stream. Returns (frames, error): frames are (seq, message) pairs
    decoded before the first violation; error is a ProtocolError or None."""
    out = []
    off = 0
    try:
        while off < len(data):
            if len(data) - off < HEADER_BYTES:
                raise ProtocolError("truncated", "stream ended inside a frame header", off)
            magic, version, mtype, length, seq = _HEADER.unpack_from(data, off)
            if magic != MAGIC:
                raise ProtocolError("bad-magic", "expected magic 0x%x, got 0x%08x" % (MAGIC, magic), off)
            if version != VERSION:
                raise ProtocolError("bad-version", "version %d" % version, off)
            if mtype not in TYPE_NAMES:
                raise ProtocolError("unknown-type", "unknown message type %d" % mtype, off)
            if length > MAX_PAYLOAD_BYTES:
                raise ProtocolError("oversize", "frame declares %d payload bytes" % length, off)
            if len(data) - off - HEADER_BYTES < length:
                raise ProtocolError("truncated", "stream ended inside a %d-byte frame" % (HEADER_BYTES + length), off)
            payload = bytes(data[off + HEADER_BYTES: off + HEADER_BYTES + length])
            out.append((seq, decode_payload(mtype, payload, off)))
            off += HEADER_BYTES + length
    except ProtocolError as e:
        return out, e
    return out, None
