"""Model instances: each one backend object, pinned to its threads, fed batches by its own thread.

The runtimes release the GIL while they compute, so K instances run K batches at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from xpubench.backends.base import Backend
from xpubench.serve.batcher import DynamicBatcher, Request
from xpubench.serve.errors import InferenceFailed
from xpubench.serve.stats import ModelStats


class ModelInstance:
    """Runs the batches the scheduler hands it on one backend, until the scheduler is drained."""

    def __init__(self, index: int, backend: Backend, scheduler: DynamicBatcher, stats: ModelStats,
                 clock=time.monotonic_ns) -> None:
        self.index = index
        self.backend = backend
        self._scheduler = scheduler
        self._stats = stats
        self._clock = clock
        self._thread = threading.Thread(target=self._loop, name=f"{stats.name}-instance-{index}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (batch := self._scheduler.next_batch()) is not None:
            self.execute(batch)

    def execute(self, batch: list[Request]) -> None:
        clock = self._clock
        started = clock()
        try:
            arrays = concatenate([r.inputs for r in batch])
            prepared = self.backend.prepare(arrays)
            inferring = clock()
            result = self.backend.infer(prepared)
            fetching = clock()
            outputs = [np.asarray(o) for o in self.backend.fetch(result)]
            parts = split(outputs, [r.size for r in batch])
        except Exception as exc:  # the runtime's error fails this batch's requests, not the server
            error = InferenceFailed(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
            now = clock()
            for request in batch:
                self._stats.request_failed(now - request.arrived_ns)
                request.done(None, error)
            return
        finished = clock()
        self._stats.batch_done(
            [r.size for r in batch],
            [r.dispatched_ns - r.arrived_ns for r in batch],
            [finished - r.arrived_ns for r in batch],
            {"compute_input": inferring - started, "compute_infer": fetching - inferring,
             "compute_output": finished - fetching},
        )
        for request, part in zip(batch, parts, strict=True):
            request.done(part, None)


def concatenate(requests: Sequence[list[np.ndarray]]) -> list[np.ndarray]:
    """One array per input, the requests stacked along axis 0. A batch of one is copied only where
    its arrays are read-only views of the request's bytes: OpenVINO and torch refuse those."""
    if len(requests) == 1:
        return [a if a.flags.writeable else a.copy() for a in requests[0]]
    return [np.concatenate(column, axis=0) for column in zip(*requests, strict=True)]


def split(outputs: list[np.ndarray], sizes: list[int]) -> list[list[np.ndarray]]:
    """Each request's rows of every output, in order."""
    if len(sizes) == 1:
        return [outputs]
    bounds = np.cumsum(sizes)[:-1]
    per_output = [np.split(o, bounds, axis=0) for o in outputs]
    return [list(parts) for parts in zip(*per_output, strict=True)]
