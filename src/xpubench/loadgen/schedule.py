"""Load levels (N requests in flight, or arrivals at a rate) and how each is shared out over client processes.

An open-loop level's arrivals are drawn once, in the parent, from a seeded generator, and dealt to the client
processes in turn; a closed-loop level gives each process its part of the N senders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARRIVALS = ("poisson", "constant")
MAX_ARRIVALS = 2_000_000  # a level's schedule is bounded whatever the rate and duration
OPEN_LOOP_SENDERS = 32  # threads per client process sending an open loop's arrivals


@dataclass(frozen=True)
class LoadLevel:
    """One load level: `concurrency` requests always in flight (closed loop), or `rate` requests/s arriving
    on a schedule (open loop, `arrivals` poisson or constant)."""

    concurrency: int | None = None
    rate: float | None = None
    arrivals: str = "poisson"

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("a load level is a concurrency or a rate, not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"the rate must be a positive number of requests/s, got {self.rate:g}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"unknown arrivals {self.arrivals!r}: choose from {', '.join(ARRIVALS)}")

    @property
    def mode(self) -> str:
        return "concurrency" if self.concurrency is not None else "rate"

    @property
    def label(self) -> str:
        return f"concurrency {self.concurrency}" if self.concurrency is not None else \
            f"{self.rate:g} req/s ({self.arrivals})"

    def options(self) -> tuple[tuple[str, str], ...]:
        """The stored cell's options: each level has a key of its own."""
        if self.concurrency is not None:
            return (("concurrency", str(self.concurrency)),)
        return (("arrivals", self.arrivals), ("rate", f"{self.rate:g}"))


def schedule(level: LoadLevel, duration_s: float, seed: int) -> np.ndarray:
    """The open-loop arrival offsets from the level's start, ns, within `duration_s`."""
    assert level.rate is not None
    count = min(int(level.rate * duration_s * 1.3) + 50, MAX_ARRIVALS)
    if level.arrivals == "constant":
        gaps = np.full(count, 1e9 / level.rate)
    else:
        gaps = np.random.default_rng(seed).exponential(1e9 / level.rate, size=count)
    offsets = np.cumsum(gaps).astype(np.int64)
    return offsets[offsets < int(duration_s * 1e9)]


def shares(level: LoadLevel, clients: int, offsets: np.ndarray | None) -> list[tuple[int, np.ndarray | None]]:
    """Each client process's (senders, arrival offsets): arrivals dealt in turn, senders split evenly; processes
    that would get nothing are left out."""
    if level.concurrency is not None:
        base, extra = divmod(level.concurrency, clients)
        return [(base + (i < extra), None) for i in range(clients) if base + (i < extra) > 0]
    assert offsets is not None
    return [(OPEN_LOOP_SENDERS, offsets[i::clients]) for i in range(clients) if offsets[i::clients].size]
