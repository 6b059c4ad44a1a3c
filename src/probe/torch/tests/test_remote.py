"""``python -m gradscope_probe --connect HOST:PORT`` (remote.py) against a host played here on a real
TCP socket on loopback: the handshake's golden frames, the token (right, wrong, missing), nobody
listening, and the host going away mid-run. In every case the script trains to its end: a monitoring
failure never stops it, and the probe says so on stderr."""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from gradscope_probe import remote
from gradscope_probe.wire import decode_all

from .helpers import PROBE_PARENT, REPO, TempDirMixin

GOLDEN = os.path.join(REPO, "test", "fixtures", "protocol")
TOKEN = "right-token-0123456789"

SCRIPT = """
import os, time
import torch
from torch import nn
print("token seen by the script:", os.environ.get("GRADSCOPE_TOKEN"))
torch.manual_seed(0)
model = nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(16, 4)
for i in range(STEPS):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    time.sleep(SLEEP)
print("trained", STEPS)
"""


def load(name):
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


class FakeHost:
    """The host's side: accepts one connection, reads AUTH, answers, then keeps what comes (or,
    with close_after, closes after that many bytes of frames)."""

    def __init__(self, token=TOKEN, close_after=None):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.token = token
        self.close_after = close_after
        self.auth = None
        self.data = b""
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        try:
            c, _ = self.srv.accept()
        except OSError:
            return
        buf = b""
        while len(buf) < 16 or len(buf) < 16 + struct.unpack_from("<I", buf, 8)[0]:
            d = c.recv(4096)
            if not d:
                return
            buf += d
        n = 16 + struct.unpack_from("<I", buf, 8)[0]
        self.auth = json.loads(buf[16:n])
        ok = self.auth.get("token") == self.token
        body = json.dumps({"ok": ok, "message": "connected" if ok else "wrong token"}).encode()
        c.sendall(struct.pack("<IHHII", 0x50435347, 1, 9, len(body), 0) + body)
        if not ok:
            c.close()
            return
        self.data = buf[n:]
        while True:
            if self.close_after is not None and len(self.data) >= self.close_after:
                c.close()
                return
            d = c.recv(65536)
            if not d:
                c.close()
                return
            self.data += d

    def close(self):
        self.srv.close()
        self.t.join(5)


def run_connect(script, address, token, timeout=90):
    env = dict(os.environ)
    env.pop("GRADSCOPE_CHANNEL_FD", None)
    env.pop("GRADSCOPE_TOKEN", None)
    if token is not None:
        env["GRADSCOPE_TOKEN"] = token
    env["PYTHONPATH"] = PROBE_PARENT
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    p = subprocess.run([sys.executable, "-m", "gradscope_probe", "--connect", address, script], env=env, cwd=os.path.dirname(script),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class HandshakeGoldenTest(unittest.TestCase):
    def test_auth_frames_are_the_golden_bytes(self):
        with open(os.path.join(GOLDEN, "expected.json"), encoding="utf-8") as f:
            hs = json.load(f)["handshake"]
        self.assertEqual(remote.auth_frame(hs["auth.bin"]["token"]), load("auth.bin"))
        self.assertEqual(remote.auth_frame(hs["auth-job.bin"]["token"], hs["auth-job.bin"]["job"]), load("auth-job.bin"))
        for name in ("auth-reply-ok.bin", "auth-reply-refused.bin"):
            reply, used = remote.read_reply(load(name))
            self.assertEqual(reply, hs[name])
            self.assertEqual(used, len(load(name)))
            self.assertIsNone(remote.read_reply(load(name)[:-1]))
        with self.assertRaises(remote.RemoteError):
            remote.read_reply(load("hello.bin"))

    def test_addresses_and_job(self):
        self.assertEqual(remote.parse_address("localhost:7865"), ("localhost", 7865))
        self.assertEqual(remote.parse_address("[::1]:80"), ("::1", 80))
        for bad in ("localhost", ":80", "h:0", "h:x", "h:70000"):
            with self.assertRaises(ValueError):
                remote.parse_address(bad)
        self.assertIsNone(remote.job_id({}))
        self.assertEqual(remote.job_id({"RANK": "1", "MASTER_ADDR": "a", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "r"}), "a:29500/r")


class ConnectTest(TempDirMixin, unittest.TestCase):
    def write(self, steps=20, sleep=0.0):
        return self.script("train.py", SCRIPT.replace("STEPS", str(steps)).replace("SLEEP", str(sleep)))

    def test_the_right_token_streams_the_run(self):
        host = FakeHost()
        rc, out, err = run_connect(self.write(), "127.0.0.1:%d" % host.port, TOKEN)
        host.t.join(10)
        host.close()
        self.assertEqual(rc, 0, err)
        self.assertEqual(host.auth, {"token": TOKEN})
        self.assertIn("token seen by the script: None", out)  # removed before the script runs
        self.assertIn("connected to GradScope at 127.0.0.1:%d" % host.port, err)
        frames, error = decode_all(host.data)
        self.assertIsNone(error)
        msgs = [m for _, m in frames]
        self.assertEqual(msgs[0]["type"], "hello")
        self.assertEqual(msgs[0]["host"], socket.gethostname())
        self.assertNotIn("worldSize", msgs[0])
        self.assertEqual(len([m for m in msgs if m["type"] == "step"]), 20)
        self.assertEqual(msgs[-1], {"type": "end", "reason": "completed", "steps": 20})

    def test_a_wrong_or_missing_token_is_refused_and_the_script_still_trains(self):
        for token, hint in (("wrong", ""), (None, "GRADSCOPE_TOKEN is not set")):
            with self.subTest(token=token):
                host = FakeHost()
                rc, out, err = run_connect(self.write(), "127.0.0.1:%d" % host.port, token)
                host.close()
                self.assertEqual(rc, 0, err)
                self.assertIn("trained 20", out)
                self.assertIn("refused the connection: wrong token", err)
                self.assertIn(hint, err)
                self.assertIn("the script runs without inspection", err)
                self.assertEqual(host.data, b"")

    def test_nobody_listening(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        rc, out, err = run_connect(self.write(), "127.0.0.1:%d" % port, TOKEN)
        self.assertEqual(rc, 0, err)
        self.assertIn("trained 20", out)
        self.assertIn("nothing listens there", err)

    def test_the_host_gone_mid_run_leaves_the_script_training(self):
        host = FakeHost(close_after=2000)
        t0 = time.monotonic()
        rc, out, err = run_connect(self.write(steps=60, sleep=0.02), "127.0.0.1:%d" % host.port, TOKEN)
        host.close()
        self.assertEqual(rc, 0, err)
        self.assertIn("trained 60", out)
        self.assertIn("the connection to GradScope at 127.0.0.1:%d was lost" % host.port, err)
        self.assertIn("the script goes on training, unobserved", err)
        self.assertGreater(time.monotonic() - t0, 60 * 0.02)
        frames, _ = decode_all(host.data)
        self.assertTrue(frames and frames[0][1]["type"] == "hello")

    def test_bad_address_is_a_usage_error(self):
        rc, _, err = run_connect(self.write(), "nohostport", TOKEN)
        self.assertEqual(rc, 2)
        self.assertIn("--connect needs HOST:PORT", err)


if __name__ == "__main__":
    unittest.main()
