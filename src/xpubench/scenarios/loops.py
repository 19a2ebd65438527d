"""Closed-loop scenarios: single-stream, batch sweep (the knee of the throughput curve), offline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xpubench.core import metrics
from xpubench.core.measure import MeasureConfig, Samples
from xpubench.scenarios import Outcome, ScenarioRun

GAIN_STOP = 0.05  # a batch that adds less throughput than this over the best so far is "no gain"
NO_GAIN_LIMIT = 2  # ... and this many of them in a row end the sweep
KNEE_TOLERANCE = 0.05  # the knee: the smallest batch within this fraction of the best throughput


@dataclass(frozen=True)
class Point:
    batch: int
    samples: Samples

    @property
    def throughput_sps(self) -> float:
        return metrics.busy_throughput_sps(self.samples.samples_ns, self.batch) or 0.0

    def as_dict(self) -> dict[str, Any]:
        import numpy as np

        median_ms = float(np.median(self.samples.samples_ns)) / 1e6
        return {
            "batch": self.batch,
            "throughput_sps": self.throughput_sps,
            "median_ms": median_ms,
            "per_sample_ms": metrics.time_per_inference_ms(median_ms, self.batch),
            "runs": int(self.samples.samples_ns.size),
        }


def single_stream(run: ScenarioRun) -> Outcome:
    """One query of the cell's batch at a time, the next sent when the last returned."""
    batch = run.cell.batch_size
    samples = run.timed(run.pool(batch), run.measure)
    return Outcome(samples=samples, batch=batch)


def batch_sweep(run: ScenarioRun) -> Outcome:
    """Batches 1, 2, 4, ... until throughput stops rising; the cell's figures are the knee's,
    measured again under the matrix's full stop rules."""
    points, stop = sweep(run, step_config(run.measure, 5))
    best = max(points, key=lambda p: p.throughput_sps)
    knee = next(p for p in points if p.throughput_sps >= (1 - KNEE_TOLERANCE) * best.throughput_sps)
    samples = run.timed(run.pool(knee.batch), run.measure)
    return Outcome(
        samples=samples,
        batch=knee.batch,
        result={
            "batch": knee.batch,
            "knee": knee.batch,
            "knee_rule": f"smallest batch within {KNEE_TOLERANCE:.0%} of the best throughput",
            "best_batch": best.batch,
            "best_throughput_sps": best.throughput_sps,
            "curve": [p.as_dict() for p in points],
            "stop": stop,
        },
    )


def offline(run: ScenarioRun) -> Outcome:
    """Maximum throughput: every sample is available at once, sent in back-to-back batches of the
    best size (found by a short sweep); throughput is samples over the wall time of the run."""
    points, stop = sweep(run, step_config(run.measure, 10))
    best = max(points, key=lambda p: p.throughput_sps)
    samples = run.timed(run.pool(best.batch), run.measure)
    wall = best.batch * samples.samples_ns.size / samples.duration_s if samples.duration_s > 0 else None
    return Outcome(
        samples=samples,
        batch=best.batch,
        throughput_sps=wall,
        result={
            "batch": best.batch,
            "chosen_by": "the best throughput of a short batch sweep",
            "throughput_sps": wall,
            "curve": [p.as_dict() for p in points],
            "stop": stop,
        },
    )


def step_config(config: MeasureConfig, share: int) -> MeasureConfig:
    """A short measurement for one batch of a sweep: a `share`-th of the cell's minimum time."""
    step = min(max(config.min_time_s / share, 0.02), 0.5)
    return MeasureConfig(
        warmup_runs=min(config.warmup_runs, 2),
        warmup_time_s=min(config.warmup_time_s, step / 2),
        min_runs=min(config.min_runs, 10),
        min_time_s=step,
        max_time_s=step * 4,
    )


def sweep(run: ScenarioRun, config: MeasureConfig) -> tuple[list[Point], str]:
    """Throughput of batches 1, 2, 4, ... up to the cap; stops after NO_GAIN_LIMIT batches in a row
    that do not beat the best by GAIN_STOP, or at the first batch the runtime cannot run."""
    points: list[Point] = []
    best = 0.0
    no_gain = 0
    batch = 1
    cap = run.settings.max_batch
    fixed = run.backend.inputs[0].fixed_batch if run.backend.inputs else None
    if fixed is not None:  # a model built for one batch size has nothing to sweep
        samples = run.timed(run.pool(fixed), config)
        return [Point(fixed, samples)], f"the model takes batch {fixed} only"
    while True:
        try:
            samples = run.timed(run.pool(batch), config)
        except Exception as exc:  # out of memory or a runtime limit: the curve ends here
            if not points:
                raise
            return points, f"batch {batch} failed: {type(exc).__name__}: {str(exc).strip()[:120]}"
        point = Point(batch, samples)
        points.append(point)
        if point.throughput_sps > best * (1 + GAIN_STOP):
            no_gain = 0
        else:
            no_gain += 1
        best = max(best, point.throughput_sps)
        if no_gain >= NO_GAIN_LIMIT:
            return points, f"throughput rose by less than {GAIN_STOP:.0%} {NO_GAIN_LIMIT} batches in a row"
        if batch * 2 > cap:
            return points, f"reached the largest batch, {batch}"
        batch *= 2
