"""Runs a matrix of cells: resolve each model, open each backend, measure, score, store."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from xpubench.backends import get_backend
from xpubench.backends.base import Backend, TensorSpec
from xpubench.core.cell import Cell, CellResult
from xpubench.core.measure import MeasureConfig, measure, stability
from xpubench.hardware import catalogue, host
from xpubench.models import Workload, resolve
from xpubench.store import ResultStore

POOL_BATCHES = 64  # distinct input batches the timing loop rotates through
INPUT_SEED = 20210412


@dataclass(frozen=True)
class Matrix:
    """What a sweep measures: the product of models x backends x batch sizes x threads."""

    models: tuple[str, ...]
    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (1,)
    precision: str = "fp32"
    device: str = "cpu"
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    tdp_w: float | None = None  # overrides the catalogue

    def cells(self) -> list[Cell]:
        return [
            Cell(model=m, backend=b, device=self.device, precision=self.precision, batch_size=bs, threads=t)
            for m, b, bs, t in itertools.product(self.models, self.backends, self.batch_sizes, self.threads)
        ]


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
    for index, cell in enumerate(cells):
        events.cell_started(index, len(cells), cell)
        if cell.model not in workloads:
            workloads[cell.model] = resolve(cell.model, say=events.say)
        result = measure_cell(cell, workloads[cell.model], matrix.measure, tdp_w)
        store.add_cell(run_id, result)
        results.append(result)
        events.cell_done(result)
    return results


def measure_cell(cell: Cell, workload: Workload, config: MeasureConfig, tdp_w: float | None) -> CellResult:
    """One cell, never raising for a runtime's failure: that becomes a `failed` row with its reason."""
    common = {"dataset": workload.dataset}
    try:
        backend_cls = get_backend(cell.backend)
    except KeyError as exc:
        return CellResult.not_measured(cell, "unavailable", str(exc.args[0]), **common)
    reason = backend_cls.unavailable_reason(cell.device, cell.precision)
    if reason:
        return CellResult.not_measured(cell, "unavailable", reason, **common)
    fmt = next((f for f in backend_cls.formats if f in workload.formats), None)
    if fmt is None:
        return CellResult.not_measured(
            cell,
            "unavailable",
            f"{cell.backend} loads {'/'.join(backend_cls.formats)} files; "
            f"a {workload.source_format} model cannot be converted to that yet",
            **common,
        )
    backend: Backend | None = None
    try:
        artifact = workload.artifact(fmt)
        common.update(artifact=str(artifact), model_bytes=artifact.stat().st_size)
        backend = backend_cls(artifact, device=cell.device, threads=cell.threads)
        specs = backend.inputs
        fixed = specs[0].fixed_batch if specs else None
        if fixed is not None and fixed != cell.batch_size:
            return CellResult.not_measured(
                cell, "unavailable", f"the model takes batch size {fixed} only: use --batch {fixed}", **common
            )
        pool = [backend.prepare(b) for b in input_pool(workload, specs, cell.batch_size)]
        load_before = host.load_average()
        samples = measure(backend.infer, pool, config, clock=backend.clock)
        verdict = stability(samples.samples_ns, load_before, host.load_average())
        if workload.y_eval is not None:
            common.update(
                accuracy_metric=workload.metric,
                accuracy_value=top1(backend, workload.x_eval, workload.y_eval, cell.batch_size),
            )
        return CellResult.from_samples(cell, samples, verdict, tdp_w, **common)
    except Exception as exc:  # a runtime's error must not take the sweep down
        return CellResult.not_measured(cell, "failed", one_line(exc), **common)
    finally:
        if backend is not None:
            backend.close()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def input_pool(workload: Workload, specs: Sequence[TensorSpec], batch: int) -> list[list[np.ndarray]]:
    """Distinct batches of real held-out samples; random ones from the signature when there is no data."""
    if workload.x_eval is not None:
        x = workload.x_eval
        count = max(1, min(POOL_BATCHES, len(x) // batch))
        return [[x[(i * batch + np.arange(batch)) % len(x)]] for i in range(count)]
    rng = np.random.default_rng(INPUT_SEED)
    pool = []
    for _ in range(POOL_BATCHES):
        arrays = []
        for spec in specs:
            dims = spec.shape[1:]
            if any(d is None for d in dims):
                raise ValueError(f"input {spec.name!r} has dynamic dimensions {spec.shape}: fix them to measure it")
            shape = (batch, *dims)
            if np.issubdtype(spec.dtype, np.floating):
                arrays.append(rng.standard_normal(shape).astype(spec.dtype))
            elif spec.dtype == np.bool_:
                arrays.append(rng.integers(0, 2, shape).astype(np.bool_))
            else:
                arrays.append(rng.integers(0, 10, shape).astype(spec.dtype))
        pool.append(arrays)
    return pool


def top1(backend: Backend, x: np.ndarray, y: np.ndarray, batch: int) -> float:
    """Top-1 accuracy over the whole held-out split, in batches of the cell's size (last one padded)."""
    predicted = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        scores = backend.predict([chunk])[0][:real]
        predicted.append(np.argmax(scores, axis=-1))
    return float(np.mean(np.concatenate(predicted) == y))
