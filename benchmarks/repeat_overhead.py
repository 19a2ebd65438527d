"""What one more repeat costs: the wall time of the same matrix measured in 1 and in R repeats per cell, with
the same stop rules per cell (the repeats share the cell's runs and time), so the difference is what starting
and scoring repeats adds. Rounds alternate the two, so drift of the machine hits both alike.

    python benchmarks/repeat_overhead.py [--repeats 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

MATRIX = ["dense1", "conv3dense1", "--backend", "onnxruntime,litert", "--batch", "1,32",
          "--runs", "100", "--min-time", "0.5"]


def wall_s(repeats: int, results: str) -> float:
    begun = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "xpubench", "run", *MATRIX, "--repeats", str(repeats),
                           "--results", results], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.monotonic() - begun


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cells = 8
    with tempfile.TemporaryDirectory(prefix="xpubench-repeats-") as results:
        wall_s(1, results)  # trains and converts the models first, outside the rounds
        one, many = [], []
        for _ in range(args.rounds):
            one.append(wall_s(1, results))
            many.append(wall_s(args.repeats, results))
    a, b = statistics.median(one), statistics.median(many)
    extra = cells * (args.repeats - 1)
    print(f"{cells} cells, {args.rounds} alternating rounds: 1 repeat {a:.1f} s, {args.repeats} repeats {b:.1f} s")
    print(f"overhead per extra repeat: ({b:.1f} - {a:.1f}) / {extra} = {(b - a) / extra:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
