"""NVIDIA GPU discovery without importing a framework: the driver's /proc entries or nvidia-smi."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

_PROC = Path("/proc/driver/nvidia/gpus")


@cache
def nvidia_gpu_count() -> int:
    if _PROC.is_dir():
        return sum(1 for _ in _PROC.iterdir())
    return 1 if shutil.which("nvidia-smi") else 0


def cuda_unavailable_reason() -> str | None:
    """None when an NVIDIA GPU and driver are here; otherwise why not, in one line."""
    if nvidia_gpu_count() == 0:
        return "no NVIDIA GPU here (no driver under /proc/driver/nvidia, no nvidia-smi)"
    return None
