"""Would a rerun give the same median? The same matrix run several times, quiet and beside a busy loop.

For each cell it prints the spread of the medians across the runs against the interval each run stored, how
often a run's interval covers the median of every later run (the coverage a user relies on), and how often the
verdict called the cell stable; then the same beside a busy loop, where the verdict should turn for the cells
whose medians moved. The busy loop spins on CPU 0, on and off (busy moments, as a shared machine has them);
`--pin 0` pins the runs there too, so that it competes with every cell rather than with those the scheduler
puts on CPU 0.

    python benchmarks/reproducibility.py [--runs 6] [--repeats 3] [--models dense1,conv3dense1]
        [--backends onnxruntime,litert] [--batch 1,32] [--busy-runs 2] [--pin 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path


def run_once(args: argparse.Namespace, folder: Path, index: int) -> list[dict]:
    out = folder / f"run{index}.json"
    command = [sys.executable, "-m", "xpubench", "run", *args.models.split(","), "--backend", args.backends,
               "--batch", args.batch, "--repeats", str(args.repeats), *(["--pin", args.pin] if args.pin else []),
               "--results", str(folder / "results"), "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return json.loads(out.read_text())["cells"]


def spin(on_s: float = 1.5, off_s: float = 1.5) -> None:
    """Spin on CPU 0 for `on_s`, rest for `off_s`, for at most an hour."""
    import os

    os.sched_setaffinity(0, {0})
    end = time.monotonic() + 3600
    while time.monotonic() < end:
        busy_until = time.monotonic() + on_s
        while time.monotonic() < busy_until:
            pass
        time.sleep(off_s)


@contextlib.contextmanager
def busy_loop() -> Iterator[None]:
    """One process spinning on CPU 0, on and off, for as long as the block runs."""
    process = multiprocessing.get_context("spawn").Process(target=spin, daemon=True)
    process.start()
    try:
        yield
    finally:
        process.terminate()
        process.join()


def summarise(label: str, runs: list[list[dict]]) -> tuple[float, float]:
    """Per cell: median spread across runs, mean interval half-width, coverage of the later runs' medians (a
    rerun is later: the runs share one store, and a run's interval rests on the earlier runs of the cell there),
    and how many runs called it stable. Returns (coverage, stable share) over all cells, and prints the coverage
    of the intervals that rested on two or more earlier runs apart from that of those that did not."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for cells in runs:
        for cell in cells:
            if cell["status"] == "ok":
                by_key[cell["key"]].append(cell)
    print(f"\n{label}: {len(runs)} runs")
    print(f"{'cell':<58} {'medians spread':>15} {'±interval':>10} {'coverage':>9} {'stable':>7}")
    covered = pairs = stable = total = 0
    by_history = {False: [0, 0], True: [0, 0]}  # rested on earlier runs -> [covered, pairs]
    for key, cells in by_key.items():
        medians = [c["latency_ms"]["median"] for c in cells]
        spread = (max(medians) - min(medians)) / min(medians)
        half = sum((c["latency_ms"]["ci95_high"] - c["latency_ms"]["ci95_low"]) / 2 / c["latency_ms"]["median"]
                   for c in cells) / len(cells)
        hits = count = 0
        for i, c in enumerate(cells):
            history = (c.get("repeats") or {}).get("earlier_runs", 0) >= 2
            for other in medians[i + 1:]:
                hit = c["latency_ms"]["ci95_low"] <= other <= c["latency_ms"]["ci95_high"]
                hits, count = hits + hit, count + 1
                by_history[history][0] += hit
                by_history[history][1] += 1
        calls = sum(bool(c["stable"]) for c in cells)
        covered, pairs, stable, total = covered + hits, pairs + count, stable + calls, total + len(cells)
        name = key.replace("/single-stream/end-to-end", "").replace("/cpu/fp32", "")
        print(f"{name:<58} {spread:>14.1%} {half:>9.1%} {hits:>4}/{count:<4} {calls:>3}/{len(cells)}")
    coverage = covered / pairs if pairs else float("nan")
    print(f"all cells: a run's interval covers a later run's median in {covered}/{pairs} = {coverage:.0%} of pairs; "
          f"called stable {stable}/{total} = {stable / total:.0%}")
    for history, (hit, count) in by_history.items():
        if count:
            kind = "on two or more earlier runs" if history else "on the run's own repeats only"
            print(f"  intervals resting {kind}: {hit}/{count} = {hit / count:.0%}")
    return coverage, stable / total


def moved(quiet: list[list[dict]], busy: list[list[dict]], tolerance: float = 0.05) -> None:
    """Beside the busy loop: for each cell, whether its median moved from the quiet runs' and what the verdict said."""
    quiet_median = {}
    for cells in quiet:
        for c in cells:
            if c["status"] == "ok":
                quiet_median.setdefault(c["key"], []).append(c["latency_ms"]["median"])
    print("\nbeside a busy loop: did the median move, and did the verdict turn?")
    turned = moved_count = 0
    for cells in busy:
        for c in cells:
            if c["status"] != "ok" or c["key"] not in quiet_median:
                continue
            base = sorted(quiet_median[c["key"]])[len(quiet_median[c["key"]]) // 2]
            shift = c["latency_ms"]["median"] / base - 1
            if abs(shift) > tolerance:
                moved_count += 1
                turned += not c["stable"]
            name = c["key"].replace("/single-stream/end-to-end", "").replace("/cpu/fp32", "")
            print(f"  {name:<58} moved {shift:+7.1%}  {'stable' if c['stable'] else 'UNSTABLE: ' + c['warnings'][0]}")
    print(f"the verdict turned for {turned} of the {moved_count} cells whose median moved by more than {tolerance:.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--busy-runs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="dense1,conv3dense1")
    parser.add_argument("--backends", default="onnxruntime,litert")
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--pin", default=None, help="CPUs for every run's workers, as xpubench run --pin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xpubench-repro-") as tmp:
        folder = Path(tmp)
        quiet = [run_once(args, folder, i) for i in range(args.runs)]
        summarise(f"quiet, --repeats {args.repeats}", quiet)
        if args.busy_runs:
            with busy_loop():
                busy = [run_once(args, folder, args.runs + i) for i in range(args.busy_runs)]
            summarise(f"beside a busy loop, --repeats {args.repeats}", busy)
            moved(quiet, busy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
