"""What a Dask cluster adds to a sweep: the same matrix of tiny cells (a one-node ONNX model on ONNX Runtime,
a very short measurement each) measured by the local sweep (one worker process per cell, one at a time), on
`local:1` (one Dask worker: the same one-at-a-time order, so the difference per cell is the cluster's overhead:
the round trip through the scheduler and the workload's bytes travelling with each task), and on `local:N`.

Only the measuring phase is timed (Session.measure); starting the cluster is timed apart.

    PYTHONPATH=src python benchmarks/cluster_overhead.py [--cells 12] [--workers 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def relu_model(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["in"], ["out"])], "relu",
        [helper.make_tensor_value_info("in", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 16])],
    )
    path = folder / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def sweep_s(model: Path, cells: int, results: Path, cluster: str | None) -> tuple[float, float, float, int]:
    """(seconds to start the cluster, seconds to measure the cells, seconds the cells' own processes lived,
    cells stored ok)."""
    from xpubench.core.measure import MeasureConfig
    from xpubench.run.matrix import Matrix
    from xpubench.run.session import Session

    matrix = Matrix(models=(str(model),), backends=("onnxruntime",), batch_sizes=tuple(range(1, cells + 1)),
                    measure=MeasureConfig(warmup_runs=1, warmup_time_s=0, min_runs=5, min_time_s=0.01))
    begun = time.perf_counter()
    launcher = None
    if cluster:
        from xpubench.cluster import connect

        launcher = connect(cluster)
    started = time.perf_counter() - begun
    try:
        with Session.start(results, [matrix], f"cluster_overhead {cluster}", cell_timeout_s=120,
                           launcher=launcher) as session:
            begun = time.perf_counter()
            session.measure()
            wall = time.perf_counter() - begun
            records = session.store.cells(session.run_id)
            ok = sum(c["status"] == "ok" for c in records)
            lived = sum(c["worker"]["wall_s"] for c in records if c.get("worker"))
    finally:
        if launcher is not None:
            launcher.close()
    return started, wall, lived, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2, help="the workers of the wider local cluster")
    parser.add_argument("--rounds", type=int, default=2, help="each mode this often, alternating; medians shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xpubench-cluster-bench-") as tmp:
        folder = Path(tmp)
        os.environ.setdefault("XPUBENCH_CACHE", str(folder / "cache"))
        model = relu_model(folder)
        modes = {"local sweep": None, "local:1": "local:1", f"local:{args.workers}": f"local:{args.workers}"}
        walls: dict[str, list[float]] = {m: [] for m in modes}
        starts: dict[str, list[float]] = {m: [] for m in modes}
        outside: dict[str, list[float]] = {m: [] for m in modes}  # per cell, beside its own process's life
        for round_ in range(args.rounds):
            for name, cluster in modes.items():
                started, wall, lived, ok = sweep_s(model, args.cells, folder / f"r{round_}", cluster)
                assert ok == args.cells, f"{name}: {ok} of {args.cells} cells ok"
                walls[name].append(wall)
                starts[name].append(started)
                outside[name].append((wall - lived) / args.cells)
                print(f"round {round_ + 1} {name:>12}: {wall:6.2f} s for {args.cells} cells "
                      f"({wall / args.cells:.3f} s per cell), cluster start {started:.2f} s", flush=True)
        local = statistics.median(walls["local sweep"])
        print(f"\n{args.cells} cells, {os.cpu_count()} CPUs, median of {args.rounds} rounds:")
        for name in modes:
            wall = statistics.median(walls[name])
            print(f"  {name:>12}: {wall:6.2f} s  ({wall / args.cells:.3f} s per cell; {wall / local:.2f} x the "
                  f"local sweep; start {statistics.median(starts[name]):.2f} s)")
        overhead = (statistics.median(walls["local:1"]) - local) / args.cells
        print(f"  cluster overhead per cell (local:1 against the local sweep, both one at a time): {overhead:+.3f} s")
        # Less noisy: the time per cell spent outside the cell's own process (the one-at-a-time modes).
        for name in ("local sweep", "local:1"):
            print(f"  {name:>12}: {statistics.median(outside[name]):.3f} s per cell outside the cell's process")


if __name__ == "__main__":
    main()
