"""The communication probe: the training step's all-reduce (the same buckets, one after the other, as the engine
sends them), and a 4-byte all-reduce, with gloo between 2 processes on loopback (torch.distributed over a TCP
rendezvous on 127.0.0.1): the bandwidth and per-message latency that the scaling model's ring all-reduce uses
for this machine (medians of many repetitions, as one probe varied 0.5..3.4 ms), each right after a barrier, so
waiting for a slower peer is not in it (the model has a straggler term of its own). In training the all-reduce
follows a stretch of compute, and then costs more here (its threads asleep, woken on a shared host; measured
~0.8 ms median after a barrier, ~2-4 ms after 3 ms of compute): with `gaps_s`, both processes also compute that
long before each bucket, together, and the mean of those all-reduces is the step's expected cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_REPEATS = 200


def probe(bucket_bytes: Sequence[int], repeats: int = DEFAULT_REPEATS, timeout_s: float = 120,
          gaps_s: Sequence[float] = ()) -> dict[str, object]:
    """{"bucket_bytes", "bytes", "allreduce_s" (median, every bucket), "latency_s" (median, 4 bytes), "repeats",
    "bandwidth_bps", "alpha_s"}, and with `gaps_s` (the compute before each bucket, s) "gaps_s",
    "after_compute_s" (mean, every bucket, each after its gap) and "resume_s" (that mean - allreduce_s, at
    least 0); a bare int is one bucket of that many bytes."""
    from xpubench.run.ports import free_ports

    buckets = [int(b) for b in ([bucket_bytes] if isinstance(bucket_bytes, int) else bucket_bytes)]
    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="xpubench-probe-") as folder:
        procs = [subprocess.Popen([sys.executable, "-m", "xpubench.train.probe", str(rank), str(port),
                                   ",".join(map(str, buckets)), str(repeats), folder,
                                   ",".join(map(str, gaps_s))],
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
                 for rank in range(2)]
        try:
            for proc in procs:
                proc.wait(timeout_s)
        finally:
            for proc in procs:
                proc.kill()
        found = json.loads((Path(folder) / "rank0.json").read_text())
    big, small = found["big_s"], found["small_s"]
    nbytes = sum(buckets)
    # A ring all-reduce over N workers: 2(N-1)/N x bytes / bandwidth + 2(N-1) x alpha per message; N = 2 here,
    # one message per bucket, so the buckets' latency is taken out before the bandwidth is read.
    alpha = small / 2
    bandwidth = nbytes / max(big - len(buckets) * small, 1e-9)
    found_all: dict[str, object] = {"bucket_bytes": buckets, "bytes": nbytes, "allreduce_s": big, "latency_s": small,
                 "repeats": repeats, "bandwidth_bps": bandwidth, "alpha_s": alpha}
    if "after_compute_s" in found:
        found_all.update(gaps_s=list(gaps_s), after_compute_s=found["after_compute_s"],
                         resume_s=max(found["after_compute_s"] - big, 0.0))
    return found_all


def _compute(seconds: float) -> None:
    """Keep this CPU busy for `seconds` (the step's compute before a bucket), so its threads fall asleep."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _worker(rank: int, port: int, buckets: list[int], repeats: int, folder: str, gaps: list[float]) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    timings = {}
    for name, sizes in (("small_s", [4]), ("big_s", buckets)):
        tensors = [torch.ones(max(size // 4, 1)) for size in sizes]
        for _ in range(5):
            for tensor in tensors:
                dist.all_reduce(tensor)
        times = []
        for _ in range(repeats):
            dist.barrier()
            begun = time.perf_counter()
            for tensor in tensors:
                dist.all_reduce(tensor)
            times.append(time.perf_counter() - begun)
        timings[name] = float(np.median(times))
    if gaps:
        tensors = [torch.ones(max(size // 4, 1)) for size in buckets]
        times = []
        for _ in range(repeats):
            dist.barrier()
            total = 0.0
            for tensor, gap in zip(tensors, gaps, strict=True):
                _compute(gap)
                begun = time.perf_counter()
                dist.all_reduce(tensor)
                total += time.perf_counter() - begun
            times.append(total)
        timings["after_compute_s"] = float(np.mean(times))
    Path(folder, f"rank{rank}.json").write_text(json.dumps(timings))
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), [int(b) for b in sys.argv[3].split(",")], int(sys.argv[4]),
            sys.argv[5], [float(g) for g in sys.argv[6].split(",") if g])
