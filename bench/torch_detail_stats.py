"""Time of the torch probe's detail tier on one 1536×784 gradient, one CPU thread.
Run: /usr/bin/python3 bench/torch_detail_stats.py   (prints ms per call; never asserts)"""
import os, sys, time
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "probe", "torch"))
from gradscope_probe import stats  # noqa: E402

torch.set_num_threads(1)
g = torch.randn(1536, 784)
g[0, 0] = float("nan")
g[1, 1] = 0.0
for _ in range(3):
    stats.detail_stats(g, list(g.shape))
t = time.perf_counter()
for _ in range(10):
    stats.detail_stats(g, list(g.shape))
print("detail_stats on a 1536x784 gradient: %.1f ms per call (1 thread)" % ((time.perf_counter() - t) * 100))
