"""Layer pipeline: the graph cut into stages, each stage converted for its own part (backend, precision) and
run in that part's pinned thread; batches flow through the stages at once. The hand-over between two stages
is a copy of the carried tensors into the next part's memory, timed on its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.hetero.executors import Composite, ThreadPart, run_timed
from xpubench.hetero.trace import Span, trace

if TYPE_CHECKING:
    from xpubench.hetero.cuts import Stage
    from xpubench.hetero.parts import Part
    from xpubench.models import Workload


def stage_artifact(part: Part, stage: Stage, folder: Path, workload: Workload) -> Path:
    """The stage's graph as the part's backend loads it, through the converter graph (cached in `folder`)."""
    from xpubench.backends import get_backend
    from xpubench.convert.graph import Artifacts

    cls = get_backend(part.backend)
    artifacts = Artifacts({"onnx:fp32": stage.path}, folder / f"{stage.path.stem}", workload.shapes)
    # A calibrated precision calibrates each stage on the model's own data (fed through the stages before it
    # would be exact; the model's inputs are what is at hand, so a later int8 stage takes random data).
    if stage.index == 0:
        artifacts.use_calibration(workload.calibration, f"stage0:{stage.path.name}")
    kinds = cls.artifact_kinds(part.precision, dict(part.options))
    reasons = [artifacts.reason(k) for k in kinds]
    if all(reasons):
        raise RuntimeError(f"stage {stage.index} on {part.spec}: {reasons[0]}")
    return artifacts.get(kinds[reasons.index(None)])


class _Ticket:
    """One batch on its way through the stages."""

    __slots__ = ("host", "done", "outputs", "error", "started", "finished", "spans")

    def __init__(self, host: dict[str, np.ndarray]) -> None:
        self.host = host
        self.done = threading.Event()
        self.outputs: list[np.ndarray] | None = None
        self.error: BaseException | None = None
        self.started = time.perf_counter_ns()
        self.finished = 0
        self.spans: list[tuple[str, str, int, int]] = []  # (row, kind, start ns, end ns) of its stages and transfers


class Pipeline(Composite):
    """Stages on parts, one part per stage; a backend to the measurement loop (one batch through every
    stage per `infer`) that also streams many batches at once (`stream`)."""

    def __init__(self, stages: Sequence[Stage], parts: Sequence[Part], workload: Workload, folder: Path,
                 input_names: Sequence[str]) -> None:
        if len(stages) != len(parts):
            raise ValueError(f"{len(stages)} stages need {len(stages)} parts, got {len(parts)}")
        self.stages = tuple(stages)
        self.parts = tuple(parts)
        self.input_names = tuple(input_names)
        self.stage_ns: list[list[int]] = [[] for _ in stages]
        self.transfer_ns: list[list[int]] = [[] for _ in stages[1:]]
        self.transfer_bytes: list[int] = [0 for _ in stages[1:]]
        self.artifacts: list[Path] = []
        self.streamed: list[_Ticket] = []  # the last stream's batches, with their spans
        self._runners: list[ThreadPart] = []
        try:
            for stage, part in zip(stages, parts, strict=True):
                artifact = stage_artifact(part, stage, folder, workload)
                self.artifacts.append(artifact)
                self._runners.append(ThreadPart(part, workload, artifact))
        except BaseException:
            self.close()
            raise

    # -- the backend's face ------------------------------------------------------------------------

    def prepare(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.ascontiguousarray(a) for n, a in zip(self.input_names, arrays, strict=True)}

    def infer(self, host: dict[str, np.ndarray]) -> list[np.ndarray]:
        ticket = self._send(host)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.outputs is not None
        return ticket.outputs

    # -- streaming ---------------------------------------------------------------------------------

    def stream(self, pool: Sequence[dict[str, np.ndarray]], batches: int) -> float:
        """`batches` batches sent at once (rotating through `pool`), every stage busy with its own; the wall
        time until the last one is out, s."""
        start = time.perf_counter_ns()
        tickets = [self._send(pool[i % len(pool)]) for i in range(batches)]
        for ticket in tickets:
            ticket.done.wait()
            if ticket.error is not None:
                raise ticket.error
        wall = (time.perf_counter_ns() - start) / 1e9
        self.streamed = tickets
        return wall

    def steady(self) -> tuple[float, float]:
        """The last stream's (s until its first batch was out, s per batch from then to the last): the second
        is the full pipeline's pace, its fill and drain left out."""
        done = sorted(t.finished for t in self.streamed)
        first = (done[0] - self.streamed[0].started) / 1e9
        return first, (done[-1] - done[0]) / 1e9 / max(len(done) - 1, 1)

    def rows(self) -> list[str]:
        """The timeline's rows: each stage, and each transfer after the stage it follows."""
        rows = []
        for i, part in enumerate(self.parts):
            if i:
                rows.append(f"transfer {i - 1}->{i}")
            rows.append(f"stage {i} {part.spec}")
        return rows

    def trace(self) -> dict:
        """`split.trace` of the last stream (stream a few batches first: every span of them is kept)."""
        return trace([Span(row, kind, b, t0, t1) for b, ticket in enumerate(self.streamed)
                      for row, kind, t0, t1 in ticket.spans], self.rows())

    def streamed_ms(self) -> list[float]:
        """Per stage, its median time with its incoming transfer over the last stream's batches, ms."""
        per_stage: list[list[int]] = [[0] * len(self.streamed) for _ in self.stages]
        for b, ticket in enumerate(self.streamed):
            for row, _kind, t0, t1 in ticket.spans:
                index = int(row.split()[1].split("->")[-1])
                per_stage[index][b] += t1 - t0
        return [float(np.median(v)) / 1e6 if v else 0.0 for v in per_stage]

    def _send(self, host: dict[str, np.ndarray]) -> _Ticket:
        ticket = _Ticket(host)
        self._runners[0]._pool.submit(self._step, 0, ticket, {})
        return ticket

    def _step(self, index: int, ticket: _Ticket, carried: dict[str, np.ndarray]) -> None:
        """Stage `index` in its part's thread: take the carried tensors over (the timed transfer), run the
        stage, hand its outputs to the next stage's thread."""
        try:
            stage = self.stages[index]
            if index:
                t0 = time.perf_counter_ns()
                carried = {name: np.array(value, copy=True) for name, value in carried.items()}
                t1 = time.perf_counter_ns()
                self.transfer_ns[index - 1].append(t1 - t0)
                self.transfer_bytes[index - 1] = sum(v.nbytes for v in carried.values())
                ticket.spans.append((f"transfer {index - 1}->{index}", "transfer", t0, t1))
            feeds = [carried[n] if n in carried else ticket.host[n] for n in stage.inputs]
            outputs, t0, t1 = run_timed(self._runners[index].backend, feeds)
            self.stage_ns[index].append(t1 - t0)
            ticket.spans.append((f"stage {index} {self.parts[index].spec}", "work", t0, t1))
            if index == len(self.stages) - 1:
                ticket.outputs = outputs
                ticket.finished = time.perf_counter_ns()
                ticket.done.set()
                return
            self._runners[index + 1]._pool.submit(self._step, index + 1, ticket, dict(zip(stage.outputs, outputs,
                                                                                         strict=True)))
        except BaseException as exc:  # the waiting caller raises it
            ticket.error = exc
            ticket.done.set()

    def figures(self, calls: int) -> dict[str, Any]:
        """Per stage and per transfer, the median over the last `calls` batches, ms."""
        def median_ms(values: list[int]) -> float | None:
            window = values[-calls:] if calls else values
            return float(np.median(window)) / 1e6 if window else None

        stages = [{"index": s.index, "part": p.spec, "nodes": [s.first, s.last], "inputs": list(s.inputs),
                   "outputs": list(s.outputs), "artifact": str(a), "median_ms": median_ms(self.stage_ns[i])}
                  for i, (s, p, a) in enumerate(zip(self.stages, self.parts, self.artifacts, strict=True))]
        transfers = [{"after_stage": i, "tensors": list(self.stages[i].outputs), "bytes": self.transfer_bytes[i],
                      "how": "copy", "median_ms": median_ms(self.transfer_ns[i])}
                     for i in range(len(self.transfer_ns))]
        return {"stages": stages, "transfers": transfers}
