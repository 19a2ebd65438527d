"""The planner: for a model and a set of parts, profile every segment between candidate cuts on every part
and every transfer, then choose the cuts and the placement that minimise latency or maximise throughput.

The prediction adds segment times (a stage made of several segments runs as one graph, so it is usually a
little faster than its segments' sum: the measurement says how much) and transfer times.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.hetero.cuts import Cut, cut_points, extract_stages
from xpubench.hetero.executors import ThreadPart, run_once
from xpubench.hetero.pipeline import stage_artifact

if TYPE_CHECKING:
    from xpubench.hetero.parts import Part
    from xpubench.models import Workload

OBJECTIVES = ("latency", "throughput")
MAX_CANDIDATES = 12  # cuts profiled at most, spread evenly over the graph
PROFILE_S = 0.1  # per segment and part
PROFILE_CALLS = 5  # at least


@dataclass(frozen=True)
class Plan:
    """Cuts and the part of each stage, with the planner's prediction."""

    cuts: tuple[str, ...]
    parts: tuple[Part, ...]
    latency_ms: float
    throughput_sps: float
    stage_ms: tuple[float, ...]
    transfer_ms: tuple[float, ...]

    def describe(self) -> str:
        where = " | ".join(p.spec for p in self.parts)
        return f"{len(self.parts)} stage{'s' if len(self.parts) > 1 else ''} [{where}]" + (
            f" cut at {', '.join(self.cuts)}" if self.cuts else "")

    def as_dict(self) -> dict[str, Any]:
        return {"cuts": list(self.cuts), "parts": [p.spec for p in self.parts], "latency_ms": self.latency_ms,
                "throughput_sps": self.throughput_sps, "stage_ms": list(self.stage_ms),
                "transfer_ms": list(self.transfer_ms)}


@dataclass(frozen=True)
class Profile:
    """Median time of each segment (between consecutive candidate cuts) on each part, and of each transfer."""

    candidates: tuple[Cut, ...]
    segment_ms: tuple[tuple[float, ...], ...]  # [segment][part]; inf where the part cannot run it
    transfer_ms: tuple[float, ...]  # [candidate cut]
    refused: tuple[str, ...]  # why each profiled failure or refused cut was left out, one line each
    batch: int

    def predict(self, cuts: Sequence[str], parts: Sequence[Part], all_parts: Sequence[Part]) -> Plan:
        """The prediction for these cuts (candidates, in order) with stage j on parts[j]."""
        index = {c.tensor: i for i, c in enumerate(self.candidates)}
        missing = [c for c in cuts if c not in index]
        if missing:
            raise ValueError(f"{missing[0]} is not among the profiled cuts: choose from "
                             f"{', '.join(c.tensor for c in self.candidates)}")
        positions = sorted(index[c] for c in cuts)
        bounds = [0, *(p + 1 for p in positions), len(self.segment_ms)]
        stage_ms = []
        for (lo, hi), part in zip(itertools.pairwise(bounds), parts, strict=True):
            column = list(all_parts).index(part)
            stage_ms.append(sum(self.segment_ms[s][column] for s in range(lo, hi)))
        transfer_ms = [self.transfer_ms[p] for p in positions]
        latency = sum(stage_ms) + sum(transfer_ms)
        slowest = max(s + (transfer_ms[i - 1] if i else 0.0) for i, s in enumerate(stage_ms))
        throughput = self.batch / (slowest / 1e3) if slowest > 0 and math.isfinite(slowest) else 0.0
        return Plan(tuple(self.candidates[p].tensor for p in positions), tuple(parts), latency, throughput,
                    tuple(stage_ms), tuple(transfer_ms))


def candidate_cuts(model_path: Path, carry_skips: bool = False) -> tuple[list[Cut], list[Cut]]:
    """(valid cuts, refused ones) of the model's graph."""
    import onnx

    cuts = cut_points(onnx.load(str(model_path), load_external_data=False), carry_skips)
    return [c for c in cuts if c.valid], [c for c in cuts if not c.valid]


def profile(workload: Workload, parts: Sequence[Part], batch: int, folder: Path, carry_skips: bool = False,
            max_candidates: int = MAX_CANDIDATES) -> Profile:
    """Time every segment between candidate cuts on every part, and the copy of every cut's tensors."""
    from xpubench.run.cell_runner import input_pool

    model_path = workload.artifact("onnx:fp32")
    valid, refused = candidate_cuts(model_path, carry_skips)
    if len(valid) > max_candidates:  # evenly spread over the graph
        valid = [valid[round(i * (len(valid) - 1) / (max_candidates - 1))] for i in range(max_candidates)]
    segments = extract_stages(model_path, valid, folder)
    import onnx

    names = [i.name for i in onnx.load(str(model_path), load_external_data=False).graph.input
             if i.name not in {t.name for t in onnx.load(str(model_path), load_external_data=False).graph.initializer}]
    values: dict[str, np.ndarray] = dict(zip(names, input_pool(workload, batch)[0], strict=True))
    times: list[list[float]] = []
    notes = [c.reason for c in refused if c.reason]
    for segment in segments:
        row = []
        produced: list[np.ndarray] | None = None
        for part in parts:
            try:
                artifact = stage_artifact(part, segment, folder, workload)
                runner = ThreadPart(part, workload, artifact)
            except Exception as exc:  # this part cannot run this segment: never placed there
                notes.append(f"segment {segment.index} on {part.spec}: {str(exc).splitlines()[0][:160]}")
                row.append(math.inf)
                continue
            try:
                feeds = [values[n] for n in segment.inputs]
                outputs, samples = runner.call(_time_segment, runner.backend, feeds)
                produced = produced or outputs
                row.append(float(np.median(samples)) / 1e6)
            finally:
                runner.close()
        if produced is None:
            raise RuntimeError(f"no part can run segment {segment.index} (nodes {segment.first}-{segment.last})")
        values.update(zip(segment.outputs, produced, strict=True))
        times.append(row)
    transfers = [_time_copy([values[t] for t in cut.carried]) for cut in valid]
    return Profile(tuple(valid), tuple(tuple(r) for r in times), tuple(transfers), tuple(notes), batch)


def _time_segment(backend: Any, feeds: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    outputs, _ = run_once(backend, feeds)  # warm
    samples: list[int] = []
    end = time.perf_counter() + PROFILE_S
    while len(samples) < PROFILE_CALLS or time.perf_counter() < end:
        samples.append(run_once(backend, feeds)[1])
    return outputs, samples


def _time_copy(arrays: list[np.ndarray]) -> float:
    samples = []
    for _ in range(21):
        t0 = time.perf_counter_ns()
        for a in arrays:
            np.array(a, copy=True)
        samples.append(time.perf_counter_ns() - t0)
    return float(np.median(samples)) / 1e6


def plans(found: Profile, parts: Sequence[Part]) -> list[Plan]:
    """Every placement: 1..K stages, cuts among the candidates, a distinct part per stage."""
    out = []
    m = len(found.candidates)
    for stages in range(1, min(len(parts), m + 1) + 1):
        for chosen in itertools.combinations(range(m), stages - 1):
            for order in itertools.permutations(parts, stages):
                plan = found.predict([found.candidates[i].tensor for i in chosen], order, parts)
                if math.isfinite(plan.latency_ms):
                    out.append(plan)
    return out


def choose(candidates: list[Plan], objective: str) -> Plan:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    if not candidates:
        raise RuntimeError("no placement runs: no part can run every segment")
    if objective == "latency":
        return min(candidates, key=lambda p: (p.latency_ms, len(p.parts)))
    return max(candidates, key=lambda p: (p.throughput_sps, -len(p.parts)))


def best_single(candidates: list[Plan], objective: str) -> Plan:
    """The best plan on one part alone (the whole model on one device)."""
    return choose([p for p in candidates if len(p.parts) == 1], objective)
