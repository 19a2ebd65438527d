"""The environment of a run: hardware, OS, Python, runtime versions, source revision."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from xpubench.hardware import host
from xpubench.version import __version__

# Versions recorded with every run besides the backends' own, read from package metadata (nothing is imported).
BASE_PACKAGES = ("numpy", "onnx")  # the arrays and the graph every conversion passes through
LOADGEN_PACKAGE = "mlcommons-loadgen"  # the MLPerf LoadGen scenario's driver, not a backend


def package_versions() -> dict[str, str]:
    """numpy's and onnx's versions, every registered backend's packages (hidden ones too), and LoadGen's;
    a package that is not installed is left out."""
    from xpubench.backends import backend_names, get_backend

    versions = _installed(BASE_PACKAGES)
    for name in backend_names(include_hidden=True):
        try:
            backend = get_backend(name)
        except (ImportError, AttributeError):  # a registration whose class cannot be loaded runs nothing
            continue
        versions.update(backend.package_versions())
    versions.update(_installed((LOADGEN_PACKAGE,)))
    return versions


def _installed(names: tuple[str, ...]) -> dict[str, str]:
    versions = {}
    for name in names:
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


# Environment variables that change what a run measures (thread pools, kernels, visible devices).
RESULT_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
    "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES",
)


def settings() -> dict[str, Any]:
    """The settings read from the environment that change a run's results or where it finds things: the
    cache of trained models and artifacts, the hardware catalogue, backends registered by the environment,
    and the variables that size thread pools or pick kernels."""
    import os

    from xpubench.backends import EXTRA_ENV
    from xpubench.hardware.catalogue import user_files
    from xpubench.paths import cache_dir

    return {
        "cache": str(cache_dir()),
        "catalogue": [str(path) for path in user_files()],
        "extra_backends": os.environ.get(EXTRA_ENV) or None,
        "variables": {name: os.environ[name] for name in RESULT_VARIABLES if name in os.environ},
    }


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
        "settings": settings(),
        "load_before": host.load_average(),
    }
