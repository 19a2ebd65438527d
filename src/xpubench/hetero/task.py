"""The split as a task for a launcher's worker: the prepared model loaded, the planner run where asked, each
split measured; the parent stores the cells. Frozen and picklable, it imports the heavy parts in `execute`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpubench.hetero.parts import Part
from xpubench.run.matrix import CellSettings
from xpubench.run.tasks import Prepared
from xpubench.run.worker import Say

MODES = ("data", "pipeline", "auto")


@dataclass(frozen=True)
class SplitRequest:
    model: str
    parts: tuple[Part, ...]
    mode: str = "auto"
    cuts: tuple[str, ...] = ()
    objective: str = "throughput"
    batch: int = 32
    executor: str = "thread"
    carry_skips: bool = False
    list_cuts: bool = False
    settings: CellSettings = field(default_factory=CellSettings)


@dataclass(frozen=True)
class SplitAnswer:
    measured: list[Any]  # hetero.cell.Measured, in the order measured
    report: list[str]  # lines for the user: cuts, the planner's prediction beside each measurement


@dataclass(frozen=True)
class SplitTask:
    prepared: Prepared
    request: SplitRequest

    def execute(self, say: Say) -> SplitAnswer:
        from xpubench.run.tasks import claim_process, load_workload

        for part in self.request.parts:
            claim_process(part.backend, max(1, len(part.cpus)))
        workload = load_workload(self.prepared, say)
        folder = workload.artifacts.folder / "split"  # stage graphs and their conversions, cached with the model
        r = self.request
        if r.list_cuts:
            return SplitAnswer([], _cut_lines(workload, r.carry_skips))
        if r.mode == "data":
            from xpubench.hetero.cell import measure_data_parallel

            say(f"data-parallel over {len(r.parts)} parts: each alone, then the proportions searched")
            return SplitAnswer([measure_data_parallel(r.model, workload, r.parts, r.batch, r.settings, r.executor)],
                               [])
        if r.mode == "pipeline" and r.cuts:
            from xpubench.hetero.cell import measure_pipeline

            return SplitAnswer([measure_pipeline(r.model, workload, r.parts, r.cuts, r.batch, r.settings,
                                                 folder, r.carry_skips)], [])
        return _planned(workload, r, folder, say)


def _cut_lines(workload: Any, carry_skips: bool) -> list[str]:
    from xpubench.hetero.planner import candidate_cuts

    valid, refused = candidate_cuts(workload.artifact("onnx:fp32"), carry_skips)
    lines = [f"valid cut: {c.tensor}" + (f" (carries {', '.join(c.carried)})" if len(c.carried) > 1 else "")
             for c in valid]
    return lines + [f"refused:   {c.reason}" for c in refused]


def _planned(workload: Any, r: SplitRequest, folder: Path, say: Say) -> SplitAnswer:
    """The planner: profile, choose, measure the choice and the best single part, prediction beside each."""
    from xpubench.hetero import planner
    from xpubench.hetero.cell import measure_data_parallel, measure_pipeline

    say(f"planner: profiling the segments of {r.model} on {len(r.parts)} parts at batch {r.batch}")
    found = planner.profile(workload, r.parts, r.batch, folder, r.carry_skips)
    options = planner.plans(found, r.parts)
    if r.mode == "pipeline":
        options = [p for p in options if len(p.parts) > 1] or options
    chosen = planner.choose(options, r.objective)
    single = planner.best_single(planner.plans(found, r.parts), r.objective)
    report = [f"candidate cuts: {len(found.candidates)} valid, {len(found.refused)} refused"]
    report += [f"  refused: {line}" for line in found.refused[:8]]
    # Data-parallel predicted from the same profile: the parts together at the sum of their rates.
    singles = [p for p in planner.plans(found, r.parts) if len(p.parts) == 1]
    data_sps = sum(p.throughput_sps for p in singles)
    data_latency = r.batch / data_sps * 1e3 if data_sps else float("inf")
    use_data = r.mode == "auto" and len(singles) > 1 and (
        data_sps > chosen.throughput_sps if r.objective == "throughput" else data_latency < chosen.latency_ms)
    measured = []
    if use_data:
        report.append(f"chosen: data-parallel over {len(singles)} parts (predicted {data_latency:.3f} ms per "
                      f"batch, {data_sps:.0f}/s)")
        result = measure_data_parallel(r.model, workload, r.parts, r.batch, r.settings, r.executor)
        result.split["prediction"] = {"latency_ms": data_latency, "throughput_sps": data_sps}
        measured.append(result)
    else:
        report.append(f"chosen: {chosen.describe()}")
        measured.append(measure_pipeline(r.model, workload, chosen.parts, chosen.cuts, r.batch, r.settings, folder,
                                         r.carry_skips, chosen.as_dict()))
    if use_data or single != chosen:
        measured.append(measure_pipeline(r.model, workload, single.parts, (), r.batch, r.settings, folder,
                                         r.carry_skips, single.as_dict()))
    for item in measured:
        report.append(_beside(item))
    return SplitAnswer(measured, report)


def _beside(item: Any) -> str:
    """`predicted ... | measured ...` for one measured plan."""
    result, split = item.result, item.split
    if result.status != "ok":
        return f"{result.cell.device}: {result.status}: {result.reason}"
    predicted = split.get("prediction") or {}
    latency = result.latency.median if result.latency else float("nan")
    what = result.cell.device + (f" cut at {dict(result.cell.options).get('cuts')}"
                                 if dict(result.cell.options).get("cuts", "none") != "none" else "")
    return (f"{what}: predicted {predicted.get('latency_ms', float('nan')):.3f} ms/batch, "
            f"{predicted.get('throughput_sps', float('nan')):.0f}/s | measured {latency:.3f} ms/batch, "
            f"{result.throughput_sps or 0:.0f}/s")
