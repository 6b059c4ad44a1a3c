"""The model bench/ranksOverhead.mjs times: DDP on gloo, an MLP 256-512-512-10 (about 0.4M parameters)
at batch 64, Adam; each rank its own data. Rank 0 writes its median step time (ms, over the steps after
5 warm-up steps) to TIMING_OUT. STEPS (default 100 timed)."""
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(100 + rank)
warm, steps = 5, int(os.environ.get("STEPS", "100"))
times = []
for i in range(warm + steps):
    x = torch.randn(64, 256, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    t0 = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if i >= warm:
        times.append((time.perf_counter() - t0) * 1e3)
if rank == 0 and os.environ.get("TIMING_OUT"):
    with open(os.environ["TIMING_OUT"], "w") as f:
        f.write("%.4f\n" % statistics.median(times))
dist.destroy_process_group()
