"""The timing loop: cold start, warm-up, measurement under stop rules; raw samples out."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpubench.core import metrics
from xpubench.core.errors import InvalidSetting
from xpubench.core.stats import median_ci_halfwidth


@dataclass(frozen=True)
class MeasureConfig:
    """How long to warm up and measure one cell. Checked when built; never changed during a run."""

    warmup_runs: int = 10
    warmup_time_s: float = 0.5
    min_runs: int = 100
    min_time_s: float = 2.0
    max_time_s: float = 60.0
    max_runs: int | None = None
    # Stop early, once min_runs are in, when the 95 % CI of the median is within +-this fraction.
    ci_target: float | None = None

    def __post_init__(self) -> None:
        if self.warmup_runs < 0:
            raise InvalidSetting("warmup_runs", f"the warm-up calls cannot be negative, got {self.warmup_runs}")
        if self.warmup_time_s < 0:
            raise InvalidSetting("warmup_time_s", f"the warm-up time cannot be negative, got {self.warmup_time_s:g} s")
        if self.min_runs < 1:
            raise InvalidSetting("min_runs", f"at least 1 timed call is needed, got {self.min_runs}")
        if self.min_time_s < 0:
            raise InvalidSetting("min_time_s", f"the minimum time cannot be negative, got {self.min_time_s:g} s")
        if self.max_time_s <= 0 or self.max_time_s < self.min_time_s:
            raise InvalidSetting(
                "max_time_s",
                f"the maximum time ({self.max_time_s:g} s) must be positive and at least the minimum time "
                f"({self.min_time_s:g} s)",
            )
        if self.max_runs is not None and self.max_runs < self.min_runs:
            raise InvalidSetting(
                "max_runs", f"the most calls ({self.max_runs}) must be at least the fewest ({self.min_runs})"
            )
        if self.ci_target is not None and not 0 < self.ci_target < 1:
            raise InvalidSetting(
                "ci_target", f"the interval target is a fraction of the median such as 0.01, got {self.ci_target:g}"
            )


@dataclass(frozen=True)
class Samples:
    """What one measurement produced: raw per-call times and why it stopped."""

    first_ns: int
    warmup_runs: int
    samples_ns: np.ndarray  # int64, one per timed call, in call order
    duration_s: float  # wall time of the measured phase, calls and loop together
    stop_reason: str


def measure(
    infer: Callable[[Any], Any],
    pool: Sequence[Any],
    config: MeasureConfig,
    clock: Callable[[], int] = time.perf_counter_ns,
    own_ns: Callable[[Any], int] | None = None,
) -> Samples:
    """Time `infer` on inputs rotating through `pool`.

    `infer` must return only once its result is ready (a device backend syncs inside it), and
    `clock` is the backend's clock in nanoseconds. Between two timed calls the loop does nothing
    but pick the next input and check the stop rules on integers. The garbage collector is off
    while it runs (as in `timeit`), so a collection of unrelated objects lands in no sample.
    `own_ns(x)`, where given, is the runtime's own time of the call just made on `x`: it becomes the
    sample, and `clock` still drives the stop rules.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _measure(infer, pool, config, clock, own_ns)
    finally:
        if gc_was_enabled:
            gc.enable()


def _measure(
    infer: Callable[[Any], Any],
    pool: Sequence[Any],
    config: MeasureConfig,
    clock: Callable[[], int],
    own_ns: Callable[[Any], int] | None,
) -> Samples:
    if not pool:
        raise ValueError("the input pool is empty")
    size = len(pool)

    start = clock()
    infer(pool[0])
    first_ns = clock() - start

    index = 1
    warm_until = clock() + int(config.warmup_time_s * 1e9)
    warmed = 0
    while warmed < config.warmup_runs or clock() < warm_until:
        infer(pool[index % size])
        index += 1
        warmed += 1

    times: list[int] = []
    append = times.append
    min_runs = config.min_runs
    max_runs = config.max_runs or math.inf
    next_ci_check = min_runs if config.ci_target is not None else math.inf
    begin = clock()
    min_end = begin + int(config.min_time_s * 1e9)
    max_end = begin + int(config.max_time_s * 1e9)
    while True:
        x = pool[index % size]
        index += 1
        t0 = clock()
        infer(x)
        t1 = clock()
        append(t1 - t0 if own_ns is None else own_ns(x))
        count = len(times)
        if count >= min_runs and t1 >= min_end:
            reason = f"reached {min_runs} runs and {config.min_time_s:g} s"
            break
        if t1 >= max_end:
            reason = f"reached the maximum time of {config.max_time_s:g} s"
            break
        if count >= max_runs:
            reason = f"reached the maximum of {config.max_runs} runs"
            break
        if count >= next_ci_check:
            halfwidth = median_ci_halfwidth(times)
            if halfwidth <= config.ci_target:
                reason = f"95 % CI of the median within +-{halfwidth:.2%} after {count} runs"
                break
            next_ci_check = int(count * 1.5) + 1
    end = clock()
    return Samples(
        first_ns=first_ns,
        warmup_runs=warmed,
        samples_ns=np.asarray(times, dtype=np.int64),
        duration_s=(end - begin) / 1e9,
        stop_reason=reason,
    )


@dataclass(frozen=True)
class Stability:
    """The answer to "would the median repeat?", with the tolerance it was judged by and a reason for each
    doubt. `tail_ratio` (p99 / median) describes the distribution's tail: a figure of its own, never a doubt."""

    stable: bool
    warnings: tuple[str, ...]  # the reasons for doubt, then notes that are no doubt (load changes)
    tolerance: float = 0.0
    interval_halfwidth: float | None = None  # of the repeat interval, relative to its center
    window_drift: float | None = None  # the largest relative spread of window medians within one repeat
    tail_ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "interval_halfwidth": self.interval_halfwidth,
                "window_drift": self.window_drift, "tail_ratio": self.tail_ratio}


WINDOWS = 5
TOLERANCE = 0.05  # the median repeats when its interval is within +-5 %
DRIFT_LIMIT = 0.10  # window medians of one repeat further apart than this: the machine changed under it
LOAD_RISE_LIMIT = 0.5


def stability(
    repeats_ns: Sequence[np.ndarray],
    load_before: float | None,
    load_after: float | None,
    interval_halfwidth: float | None = None,
    earlier_runs: int = 0,
) -> Stability:
    """The verdict on a cell: stable when its repeat interval is within +-TOLERANCE (with two repeats or
    more) and no repeat's window medians drift by more than DRIFT_LIMIT. A load average that rose is noted
    but is no doubt of its own: what counts is whether the figures moved. `earlier_runs`: the interval's
    width came from the cell's medians in that many earlier runs, not from the repeats."""
    repeats = [np.asarray(r, dtype=np.float64) for r in repeats_ns]
    doubts: list[str] = []
    notes: list[str] = []
    if interval_halfwidth is not None and len(repeats) >= 2 and interval_halfwidth > TOLERANCE:
        who = (f"the cell's medians in {earlier_runs} earlier runs here and this one spread" if earlier_runs
               else f"the {len(repeats)} repeats' medians disagree")
        doubts.append(f"{who}: a rerun's 95 % interval is +-{interval_halfwidth:.1%} (> +-{TOLERANCE:.0%})")
    drifts = [metrics.relative_spread(np.array([np.median(w) for w in np.array_split(x, WINDOWS)]))
              for x in repeats if x.size >= 2 * WINDOWS]
    drift = max(drifts) if drifts else None
    if drift is not None and drift > DRIFT_LIMIT:
        doubts.append(f"window medians drift by {drift:.0%} (> {DRIFT_LIMIT:.0%}) across {WINDOWS} windows of a repeat")
    if load_before is not None and load_after is not None and load_after - load_before > LOAD_RISE_LIMIT:
        notes.append(f"load average rose from {load_before:.2f} to {load_after:.2f} during the cell")
    pooled = np.concatenate(repeats) if repeats else np.empty(0)
    median = float(np.median(pooled)) if pooled.size else 0.0
    tail = float(np.percentile(pooled, 99)) / median if median > 0 else None
    return Stability(not doubts, tuple(doubts + notes), TOLERANCE, interval_halfwidth, drift, tail)
