"""Runs a matrix of cells: resolve each model, open each backend, measure, score, store."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from xpubench.backends import get_backend
from xpubench.backends.base import Backend
from xpubench.core.cell import Cell, CellResult, Fidelity
from xpubench.core.measure import MeasureConfig, measure, stability
from xpubench.hardware import catalogue, host
from xpubench.models import REFERENCE_BACKEND, Workload, apply_shape, resolve
from xpubench.store import ResultStore

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

    def cells(self) -> list[Cell]:
        cells = []
        for model, spec in itertools.product(self.models, self.backends):
            name, given = parse_backend(spec)
            try:
                cls = get_backend(name)
            except KeyError:
                cls = None  # measured as an unavailable row with the reason
            for options, device, precision, batch, threads in itertools.product(
                self._option_sets(cls, given),
                self._devices(cls),
                cls.precisions if cls and self.precisions == ("all",) else self.precisions,
                self.batch_sizes,
                self.threads,
            ):
                cells.append(Cell(model, name, device, precision, batch, threads, options=options))
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
    workloads: dict[str, Workload] | None = None,
) -> list[CellResult]:
    """Measure every cell in order, committing each to the store as soon as it is done.

    `workloads` holds models the caller already resolved; the rest are resolved on first use.
    """
    events = events or SweepEvents()
    cells = matrix.cells()
    tdp_w = matrix.tdp_w if matrix.tdp_w is not None else catalogue.cpu_tdp_w(host.cpu_model())
    results: list[CellResult] = []
    workloads = dict(workloads or {})
    # Runtimes with process-wide settings get them before any conversion starts them: each
    # backend the matrix times, then each model's reference runtime.
    claimed: dict[str, int] = {}
    sources = [workloads[m].source_format if m in workloads else "keras" for m in matrix.models]  # zoo: Keras
    for name, threads in [(c.backend, c.threads) for c in cells] + [(REFERENCE_BACKEND[f], 1) for f in sources]:
        if name not in claimed:
            claimed[name] = threads
            with contextlib.suppress(KeyError, ImportError, RuntimeError):  # the cell itself will say why
                get_backend(name).claim_process(threads)
    for index, cell in enumerate(cells):
        events.cell_started(index, len(cells), cell)
        if cell.model not in workloads:
            workloads[cell.model] = resolve(cell.model, say=events.say)
        workload = workloads[cell.model]
        if workload.reference is None:
            name = REFERENCE_BACKEND[workload.source_format]
            try:
                workload.reference = reference_outputs(workload, claimed.get(name, 1))
            except Exception as exc:  # fidelity is then unknown; the cells are still measured
                events.say(f"{cell.model}: no float32 reference from {name} ({one_line(exc)}): no fidelity figures")
                workload.reference = ()
        result = measure_cell(cell, workload, matrix.measure, tdp_w)
        store.add_cell(run_id, result)
        results.append(result)
        events.cell_done(result)
    return results


def measure_cell(cell: Cell, workload: Workload, config: MeasureConfig, tdp_w: float | None) -> CellResult:
    """One cell, never raising for a runtime's failure: that becomes a `failed` row with its reason."""
    common: dict = {"dataset": workload.dataset}
    try:
        backend_cls = get_backend(cell.backend)
    except KeyError as exc:
        return CellResult.not_measured(cell, "unavailable", str(exc.args[0]), **common)
    common["emulated"] = backend_cls.emulated
    options = dict(cell.options)
    reason = backend_cls.unavailable_reason(cell.device, cell.precision, options)
    if reason:
        return CellResult.not_measured(cell, "unavailable", reason, **common)
    kinds = backend_cls.artifact_kinds(cell.precision, options)
    reasons = [workload.artifacts.reason(k) for k in kinds]
    if all(reasons):
        return CellResult.not_measured(cell, "unavailable", str(reasons[0]), **common)
    kind = kinds[reasons.index(None)]
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
            return CellResult.not_measured(
                cell, "unavailable", f"the model takes batch size {fixed} only: use --batch {fixed}", **common
            )
        pool = [backend.prepare(b) for b in input_pool(workload, cell.batch_size)]
        load_before = host.load_average()
        samples = measure(backend.infer, pool, config, clock=backend.clock)
        verdict = stability(samples.samples_ns, load_before, host.load_average())
        common.update(score(backend, workload, cell.batch_size))
        common["delegated_fraction"] = backend.delegated_fraction()
        common["details"] = backend.details()
        result = CellResult.from_samples(cell, samples, verdict, tdp_w, **common)
        if result.delegated_fraction == 0:
            result = replace(result, warnings=(*result.warnings, "the delegate ran none of the graph: not accelerated"))
        return result
    except Exception as exc:  # a runtime's error must not take the sweep down
        return CellResult.not_measured(cell, "failed", one_line(exc), **common)
    finally:
        if backend is not None:
            backend.close()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


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
    if workload.y_eval is not None and workload.metric == "top1":
        accuracy = top1(outputs[0], workload.y_eval)
        found.update(accuracy_metric="top1", accuracy_value=accuracy)
        if reference is not None:
            found["accuracy_delta"] = accuracy - top1(reference[0][0], workload.y_eval)
    return found


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=-1) == labels))
