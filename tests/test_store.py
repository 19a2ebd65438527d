"""The results store: versioned schema, per-cell commits, raw samples kept."""

import sqlite3

import numpy as np
import pytest

from xpubench.backends.null import NullBackend
from xpubench.core.cell import Cell, CellResult
from xpubench.core.measure import MeasureConfig, measure, stability
from xpubench.errors import UsageError
from xpubench.store import SCHEMA_VERSION, ResultStore


def measured(cell: Cell) -> CellResult:
    backend = NullBackend(script=[1e-3, 2e-3])
    samples = measure(backend.infer, [np.zeros((1, 1))], MeasureConfig(0, 0, 10, 0), backend.clock)
    return CellResult.from_samples(cell, samples, stability(samples.samples_ns, None, None), None, dataset="d")


def test_cells_are_stored_with_their_samples_and_the_run_environment(tmp_path):
    with ResultStore(tmp_path) as store:
        run_id = store.start_run({"cpu_model": "test"}, "xpubench run")
        cell = Cell("m", "null", batch_size=4)
        store.add_cell(run_id, measured(cell))
        store.add_cell(run_id, CellResult.not_measured(Cell("m", "gone"), "unavailable", "not installed"))
        store.finish_run(run_id, "finished", 0.5)
    with ResultStore(tmp_path, create=False) as store:
        assert store.latest_run_id() == run_id
        records = store.cells(run_id)
        assert [r["status"] for r in records] == ["ok", "unavailable"]
        assert records[0]["environment"] == {"cpu_model": "test", "load_after": 0.5}
        assert records[0]["latency_ms"]["median"] == pytest.approx(1.5)
        assert records[1]["reason"] == "not installed"
        samples = store.samples(run_id, cell.key)
        assert samples.size == 10 and set(samples.tolist()) == {1_000_000, 2_000_000}
        assert store.runs()[0]["cells"] == 2 and store.run(run_id)["status"] == "finished"


def test_schema_carries_its_version(tmp_path):
    ResultStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "xpubench.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1


def test_a_newer_schema_is_refused_with_advice(tmp_path):
    ResultStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "xpubench.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="upgrade xpubench"):
        ResultStore(tmp_path)


def test_reading_a_missing_store_or_run_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no results"):
        ResultStore(tmp_path / "nowhere", create=False)
    with ResultStore(tmp_path) as store, pytest.raises(UsageError, match="no run"):
        store.run("nope")


def test_a_cell_key_is_unique_within_a_run(tmp_path):
    with ResultStore(tmp_path) as store:
        run_id = store.start_run({}, "x")
        store.add_cell(run_id, measured(Cell("m", "null")))
        with pytest.raises(sqlite3.IntegrityError):
            store.add_cell(run_id, measured(Cell("m", "null")))
