"""The host processor, read from the operating system."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path


@cache
def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


@cache
def physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where the OS does not say."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    pairs, package, core = set(), None, None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not key and package is not None and core is not None:
            pairs.add((package, core))
            package = core = None
    if package is not None and core is not None:
        pairs.add((package, core))
    return len(pairs) or None


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def logical_cpus() -> int:
    """How many CPUs this process may run on."""
    return len(allowed_cpus())


def core_of(cpu: int) -> str:
    """The physical core a CPU belongs to (its hyperthread siblings share it): the siblings list Linux gives, or
    the CPU itself where there is none."""
    try:
        return Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
    except OSError:
        return str(cpu)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
