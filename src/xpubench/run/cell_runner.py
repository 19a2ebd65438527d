"""One cell measured inside its worker: open the backend on its artifact, run the cell's scenario, score
the outputs, and return the CellResult. A runtime's failure is the cell's `failed` row, never a raise."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from xpubench.backends import get_backend
from xpubench.backends.base import Backend
from xpubench.core.cell import Cell, CellResult, Energy, Fidelity
from xpubench.core.measure import stability
from xpubench.errors import one_line
from xpubench.hardware import catalogue, host
from xpubench.models import Workload
from xpubench.models.inputs import output_axis, sample_count, take
from xpubench.run.feasibility import artifact_kind, unavailable
from xpubench.run.matrix import CellSettings
from xpubench.scenarios import SELF_BATCHING, Outcome, ScenarioRun, run_scenario

POOL_BATCHES = 64  # distinct input batches the timing loop rotates through


def measure_cell(
    cell: Cell, workload: Workload, settings: CellSettings | None = None, scored: bool = True
) -> CellResult:
    """One cell (or one repeat of it), never raising for a runtime's failure: that becomes a `failed` row
    with its reason.

    The cell's scenario (xpubench.scenarios) decides how load is applied; `settings` holds the stop rules
    (one repeat's share of them where the cell has several), TDP and load settings (rate, latency bound).
    `scored`: accuracy and fidelity are computed (the first repeat of a cell; the others only time).
    """
    settings = settings or CellSettings()
    cannot = unavailable(cell, workload)
    if cannot is not None:
        return cannot
    backend_cls = get_backend(cell.backend)
    common: dict = {"dataset": workload.dataset, "emulated": backend_cls.emulated}
    kind, _ = artifact_kind(backend_cls, cell, workload)
    assert kind is not None  # unavailable() said so otherwise
    backend: Backend | None = None
    try:
        try:
            artifact = workload.artifact(kind)
        except Exception as exc:  # a converter's error: the cell fails, the sweep goes on
            return CellResult.not_measured(cell, "failed", f"converting to {kind}: {one_line(exc)}", **common)
        common["artifact"] = str(artifact)
        backend = backend_cls(artifact, device=cell.device, threads=cell.threads, precision=cell.precision,
                              options=dict(cell.options))
        common["model_bytes"] = backend.model_bytes()
        fixed = workload.fixed_batch(workload.shaped(backend.inputs))
        if fixed is not None and fixed != cell.batch_size:
            why = f"use --batch {fixed}" if cell.scenario not in SELF_BATCHING else f"{cell.scenario} needs batch 1"
            return CellResult.not_measured(
                cell, "unavailable", f"the model takes batch size {fixed} only: {why}", **common
            )
        return _measure_open(cell, workload, settings, backend, artifact, common, scored)
    except Exception as exc:  # a runtime's error must not take the sweep down
        return CellResult.not_measured(cell, "failed", one_line(exc), **common)
    finally:
        if backend is not None:
            backend.close()


def _measure_open(
    cell: Cell, workload: Workload, settings: CellSettings, backend: Backend, artifact, common: dict, scored: bool
) -> CellResult:
    """The scenario's run on an open backend, with its energy, price and roofline."""
    from xpubench.hardware import energy, roofline

    def pool(batch: int) -> list:
        batches = input_pool(workload, batch)
        if cell.timing == "compute":  # handed over once, as the vendors' own tools do: the call is compute alone
            return [backend.bind_compute(batches[0])]
        return [backend.prepare(b) for b in batches]

    run = ScenarioRun(cell, backend, pool, workload.fidelity_inputs, settings.per_repeat(), settings.scenario)
    # The device's energy meter (RAPL, NVML) where one is readable, around the whole scenario run;
    # idle power first (1 s, once per meter for the sweep). Emulated devices have none.
    meter = None if common["emulated"] else energy.meter_for(cell.device)
    idle_w = energy.idle_power(meter)
    load_before = host.load_average()
    with meter.measuring() if meter else contextlib.nullcontext() as reading:
        outcome: Outcome = run_scenario(run)
    samples = outcome.samples
    verdict = stability([samples.samples_ns], load_before, host.load_average())
    if scored:
        common.update(score(backend, workload, outcome.batch))
    common["delegated_fraction"] = backend.delegated_fraction()
    common["details"] = {**backend.details(), **common.pop("details", {})}
    if cell.timing == "compute":
        common["details"]["compute_clock"] = backend.compute_clock or "host"
    common["scenario_result"] = outcome.result or None
    tdp_w = settings.tdp_w
    result = CellResult.from_samples(
        cell, samples, verdict, tdp_w, batch=outcome.batch, throughput_sps=outcome.throughput_sps, **common
    )
    # Server and MLPerf samples are latencies, queueing included: their time per inference is 1 / throughput.
    open_loop = cell.scenario == "server" or cell.scenario.startswith("mlperf-")
    rate = result.throughput_sps if open_loop else outcome.throughput_sps
    if reading is not None:
        measured = Energy.measured(reading, idle_w, samples, outcome.batch, tdp_w, rate, result.per_sample_ms)
        result = replace(result, energy=measured)
    time_ms = 1e3 / rate if open_loop and rate else result.per_sample_ms
    result = replace(
        result,
        price=catalogue.price_for_cell(
            cell.device, result.per_sample_ms, result.energy.joules_per_inference,
            throughput_sps=rate if open_loop else None,
        ),
        roofline=roofline.for_workload(workload, artifact, outcome.batch, time_ms, cell.threads, cell.device),
    )
    if outcome.warnings:
        result = replace(result, warnings=(*result.warnings, *outcome.warnings))
    if result.delegated_fraction == 0:
        result = replace(result, warnings=(*result.warnings, "the delegate ran none of the graph: not accelerated"))
    return result


def input_pool(workload: Workload, batch: int) -> list[list[np.ndarray]]:
    """Distinct batches of real held-out samples (or of the fixed random draw when there is no data), each
    input's samples along its own batch axis; pinned inputs the same in every batch."""
    arrays, axes = workload.fidelity_inputs(), workload.input_axes
    n = sample_count(arrays, axes)
    count = max(1, min(POOL_BATCHES, n // batch))
    return [take(arrays, axes, (i * batch + np.arange(batch)) % n) for i in range(count)]


def predict_all(
    backend: Backend, arrays: Sequence[np.ndarray], batch: int, axes: Sequence[int | None] | None = None
) -> list[np.ndarray]:
    """Outputs for every sample, in batches of the cell's size (the last one padded, then cut). `axes`: each
    input's batch axis (None: fed whole to every call; default axis 0); each output's is found from its shape."""
    axes = tuple(axes) if axes is not None else (0,) * len(arrays)
    n = sample_count(arrays, axes)
    chunks: list[list[np.ndarray]] = []
    out_axes: list[int | None] = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        real = len(rows)
        part = take(arrays, axes, np.concatenate([rows, np.repeat(rows[-1:], batch - real)]))
        outputs = [np.asarray(o) for o in backend.predict(part)]
        if not out_axes:
            out_axes = [output_axis(o.shape, batch, part, axes) for o in outputs]
        chunks.append([o if axis is None else np.take(o, np.arange(real), axis=axis)
                       for o, axis in zip(outputs, out_axes, strict=True)])
    return [np.concatenate(outs, axis=axis or 0) for outs, axis in zip(zip(*chunks, strict=True), out_axes,
                                                                       strict=True)]


def score(backend: Backend, workload: Workload, batch: int) -> dict:
    """Accuracy, its difference from the reference's, and fidelity, all on the same inputs."""
    outputs = predict_all(backend, workload.fidelity_inputs(), batch, workload.input_axes)
    found: dict = {}
    reference = workload.reference or None  # () when it could not be computed
    if reference is not None:
        found["fidelity"] = Fidelity.compare(outputs, reference[0], reference[1], workload.metric)
    if workload.y_eval is not None and workload.metric:
        from xpubench.models.metrics import confusion, evaluate

        # The model's metric (top1, auc, resolution) on its first output; the delta is this value minus
        # the reference's, so its good sign is the metric's (HIGHER_IS_BETTER: negative for resolution).
        try:
            accuracy = evaluate(workload.metric, outputs[0], workload.y_eval)
            found.update(accuracy_metric=workload.metric, accuracy_value=accuracy)
            if workload.metric in ("top1", "auc"):  # class scores: the report draws their confusion matrix
                found["details"] = {"confusion": confusion(outputs[0], workload.y_eval)}
            if reference is not None:
                found["accuracy_delta"] = accuracy - evaluate(workload.metric, reference[0][0], workload.y_eval)
        except ValueError:  # e.g. AUC on data with a single class: no figure, the cell still stands
            pass
    return found
