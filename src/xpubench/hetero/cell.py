"""A split measured as a cell: the same timing loop and stop rules, stability verdict, fidelity against the
float32 reference and record as any other cell, with the split's own figures (`split` in the record)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.core.cell import Cell, CellResult
from xpubench.core.measure import measure, stability
from xpubench.errors import one_line
from xpubench.hetero.parts import Part
from xpubench.hetero.spec import split_cell
from xpubench.hetero.trace import TRACE_BATCHES, data_attribution, pipeline_attribution
from xpubench.models import Workload
from xpubench.run.matrix import CellSettings

STREAM_MIN_BATCHES = 16  # a pipeline's stream: at least this many batches, and about min_time_s / 2 of them


@dataclass(frozen=True)
class Measured:
    """A split cell's result and its `split` record (stored beside the cell's record)."""

    result: CellResult
    split: dict[str, Any] = field(default_factory=dict)


def measure_composite(cell: Cell, workload: Workload, settings: CellSettings, composite: Any,
                      figures: Any, stream: bool = False, scored: bool = True) -> Measured:
    """Time `composite` (DataParallel or Pipeline) like a backend; `figures(calls)` gives its per-part or
    per-stage figures over the timed calls. A pipeline (`stream`) also streams batches for its throughput.
    `scored`: accuracy and fidelity too (a cell's first repeat)."""
    from xpubench.hardware import host, roofline
    from xpubench.run.cell_runner import input_pool, score

    pool = [composite.prepare(b) for b in input_pool(workload, cell.batch_size)]
    load_before = host.load_average()
    samples = measure(composite.infer, pool, settings.measure, clock=composite.clock)
    split = dict(figures(int(samples.samples_ns.size)))
    throughput = None
    if stream:
        median_s = float(np.median(samples.samples_ns)) / 1e9
        batches = max(STREAM_MIN_BATCHES, min(2000, int(settings.measure.min_time_s / 2 / max(median_s, 1e-6))))
        composite.stream(pool, 2)  # every stage warm at streaming pace
        wall_s = composite.stream(pool, batches)
        fill_s, pace_s = composite.steady()
        throughput = cell.batch_size / pace_s if pace_s > 0 else batches * cell.batch_size / wall_s
        split["stream"] = {"batches": batches, "wall_s": wall_s, "fill_ms": fill_s * 1e3, "throughput_sps": throughput}
        streamed = composite.streamed_ms()
        # The trace: a short stream of its own, so no batch outside it works in its window.
        composite.stream(pool, TRACE_BATCHES)
        split["trace"] = composite.trace()
        split["attribution"] = pipeline_attribution(
            [s["median_ms"] or 0.0 for s in split["stages"]], [t["median_ms"] or 0.0 for t in split["transfers"]],
            streamed, cell.batch_size / throughput * 1e3)
    verdict = stability([samples.samples_ns], load_before, host.load_average())
    common: dict[str, Any] = {"dataset": workload.dataset, "model_bytes": composite.model_bytes()}
    if scored:
        common.update(score(composite, workload, cell.batch_size))
    common["details"] = common.pop("details", {})
    result = CellResult.from_samples(cell, samples, verdict, settings.tdp_w, throughput_sps=throughput, **common)
    onnx_path = workload.artifact("onnx:fp32")
    result = replace(result, artifact=str(onnx_path), roofline=roofline.for_workload(
        workload, onnx_path, cell.batch_size, result.per_sample_ms, cell.threads, "cpu"))
    return Measured(result, split)


def failed(cell: Cell, exc: BaseException) -> Measured:
    return Measured(CellResult.not_measured(cell, "failed", one_line(exc)), {})


def measure_split(cell: Cell, workload: Workload, settings: CellSettings, scored: bool = True) -> CellResult:
    """One repeat of a matrix's split cell (backend `split`, hetero.spec) in a worker, its `split` figures in
    the result: the same measurement, and record, as `xpubench split` makes."""
    from xpubench.hetero.spec import SplitSpec

    spec = SplitSpec.of_cell(cell)
    if spec.mode == "data":
        measured = measure_data_parallel(cell.model, workload, spec.parts, cell.batch_size, settings, spec.executor,
                                         scored)
    else:
        measured = measure_pipeline(cell.model, workload, spec.parts, spec.cuts, cell.batch_size, settings,
                                    workload.artifacts.folder / "split", scored=scored)
    return replace(measured.result, cell=cell, split=measured.split or None)


def measure_data_parallel(model: str, workload: Workload, parts: Sequence[Part], batch: int,
                          settings: CellSettings, executor: str = "thread", scored: bool = True) -> Measured:
    """Each part alone first (its throughput), then the proportions searched, then the split measured."""
    from xpubench.hetero.data_parallel import DataParallel
    from xpubench.run.cell_runner import input_pool

    cell = split_cell(model, parts, batch, "data", executor=executor)
    try:
        composite = DataParallel(parts, workload, executor)
    except Exception as exc:
        return failed(cell, exc)
    try:
        arrays = composite.prepare(input_pool(workload, batch)[0])
        alone = composite.measure_alone(arrays)
        search = composite.balance(arrays)

        def figures(calls: int) -> dict[str, Any]:
            rows = composite.part_figures(calls)
            for row, rate in zip(rows, alone, strict=True):
                row["alone_sps"] = rate
            # The trace is the timed window's last calls: taken here, before the fidelity check calls again.
            return {"mode": "data", "executor": executor, "parts": rows, "search": search,
                    "trace": composite.trace(),
                    "attribution": data_attribution(batch, alone, composite.calls[-calls:] if calls else [])}

        measured = measure_composite(cell, workload, settings, composite, figures, scored=scored)
    except Exception as exc:
        return failed(cell, exc)
    finally:
        composite.close()
    split = measured.split
    best = int(np.argmax(alone))
    combined = measured.result.throughput_sps or 0.0
    split.update(sum_alone_sps=sum(alone), best_alone_part=parts[best].spec, best_alone_sps=alone[best],
                 speedup=combined / alone[best] if alone[best] else None,
                 efficiency=combined / sum(alone) if sum(alone) else None)
    return Measured(measured.result, split)


def measure_pipeline(model: str, workload: Workload, parts: Sequence[Part], cuts: Sequence[str], batch: int,
                     settings: CellSettings, folder: Path, carry_skips: bool = False,
                     prediction: dict[str, Any] | None = None, scored: bool = True) -> Measured:
    """The graph cut at `cuts` (stage i on parts[i]), measured one batch at a time (latency) and streamed
    (throughput)."""
    import onnx

    from xpubench.hetero.cuts import check_cuts, extract_stages
    from xpubench.hetero.pipeline import Pipeline

    cell = split_cell(model, parts, batch, "pipeline", cuts=",".join(cuts) or "none")
    try:
        model_path = workload.artifact("onnx:fp32")
        graph = onnx.load(str(model_path), load_external_data=False)
        found = check_cuts(graph, list(cuts), carry_skips)
        if len(found) + 1 != len(parts):
            raise ValueError(f"{len(found)} cut{'s' if len(found) != 1 else ''} make {len(found) + 1} stages: "
                             f"give {len(found) + 1} parts, one per stage (got {len(parts)})")
        constants = {i.name for i in graph.graph.initializer}
        names = [i.name for i in graph.graph.input if i.name not in constants]
        stages = extract_stages(model_path, found, folder)
        composite = Pipeline(stages, parts, workload, folder, names)
    except Exception as exc:
        return failed(cell, exc)
    try:
        def figures(calls: int) -> dict[str, Any]:
            found = composite.figures(calls)
            return {"mode": "pipeline", **found,
                    "stage_sum_ms": sum(s["median_ms"] or 0 for s in found["stages"])
                    + sum(t["median_ms"] or 0 for t in found["transfers"])}

        measured = measure_composite(cell, workload, settings, composite, figures, stream=True, scored=scored)
    except Exception as exc:
        return failed(cell, exc)
    finally:
        composite.close()
    if prediction is not None:
        measured.split["prediction"] = prediction
    return measured
