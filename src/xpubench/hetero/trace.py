"""A composite cell's timeline over a few batches (who works, who waits, the transfers) and the attribution of
its speed-up: the spans recorded during the real execution, turned into the small `split.trace` and
`split.attribution` of the record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TRACE_BATCHES = 4  # batches kept in a trace: enough to see the parts overlap, small enough to store per cell


@dataclass(frozen=True)
class Span:
    """One interval of one row of the timeline, on the host's perf_counter_ns clock."""

    row: str  # a part (data), a stage or a transfer (pipeline)
    kind: str  # "work" or "transfer"
    batch: int  # 0-based among the traced batches
    start_ns: int
    end_ns: int


def trace(spans: Sequence[Span], rows: Sequence[str]) -> dict[str, Any]:
    """`split.trace`: the spans as offsets in ms from the first traced batch's start, ordered by start, and
    the window they fill; `rows` gives the drawing order (rows without spans are kept: a part that waited)."""
    if not spans:
        return {"batches": 0, "window_ms": 0.0, "rows": list(rows), "intervals": []}
    origin = min(s.start_ns for s in spans)
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    return {
        "batches": len({s.batch for s in spans}),
        "window_ms": (max(s.end_ns for s in spans) - origin) / 1e6,
        "rows": list(rows),
        "intervals": [{"row": s.row, "kind": s.kind, "batch": s.batch, "start_ms": (s.start_ns - origin) / 1e6,
                       "end_ms": (s.end_ns - origin) / 1e6} for s in ordered],
    }


def _attribution(reference: str, reference_ms: float, ideal_ms: float, wall_ms: float,
                 lost: dict[str, float]) -> dict[str, Any]:
    """The wall time per batch = the ideal time + the named losses (the last one, `handoff`, is the rest)."""
    lost = dict(lost)
    lost["handoff"] = wall_ms - ideal_ms - sum(lost.values())
    return {
        "reference": reference,
        "reference_ms": reference_ms,
        "wall_ms": wall_ms,
        "ideal_ms": ideal_ms,
        "speedup": reference_ms / wall_ms if wall_ms > 0 else None,
        "parallel_speedup": reference_ms / ideal_ms if ideal_ms > 0 else None,
        "lost_ms": lost,
        "lost_fraction": {k: v / wall_ms if wall_ms > 0 else None for k, v in lost.items()},
    }


def data_attribution(batch: int, alone_sps: Sequence[float], calls: Sequence[tuple[int, list[int], list[int], int]],
                     ) -> dict[str, Any] | None:
    """Data-parallel, over the timed calls (wall ns, samples per part, busy ns per part, transfer ns): against the
    best part alone on the whole batch; ideal = the batch at the parts' summed throughput alone; contention = the
    parts slower together than alone; imbalance = waiting for the slowest part; transfers = the rows copied in and
    the outputs joined; handoff = the rest (dispatch to the parts and back)."""
    if not calls or not alone_sps or max(alone_sps) <= 0:
        return None
    n = len(calls)
    wall = sum(c[0] for c in calls) / n / 1e6
    slowest = sum(max(c[2]) for c in calls) / n / 1e6
    transfers = sum(c[3] for c in calls) / n / 1e6
    k = len(alone_sps)
    together = [sum(c[1][i] for c in calls) / (sum(c[2][i] for c in calls) / 1e6) for i in range(k)
                if sum(c[2][i] for c in calls) > 0]  # samples/ms while running beside the others
    ideal = batch / sum(alone_sps) * 1e3
    balanced = batch / sum(together) if together and sum(together) > 0 else slowest
    return _attribution("best part alone", batch / max(alone_sps) * 1e3, ideal, wall,
                        {"contention": balanced - ideal, "imbalance": slowest - balanced, "transfers": transfers})


def pipeline_attribution(stage_ms: Sequence[float], transfer_ms: Sequence[float], streamed_ms: Sequence[float],
                         wall_ms: float) -> dict[str, Any] | None:
    """Pipeline, per batch of the stream (`wall_ms` = stream wall time / batches): against the stages back to
    back (one batch at a time, no transfers); ideal = that time shared evenly by the stages; imbalance = the
    slowest stage (with its incoming transfer) over the even share; transfers = its incoming transfer;
    contention = that stage slower while streaming (`streamed_ms`: its stage + transfer time in the stream) than
    alone; handoff = the rest (threads waking, fill and drain)."""
    if not stage_ms or wall_ms <= 0:
        return None
    incoming = [0.0, *transfer_ms]
    occupied = [s + t for s, t in zip(stage_ms, incoming, strict=True)]
    slowest = max(range(len(occupied)), key=occupied.__getitem__)
    ideal = sum(stage_ms) / len(stage_ms)
    return _attribution("stages back to back", sum(stage_ms), ideal, wall_ms,
                        {"contention": streamed_ms[slowest] - occupied[slowest],
                         "imbalance": stage_ms[slowest] - ideal, "transfers": incoming[slowest]})
