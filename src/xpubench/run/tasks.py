"""The tasks a sweep hands its workers, each a frozen value: train a zoo model, prepare a model for its cells,
measure one cell. Each does its work in `execute(say)` inside the worker (run.worker) and imports the heavy
parts there, so the parent that builds them imports no ML framework."""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.run.matrix import CellSettings, Matrix
from xpubench.run.worker import Answer, Say

if TYPE_CHECKING:
    from xpubench.core.cell import Cell, CellResult
    from xpubench.models import Workload
    from xpubench.run.parcel import Parcel


@dataclass(frozen=True)
class ModelSource:
    """How a worker finds a model again: a zoo name or a path, the --data file, --shape and the per-input options
    (--batch-axis, --input, --int-range)."""

    name: str
    data: Any = None  # a Path or DataFile
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    batch_axes: tuple[tuple[str, int | None], ...] = ()
    input_values: tuple[tuple[str, str], ...] = ()
    int_ranges: tuple[tuple[str, tuple[int, int]], ...] = ()

    @classmethod
    def of(cls, matrix: Matrix, model: str) -> ModelSource:
        return cls(model, matrix.data, matrix.shapes, matrix.batch_axes, matrix.input_values, matrix.int_ranges)

    def resolve(self, say: Say) -> Workload:
        from xpubench.models import resolve

        return resolve(self.name, say, self.data, dict(self.shapes), dict(self.batch_axes), dict(self.input_values),
                       dict(self.int_ranges))


@dataclass(frozen=True)
class Prepared:
    """A model made ready once per sweep; each cell's worker starts from it."""

    source: ModelSource
    workload_file: Path | None  # the resolved Workload with its reference, pickled; None: resolve again
    reference_file: Path | None  # the cached float32 reference outputs (.npz)
    reference_note: str | None = None  # why there is no reference, when there is none
    # The rows of the cells that cannot run here (run.feasibility says why), keyed by cell key:
    # the sweep stores those at once, without a worker of their own.
    screened: dict[str, CellResult] = field(default_factory=dict, compare=False)
    # For workers on other machines: the Workload with the bytes of its files (then workload_file is None).
    parcel: Parcel | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TrainTask:
    """A zoo model's training on first use, in a worker of its own: there TensorFlow has every CPU the
    sweep may use, while the prepare worker's is held to the float32 reference's one thread."""

    name: str

    def execute(self, say: Say) -> None:
        from xpubench.models.training import ensure_trained, train_with_onednn
        from xpubench.models.zoo import lookup

        train_with_onednn()
        found = lookup(self.name)
        assert found is not None
        ensure_trained(found[0], say, found[1])


@dataclass(frozen=True)
class PrepareTask:
    """Resolve a model, compute its float32 reference once, screen its cells, and pickle the ready Workload
    into `folder` for the cells' workers; once answered, convert the artifacts the cells will load.
    `portable`: the cells run on other machines (a cluster): their workers answer "can it run here", and the
    Workload travels as a Parcel, its artifacts converted first."""

    source: ModelSource
    folder: Path
    with_reference: bool = True
    cells: tuple[Cell, ...] = ()  # to screen and to convert for
    portable: bool = False

    def execute(self, say: Say) -> Answer:
        from xpubench.models import REFERENCE_BACKEND
        from xpubench.run.feasibility import unavailable
        from xpubench.run.reference import cached_reference

        source_format = source_format_of(self.source.name)
        if source_format is not None:
            # The reference runtime gets one thread, set before anything starts it. Not for a name that is
            # no model: refusing it must not wait for TensorFlow to import.
            claim_process(REFERENCE_BACKEND[source_format], 1)
        workload = self.source.resolve(say)
        workload.fidelity_inputs()  # a dynamic dimension with no data to fix it is a UsageError, now
        reference_file, note = None, "its worker died"
        if self.with_reference:
            workload, reference_file, note = cached_reference(workload)
        else:
            workload = replace(workload, reference=())
        if self.portable:
            from xpubench.run.parcel import pack

            convert_ahead(workload, list(self.cells), say)
            return Prepared(self.source, None, reference_file, note, {}, pack(workload))
        screened = {}
        for cell in self.cells:
            with contextlib.suppress(Exception):  # a check that fails: the cell's own worker finds out why
                row = unavailable(cell, workload)
                if row is not None:
                    screened[cell.key] = row
        todo = [c for c in self.cells if c.key not in screened]
        prepared = Prepared(self.source, None, reference_file, note, screened)
        target = self.folder / f"{hashlib.sha256(repr(self.source).encode()).hexdigest()[:16]}.workload.pkl"
        try:  # cells then skip resolving (importing scikit-learn, reading data files) in every worker
            target.write_bytes(pickle.dumps(workload, protocol=pickle.HIGHEST_PROTOCOL))
            prepared = replace(prepared, workload_file=target)
        except Exception as exc:  # an unpicklable workload only costs time
            print(f"the workload is resolved again per cell: {exc}", file=sys.stderr)
        return Answer(prepared, lambda say: convert_ahead(workload, todo, say))


def convert_ahead(workload: Workload, cells: list[Cell], say: Say) -> None:
    """Make the artifacts the cells will load (and the float32 ONNX graph their roofline counts) while the
    source's runtime is loaded, so that a cell does not import TensorFlow and load the model again to
    convert. A converter that fails or crashes here costs nothing: its cell converts for itself and says why."""
    from xpubench.backends import get_backend
    from xpubench.convert.graph import split_kind
    from xpubench.hetero.spec import SplitSpec, is_split
    from xpubench.run.feasibility import artifact_kind

    kinds: dict[str, None] = {}
    loading = []  # a data-parallel split's parts each load the whole model; a pipeline cuts the float32 graph
    for cell in cells:
        if not is_split(cell):
            loading.append(cell)
            continue
        with contextlib.suppress(Exception):  # a malformed split: its cell says so
            spec = SplitSpec.of_cell(cell)
            if spec.mode == "data":
                loading += spec.part_cells(cell)
            else:
                kinds["onnx:fp32"] = None
    for cell in loading:
        with contextlib.suppress(Exception):  # an unknown backend: its cell says so
            kind, _ = artifact_kind(get_backend(cell.backend), cell, workload)
            if kind is not None:
                kinds[kind] = None
    # A cell that loads no ONNX graph has its roofline counted on the float32 one (roofline.onnx_graph).
    if any(split_kind(k)[0] != "onnx" for k in kinds) and workload.artifacts.reason("onnx:fp32") is None:
        kinds["onnx:fp32"] = None
    missing = [k for k in kinds if not workload.artifacts.made(k)]
    if missing:
        say(f"{workload.name}: converting to {', '.join(missing)}")
    for kind in missing:
        with contextlib.suppress(Exception):
            workload.artifact(kind)


@dataclass(frozen=True)
class CellTask:
    """Measure one repeat of a cell from its prepared model: the first is scored (accuracy, fidelity)."""

    cell: Cell
    prepared: Prepared
    settings: CellSettings
    repeat: int = 0

    @property
    def worker_key(self) -> tuple[str, int, str]:
        """Tasks with the same key may share a warm worker: the process-wide settings a backend claims
        depend on the backend and its threads alone. Each repeat still opens its own runtime session."""
        return (self.cell.backend, self.cell.threads, self.cell.device)

    def execute(self, say: Say) -> CellResult:
        from xpubench.hetero.spec import SplitSpec, is_split

        composite = is_split(self.cell)
        # Process-wide settings first, before a conversion can start the runtime with its defaults.
        for cell in SplitSpec.of_cell(self.cell).part_cells(self.cell) if composite else [self.cell]:
            claim_process(cell.backend, cell.threads)
        workload = load_workload(self.prepared, say)
        if composite:
            from xpubench.hetero.cell import measure_split

            return measure_split(self.cell, workload, self.settings, scored=self.repeat == 0)
        from xpubench.run.cell_runner import measure_cell

        return measure_cell(self.cell, workload, self.settings, scored=self.repeat == 0)


_loaded: dict[Path, Workload] = {}  # a warm worker's workloads, by file: each is read once per process


def load_workload(prepared: Prepared, say: Say) -> Workload:
    """The prepared Workload: unpacked from its parcel, unpickled (once per worker process: it is immutable),
    or resolved again with the cached reference attached."""
    if prepared.parcel is not None:
        from xpubench.run.parcel import unpack

        return unpack(prepared.parcel)
    if prepared.workload_file is not None:
        if prepared.workload_file not in _loaded:
            _loaded[prepared.workload_file] = pickle.loads(prepared.workload_file.read_bytes())
        return _loaded[prepared.workload_file]
    from xpubench.run.reference import load_reference

    workload = prepared.source.resolve(say)
    return replace(workload, reference=load_reference(prepared.reference_file) if prepared.reference_file else ())


def claim_process(backend: str, threads: int) -> None:
    """Let the backend set its process-wide settings (thread pools) before anything starts its runtime."""
    from xpubench.backends import get_backend

    with contextlib.suppress(KeyError, ImportError, RuntimeError):  # the cell itself will say why
        get_backend(backend).claim_process(threads)


def source_format_of(name: str) -> str | None:
    """The format `resolve` will find `name` in (zoo models are Keras); None when it is no model."""
    from xpubench.models import USER_FORMATS
    from xpubench.models.zoo import lookup

    if lookup(name) is not None:
        return "keras"
    path = Path(name)
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    return USER_FORMATS.get(path.suffix.lower())
