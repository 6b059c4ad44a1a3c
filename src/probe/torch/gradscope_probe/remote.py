"""Remote runs: ``python -m gradscope_probe --connect HOST:PORT train.py [args]`` streams the run over
TCP to a GradScope that listens (``gradscope listen``, or the extension's "Listen for a Remote Run"),
usually through an SSH tunnel (README "Remote training"; docs/protocol.md "Remote runs").

The token comes from GRADSCOPE_TOKEN (removed from the environment before the script runs, so the
script and what it starts do not inherit it). The handshake: connect (10 s), one AUTH frame
``{token, job?}``, then one AUTH_REPLY frame back ``{ok, message}`` (10 s); only then does the
script start, and the channel (channel.py) carries the run's frames as it would on a pipe.

A monitoring failure never costs the training: a refused token, a listener that is not there, a
connection lost mid-run all leave the script running, unobserved, with a warning on stderr that
says why (a long job queued on a GPU machine is worth more than its charts; the warning says how to
fix it for the next run). The watchdog's "host is gone" does not stop the script here, unlike on the
host's own pipe, where the host going away means the run was stopped.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

from . import wire

TOKEN_ENV = "GRADSCOPE_TOKEN"
AUTH, AUTH_REPLY = 8, 9
MAX_HANDSHAKE_PAYLOAD = 4096
TIMEOUT_S = 10.0


class RemoteError(Exception):
    """The connection could not be made or was refused: the message says why, in words."""


def parse_address(text: str):
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError with a readable message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("--connect needs HOST:PORT (e.g. localhost:7865), got %r" % text)
    return host.strip("[]"), int(port)


def job_id(env=None):
    """The same string for every process of one torchrun job (its rendezvous), None for one process."""
    env = os.environ if env is None else env
    if "RANK" not in env and "LOCAL_RANK" not in env:
        return None
    return "%s:%s/%s" % (env.get("MASTER_ADDR", ""), env.get("MASTER_PORT", ""), env.get("TORCHELASTIC_RUN_ID", ""))


def auth_frame(token: str, job=None) -> bytes:
    body = {"token": token} if job is None else {"token": token, "job": job}
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return struct.pack("<IHHII", wire.MAGIC, wire.VERSION, AUTH, len(payload), 0) + payload


def read_reply(data: bytes):
    """(reply dict, bytes used) from the front of data, None when more bytes are needed; RemoteError when it is not a reply."""
    if len(data) < 16:
        return None
    magic, version, mtype, length, _seq = struct.unpack_from("<IHHII", data)
    if magic != wire.MAGIC or version != wire.VERSION or mtype != AUTH_REPLY:
        raise RemoteError("the other end is not a GradScope listener (it did not answer with AUTH_REPLY)")
    if length > MAX_HANDSHAKE_PAYLOAD:
        raise RemoteError("the listener's reply is too long (%d bytes)" % length)
    if len(data) < 16 + length:
        return None
    try:
        o = json.loads(data[16:16 + length].decode("utf-8"))
    except ValueError:
        raise RemoteError("the listener's reply is not JSON")
    if not isinstance(o, dict) or not isinstance(o.get("ok"), bool) or not isinstance(o.get("message"), str):
        raise RemoteError("the listener's reply lacks ok/message")
    return o, 16 + length


def connect(address: str, token: str, job=None, timeout: float = TIMEOUT_S) -> int:
    """Connects, authenticates, and returns the connected socket's descriptor (the socket object let
    go of). Raises RemoteError with the reason in words."""
    try:
        host, port = parse_address(address)
    except ValueError as e:
        raise RemoteError(str(e))
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise RemoteError("no answer from %s within %ds" % (address, timeout))
    except OSError as e:
        why = "nothing listens there" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
        raise RemoteError("cannot connect to %s: %s (is `gradscope listen` running, and the SSH tunnel open?)" % (address, why))
    try:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        s.sendall(auth_frame(token, job))
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            r = read_reply(data)
            if r is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteError("%s did not answer the token within %ds" % (address, timeout))
            s.settimeout(left)
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                raise RemoteError("%s closed the connection without answering (not a GradScope listener, or it refused: see its output)" % address)
            data += chunk
        reply, _used = r
        if not reply["ok"]:
            raise RemoteError("GradScope at %s refused the connection: %s" % (address, reply["message"]))
        s.settimeout(None)
        return s.detach()
    except RemoteError:
        s.close()
        raise
    except OSError as e:
        s.close()
        raise RemoteError("the connection to %s failed: %s" % (address, e.strerror or e))


def warn_loud(text: str) -> None:
    """A warning a person will not miss in a training log: framed, on stderr."""
    try:
        bar = "[gradscope] " + "!" * 60
        sys.stderr.write("%s\n[gradscope] warning: %s\n%s\n" % (bar, text, bar))
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass


class LostWatcher:
    """on_host_gone for a remote channel: says once that the connection is gone and that training
    goes on, unobserved, from the step it was lost at; never stops the script."""

    def __init__(self, address: str):
        self.address = address
        self.probe = None

    def __call__(self, why: str) -> None:
        steps = getattr(self.probe, "steps", None)
        at = "" if steps is None else " after %d step(s)" % steps
        warn_loud("the connection to GradScope at %s was lost%s (%s): the script goes on training, unobserved" % (self.address, at, why))
