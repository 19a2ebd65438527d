"""The communication probe: an all-reduce of a gradient's size, and of 4 bytes, with gloo between 2 processes
on loopback (torch.distributed over a TCP rendezvous on 127.0.0.1): the bandwidth and latency that the
scaling model's ring all-reduce uses for this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def probe(nbytes: int, repeats: int = 20, timeout_s: float = 120) -> dict[str, float]:
    """{"bytes", "allreduce_s" (median, nbytes), "latency_s" (median, 4 bytes), "bandwidth_bps", "alpha_s"}."""
    from xpubench.train.groups import free_ports

    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="xpubench-probe-") as folder:
        procs = [subprocess.Popen([sys.executable, "-m", "xpubench.train.probe", str(rank), str(port), str(nbytes),
                                   str(repeats), folder], env={**os.environ, "OMP_NUM_THREADS": "1"})
                 for rank in range(2)]
        try:
            for proc in procs:
                proc.wait(timeout_s)
        finally:
            for proc in procs:
                proc.kill()
        found = json.loads((Path(folder) / "rank0.json").read_text())
    big, small = found["big_s"], found["small_s"]
    # A ring all-reduce over N workers: 2(N-1)/N x bytes / bandwidth + 2(N-1) x alpha; N = 2 here.
    alpha = small / 2
    bandwidth = nbytes / max(big - small, 1e-9)
    return {"bytes": nbytes, "allreduce_s": big, "latency_s": small, "bandwidth_bps": bandwidth, "alpha_s": alpha}


def _worker(rank: int, port: int, nbytes: int, repeats: int, folder: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    timings = {}
    for name, size in (("small_s", 1), ("big_s", max(nbytes // 4, 1))):
        tensor = torch.ones(size)
        for _ in range(3):
            dist.all_reduce(tensor)
        times = []
        for _ in range(repeats):
            dist.barrier()
            begun = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - begun)
        timings[name] = float(np.median(times))
    Path(folder, f"rank{rank}.json").write_text(json.dumps(timings))
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
