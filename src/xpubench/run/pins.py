"""CPU lists (`0`, `0-3`, `0,2,4-5`): parsed, checked against this process's CPUs, and written back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from xpubench.hardware.host import allowed_cpus, core_of


def parse_cpus(text: str) -> tuple[int, ...]:
    """`0`, `0-3`, `0,2,4-5` -> the sorted CPU numbers. A malformed list, or a CPU this process may not use,
    raises ValueError."""
    cpus: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",")):
            low, dash, high = part.partition("-")
            first, last = int(low), int(high) if dash else int(low)
            if first < 0 or last < first:
                raise ValueError
            cpus.update(range(first, last + 1))
    except ValueError:
        raise ValueError(f"{text!r} is not a CPU list: give CPU numbers such as 0, 0-1 or 0,2") from None
    allowed = allowed_cpus()
    if not cpus <= set(allowed):
        raise ValueError(f"{text!r}: this process may run on CPUs {format_cpus(allowed)} only")
    return tuple(sorted(cpus))


def format_cpus(cpus: Iterable[int]) -> str:
    """(0, 1, 2, 5) -> `0-2,5`."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def halves(cpus: Sequence[int], core: Callable[[int], str] = core_of
           ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Two sets of CPUs that share no core where that can be: the first half of the cores (with all their
    hyperthreads) and the rest; the first half of the CPUs where they are all one core's. None, None: one CPU."""
    if len(cpus) < 2:
        return None, None
    cores: dict[str, list[int]] = {}
    for cpu in sorted(cpus):
        cores.setdefault(core(cpu), []).append(cpu)
    groups = list(cores.values()) if len(cores) > 1 else [[cpu] for cpu in sorted(cpus)]
    half = len(groups) // 2
    return tuple(c for g in groups[:half] for c in g), tuple(c for g in groups[half:] for c in g)
