"""Data-parallel split: each batch is divided between the parts in proportion to their throughput, the parts
run at once, and the outputs are joined in order. The proportions are searched until the parts finish
together. The composite is a backend to the measurement loop: `prepare`, `infer`, `fetch`, `clock`."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.hetero.executors import Composite, ProcessPart, SharedBatch, ThreadPart, run_once
from xpubench.hetero.trace import TRACE_BATCHES, Span, trace

if TYPE_CHECKING:
    from xpubench.hetero.parts import Part
    from xpubench.models import Workload

EXECUTORS = ("thread", "process")
FINISH_TOLERANCE = 0.05  # the parts "finish together" when their busy times are within this fraction
SEARCH_ROUNDS = 8
SEARCH_CALLS = 7  # concurrent calls per round; the median busy time of each part decides


def apportion(total: int, rates: Sequence[float]) -> list[int]:
    """`total` samples shared in proportion to `rates` (largest remainder), summing to `total` exactly."""
    weights = np.maximum(np.asarray(rates, dtype=np.float64), 0.0)
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


class DataParallel(Composite):
    """K parts, each with the whole model, splitting every batch between them."""

    def __init__(self, parts: Sequence[Part], workload: Workload, executor: str = "thread") -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}: choose from {', '.join(EXECUTORS)}")
        self.parts = tuple(parts)
        self.executor = executor
        self.rates = [1.0] * len(self.parts)  # samples/s per part: the split's proportions
        # (wall ns, samples per part, busy ns per part, transfer ns: rows copied in, outputs joined)
        self.calls: list[tuple[int, list[int], list[int], int]] = []
        self._spans: deque[list[Span]] = deque(maxlen=TRACE_BATCHES)  # the last calls' timelines
        self._runners: list[Any] = []
        self._shared: SharedBatch | None = None
        self._out_specs: list[tuple[tuple[int, ...], np.dtype]] | None = None
        kind = ThreadPart if executor == "thread" else ProcessPart
        try:
            for part in self.parts:
                self._runners.append(kind(part, workload))
        except BaseException:
            self.close()
            raise

    # -- the backend's face ------------------------------------------------------------------------

    def prepare(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.ascontiguousarray(a) for a in arrays]

    def infer(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One batch, split by the current proportions; records each part's rows and busy time."""
        start = time.perf_counter_ns()
        counts = apportion(len(arrays[0]), self.rates)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        if self.executor == "thread":
            outputs, runs, moves = self._infer_threads(arrays, bounds)
        else:
            outputs, runs, moves = self._infer_processes(arrays, bounds)
        self.calls.append((time.perf_counter_ns() - start, counts, [e - s for s, e in runs],
                           sum(e - s for _, s, e in moves)))
        self._spans.append([*(Span(p.spec, "work", 0, s, e) for p, (s, e) in zip(self.parts, runs, strict=True)
                              if e > s),
                            *(Span(name, "transfer", 0, s, e) for name, s, e in moves)])
        return outputs

    def trace(self) -> dict:
        """`split.trace` of the last few calls (each call one batch, the calls one after another)."""
        spans = [Span(s.row, s.kind, b, s.start_ns, s.end_ns) for b, call in enumerate(self._spans) for s in call]
        return trace(spans, [*(p.spec for p in self.parts), *dict.fromkeys(s.row for s in spans
                                                                          if s.kind == "transfer")])

    def close(self) -> None:
        super().close()
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    # -- running -----------------------------------------------------------------------------------

    # Each returns the outputs, each part's (start, end) ns (0, 0 without rows), and the host-side moves of
    # the batch (name, start, end): the parts' rows are views in threads, so there only the join copies.
    def _infer_threads(self, arrays: list[np.ndarray], bounds: np.ndarray) -> tuple[list[np.ndarray], list, list]:
        futures = [
            runner.submit([a[lo:hi] for a in arrays]) if hi > lo else None
            for runner, lo, hi in zip(self._runners, bounds[:-1], bounds[1:], strict=True)
        ]
        results = [f.result() if f is not None else None for f in futures]
        runs = [(r[1], r[2]) if r else (0, 0) for r in results]
        pieces = [r[0] for r in results if r]
        t0 = time.perf_counter_ns()
        joined = [np.concatenate(outs) for outs in zip(*pieces, strict=True)]
        return joined, runs, [("join outputs", t0, time.perf_counter_ns())]

    def _infer_processes(self, arrays: list[np.ndarray], bounds: np.ndarray) -> tuple[list[np.ndarray], list, list]:
        shared = self._shared_for(arrays)
        n = len(arrays[0])
        t0 = time.perf_counter_ns()
        for target, array in zip(shared.inputs, arrays, strict=True):  # the one copy in: rows to shared memory
            target[:n] = array
        moves = [("copy in", t0, time.perf_counter_ns())]
        active = [(runner, int(lo), int(hi)) for runner, lo, hi in zip(self._runners, bounds[:-1], bounds[1:],
                                                                      strict=True)]
        for runner, lo, hi in active:
            if hi > lo:
                runner.start(lo, hi)
        runs = [runner.wait() if hi > lo else (0, 0) for runner, lo, hi in active]
        t0 = time.perf_counter_ns()
        outputs = [np.array(o[:n]) for o in shared.outputs]
        return outputs, runs, [*moves, ("copy out", t0, time.perf_counter_ns())]

    def _shared_for(self, arrays: list[np.ndarray]) -> SharedBatch:
        """Shared buffers big enough for this batch (made again for a bigger one)."""
        n = len(arrays[0])
        if self._shared is not None and self._shared.inputs[0].shape[0] >= n:
            return self._shared
        if self._out_specs is None:
            self._out_specs = self._probe_outputs(arrays)
        if self._shared is not None:
            self._shared.close()
        self._shared = SharedBatch([((n, *a.shape[1:]), a.dtype) for a in arrays],
                                   [((n, *shape), dtype) for shape, dtype in self._out_specs])
        for runner in self._runners:
            runner.attach(self._shared.names())
        return self._shared

    def _probe_outputs(self, arrays: list[np.ndarray]) -> list[tuple[tuple[int, ...], np.dtype]]:
        """The outputs' sample shapes and types, from one row through the first part (they size the buffers)."""
        one = SharedBatch([((1, *a.shape[1:]), a.dtype) for a in arrays], [])
        try:
            for target, array in zip(one.inputs, arrays, strict=True):
                target[:1] = array[:1]
            self._runners[0].attach(one.names())
            return self._runners[0].output_specs()
        finally:
            one.close()

    # -- balancing ---------------------------------------------------------------------------------

    def measure_alone(self, arrays: list[np.ndarray], seconds: float = 0.3) -> list[float]:
        """Each part's own throughput on the whole batch, measured alone (the others idle): samples/s."""
        rates = []
        n = len(arrays[0])
        for i in range(len(self.parts)):
            only = [0.0] * len(self.parts)
            only[i] = 1.0
            self.rates = only
            times: list[int] = []
            end = time.perf_counter() + seconds
            self.infer(arrays)  # a warm call at this size
            while len(times) < 3 or time.perf_counter() < end:
                self.infer(arrays)
                times.append(self.calls[-1][2][i])
            rates.append(n / (float(np.median(times)) / 1e9))
        self.calls.clear()
        self.rates = list(rates)
        return rates

    def balance(self, arrays: list[np.ndarray], tolerance: float = FINISH_TOLERANCE) -> list[dict[str, Any]]:
        """Search the proportions until the parts' busy times are within `tolerance` of each other; each
        round's counts, busy times and spread, in order. Starts from the current rates."""
        history = []
        best: tuple[float, list[float]] | None = None
        for _ in range(SEARCH_ROUNDS):
            self.calls.clear()
            for _ in range(SEARCH_CALLS):
                self.infer(arrays)
            counts = self.calls[-1][1]
            busy = np.median(np.array([c[2] for c in self.calls], dtype=np.float64), axis=0)
            working = [b for c, b in zip(counts, busy, strict=True) if c > 0]
            spread = (max(working) - min(working)) / max(working) if working and max(working) > 0 else 0.0
            history.append({"samples": counts, "busy_ms": [round(b / 1e6, 4) for b in busy],
                            "spread": round(spread, 4)})
            if best is None or spread < best[0]:
                best = (spread, list(self.rates))
            if spread <= tolerance:
                break
            # The next proportions: each part's rate as this round measured it (a part with no rows keeps its own).
            self.rates = [c / (b / 1e9) if c > 0 and b > 0 else r
                          for c, b, r in zip(counts, busy, self.rates, strict=True)]
        assert best is not None
        self.rates = best[1]
        self.calls.clear()
        return history

    def part_figures(self, calls: int) -> list[dict[str, Any]]:
        """Per part, over the last `calls` calls: its share of the samples, busy and idle time."""
        window = self.calls[-calls:] if calls else []
        wall = sum(c[0] for c in window)
        total = sum(sum(c[1]) for c in window) or 1
        figures = []
        for i, part in enumerate(self.parts):
            samples = sum(c[1][i] for c in window)
            busy = sum(c[2][i] for c in window)
            figures.append({
                "part": part.spec,
                "share": samples / total,
                "samples_per_batch": window[-1][1][i] if window else 0,
                "busy_ms": busy / 1e6 / max(len(window), 1),
                "idle_ms": max(wall - busy, 0) / 1e6 / max(len(window), 1),
                "busy_fraction": busy / wall if wall else None,
            })
        return figures


def single_outputs(part: Part, workload: Workload, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The part's backend on the whole batch, unsplit (for checking a split's outputs)."""
    runner = ThreadPart(part, workload)
    try:
        return runner.call(run_once, runner.backend, list(arrays))[0]
    finally:
        runner.close()
