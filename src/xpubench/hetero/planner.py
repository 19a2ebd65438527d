"""The planner: for a model and a set of parts, profile every segment between candidate cuts on every part
and every transfer, then choose the cuts and the placement that minimise latency or maximise throughput.

The prediction models what the pipeline measures. Latency (one batch at a time through every stage): the
stages' times, the transfers, and a thread hand-over per hop (caller -> stage 0 -> ... -> caller, measured by a
probe through pinned pools as the pipeline's, each thread woken from an idle wait). A stage is profiled as the
graph it will run, not as its segments added: a segment alone pays for its own call, its own layout changes and
its own output copies, which a stage joining it to its neighbours does not (measured here: segments' sums 20-40 %
over the stage). So every first stage (model inputs to a cut), every last stage (a cut to the outputs) and the
whole model are profiled on every part; only a middle stage of three or more is its segments' sum, scaled by the
part's whole model over its segments' sum. Throughput (a stream of batches, every stage busy at once): batch /
the slowest stage with its incoming transfer, each stage slowed by its part's slowdown when every part works at
once (a probe: the whole model on all parts together against alone), in proportion to the time the other stages
work beside it. One batch at a time, a stage starts after its thread waited while the others worked, its
caches filled by their work: latency uses each stage's time "cold" (after a sweep through the cache and a short
idle); a stream's stages run back to back, warm.
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
WARM_CALLS = 3  # before timing: a runtime's first calls at a new size allocate (arena growth, kernel choice)
COLD_CALLS = 5  # timed after a sweep through the caches and an idle wait, as a stage starts one batch at a time
COLD_IDLE_S = 0.005
PROBE_S = 0.3  # the whole model on each part, alone and then on all parts at once


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
    first_ms: tuple[tuple[float, ...], ...] = ()  # [candidate cut][part]: the model's inputs to the cut
    last_ms: tuple[tuple[float, ...], ...] = ()  # [candidate cut][part]: the cut to the model's outputs
    whole_ms: tuple[float, ...] = ()  # [part]
    cold: tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...], tuple[float, ...]] | None = None
    # ^ the same three (first, last, whole) timed cold; None: as warm
    slowdown: tuple[float, ...] = ()  # [part]: its time with every part working / alone (1: none)
    hop_ms: float = 0.0  # one hand-over between pinned threads

    def stage_time(self, lo: int, hi: int, column: int, cold: bool = False) -> float:
        """The stage of segments lo..hi-1 on part `column`, alone (warm, or `cold`), ms."""
        first, last_ms, whole_ms = self.cold if cold and self.cold else (self.first_ms, self.last_ms, self.whole_ms)
        last = len(self.segment_ms)
        if lo == 0 and hi == last and whole_ms:
            return whole_ms[column]
        if lo == 0 and first:
            return first[hi - 1][column]
        if hi == last and last_ms:
            return last_ms[lo - 1][column]
        joined = sum(self.segment_ms[s][column] for s in range(lo, hi))
        apart = sum(row[column] for row in self.segment_ms)
        whole = whole_ms[column] if whole_ms else apart
        return joined * (whole / apart if apart > 0 and math.isfinite(whole) and math.isfinite(apart) else 1.0)

    def streamed(self, stage_ms: Sequence[float], transfer_ms: Sequence[float], columns: Sequence[int]) -> list[float]:
        """Each stage's time with its incoming transfer while the stream runs: slowed by its part's slowdown for
        the fraction of the period the other stages work beside it (found by iterating to the period)."""
        alone = [s + (transfer_ms[i - 1] if i else 0.0) for i, s in enumerate(stage_ms)]
        busy = list(alone)
        for _ in range(5):
            period = max(busy)
            busy = [a * (1 + ((self.slowdown[c] if self.slowdown else 1.0) - 1)
                         * min(1.0, max((b for k, b in enumerate(busy) if k != i), default=0.0) / period))
                    for i, (a, c) in enumerate(zip(alone, columns, strict=True))]
        return busy
    def predict(self, cuts: Sequence[str], parts: Sequence[Part], all_parts: Sequence[Part]) -> Plan:
        """The prediction for these cuts (candidates, in order) with stage j on parts[j]."""
        index = {c.tensor: i for i, c in enumerate(self.candidates)}
        missing = [c for c in cuts if c not in index]
        if missing:
            raise ValueError(f"{missing[0]} is not among the profiled cuts: choose from "
                             f"{', '.join(c.tensor for c in self.candidates)}")
        positions = sorted(index[c] for c in cuts)
        bounds = [0, *(p + 1 for p in positions), len(self.segment_ms)]
        columns = [list(all_parts).index(part) for part in parts]
        ranges = list(itertools.pairwise(bounds))
        stage_ms = [self.stage_time(lo, hi, c, cold=True) for (lo, hi), c in zip(ranges, columns, strict=True)]
        warm_ms = [self.stage_time(lo, hi, c) for (lo, hi), c in zip(ranges, columns, strict=True)]
        transfer_ms = [self.transfer_ms[p] for p in positions]
        latency = sum(stage_ms) + sum(transfer_ms) + (len(stage_ms) + 1) * self.hop_ms
        slowest = max(self.streamed(warm_ms, transfer_ms, columns)) if all(map(math.isfinite, warm_ms)) \
            else math.inf
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
    transfers = _time_copies([[values[t] for t in cut.carried] for cut in valid], parts)
    first, last = [], []  # [cut][part] (warm, cold)
    for cut in valid:
        head, tail = extract_stages(model_path, [cut], folder)
        first.append([_time_stage(workload, part, head, folder, values, notes) for part in parts])
        last.append([_time_stage(workload, part, tail, folder, values, notes) for part in parts])
    whole_stage = extract_stages(model_path, [], folder)[0]
    whole = [_time_stage(workload, part, whole_stage, folder, values, notes) for part in parts]
    slowdown = _probe_parts(workload, parts, whole_stage, folder, [values[n] for n in names])

    def pick(rows: list, k: int) -> tuple:
        return tuple(tuple(t[k] for t in row) for row in rows)

    return Profile(tuple(valid), tuple(tuple(r) for r in times), tuple(transfers), tuple(notes), batch,
                   first_ms=pick(first, 0), last_ms=pick(last, 0), whole_ms=tuple(t[0] for t in whole),
                   cold=(pick(first, 1), pick(last, 1), tuple(t[1] for t in whole)), slowdown=slowdown,
                   hop_ms=_time_hop(parts))


def _time_stage(workload: Workload, part: Part, stage: Any, folder: Path, values: dict[str, np.ndarray],
                notes: list[str]) -> tuple[float, float]:
    """The stage's median time on the part, pinned in its own thread as the pipeline runs it, warm and cold, ms
    (inf: it cannot run there, with the reason in `notes`)."""
    try:
        runner = ThreadPart(part, workload, stage_artifact(part, stage, folder, workload))
    except Exception as exc:
        notes.append(f"stage {stage.first}-{stage.last} on {part.spec}: {str(exc).splitlines()[0][:160]}")
        return math.inf, math.inf
    try:
        feeds = [values[n] for n in stage.inputs]
        warm = float(np.median(runner.call(_time_segment, runner.backend, feeds)[1])) / 1e6
        return warm, float(np.median(runner.call(_time_cold, runner.backend, feeds))) / 1e6
    finally:
        runner.close()


def _time_cold(backend: Any, feeds: list[np.ndarray]) -> list[int]:
    """Calls each after a sweep through twice the last-level cache and an idle wait: what a stage meets when
    it starts one batch while the others' work filled the caches and its own thread slept."""
    sweep = np.zeros(2 * _last_level_cache_bytes() // 8)
    samples = []
    for _ in range(COLD_CALLS):
        sweep[:] += 1
        time.sleep(COLD_IDLE_S)
        samples.append(run_once(backend, feeds)[1])
    return samples


def _probe_parts(workload: Workload, parts: Sequence[Part], stage: Any, folder: Path,
                 feeds: list[np.ndarray]) -> tuple[float, ...]:
    """How much slower the whole model runs on each part while every other part runs it too, as the stages of
    a stream do, against alone (the parts share memory bandwidth, caches, or one physical core's two
    hyperthreads)."""
    runners: list[ThreadPart | None] = []
    for part in parts:
        try:
            runners.append(ThreadPart(part, workload, stage_artifact(part, stage, folder, workload)))
        except Exception:  # this part cannot run the whole model: taken as not slowed
            runners.append(None)
    try:
        alone = [float(np.median(r.call(_time_segment, r.backend, feeds, PROBE_S)[1])) / 1e6 if r else math.inf
                 for r in runners]
        running = [r for r in runners if r is not None]
        if len(running) < 2:
            return tuple(1.0 for _ in parts)
        futures = [r._pool.submit(_time_segment, r.backend, feeds, PROBE_S) for r in running]
        together = iter([float(np.median(f.result()[1])) / 1e6 for f in futures])
        slowdown = tuple(max(next(together) / a, 1.0) if r else 1.0 for r, a in zip(runners, alone, strict=True))
        return slowdown
    finally:
        for r in runners:
            if r is not None:
                r.close()


def _time_hop(parts: Sequence[Part]) -> float:
    """One hand-over between threads as the pipeline makes it one batch at a time: a task submitted to the next
    part's pinned pool, whose thread slept while the others worked, and at the end an event that wakes the
    caller; the median round trip over every part, per hop, ms (after an idle wait a hop measured 2-3x one
    made back to back)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from xpubench.hetero.executors import pin_here

    pools = [ThreadPoolExecutor(1, initializer=pin_here, initargs=(p.cpus,)) for p in parts]

    def step(index: int, done: threading.Event) -> None:
        if index == len(pools):
            done.set()
        else:
            pools[index].submit(step, index + 1, done)

    try:
        samples = []
        for _ in range(60):
            time.sleep(COLD_IDLE_S)
            done = threading.Event()
            t0 = time.perf_counter_ns()
            pools[0].submit(step, 1, done)
            done.wait()
            samples.append(time.perf_counter_ns() - t0)
        return float(np.median(samples[10:])) / 1e6 / (len(pools) + 1)
    finally:
        for pool in pools:
            pool.shutdown()


def _time_segment(backend: Any, feeds: list[np.ndarray], seconds: float = PROFILE_S
                  ) -> tuple[list[np.ndarray], list[int]]:
    for _ in range(WARM_CALLS):
        outputs, _ = run_once(backend, feeds)
    samples: list[int] = []
    end = time.perf_counter() + seconds
    while len(samples) < PROFILE_CALLS or time.perf_counter() < end:
        samples.append(run_once(backend, feeds)[1])
    return outputs, samples


def _time_copies(carried: list[list[np.ndarray]], parts: Sequence[Part]) -> list[float]:
    """Each cut's copy as the pipeline makes it: by the next part's pinned thread, after the stages' work has
    pushed the tensors and the copy's memory out of the caches (the pipeline's copies ran 2-3x slower than
    repeated copies of warm data in one thread, as did copies after a sweep through twice the last-level
    cache), median, ms."""
    from concurrent.futures import ThreadPoolExecutor

    from xpubench.hetero.executors import pin_here

    producer, consumer = (ThreadPoolExecutor(1, initializer=pin_here, initargs=(p.cpus,))
                          for p in (parts[0], parts[-1]))

    sweep = np.zeros(2 * _last_level_cache_bytes() // 8)

    def write(arrays: list[np.ndarray]) -> None:
        for a in arrays:
            a += 0  # written on the producer's CPUs, as its stage writes them
        sweep[:] += 1  # the caches filled with other work, as a stage's work between two copies fills them

    def copy(arrays: list[np.ndarray]) -> int:
        t0 = time.perf_counter_ns()
        for a in arrays:
            np.array(a, copy=True)
        return time.perf_counter_ns() - t0

    try:
        found = []
        for arrays in carried:
            arrays = [np.array(a, copy=True) for a in arrays]  # writable: model inputs may be read-only views
            samples = []
            for _ in range(11):
                producer.submit(write, arrays).result()
                samples.append(consumer.submit(copy, arrays).result())
            found.append(float(np.median(samples)) / 1e6)
        return found
    finally:
        producer.shutdown()
        consumer.shutdown()


def _last_level_cache_bytes() -> int:
    """The largest CPU cache's size (Linux sysfs), or 32 MiB where it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=32 * 2**20)


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
