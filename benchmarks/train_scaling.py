"""Distributed-training scaling on this machine: `xpubench train` with the scaling model, and the model's
2-worker prediction (from the 1-worker cell and the gloo loopback probe) against the measured 2-worker step.

    PYTHONPATH=src python benchmarks/train_scaling.py [--strategy torch-ddp] [--steps 40] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="torch-ddp")
    parser.add_argument("--steps", default="40")
    parser.add_argument("--model", default="calo-gan:tiny")
    parser.add_argument("--results", type=Path, default=Path(tempfile.mkdtemp(prefix="xpubench-train-")))
    args = parser.parse_args()
    out = args.results / "train.json"
    subprocess.run([sys.executable, "-m", "xpubench", "train", args.model, "--workers", "1,2", "--strategy",
                    args.strategy, "--steps", args.steps, "--model-scaling", "--results", str(args.results),
                    "--json", str(out)], check=True)
    found = json.loads(out.read_text())
    for check in found.get("scaling_model", {}).get("checks", []):
        error = check["predicted_step_ms"] / check["measured_step_ms"] - 1
        print(f"{check['workers']} workers: predicted {check['predicted_step_ms']:.3g} ms, measured "
              f"{check['measured_step_ms']:.3g} ms ({error:+.0%})")


if __name__ == "__main__":
    main()
