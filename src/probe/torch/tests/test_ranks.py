"""The processes of a distributed run (gradscope_probe/ranks.py): which processes the start-up hook
instruments, and a rank that joins the host's Unix socket with a HELLO that says where it is (a
real child process started the way torchrun starts one: RANK, LOCAL_RANK, WORLD_SIZE set)."""
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

from gradscope_probe import ranks
from gradscope_probe.wire import decode_all

from .helpers import PROBE_PARENT

BOOT = os.path.join(PROBE_PARENT, "gradscope_boot")


class WhichProcessesTest(unittest.TestCase):
    def test_ranks_and_spawn_children_only(self):
        sock = {ranks.SOCKET_ENV: "unix:/tmp/x"}
        self.assertTrue(ranks.is_rank_process(dict(sock, RANK="1"), ["train.py"]))
        self.assertTrue(ranks.is_rank_process(dict(sock, LOCAL_RANK="0"), ["train.py"]))
        self.assertTrue(ranks.is_rank_process(sock, ["-c", "--multiprocessing-fork"]))
        # the launcher (torchrun: no RANK), a plain child, no socket, the main probe's own process
        self.assertFalse(ranks.is_rank_process(sock, ["/usr/bin/torchrun", "train.py"]))
        self.assertFalse(ranks.is_rank_process({"RANK": "1"}, ["train.py"]))
        self.assertFalse(ranks.is_rank_process(dict(sock, RANK="0", GRADSCOPE_CHANNEL_FD="15"), ["train.py"]))

    def test_settings(self):
        self.assertEqual(ranks.settings("steps=5,detail=0,sampled=0,script=/a/b.py"),
                         {"steps": "5", "detail": "0", "sampled": "0", "script": "/a/b.py"})


class ChainsTest(unittest.TestCase):
    def test_the_sitecustomize_it_hides_still_runs(self):
        # A user's own sitecustomize after GradScope's on PYTHONPATH: it still runs, once, in a process
        # that is no rank (nothing of the probe is imported there, and the path is left as it was).
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "sitecustomize.py"), "w") as f:
            f.write("import builtins\nbuiltins.USER_SITE_RAN = getattr(builtins, 'USER_SITE_RAN', 0) + 1\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSCOPE_")}
        env.update({ranks.SOCKET_ENV: "unix:/nonexistent", "PYTHONPATH": os.pathsep.join([BOOT, d])})
        code = "import builtins, sys; print(builtins.USER_SITE_RAN, 'gradscope_probe' in sys.modules, %r in sys.path)" % PROBE_PARENT
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["1", "False", "False"])
        self.assertEqual(r.stderr, "")


def _serve(server, n):
    """Listens on `server` and reads `n` connections whole, one after the other, on a thread: (the list
    their bytes are appended to, the thread)."""
    server.listen(4)
    got = []

    def accept():
        for _ in range(n):
            c, _ = server.accept()
            buf = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                buf += b
            got.append(buf)
            c.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return got, t


class RankJoinsTest(unittest.TestCase):
    def test_a_rank_joins_the_socket_with_its_place_and_ends_with_end(self):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "s")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        self._join(server, "unix:" + path, d)

    def test_tcp_on_loopback(self):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        self._join(server, "tcp:127.0.0.1:%d" % server.getsockname()[1], tempfile.mkdtemp())

    def _join(self, server, address, d):
        got, t = _serve(server, 1)
        script = os.path.join(d, "train.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""
                import torch
                m = torch.nn.Linear(3, 2)
                opt = torch.optim.SGD(m.parameters(), lr=0.1)
                for _ in range(2):
                    opt.zero_grad(); m(torch.ones(4, 3)).sum().backward(); opt.step()
            """))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSCOPE_")}
        env.update({ranks.SOCKET_ENV: address, ranks.SETTINGS_ENV: "steps=0,detail=0,sampled=0,script=" + script,
                    "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "PYTHONPATH": BOOT})
        r = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        t.join(30)
        server.close()
        frames, err = decode_all(got[0])
        self.assertIsNone(err)
        msgs = [m for _, m in frames]
        hello = msgs[0]
        self.assertEqual(hello["type"], "hello")
        self.assertEqual((hello["rank"], hello["localRank"], hello["worldSize"], hello["host"]), (3, 1, 4, socket.gethostname()))
        self.assertEqual(hello["script"], script)
        self.assertEqual(len([m for m in msgs if m["type"] == "step"]), 2)
        self.assertEqual(msgs[-1]["type"], "end")
        self.assertEqual(msgs[-1]["reason"], "completed")


class SpawnedWorkersTest(unittest.TestCase):
    """pytorch/examples' mnist_hogwild: the parent builds the model, spawn-started children train it
    (no process group). Each child joins the run with world size 1, and its tensors are placed on the
    lines of the model's __init__ (read from the class's source: the child only unpickled them; they
    were "built at ?")."""

    def test_each_worker_joins_and_places_the_parents_layers(self):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "s")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        got, t = _serve(server, 2)
        script = os.path.join(d, "hogwild.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""
                import torch
                import torch.multiprocessing as mp
                from torch import nn

                class Net(nn.Module):
                    def __init__(self):
                        super().__init__()
                        self.fc1 = nn.Linear(3, 4)  # @fc1
                        self.fc2: nn.Module = nn.Linear(4, 2)  # @fc2

                    def forward(self, x):
                        return self.fc2(self.fc1(x).relu())

                def train(model):
                    opt = torch.optim.SGD(model.parameters(), lr=0.1)
                    for _ in range(3):
                        opt.zero_grad(); model(torch.randn(8, 3)).pow(2).mean().backward(); opt.step()

                if __name__ == "__main__":
                    mp.set_start_method("spawn", force=True)
                    model = Net()
                    model.share_memory()
                    ps = [mp.Process(target=train, args=(model,)) for _ in range(2)]
                    for p in ps: p.start()
                    for p in ps: p.join()
            """))
        lines = open(script).read().splitlines()
        want = {tag: next(i + 1 for i, x in enumerate(lines) if x.endswith("# @" + tag)) for tag in ("fc1", "fc2")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSCOPE_")}
        env.update({ranks.SOCKET_ENV: "unix:" + path, ranks.SETTINGS_ENV: "steps=0,detail=0,sampled=0,script=" + script,
                    "PYTHONPATH": BOOT})
        for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
            env.pop(k, None)
        r = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        t.join(60)
        server.close()
        self.assertEqual(len(got), 2)
        for buf in got:
            frames, err = decode_all(buf)
            self.assertIsNone(err)
            msgs = [m for _, m in frames]
            self.assertEqual((msgs[0]["rank"], msgs[0]["worldSize"]), (0, 1))
            tensors = [x for m in msgs if m["type"] == "tensors" for x in m["tensors"]]
            self.assertEqual({x["name"]: (x["source"] or {}).get("line") for x in tensors},
                             {"model.fc1.weight": want["fc1"], "model.fc1.bias": want["fc1"],
                              "model.fc2.weight": want["fc2"], "model.fc2.bias": want["fc2"]})
            self.assertEqual(len([m for m in msgs if m["type"] == "step"]), 3)


if __name__ == "__main__":
    unittest.main()
