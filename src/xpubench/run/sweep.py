"""The parent's side of a sweep: each model prepared once, each cell measured by a task in a worker of the
launcher, each result committed to the store as soon as it comes back."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.core.cell import Cell, CellResult
from xpubench.core.errors import InvalidSetting
from xpubench.errors import UsageError
from xpubench.run.launcher import RESULT, USAGE, Launcher, TaskOutcome, WorkerInfo
from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S, MAX_REPEATS, PREPARE_AT_ONCE, PREPARE_TIMEOUT_S
from xpubench.run.matrix import CellSettings, Matrix
from xpubench.run.repeats import Repeat, combine, interval
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
        source = ModelSource.of(matrix, model)
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
        self, cell: Cell, prepared: Prepared | str, settings: CellSettings, repeat: int = 0
    ) -> tuple[CellResult, WorkerInfo | None]:
        """One repeat of the cell measured in a worker; a crash, a hang or an error is a `failed` row. A cell
        the preparation screened out is answered at once, with no worker."""
        if isinstance(prepared, str):
            return CellResult.not_measured(cell, "failed", prepared), None
        if cell.key in prepared.screened:
            return prepared.screened[cell.key], None
        outcome = self._run(CellTask(cell, replace(prepared, screened={}), settings, repeat), self.timeout_s)
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
        """Measure every cell of the matrices that the run has not stored yet, committing each to the store as
        soon as it is done (`--resume` calls this again). Each matrix's models are prepared first,
        PREPARE_AT_ONCE at a time, with the cells of every matrix. A cell of several repeats is measured in
        rounds: the first repeat of every cell, then the second, ..., so that slow drift of the machine spreads
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
                if cell.key not in done and cell.key not in pending:  # the same cell twice in the request
                    pending[cell.key] = _Pending(matrix, cell, matrix.settings_for(cell, tdp_w), positions[cell.key])
        for key, repeats in store.repeats(run_id).items():
            if key in pending:
                pending[key].repeats = list(repeats)
        total = sum(p.settings.repeats for p in pending.values())
        started = 0
        while pending:
            for key, item in list(pending.items()):
                events.cell_started(started, total, item.cell)
                started += 1
                index = len(item.repeats)
                result, info = self.measure(item.cell, self.prepare(item.matrix, item.cell.model), item.settings, index)
                record = {**result.as_dict(), **(info.record() if info else {"affinity": None, "worker": None})}
                record.pop("environment")
                if item.settings.repeats == 1 or result.status != "ok":
                    if index and result.status != "ok":  # a later repeat broke: the cell is not measured
                        record["reason"] = f"repeat {index + 1} of {item.settings.repeats}: {record['reason']}"
                    self._store(store, run_id, key, pending, record, result.samples_ns, events)
                    continue
                store.add_repeat(run_id, key, index, record, result.samples_ns)
                item.repeats.append((record, np.asarray(result.samples_ns)))
                stop = item.stop_reason()
                if stop is not None:
                    combined, samples = combine(item.repeats, item.settings.tdp_w, stop)
                    self._store(store, run_id, key, pending, combined, samples, events)
                elif len(item.repeats) >= item.settings.repeats:
                    total += 1  # --ci-target asks for another repeat

    @staticmethod
    def _store(store: ResultStore, run_id: str, key: str, pending: dict, record: dict, samples: Any,
               events: SweepEvents) -> None:
        store.add_record(run_id, record, samples, pending[key].position)
        del pending[key]
        events.cell_done(record)


@dataclass
class _Pending:
    """A cell the sweep has not stored yet, and the repeats it has measured of it."""

    matrix: Matrix
    cell: Cell
    settings: CellSettings
    position: int  # in the run's request
    repeats: list[Repeat] = field(default_factory=list)

    def stop_reason(self) -> str | None:
        """Why the cell has repeats enough, or None while it needs another: its repeats are in and, with an
        interval target, the interval is within it, the cell's maximum time is spent, or MAX_REPEATS ran."""
        wanted, count = self.settings.repeats, len(self.repeats)
        if count < wanted:
            return None
        target = self.settings.measure.ci_target
        spent = sum(record["duration_s"] or 0.0 for record, _ in self.repeats)
        if target is None:
            share = self.settings.per_repeat()
            return f"{count} repeats of at least {share.min_runs} runs and {share.min_time_s:g} s"
        halfwidth = interval(self.repeats).halfwidth
        if halfwidth <= target:
            return f"95 % interval of the median within +-{halfwidth:.2%} after {count} repeats"
        if spent >= self.settings.measure.max_time_s:
            return (f"reached the maximum time of {self.settings.measure.max_time_s:g} s with the interval at "
                    f"+-{halfwidth:.2%}")
        if count >= MAX_REPEATS:
            return f"reached {MAX_REPEATS} repeats with the interval at +-{halfwidth:.2%}"
        return None
