"""Open-loop server scenario: Poisson arrivals at a fixed rate, latency from each query's scheduled send time."""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from xpubench.core.measure import MeasureConfig, Samples, measure
from xpubench.scenarios import Outcome, ScenarioRun

AUTO_LOAD = 0.5  # without --qps: this fraction of the capacity a short single-stream probe finds
GROWTH_LIMIT = 2.0  # late/early median latency above this: the queue grew during the run
MAX_QUERIES = 2_000_000  # the schedule's length is bounded whatever the rate and time
LEAD_NS = 1_000_000  # the first arrival is this far after the schedule is fixed
SPIN_NS = 1_500_000  # sleep until this close to an arrival, then spin: a sleep wakes up late


def server(run: ScenarioRun) -> Outcome:
    """One worker runs queries of one sample in arrival order (a single device), as a queue would.

    Arrival times are drawn up front from a Poisson process (exponential gaps) and never move: when
    the worker falls behind, the next query starts late and its latency, counted from its scheduled
    time, includes that wait (no coordinated omission). Arrivals span the matrix's minimum time
    (longer when needed for its minimum runs); the run ends after --max-time, and queries not yet
    served then count as unserved, which fails the bound.
    """
    settings, config = run.settings, run.measure
    infer, clock = run.backend.infer, run.backend.clock
    pool = run.pool(1)
    size = len(pool)
    probe = measure(infer, pool, _probe_config(config), clock=clock)
    capacity = 1e9 / float(probe.samples_ns.mean())
    qps, source = settings.qps, "given"
    if qps is None:
        qps, source = AUTO_LOAD * capacity, f"{AUTO_LOAD:.0%} of the capacity a single-stream probe found"

    window_s = min(max(config.min_time_s, config.min_runs / qps), config.max_time_s)
    rng = np.random.default_rng(settings.seed)
    expected = int(qps * window_s * 1.2) + 100
    gaps = rng.exponential(1e9 / qps, size=min(expected, MAX_QUERIES))
    offsets = np.cumsum(gaps).astype(np.int64)
    offsets = offsets[offsets <= int(window_s * 1e9)]
    if offsets.size == 0:
        offsets = np.asarray([0], dtype=np.int64)
    count = int(offsets.size)

    began = np.zeros(count, dtype=np.int64)
    done = np.zeros(count, dtype=np.int64)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock() + LEAD_NS
        deadline = start + int(config.max_time_s * 1e9)
        served = _serve(infer, pool, size, clock, start + offsets, deadline, began, done)
    finally:
        if gc_was_enabled:
            gc.enable()
    scheduled = start + offsets[:served]
    latency = done[:served] - scheduled
    service = done[:served] - began[:served]
    end = int(done[served - 1]) if served else start
    duration_s = max(end - start, 1) / 1e9
    unserved = count - served
    return Outcome(
        samples=Samples(
            first_ns=int(probe.first_ns),
            warmup_runs=probe.warmup_runs + probe.samples_ns.size,
            samples_ns=latency,
            duration_s=duration_s,
            stop_reason=(
                f"served all {count} arrivals of {window_s:g} s"
                if not unserved
                else f"reached the maximum time of {config.max_time_s:g} s with {unserved} queries unserved"
            ),
        ),
        batch=1,
        throughput_sps=served / duration_s,
        result=_figures(latency, service, settings.bound_ms, qps, source, capacity, count, unserved, duration_s,
                        window_s),
    )


def _serve(infer: Any, pool: list[Any], size: int, clock: Any, due: np.ndarray, deadline: int,
           began: np.ndarray, done: np.ndarray) -> int:
    """Run each query at its due time or, when behind, as soon as the last one finishes."""
    sleep = time.sleep
    for i in range(due.size):
        t = int(due[i])
        now = clock()
        if now < t:
            if t - now > SPIN_NS:
                sleep((t - now - SPIN_NS) / 1e9)
            while clock() < t:
                pass
        elif now > deadline:
            return i
        began[i] = clock()
        infer(pool[i % size])
        done[i] = clock()
    return int(due.size)


def _figures(latency: np.ndarray, service: np.ndarray, bound_ms: float, qps: float, source: str, capacity: float,
             offered: int, unserved: int, duration_s: float, window_s: float) -> dict[str, Any]:
    ms = latency.astype(np.float64) / 1e6
    found: dict[str, Any] = {
        "latency_from": "each query's scheduled send time (open loop, no coordinated omission)",
        "qps": qps,
        "qps_source": source,
        "arrivals": "poisson",
        "bound_ms": bound_ms,
        "capacity_qps": capacity,
        "load": qps / capacity,
        "window_s": window_s,
        "offered": offered,
        "served": int(latency.size),
        "unserved": unserved,
        "achieved_qps": latency.size / duration_s,
    }
    if latency.size:
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        tenth = max(1, latency.size // 10)
        early, late = float(np.median(ms[:tenth])), float(np.median(ms[-tenth:]))
        growth = late / early if early > 0 else None
        found.update(
            p50_ms=p50,
            p90_ms=p90,
            p99_ms=p99,
            max_ms=float(ms.max()),
            service_median_ms=float(np.median(service)) / 1e6,
            utilisation=float(service.sum()) / 1e9 / duration_s,
            first_tenth_p50_ms=early,
            last_tenth_p50_ms=late,
            growth=growth,
            latency_grows=bool(growth is not None and growth > GROWTH_LIMIT),
        )
    met = bool(latency.size) and unserved == 0 and found["p99_ms"] <= bound_ms
    found["bound_met"] = met
    found["verdict"] = "bound met" if met else "bound failed"
    return found


def _probe_config(config: MeasureConfig) -> MeasureConfig:
    step = min(max(config.min_time_s / 10, 0.05), 0.3)
    return MeasureConfig(
        warmup_runs=min(config.warmup_runs, 5),
        warmup_time_s=min(config.warmup_time_s, step),
        min_runs=min(config.min_runs, 20),
        min_time_s=step,
        max_time_s=step * 4,
    )
