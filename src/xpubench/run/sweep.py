"""The parent's side of a sweep: each model prepared once, each cell measured by a task in a worker of the
launcher (as many at once as it has slots), each result committed to the store, by this process alone, as
soon as it comes back."""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.core.cell import Cell, CellResult
from xpubench.core.errors import InvalidSetting
from xpubench.errors import UsageError
from xpubench.run.launcher import RESULT, UNAVAILABLE, USAGE, Launcher, Pending, TaskOutcome, WorkerInfo
from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S, MAX_REPEATS, PREPARE_AT_ONCE, PREPARE_TIMEOUT_S
from xpubench.run.matrix import CellSettings, Matrix
from xpubench.run.repeats import Repeat, combine, interval
from xpubench.run.resources import resources_for_cell
from xpubench.run.tasks import CellTask, ModelSource, Prepared, PrepareTask, TrainTask, source_format_of

if TYPE_CHECKING:
    from xpubench.store import ResultStore

Say = Callable[[str], None]


@dataclass
class SweepEvents:
    """Callbacks for whoever shows progress; all optional."""

    say: Callable[[str], None] = lambda _msg: None
    cell_started: Callable[[int, int, Cell], None] = lambda _i, _n, _cell: None
    cell_done: Callable[[dict[str, Any]], None] = lambda _record: None  # the record as stored
    # Cells measured several at once (a cluster): (queued, running [(cell, worker or None)], done, total),
    # called whenever that changes.
    cells_running: Callable[[int, list[tuple[Cell, str | None]], int, int], None] = lambda _q, _r, _d, _t: None


class Sweep:
    """Runs matrices through a launcher: prepares each model once (training a zoo model on first use), answers
    the cells that cannot run here without a worker, and measures every other cell in a task of its own with
    a time limit. A crash, a hang or an error in a cell is that cell's `failed` row; the sweep goes on.
    Models are prepared by `launcher` (on this machine, where the user's files are); cells are measured by
    `cells` (default: `launcher`), as many at once as it has slots.
    Use as a context manager; `close()` removes its folder (the prepared workloads)."""

    def __init__(
        self,
        launcher: Launcher,
        timeout_s: float = DEFAULT_CELL_TIMEOUT_S,
        say: Say | None = None,
        cells: Launcher | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise InvalidSetting("cell_timeout_s", f"a cell's time limit must be a positive number of seconds, "
                                 f"got {timeout_s:g}")
        self.launcher = launcher
        self.cells = cells or launcher
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
        source = ModelSource.of(matrix, model)
        if source not in self._prepared:
            mine = tuple(c for c in matrix.cells() if c.model == model) if cells is None else tuple(cells)
            self._prepared[source] = self._prepare(PrepareTask(source, self.folder, True, mine, self.cells.remote))
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
        self, cell: Cell, prepared: Prepared | str, settings: CellSettings, repeat: int = 0
    ) -> tuple[CellResult, WorkerInfo | None]:
        """One repeat of the cell measured in a worker; a crash, a hang or an error is a `failed` row. A cell
        the preparation screened out is answered at once, with no worker."""
        answered = self._answered(cell, prepared)
        if answered is not None:
            return answered, None
        assert not isinstance(prepared, str)
        return self._row(cell, self._submit(cell, prepared, settings, repeat).result())

    def _answered(self, cell: Cell, prepared: Prepared | str) -> CellResult | None:
        """The cell's row when no worker is needed: its model could not be prepared, or it cannot run here."""
        if isinstance(prepared, str):
            return CellResult.not_measured(cell, "failed", prepared)
        return prepared.screened.get(cell.key)

    def _submit(self, cell: Cell, prepared: Prepared, settings: CellSettings, repeat: int) -> Pending:
        task = CellTask(cell, replace(prepared, screened={}), settings, repeat)
        say = self.say
        if self.cells.remote:  # several cells at once, each far away: say which one speaks
            say = lambda message: self.say(f"{cell.key}: {message}")  # noqa: E731
        return self.cells.submit(task, self.timeout_s, say, resources_for_cell(cell))

    def _row(self, cell: Cell, outcome: TaskOutcome) -> tuple[CellResult, WorkerInfo | None]:
        if outcome.kind == USAGE:
            raise UsageError(outcome.value)
        if outcome.kind == RESULT:
            return outcome.value, outcome.info
        status = "unavailable" if outcome.kind == UNAVAILABLE else "failed"
        return CellResult.not_measured(cell, status, str(outcome.value)), outcome.info

    def run(
        self,
        matrices: Sequence[Matrix],
        store: ResultStore,
        run_id: str,
        events: SweepEvents | None = None,
    ) -> None:
        """Measure every cell of the matrices that the run has not stored yet, committing each to the store as
        soon as it is done (`--resume` calls this again). The models are prepared first, matrix by matrix,
        PREPARE_AT_ONCE at a time, each with the cells of every matrix. A cell of several repeats is measured in
        rounds, the first repeat of every cell, then the second, ..., so that slow drift of the machine spreads
        over all of them; each repeat is stored as it comes, the cell once its repeats are in."""
        events = events or SweepEvents()
        every = [(matrix, cell) for matrix in matrices for cell in matrix.cells()]
        positions: dict[str, int] = {}
        for position, (_, cell) in enumerate(every):
            positions.setdefault(cell.key, position)
        done = store.cell_keys(run_id)
        left = sum(1 for _, cell in every if cell.key not in done)
        if 0 < left < len(every):
            events.say(f"run {run_id}: {len(every) - left} of {len(every)} cells already stored; measuring the rest")
        pending: dict[str, _Pending] = {}
        for matrix in matrices:
            models = dict.fromkeys(c.model for c in matrix.cells() if c.key not in done)
            self.prepare_many(
                (matrix, model, [c for m, c in every if c.model == model
                                 and ModelSource.of(m, model) == ModelSource.of(matrix, model)])
                for model in models
            )
            tdp_w = matrix.tdp()
            for cell in matrix.cells():
                if cell.key not in done and cell.key not in pending:  # stored before, or twice in the request
                    pending[cell.key] = _Pending(matrix, cell, matrix.settings_for(cell, tdp_w), positions[cell.key])
        for key, repeats in store.repeats(run_id).items():
            if key in pending:
                pending[key].repeats = list(repeats)
        self._measure_all(list(pending.values()), len(every) - len(pending), len(every), store, run_id, events)

    def _measure_all(
        self, todo: list[_Pending], stored: int, total: int, store: ResultStore, run_id: str, events: SweepEvents
    ) -> None:
        """The cells' repeats, up to the launcher's slots in flight at once, a cell's next repeat queued behind
        the other cells' when its last one comes back; each cell stored as soon as it is complete (`stored` of
        `total` are already). Ctrl-C (or SIGTERM) stops the tasks in flight; none of them is stored."""
        queue = deque(todo)
        in_flight: dict[Pending, _Pending] = {}
        shown: list[tuple[Cell, str | None]] | None = None
        concurrent = self.cells.slots > 1
        if concurrent and todo:
            events.cells_running(len(queue), [], stored, total)

        def finish(item: _Pending, record: dict[str, Any], samples: Any) -> None:
            nonlocal stored
            store.add_record(run_id, record, samples, item.position)
            stored += 1
            events.cell_done(record)

        def landed(item: _Pending, result: CellResult, info: WorkerInfo | None) -> None:
            """One repeat back: the cell stored, or its next repeat queued."""
            record = {**result.as_dict(), **(info.record() if info else {"affinity": None, "worker": None})}
            record.pop("environment")
            index = len(item.repeats)
            if item.settings.repeats == 1 or result.status != "ok":
                if index and result.status != "ok":  # a later repeat broke: the cell is not measured
                    record["reason"] = f"repeat {index + 1} of {item.settings.repeats}: {record['reason']}"
                finish(item, record, result.samples_ns)
                return
            store.add_repeat(run_id, item.cell.key, index, record, result.samples_ns)
            item.repeats.append((record, np.asarray(result.samples_ns)))
            stop = item.stop_reason()
            if stop is None:
                queue.append(item)
            else:
                earlier = store.earlier_medians(run_id, item.cell.key)
                finish(item, *combine(item.repeats, item.settings.tdp_w, stop, earlier))

        try:
            while queue or in_flight:
                while queue and len(in_flight) < max(1, self.cells.slots):
                    item = queue.popleft()
                    events.cell_started(item.position, total, item.cell)
                    prepared = self.prepare(item.matrix, item.cell.model)
                    answered = self._answered(item.cell, prepared)
                    if answered is not None:
                        landed(item, answered, None)
                        continue
                    assert not isinstance(prepared, str)
                    in_flight[self._submit(item.cell, prepared, item.settings, len(item.repeats))] = item
                if not in_flight:
                    continue
                finished, _ = wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                for pending in sorted(finished, key=lambda p: list(in_flight).index(p)):
                    item = in_flight.pop(pending)
                    landed(item, *self._row(item.cell, pending.result()))
                if concurrent:
                    running = [(item.cell, pending.where) for pending, item in in_flight.items()]
                    if running != shown:
                        shown = running
                        events.cells_running(len(queue), running, stored, total)
        except BaseException:
            self.cells.interrupt()  # the tasks in flight stop now; none of them is stored
            raise


@dataclass
class _Pending:
    """A cell the sweep has not stored yet, its place in the run's request, and the repeats it has of it."""

    matrix: Matrix
    cell: Cell
    settings: CellSettings
    position: int
    repeats: list[Repeat] = field(default_factory=list)

    def stop_reason(self) -> str | None:
        """Why the cell has repeats enough, or None while it needs another: its repeats are in and, with an
        interval target, the interval is within it, the cell's maximum time is spent, or MAX_REPEATS ran."""
        wanted, count = self.settings.repeats, len(self.repeats)
        if count < wanted:
            return None
        target = self.settings.measure.ci_target
        if target is None:
            share = self.settings.per_repeat()
            return f"{count} repeats of at least {share.min_runs} runs and {share.min_time_s:g} s"
        # The run's own repeats: more of them narrow it; the spread between runs the stored one may add, not.
        halfwidth = interval(self.repeats).halfwidth
        spent = sum(record["duration_s"] or 0.0 for record, _ in self.repeats)
        if halfwidth <= target:
            return f"95 % interval of the median within +-{halfwidth:.2%} after {count} repeats"
        if spent >= self.settings.measure.max_time_s:
            return (f"reached the maximum time of {self.settings.measure.max_time_s:g} s with the interval at "
                    f"+-{halfwidth:.2%}")
        if count >= MAX_REPEATS:
            return f"reached {MAX_REPEATS} repeats with the interval at +-{halfwidth:.2%}"
        return None
