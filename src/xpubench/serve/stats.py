"""Triton's statistics extension for one model: request counts and times, and the batches formed.

Times are nanoseconds. Per request: success (arrival to answer), fail, queue (arrival to the
batch being formed), compute_input (concatenating and preparing the batch), compute_infer (the
runtime's call), compute_output (fetching and splitting the outputs); a request counts its whole
batch's compute times, as Triton does. batch_stats has one entry per batch size the server formed.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

STAGES = ("compute_input", "compute_infer", "compute_output")
_REQUEST_STATS = ("success", "fail", "queue", *STAGES, "cache_hit", "cache_miss")


class ModelStats:
    """Counters that the instance threads add to and the transports read; thread-safe."""

    def __init__(self, name: str, version: str = "1") -> None:
        self.name = name
        self.version = version
        self._lock = threading.Lock()
        self._requests = {key: [0, 0] for key in _REQUEST_STATS}  # [count, ns]
        self._batches: dict[int, dict[str, list[int]]] = defaultdict(lambda: {s: [0, 0] for s in STAGES})
        self._inference_count = 0
        self._execution_count = 0
        self._last_inference_ms = 0

    def batch_done(self, sizes: list[int], queue_ns: list[int], total_ns: list[int], stage_ns: dict[str, int]) -> None:
        """One executed batch of len(sizes) requests."""
        batch = sum(sizes)
        with self._lock:
            self._inference_count += batch
            self._execution_count += 1
            self._last_inference_ms = int(time.time() * 1e3)
            for waited, total in zip(queue_ns, total_ns, strict=True):
                _add(self._requests["success"], total)
                _add(self._requests["queue"], waited)
                for stage in STAGES:
                    _add(self._requests[stage], stage_ns[stage])
            for stage in STAGES:
                _add(self._batches[batch][stage], stage_ns[stage])

    def request_failed(self, elapsed_ns: int) -> None:
        with self._lock:
            _add(self._requests["fail"], elapsed_ns)

    def as_dict(self) -> dict:
        """The model's entry of `model_stats`, as Triton's REST API gives it."""
        with self._lock:
            return {
                "name": self.name,
                "version": self.version,
                "last_inference": self._last_inference_ms,
                "inference_count": self._inference_count,
                "execution_count": self._execution_count,
                "inference_stats": {key: _pair(v) for key, v in self._requests.items()},
                "batch_stats": [
                    {"batch_size": size, **{stage: _pair(v) for stage, v in stages.items()}}
                    for size, stages in sorted(self._batches.items())
                ],
            }


def _add(pair: list[int], ns: int) -> None:
    pair[0] += 1
    pair[1] += ns


def _pair(pair: list[int]) -> dict[str, int]:
    return {"count": pair[0], "ns": pair[1]}
