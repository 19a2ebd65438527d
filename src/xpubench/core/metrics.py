"""Every figure xpubench derives from its measurements, defined once; docs/metrics.md says the same in prose.

The scenarios, the cell record, the report and the studies call these functions; nothing recomputes them.
"""

from __future__ import annotations

import numpy as np


def time_per_inference_ms(call_ms: float, batch: int) -> float:
    """The time one call (one batch) took, shared by its samples: call time / batch size."""
    return call_ms / batch


def busy_throughput_sps(calls_ns: np.ndarray, batch: int) -> float | None:
    """Samples per second of busy time: batch x calls / the summed call times (None without any)."""
    busy_s = float(np.sum(calls_ns)) / 1e9
    return batch * np.size(calls_ns) / busy_s if busy_s > 0 else None


def k_function_w_ms(tdp_w: float | None, per_inference_ms: float | None) -> float | None:
    """The K-function of the source studies: TDP x time per inference, in W*ms (= mJ). A model of the
    energy, never a measurement: a meter's figure is `energy_per_inference_j`."""
    if tdp_w is None or per_inference_ms is None:
        return None
    return tdp_w * per_inference_ms


def energy_per_inference_j(
    power_w: float, idle_w: float | None, busy_s: float, inferences: int, throughput_sps: float | None = None
) -> float | None:
    """Measured energy per inference: the meter's mean power minus idle power (never below zero), times the
    busy time per inference; where the scenario measured its own throughput (its samples are latencies, not
    busy time), net power / throughput, the energy per inference at the load it ran."""
    net_w = max(power_w - (idle_w or 0.0), 0.0)
    if throughput_sps:
        return net_w / throughput_sps
    return net_w * busy_s / inferences if inferences else None


def relative_spread(values: np.ndarray) -> float:
    """(max - min) / min of a set of medians: how far they are apart."""
    low, high = float(np.min(values)), float(np.max(values))
    return (high - low) / low if low > 0 else 0.0


def coefficient_of_variation(values: np.ndarray) -> float:
    """Sample standard deviation / mean."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean()) if x.size else 0.0
    return float(x.std(ddof=1)) / mean if x.size > 1 and mean > 0 else 0.0
