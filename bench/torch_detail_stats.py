"""Time of the torch probe's detail tier on one CPU thread: one 1536×784 gradient (all finite: the
chunked kernel; with a NaN: the general, masking path), and the six small tensors of a conv net in
one detail_stats_many call (one batched pass) against one detail_stats call each. Also the page
faults per call (fresh memory costs a fault per page; the chunked kernel allocates none).
Run: /usr/bin/python3 bench/torch_detail_stats.py   (prints ms per call; never asserts)"""
import os, resource, sys, time
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "probe", "torch"))
from gradscope_probe import stats  # noqa: E402

torch.set_num_threads(1)


def timed(label, fn, n=10):
    for _ in range(3):
        fn()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.perf_counter()
    for _ in range(n):
        fn()
    ms = (time.perf_counter() - t) * 1e3 / n
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n
    print("%-62s %7.2f ms per call, %6.0f page faults per call" % (label, ms, faults))


torch.manual_seed(0)
g = torch.randn(1536, 784)
g[1, 1] = 0.0
timed("detail_stats, 1536x784 gradient, all finite", lambda: stats.detail_stats(g, list(g.shape)))
bad = g.clone()
bad[0, 0] = float("nan")
timed("detail_stats, 1536x784 gradient with a NaN (general path)", lambda: stats.detail_stats(bad, list(bad.shape)))
small = [(torch.randn(*s), s) for s in ([16, 1, 3, 3], [16], [32, 16, 3, 3], [32], [10, 800], [10])]
timed("detail_stats_many, a conv net's 6 tensors (10k entries)", lambda: stats.detail_stats_many(small), n=50)
timed("detail_stats one by one, the same 6 tensors", lambda: [stats.detail_stats(t, s)[0].tolist() for t, s in small], n=50)
