"""The parent's side of a sweep: each model prepared once, each cell measured by a task in a worker of the
launcher, each result committed to the store as soon as it comes back."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.core.cell import Cell, CellResult
from xpubench.core.errors import InvalidSetting
from xpubench.errors import UsageError
from xpubench.run.launcher import RESULT, USAGE, Launcher, TaskOutcome, WorkerInfo
from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S, PREPARE_AT_ONCE, PREPARE_TIMEOUT_S
from xpubench.run.matrix import CellSettings, Matrix
from xpubench.run.tasks import CellTask, ModelSource, Prepared, PrepareTask, TrainTask, source_format_of

if TYPE_CHECKING:
    from xpubench.store import ResultStore

Say = Callable[[str], None]


@dataclass
class SweepEvents:
    """Callbacks for whoever shows progress; all optional."""

    say: Callable[[str], None] = lambda _msg: None
    cell_started: Callable[[int, int, Cell], None] = lambda _i, _n, _cell: None
    cell_done: Callable[[CellResult], None] = lambda _result: None


class Sweep:
    """Runs matrices through a launcher: prepares each model once (training a zoo model on first use), answers
    the cells that cannot run here without a worker, and measures every other cell in a task of its own with
    a time limit. A crash, a hang or an error in a cell is that cell's `failed` row; the sweep goes on.
    Use as a context manager; `close()` removes its folder (the prepared workloads)."""

    def __init__(self, launcher: Launcher, timeout_s: float = DEFAULT_CELL_TIMEOUT_S, say: Say | None = None) -> None:
        if not timeout_s > 0:
            raise InvalidSetting("cell_timeout_s", f"a cell's time limit must be a positive number of seconds, "
                                 f"got {timeout_s:g}")
        self.launcher = launcher
        self.timeout_s = float(timeout_s)
        self.say: Say = say or (lambda _msg: None)
        self.folder = Path(tempfile.mkdtemp(prefix="xpubench-sweep-"))
        self._prepared: dict[ModelSource, Prepared | str] = {}

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- preparing -------------------------------------------------------------------------------------

    def prepare(self, matrix: Matrix, model: str, cells: Iterable[Cell] | None = None) -> Prepared | str:
        """`model` of `matrix` made ready, once per sweep; a string says why it could not be. The user's
        mistakes (a bad file, a missing --shape) raise UsageError. `cells` (by default the matrix's cells of
        that model) are screened: those that cannot run here get their rows now."""
        source = ModelSource(model, matrix.data, matrix.shapes)
        if source not in self._prepared:
            mine = tuple(c for c in matrix.cells() if c.model == model) if cells is None else tuple(cells)
            self._prepared[source] = self._prepare(PrepareTask(source, self.folder, True, mine))
        return self._prepared[source]

    def prepare_many(self, requests: Iterable[tuple[Matrix, str, Iterable[Cell] | None]]) -> list[Prepared | str]:
        """`prepare(*request)` for each request, PREPARE_AT_ONCE at a time, in order. Only while no cell is
        measured: the workers share the cores. Ctrl-C stops every one of them."""
        from concurrent.futures import ThreadPoolExecutor

        requests = list(requests)
        with ThreadPoolExecutor(max_workers=PREPARE_AT_ONCE) as pool:
            try:
                return list(pool.map(lambda request: self.prepare(*request), requests))
            except BaseException:
                self.launcher.interrupt()  # the other threads' workers stop now
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _prepare(self, task: PrepareTask) -> Prepared | str:
        from xpubench.models.training import untrained

        source = task.source
        if untrained(source.name):
            trained = self._run(TrainTask(source.name), PREPARE_TIMEOUT_S)
            if not trained.ok:
                return f"training {source.name} failed: {trained.value}"
        outcome = self._run(task, max(self.timeout_s, PREPARE_TIMEOUT_S))
        if not outcome.ok:
            # Perhaps the reference runtime crashed: the cells can still run without fidelity figures.
            self.say(f"{source.name}: preparing it failed ({outcome.value}); again without the float32 reference")
            retry = self._run(replace(task, with_reference=False), PREPARE_TIMEOUT_S)
            if retry.ok:
                return replace(retry.value, reference_note=f"its worker failed: {outcome.value}")
            return f"preparing {source.name} failed: {retry.value}"
        prepared: Prepared = outcome.value
        if prepared.reference_note:
            from xpubench.models import REFERENCE_BACKEND

            backend = REFERENCE_BACKEND.get(source_format_of(source.name) or "", "its runtime")
            self.say(f"{source.name}: no float32 reference from {backend} ({prepared.reference_note}): "
                     "no fidelity figures")
        return prepared

    def _run(self, task: Any, timeout_s: float) -> TaskOutcome:
        """The task's outcome; the user's mistake found by the worker is raised here as UsageError."""
        outcome = self.launcher.run(task, timeout_s, self.say)
        if outcome.kind == USAGE:
            raise UsageError(outcome.value)
        return outcome

    # -- measuring -------------------------------------------------------------------------------------

    def measure(
        self, cell: Cell, prepared: Prepared | str, settings: CellSettings
    ) -> tuple[CellResult, WorkerInfo | None]:
        """The cell measured in a worker of its own; a crash, a hang or an error is a `failed` row. A cell
        the preparation screened out is answered at once, with no worker."""
        if isinstance(prepared, str):
            return CellResult.not_measured(cell, "failed", prepared), None
        if cell.key in prepared.screened:
            return prepared.screened[cell.key], None
        outcome = self._run(CellTask(cell, replace(prepared, screened={}), settings), self.timeout_s)
        if outcome.kind == RESULT:
            return outcome.value, outcome.info
        return CellResult.not_measured(cell, "failed", str(outcome.value)), outcome.info

    def run(
        self,
        matrices: Sequence[Matrix],
        store: ResultStore,
        run_id: str,
        events: SweepEvents | None = None,
    ) -> None:
        """Measure every cell of the matrices that the run has not stored yet, matrix by matrix, each
        committed to the store as soon as it is done (`--resume` calls this again). Each matrix's models are
        prepared, PREPARE_AT_ONCE at a time, with the cells of every matrix, before its cells are measured."""
        events = events or SweepEvents()
        every = [(matrix, cell) for matrix in matrices for cell in matrix.cells()]
        done = store.cell_keys(run_id)
        left = sum(1 for _, cell in every if cell.key not in done)
        if 0 < left < len(every):
            events.say(f"run {run_id}: {len(every) - left} of {len(every)} cells already stored; measuring the rest")
        index = 0
        for matrix in matrices:
            cells = matrix.cells()
            models = dict.fromkeys(c.model for c in cells if c.key not in done)
            self.prepare_many(
                (matrix, model, [c for m, c in every if c.model == model and m.data == matrix.data
                                 and m.shapes == matrix.shapes])
                for model in models
            )
            settings = matrix.settings()
            for cell in cells:
                index += 1
                if cell.key in done:  # stored before, or the same cell twice in the request
                    continue
                events.cell_started(index - 1, len(every), cell)
                result, info = self.measure(cell, self.prepare(matrix, cell.model), settings)
                # Rows no worker measured (the cell cannot run here) carry the same fields, empty.
                store.add_cell(run_id, result, info.record() if info else {"affinity": None, "worker": None})
                done.add(cell.key)
                events.cell_done(result)
