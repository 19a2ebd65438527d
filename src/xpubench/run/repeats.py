"""A cell measured in several repeats (worker sessions of their own, interleaved with the other cells): the
repeats combined into the one record the store keeps, with the interval a rerun's median falls in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xpubench.core import metrics
from xpubench.core.cell import Energy
from xpubench.core.measure import stability
from xpubench.core.stats import LatencyStats, RepeatInterval
from xpubench.hardware import catalogue

Repeat = tuple[dict[str, Any], np.ndarray]  # a repeat's record (as the store keeps it) and its raw call times



def interval(repeats: Sequence[Repeat], earlier_medians: Sequence[float] = ()) -> RepeatInterval:
    return RepeatInterval.from_repeats([samples for _, samples in repeats], earlier_medians)


def combine(
    repeats: Sequence[Repeat], tdp_w: float | None, stop_reason: str, earlier_medians: Sequence[float] = ()
) -> tuple[dict[str, Any], np.ndarray]:
    """The cell's record and raw call times from its ok repeats (the first one scored): time figures from all
    of them (metrics.py defines each), the accuracy, fidelity and details of the first. `earlier_medians`: the
    cell's medians in earlier runs on this machine, which widen the interval when reruns spread more."""
    first = repeats[0][0]
    samples = [s for _, s in repeats]
    pooled = np.concatenate(samples)
    found = interval(repeats, earlier_medians)
    batch = int(first["batch_size"])
    latency = LatencyStats.from_samples_ns(pooled).as_dict()
    latency.update(median=found.center, ci95_low=found.low, ci95_high=found.high)
    per_sample_ms = metrics.time_per_inference_ms(found.center, batch)
    verdict = stability(samples, None, None, found.halfwidth, found.earlier_runs)
    split = first.get("split")
    if split and split.get("stream"):  # a pipeline's rate is streamed (batches in flight at once), not 1 / call time
        throughput = float(np.mean([record["throughput_sps"] for record, _ in repeats]))
    else:
        throughput = metrics.busy_throughput_sps(pooled, batch)
    kept = [w for record, _ in repeats for w in record["warnings"]
            if not w.startswith("window medians drift") and "repeats' medians disagree" not in w]
    record = {
        **first,
        "latency_ms": latency,
        "per_sample_ms": per_sample_ms,
        "throughput_sps": throughput,
        "runs": int(pooled.size),
        "duration_s": sum(r["duration_s"] or 0.0 for r, _ in repeats),
        "stable": verdict.stable,
        "warnings": list(dict.fromkeys([*verdict.warnings, *kept])),
        "stability": verdict.as_dict(),
        "stop_reason": stop_reason,
        "repeats": {
            "count": len(repeats),
            "medians_ms": [float(np.median(s)) / 1e6 for s in samples],
            "runs": [int(s.size) for s in samples],
            "interval": found.method,
            "earlier_runs": len(earlier_medians),
        },
        "energy": _energy(repeats, tdp_w, per_sample_ms),
        "split": _split_at(split, throughput),
    }
    joules = record["energy"].get("joules_per_inference")
    record["price"] = catalogue.price_for_cell(first["device"], per_sample_ms, joules) if first.get("price") else None
    record["roofline"] = _rescaled(first.get("roofline"), first.get("per_sample_ms"), per_sample_ms)
    return record, pooled


def _split_at(split: dict[str, Any] | None, throughput: float) -> dict[str, Any] | None:
    """A split's figures (the first repeat's) with its speed-up and efficiency at the combined throughput."""
    if not split or split.get("mode") != "data":
        return split
    best, total = split.get("best_alone_sps"), split.get("sum_alone_sps")
    return {**split, "speedup": throughput / best if best else None,
            "efficiency": throughput / total if total else None}


def _energy(repeats: Sequence[Repeat], tdp_w: float | None, per_sample_ms: float) -> dict[str, Any]:
    """The K-function at the combined time; a meter's figures averaged over the repeats that read one."""
    read = [r["energy"] for r, _ in repeats if r["energy"].get("joules_per_inference") is not None]
    if not read:
        return Energy.modelled(tdp_w, per_sample_ms).as_dict()
    return {
        "k_w_ms": metrics.k_function_w_ms(tdp_w, per_sample_ms),
        "tdp_w": tdp_w,
        "source": read[0]["source"],
        "joules_per_inference": float(np.mean([e["joules_per_inference"] for e in read])),
        "power_w": float(np.mean([e["power_w"] for e in read])),
        "idle_w": read[0]["idle_w"],
    }


def _rescaled(roofline: dict[str, Any] | None, was_ms: float | None, now_ms: float) -> dict[str, Any] | None:
    """The roofline at the combined time per inference: achieved GFLOP/s and the peak fraction scale with 1 / time."""
    if not roofline or not was_ms or not now_ms:
        return roofline
    scale = was_ms / now_ms
    return {**roofline, **{k: roofline[k] * scale for k in ("gflops", "peak_fraction") if roofline.get(k) is not None}}
