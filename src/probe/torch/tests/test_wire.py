"""The wire format against the golden files of test/fixtures/protocol (written by an independent
encoder, make_golden.py): decoding gives expected.json, and encoding the same messages gives the
same bytes."""
import json
import math
import os
import struct
import unittest

from gradscope_probe import wire

from .helpers import REPO

GOLDEN = os.path.join(REPO, "test", "fixtures", "protocol")


def load(name):
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


class GoldenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(GOLDEN, "expected.json"), encoding="utf-8") as f:
            cls.expected = json.load(f)

    def assertMessage(self, got, want):
        self.assertEqual(got["type"], want["type"])
        for k, v in want.items():
            g = got[k]
            if k == "columns":
                for gc, wc in zip(g, v):
                    self.assertEqual(len(gc), len(wc))
                    for a, b in zip(gc, wc):
                        if b is None:
                            self.assertTrue(math.isnan(a))
                        else:
                            self.assertEqual(a, b)
            elif k == "thumb":
                self.assertEqual(g, [f32(x) for x in v])
            elif k == "loss" and v == "NaN":  # a NaN loss ("loss": null is no loss: None)
                self.assertTrue(isinstance(g, float) and math.isnan(g), g)
            else:
                self.assertEqual(g, v, k)

    def test_decodes_every_golden_frame(self):
        for name, want in self.expected["valid"].items():
            with self.subTest(name):
                frames, err = wire.decode_all(load(name))
                self.assertIsNone(err)
                self.assertEqual(len(frames), 1)
                self.assertMessage(frames[0][1], want)

    def test_decodes_the_stream(self):
        frames, err = wire.decode_all(load("stream.bin"))
        self.assertIsNone(err)
        self.assertEqual([m["type"] for _, m in frames], [self.expected["valid"][n]["type"] for n in self.expected["stream"]])
        self.assertEqual([s for s, _ in frames], list(range(len(frames))))

    def test_encodes_the_same_bytes(self):
        for seq, name in enumerate(self.expected["stream"]):
            with self.subTest(name):
                msg = dict(self.expected["valid"][name])
                if msg["type"] == "step":
                    msg["columns"] = [[float("nan") if v is None else v for v in c] for c in msg["columns"]]
                    if msg["loss"] == "NaN":
                        msg["loss"] = float("nan")
                self.assertEqual(wire.encode(msg, seq), load(name))

    def test_encodes_a_rank_hello_to_the_same_bytes(self):
        # the optional fields of one rank of a distributed job (localRank, worldSize, host)
        msg = dict(self.expected["valid"]["hello-rank.bin"])
        self.assertEqual((msg["rank"], msg["localRank"], msg["worldSize"], msg["host"]), (3, 1, 4, "gpu-node-2"))
        self.assertEqual(wire.encode(msg, 0), load("hello-rank.bin"))

    def test_encodes_a_shard_tensors_frame_to_the_same_bytes(self):
        # an FSDP2 rank's block of each parameter (shard: offset and localShape per dimension)
        msg = dict(self.expected["valid"]["tensors-shard.bin"])
        self.assertEqual(msg["tensors"][0]["shard"], {"offset": [4, 0], "localShape": [4, 4]})
        self.assertEqual(wire.encode(msg, 0), load("tensors-shard.bin"))

    def test_malformed_files_fail_with_their_code(self):
        for name, code in self.expected["malformed"].items():
            with self.subTest(name):
                _, err = wire.decode_all(load(os.path.join("malformed", name)))
                self.assertIsNotNone(err)
                self.assertEqual(err.code, code)

    def test_non_finite_json_numbers_become_null(self):
        data = wire.encode({"type": "event", "kind": "info", "message": "x", "count": float("inf")}, 0)
        self.assertIn(b'"count":null', data)
        self.assertIn(b'"message":"x"', data)

    def test_step_layout(self):
        data = wire.encode({"type": "step", "step": 3, "loss": 0.5, "wallMs": 1.0, "stats": ["norm", "maxAbs"],
                            "columns": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "nTensors": 3}, 9)
        magic, ver, typ, length, seq = struct.unpack_from("<IHHII", data)
        self.assertEqual((magic, ver, typ, seq), (wire.MAGIC, 1, wire.STEP, 9))
        self.assertEqual(length, 32 + 8 + 8 * 2 * 3)
        self.assertEqual(data[16 + 32:16 + 34], bytes([1, 2]))


if __name__ == "__main__":
    unittest.main()
