"""The torch probe against the plain loop in SEPARATE processes: what the in-process ab
(torch_probe_step.py ab) cannot show, a cost that outlives the probe's blocks and reaches the plain
ones in the same process (an OpenMP team of a background thread, omp.py, slowed every block by 12 %).
ROUNDS rounds (8), each runs `torch_probe_step.py plain`, `torch_probe_step.py time` (the probe of
this checkout), with PEER=1 `torch_probe_step.py plainpeer` (hand-written `p.grad.norm().item()` per
parameter each step) and, with PROBE_B set (another checkout's src/probe/torch), `time` with that probe, in
a rotated order; each process reports its best of REPS (3) repeats of N (200) steps. Prints per
variant the median over rounds and its ratio to plain's, and every round's figure (separate
processes of one script differ by up to ±15 % here: read the spread).

    MODEL=mlp [PEER=1] [DE=0 SE=0 | DE=1000000 SE=1000000 NOJUMP=1] [PROBE_B=dir] [THREADS=n] \\
        .venv-torch2/bin/python bench/torch_probe_procs.py
"""
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STEP = os.path.join(HERE, "torch_probe_step.py")


def best_us(variant: str) -> float:
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "67108864")
    env.setdefault("N", "200")
    env.setdefault("REPS", "3")
    env.pop("PROBE_DIR", None)
    if variant == "probeB":
        env["PROBE_DIR"] = os.environ["PROBE_B"]
    env.pop("PROBE_B", None)  # (torch_probe_step.py's own in-process probeB: not here)
    mode = {"plain": "plain", "peer": "plainpeer"}.get(variant, "time")
    out = subprocess.run([sys.executable, STEP, mode], env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"best ([0-9.]+) us/step wall", out)
    if not m:
        raise SystemExit("no timing in the output of %s:\n%s" % (variant, out))
    return float(m.group(1))


def main() -> None:
    variants = ["plain", "probe"] + (["peer"] if os.environ.get("PEER") else []) + (["probeB"] if os.environ.get("PROBE_B") else [])
    rounds = int(os.environ.get("ROUNDS", "8"))
    got = {v: [] for v in variants}
    for r in range(rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        for v in order if r % 2 == 0 else reversed(order):
            got[v].append(best_us(v))
    base = statistics.median(got["plain"])
    print("%s, %d rounds, separate processes, best of %s x %s steps each (DE=%s SE=%s):" % (
        os.environ.get("MODEL", "res"), rounds, os.environ.get("REPS", "3"), os.environ.get("N", "200"),
        os.environ.get("DE", "0"), os.environ.get("SE", "0")))
    for v in variants:
        med = statistics.median(got[v])
        print("  %-7s median %8.0f us/step  x%.3f   rounds: %s" % (v, med, med / base, " ".join("%.0f" % x for x in got[v])))


if __name__ == "__main__":
    main()
