"""A composite cell's speed-up attribution in words (`split.attribution`), for `show`, `split` and the report."""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]
LOSSES = ("contention", "imbalance", "transfers", "handoff")  # in the order the report stacks them


def attribution_of(r: Record) -> Record | None:
    """The cell's `split.attribution`, or None (a single cell, or a split stored without it)."""
    split = r.get("split") or {}
    found = split.get("attribution")
    return found if isinstance(found, dict) and found.get("wall_ms") else None


def attribution_line(r: Record) -> str | None:
    """`speed-up 1.62x over the best part alone: parallel work 1.95x; per batch lost: contention 3 %, ...`."""
    found = attribution_of(r)
    if found is None or found.get("speedup") is None:
        return None
    fractions = found.get("lost_fraction") or {}
    lost = ", ".join(f"{name} {100 * fractions[name]:.0f} %" for name in LOSSES
                     if fractions.get(name) is not None)
    parallel = found.get("parallel_speedup")
    return (f"speed-up {found['speedup']:.2f}x over the {found['reference']}: parallel work "
            f"{parallel:.2f}x" if parallel is not None else f"speed-up {found['speedup']:.2f}x") + (
        f"; of the wall time per batch lost to {lost}" if lost else "")
