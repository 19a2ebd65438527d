"""The concurrent compute probe: the 1-worker training cell's engine run alone, then as N independent copies at
once (no communication between them; for tf-mirrored, N replicas of one process, each applying its own
gradients), to measure what N workers computing together on this machine cost each other (shared cores, memory
bandwidth, the other work of the host) and how much their steps scatter. The scaling model takes both from
here, never from the N-worker run it predicts."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from xpubench.train.spec import TrainSpec

Say = Callable[[str], None]
BUSY = ("input", "forward", "backward", "optimizer")  # a step's own work: all but its all-reduce and idle


def busy_steps(report: dict[str, Any]) -> list[float]:
    """One worker's per-step busy time, s: input + forward + backward + optimizer of each timed step."""
    phases = report["phases"]
    return [sum(values) for values in zip(*(phases[p] for p in BUSY), strict=True)]


def sync_columns(reports: list[dict[str, Any]]) -> list[list[float]]:
    """The work between consecutive sync points, s, one column per sync point of a step, pooled over `reports`
    (steps with another count of sync points are left out). A report without them (the tf loop: one all-reduce
    a step) has one column: its busy steps."""
    rows = [row for r in reports for row in (r.get("sync_segments_s") or [[b] for b in busy_steps(r)])]
    if not rows:
        return []
    width = max({len(row) for row in rows}, key=[len(row) for row in rows].count)
    return [list(column) for column in zip(*(row for row in rows if len(row) == width), strict=True)]


def stand_in(spec: TrainSpec) -> TrainSpec:
    """The 1-worker spec the probe runs alone and copies: no weight checksums, no fault."""
    return replace(spec, workers=1, scaling="weak", batch=spec.local_batch, checksums=0, fault=None)


def concurrent_busy(spec: TrainSpec, copies: int, timeout_s: float, say: Say) -> dict[str, Any]:
    """{"copies", "strategy": the engine the copies ran, "alone_s": [per-step busy s of one copy alone, run
    before and after the copies], "concurrent_s": [the same, pooled over `copies` copies started at once],
    "segments_alone_s" and "segments_concurrent_s": [per sync point: [the work before it, s]]}."""
    from xpubench.train.groups import run_group

    one = stand_in(spec)
    # Alone before and after the copies: the host's other load drifts, and the ratio should not read that drift.
    first = run_group(one, timeout_s, say)[0]
    if spec.strategy == "tf-mirrored":
        # Its replicas share one process and its thread pools: the copies are that process's replicas, each
        # applying its own gradients (no all-reduce); its replicas share its clock, so one report tells it.
        groups = [run_group(replace(one, workers=copies, collectives=False), timeout_s, say)]
    else:
        with ThreadPoolExecutor(copies) as pool:
            groups = list(pool.map(lambda _i: run_group(one, timeout_s, say), range(copies)))
    alone = [first, run_group(one, timeout_s, say)[0]]
    concurrent = [reports[0] for reports in groups]
    return {"copies": copies, "strategy": one.strategy, "alone_s": [s for r in alone for s in busy_steps(r)],
            "concurrent_s": [s for r in concurrent for s in busy_steps(r)],
            "segments_alone_s": sync_columns(alone), "segments_concurrent_s": sync_columns(concurrent)}
