"""Distributed-training scaling on this machine: `xpubench train` with the scaling model, and per strategy the
model's 2-worker prediction (from the 1-worker cell, the gloo loopback probe and the concurrent compute probe)
against the measured 2-worker step, with its parts, then its 8/32/128-worker predictions on the catalogue's
interconnects beside the TPU study's figures.

    PYTHONPATH=src python benchmarks/train_scaling.py [--strategy torch-ddp,tf-multiworker,tf-mirrored]
        [--steps 200] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from xpubench.train.scaling import STUDY

SHOWN_WORKERS = (8, 32, 128)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="torch-ddp,tf-multiworker,tf-mirrored")
    parser.add_argument("--steps", default="200")
    parser.add_argument("--model", default="calo-gan:tiny")
    parser.add_argument("--results", type=Path, default=Path(tempfile.mkdtemp(prefix="xpubench-train-")))
    args = parser.parse_args()
    out = args.results / "train.json"
    subprocess.run([sys.executable, "-m", "xpubench", "train", args.model, "--workers", "1,2", "--strategy",
                    args.strategy, "--steps", args.steps, "--model-scaling", "--results", str(args.results),
                    "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
    found = json.loads(out.read_text())
    print(f"{args.model}, weak scaling, {args.steps} steps; 2 workers on loopback, predicted vs measured:")
    for strategy, fitted in found.get("scaling_model", {}).items():
        for check in fitted["checks"]:
            parts = ", ".join(f"{name.removesuffix('_s')} {ms:.3g}" for name, ms in check["parts_ms"].items())
            print(f"  {strategy:<15} {check['workers']} workers: predicted {check['predicted_step_ms']:6.3g} ms, "
                  f"measured {check['measured_step_ms']:6.3g} ms ({check['error']:+.0%}); parts ms: {parts}")
    print(f"predictions (weak scaling, efficiency against one worker), {', '.join(map(str, SHOWN_WORKERS))} workers:")
    for strategy, fitted in found.get("scaling_model", {}).items():
        for link in dict.fromkeys(r["interconnect"] for r in fitted["predictions"]):
            rows = {r["workers"]: r for r in fitted["predictions"] if r["interconnect"] == link}
            shown = "  ".join(f"{n}: {rows[n]['step_ms']:.3g} ms {rows[n]['efficiency']:.0%}" for n in SHOWN_WORKERS)
            print(f"  {strategy:<15} {link:<11} {shown}")
    print(f"TPU study at 128 devices: {STUDY['tpu_128_cores_epoch_s']:g} s/epoch (TPU cores), "
          f"{STUDY['gpu_128_epoch_s']:g} s (GPUs), near-linear; idle {STUDY['tpu_idle_share']:.1%} (TPU) / "
          f"{STUDY['gpu_idle_share']:.1%} (GPU)")


if __name__ == "__main__":
    main()
