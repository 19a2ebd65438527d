"""Runs a matrix of cells: resolve each model, open each backend, measure, score, store."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import socket
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.backends import get_backend
from xpubench.backends.base import Backend
from xpubench.core.cell import Cell, CellResult, Energy, Fidelity
from xpubench.core.measure import MeasureConfig, stability
from xpubench.hardware import catalogue, host
from xpubench.isolation import Prepared, Workers
from xpubench.models import REFERENCE_BACKEND, Workload, apply_shape
from xpubench.scenarios import SELF_BATCHING, Outcome, ScenarioConfig, ScenarioRun, check_scenarios, run_scenario
from xpubench.scenarios import unavailable_reason as scenario_unavailable
from xpubench.store import ResultStore

if TYPE_CHECKING:
    from xpubench.data.files import DataFile

POOL_BATCHES = 64  # distinct input batches the timing loop rotates through


@dataclass(frozen=True)
class Matrix:
    """What a sweep measures: models x backends (x their options, devices, precisions) x batches x threads.

    A backend is named alone or with options, `litert:xnnpack=off`. `precisions` and `devices`
    may be ("all",): each backend's own list. `devices=None` runs each backend where it runs by
    default (its first device). `every_option` measures every value of a backend's swept options
    (torch eager and compiled) where the name came without options.
    """

    models: tuple[str, ...]
    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] | None = None
    every_option: bool = False
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    tdp_w: float | None = None  # overrides the catalogue
    # Each cell runs under each scenario; those that pick their own batch get one cell at batch 1.
    scenarios: tuple[str, ...] = ("single-stream",)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    # How every model is resolved (again, in each worker): --data and --shape (input name -> one sample's shape).
    data: DataFile | Path | None = None
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", check_scenarios(self.scenarios))

    def cells(self) -> list[Cell]:
        cells = []
        for model, spec in itertools.product(self.models, self.backends):
            name, given = parse_backend(spec)
            try:
                cls = get_backend(name)
            except KeyError:
                cls = None  # measured as an unavailable row with the reason
            for options, device, precision, scenario in itertools.product(
                self._option_sets(cls, given),
                self._devices(cls),
                cls.precisions if cls and self.precisions == ("all",) else self.precisions,
                self.scenarios,
            ):
                batches = (1,) if scenario in SELF_BATCHING else self.batch_sizes
                for batch, threads in itertools.product(batches, self.threads):
                    cells.append(Cell(model, name, device, precision, batch, threads, scenario, options=options))
        return cells

    def _devices(self, cls: type[Backend] | None) -> tuple[str, ...]:
        if cls is None:
            return self.devices if self.devices and self.devices != ("all",) else ("cpu",)
        if self.devices == ("all",):
            return cls.devices
        return self.devices or cls.devices[:1]

    def _option_sets(self, cls: type[Backend] | None, given: dict[str, str]) -> list[tuple[tuple[str, str], ...]]:
        if cls is None:
            return [tuple(sorted(given.items()))]
        if given or not self.every_option:
            return [non_default(cls, given)]
        swept = [[(key, value) for value in cls.option_choices[key]] for key in cls.swept_options]
        return [non_default(cls, dict(combo)) for combo in itertools.product(*swept)]


def parse_backend(spec: str) -> tuple[str, dict[str, str]]:
    """`torch:mode=compile` -> ("torch", {"mode": "compile"}). Raises ValueError on a malformed option."""
    name, *parts = spec.split(":")
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise ValueError(f"backend option {part!r} in {spec!r} is not KEY=VALUE, e.g. litert:xnnpack=off")
        options[key] = value
    return name, options


def non_default(cls: type[Backend], options: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The options as a cell stores them: checked, sorted, defaults left out."""
    resolved = cls.resolve_options(options)
    return tuple(sorted((k, v) for k, v in resolved.items() if v != cls.option_choices[k][0]))


@dataclass
class SweepEvents:
    """Callbacks for whoever shows progress; all optional."""

    say: Callable[[str], None] = lambda _msg: None
    cell_started: Callable[[int, int, Cell], None] = lambda _i, _n, _cell: None
    cell_done: Callable[[CellResult], None] = lambda _result: None


def run_matrix(
    matrix: Matrix,
    store: ResultStore,
    run_id: str,
    events: SweepEvents | None = None,
    workers: Workers | None = None,
) -> list[CellResult]:
    """Measure every cell the run has not stored yet, in order, each in a worker process of its own,
    committing each to the store as soon as it is done: `xpubench run --resume` calls this again.

    `workers` sets the time limit per cell and the CPU pinning, and may hold models already
    prepared; by default a fresh set with the default limit. A crash, a hang or an error in a cell
    is that cell's `failed` row; the sweep goes on.
    """
    events = events or SweepEvents()
    cells = matrix.cells()
    done = store.cell_keys(run_id)
    todo = [(index, cell) for index, cell in enumerate(cells) if cell.key not in done]
    if len(todo) < len(cells):
        events.say(f"run {run_id}: {len(cells) - len(todo)} of {len(cells)} cells already stored; measuring the rest")
    results: list[CellResult] = []
    own = workers is None
    workers = workers or Workers(say=events.say)
    try:
        for index, cell in todo:
            if cell.key in done:  # the same cell twice in the request
                continue
            events.cell_started(index, len(cells), cell)
            prepared = prepare_model(matrix, workers, cell.model)
            result, info = workers.measure(cell, prepared, *measure_args(matrix))
            # Rows no worker measured (the backend cannot run here) carry the same fields, empty.
            store.add_cell(run_id, result, info.record() if info else {"affinity": None, "worker": None})
            done.add(cell.key)
            results.append(result)
            events.cell_done(result)
    finally:
        if own:
            workers.close()
    return results


def prepare_model(matrix: Matrix, workers: Workers, model: str) -> Prepared | str:
    """`model` made ready in a worker, once per sweep (UsageError for the user's mistakes), with the
    rows of its cells that cannot run here at all; a string says why it could not be prepared."""
    cells = [cell for cell in matrix.cells() if cell.model == model]
    return workers.prepare(model, matrix.data, matrix.shapes, cells, measure_args(matrix))


def measure_args(matrix: Matrix) -> tuple[Any, ...]:
    """measure_cell's arguments after the cell and the workload."""
    tdp_w = matrix.tdp_w if matrix.tdp_w is not None else catalogue.cpu_tdp_w(host.cpu_model())
    return (matrix.measure, tdp_w, matrix.scenario)


def sweep_request(matrix: Matrix, workers: Workers) -> dict[str, Any]:
    """What a run stores to be resumed: the matrix, how its workers run, and who is running it."""
    return {
        "matrix": matrix_to_json(matrix),
        "cell_timeout_s": workers.timeout_s,
        "pin": list(workers.pin) if workers.pin else None,
        "cwd": str(workers.cwd),  # relative model and data paths are relative to it
        "pid": os.getpid(),  # so a resume can tell a run still running from an interrupted one
        "started": process_start(os.getpid()),  # and that pid from a later process that reuses it
        "host": socket.gethostname(),
    }


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux); None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def matrix_to_json(matrix: Matrix) -> dict[str, Any]:
    """The matrix as JSON, stored with its run so `--resume` can compute the same cells again."""
    return _jsonable(matrix)


def matrix_from_json(stored: Mapping[str, Any]) -> Matrix:
    """The inverse of matrix_to_json; fields it lacks take their defaults, unknown ones are ignored."""
    return _from_json(Matrix, stored)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _from_json(kind: Any, value: Any) -> Any:
    """`value` (from JSON) as the annotated type `kind`: dataclasses, tuples, unions with None, Paths."""
    if value is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
        from xpubench.data.files import DataFile

        hints = typing.get_type_hints(kind, localns={"DataFile": DataFile, "Path": Path})
        known = {f.name for f in dataclasses.fields(kind) if f.init}
        return kind(**{k: _from_json(hints.get(k, Any), v) for k, v in value.items() if k in known})
    if origin in (types.UnionType, typing.Union):
        if isinstance(value, Mapping):  # a dataclass among the choices
            for arg in args:
                if dataclasses.is_dataclass(arg):
                    return _from_json(arg, value)
        if isinstance(value, str) and Path in args:
            return Path(value)
        return value
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_from_json(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    return value


def artifact_kind(backend_cls: type[Backend], cell: Cell, workload: Workload) -> tuple[str | None, str | None]:
    """The artifact kind the cell loads: its backend's first that a converter chain reaches from the
    model's sources; (None, why) when there is none."""
    kinds = backend_cls.artifact_kinds(cell.precision, dict(cell.options))
    reasons = [workload.artifacts.reason(k) for k in kinds]
    if all(reasons):
        return None, reasons[0]
    return kinds[reasons.index(None)], None


def measure_cell(
    cell: Cell,
    workload: Workload,
    config: MeasureConfig,
    tdp_w: float | None,
    scenario: ScenarioConfig | None = None,
) -> CellResult:
    """One cell, never raising for a runtime's failure: that becomes a `failed` row with its reason.

    The cell's scenario (xpubench.scenarios) decides how load is applied; `scenario` holds the
    matrix's load settings (rate, latency bound).
    """
    common: dict = {"dataset": workload.dataset}
    reason = scenario_unavailable(cell.scenario)
    if reason:
        return CellResult.not_measured(cell, "unavailable", reason, **common)
    try:
        backend_cls = get_backend(cell.backend)
    except KeyError as exc:
        return CellResult.not_measured(cell, "unavailable", str(exc.args[0]), **common)
    common["emulated"] = backend_cls.emulated
    options = dict(cell.options)
    reason = backend_cls.unavailable_reason(cell.device, cell.precision, options)
    if reason:
        return CellResult.not_measured(cell, "unavailable", reason, **common)
    kind, reason = artifact_kind(backend_cls, cell, workload)
    if kind is None:
        return CellResult.not_measured(cell, "unavailable", str(reason), **common)
    backend: Backend | None = None
    try:
        try:
            artifact = workload.artifact(kind)
        except Exception as exc:  # a converter's error: the cell fails, the sweep goes on
            return CellResult.not_measured(cell, "failed", f"converting to {kind}: {one_line(exc)}", **common)
        common["artifact"] = str(artifact)
        backend = backend_cls(artifact, device=cell.device, threads=cell.threads, precision=cell.precision,
                              options=options)
        common["model_bytes"] = backend.model_bytes()
        specs = [apply_shape(spec, workload.shapes) for spec in backend.inputs]
        fixed = specs[0].fixed_batch if specs else None
        if fixed is not None and fixed != cell.batch_size:
            why = f"use --batch {fixed}" if cell.scenario not in SELF_BATCHING else f"{cell.scenario} needs batch 1"
            return CellResult.not_measured(
                cell, "unavailable", f"the model takes batch size {fixed} only: {why}", **common
            )
        opened = backend

        def pool(batch: int) -> list:
            return [opened.prepare(b) for b in input_pool(workload, batch)]

        run = ScenarioRun(cell, backend, pool, workload.fidelity_inputs, config, scenario or ScenarioConfig())
        from xpubench.hardware import energy, roofline

        # The device's energy meter (RAPL, NVML) where one is readable, around the whole scenario run;
        # idle power first (1 s, once per meter for the sweep). Emulated devices have none.
        meter = None if backend_cls.emulated else energy.meter_for(cell.device)
        idle_w = energy.idle_power(meter)
        load_before = host.load_average()
        with meter.measuring() if meter else contextlib.nullcontext() as reading:
            outcome: Outcome = run_scenario(run)
        samples = outcome.samples
        verdict = stability(samples.samples_ns, load_before, host.load_average())
        common.update(score(backend, workload, outcome.batch))
        common["delegated_fraction"] = backend.delegated_fraction()
        common["details"] = {**backend.details(), **common.pop("details", {})}
        common["scenario_result"] = outcome.result or None
        result = CellResult.from_samples(
            cell, samples, verdict, tdp_w, batch=outcome.batch, throughput_sps=outcome.throughput_sps, **common
        )
        # Server and MLPerf samples are latencies, queueing included: their time per inference is 1 / throughput.
        open_loop = cell.scenario == "server" or cell.scenario.startswith("mlperf-")
        rate = result.throughput_sps if open_loop else outcome.throughput_sps
        if reading is not None:
            result = replace(result, energy=Energy.measured(reading, idle_w, samples, outcome.batch, tdp_w, rate))
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
    except Exception as exc:  # a runtime's error must not take the sweep down
        return CellResult.not_measured(cell, "failed", one_line(exc), **common)
    finally:
        if backend is not None:
            backend.close()


def one_line(exc: BaseException) -> str:
    from xpubench import errors  # the whole rule lives there; this name stays for the callers that import it

    return errors.one_line(exc)


def input_pool(workload: Workload, batch: int) -> list[list[np.ndarray]]:
    """Distinct batches of real held-out samples (or of the fixed random draw when there is no data)."""
    arrays = workload.fidelity_inputs()
    n = len(arrays[0])
    count = max(1, min(POOL_BATCHES, n // batch))
    return [[a[(i * batch + np.arange(batch)) % n] for a in arrays] for i in range(count)]


def predict_all(backend: Backend, arrays: Sequence[np.ndarray], batch: int) -> list[np.ndarray]:
    """Outputs for every sample, in batches of the cell's size (the last one padded, then cut)."""
    n = len(arrays[0])
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch):
        part = [a[start : start + batch] for a in arrays]
        real = len(part[0])
        if real < batch:
            part = [np.concatenate([p, np.repeat(p[-1:], batch - real, axis=0)]) for p in part]
        chunks.append([np.asarray(o)[:real] for o in backend.predict(part)])
    return [np.concatenate(outs) for outs in zip(*chunks, strict=True)]


def reference_outputs(workload: Workload, threads: int = 1) -> tuple[list[np.ndarray], str]:
    """The source model's own outputs on the fidelity inputs, from its own runtime."""
    name = REFERENCE_BACKEND[workload.source_format]
    backend_cls = get_backend(name)
    reason = backend_cls.unavailable_reason(backend_cls.devices[0], "fp32")
    if reason:
        raise RuntimeError(reason)
    backend = backend_cls(workload.artifacts.sources[workload.source_kind], threads=threads)
    try:
        fixed = backend.inputs[0].fixed_batch if backend.inputs else None
        outputs = predict_all(backend, workload.fidelity_inputs(), fixed or 64)
    finally:
        backend.close()
    return outputs, f"{name} {workload.source_kind}"


def score(backend: Backend, workload: Workload, batch: int) -> dict:
    """Accuracy, its difference from the reference's, and fidelity, all on the same inputs."""
    outputs = predict_all(backend, workload.fidelity_inputs(), batch)
    found: dict = {}
    reference = workload.reference or None  # () when it could not be computed
    if reference is not None:
        found["fidelity"] = Fidelity.compare(outputs, reference[0], reference[1])
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


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=-1) == labels))
