"""The environment of a run: hardware, OS, Python, runtime versions, source revision."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from xpubench import __version__
from xpubench.hardware import host

# Versions recorded with every run, read from package metadata (nothing is imported).
RECORDED_PACKAGES = ("numpy", "onnx", "onnxruntime", "ai-edge-litert", "tensorflow-cpu", "tensorflow", "keras")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the xpubench source tree when it runs from a git checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def collect(threads: list[int]) -> dict[str, Any]:
    return {
        "cpu_model": host.cpu_model(),
        "logical_cpus": host.logical_cpus(),
        "physical_cores": host.physical_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "xpubench": __version__,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "threads": threads,
        "load_before": host.load_average(),
    }
