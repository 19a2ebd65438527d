"""SQLite store: a versioned schema, one row per cell committed the moment it is measured."""

from __future__ import annotations

import json
import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.core.cell import CellResult
from xpubench.errors import UsageError

DB_NAME = "xpubench.db"

# Ordered migrations: MIGRATIONS[i] takes the schema from version i to i + 1. Never edit one that
# has shipped; append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        status       TEXT NOT NULL,           -- running | finished | interrupted
        command      TEXT NOT NULL,
        environment  TEXT NOT NULL            -- JSON
    );
    CREATE TABLE cells (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id       TEXT NOT NULL REFERENCES runs(run_id),
        key          TEXT NOT NULL,
        status       TEXT NOT NULL,
        model        TEXT NOT NULL,
        backend      TEXT NOT NULL,
        device       TEXT NOT NULL,
        precision    TEXT NOT NULL,
        batch_size   INTEGER NOT NULL,
        threads      INTEGER NOT NULL,
        scenario     TEXT NOT NULL,
        median_ms    REAL,
        record       TEXT NOT NULL,           -- the cell's JSON record, without the environment
        samples_ns   BLOB,                    -- raw call times, little-endian int64
        measured_at  TEXT NOT NULL,
        UNIQUE (run_id, key)
    );
    """,
    # The run's resolved request (its matrix, time limit and pinning) as JSON, so `xpubench run
    # --resume` computes the same cells again; NULL for runs stored before.
    """
    ALTER TABLE runs ADD COLUMN request TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class ResultStore:
    """The results folder's database. Safe to read while another process writes (WAL)."""

    def __init__(self, folder: Path | str, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not self.path.exists():
            if not create:
                raise UsageError(f"no results in {self.folder}: run `xpubench run` first, or pass --results DIR")
            self.folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"{self.path} has schema version {version}, newer than this xpubench knows "
                f"({SCHEMA_VERSION}): upgrade xpubench"
            )
        for target in range(version, SCHEMA_VERSION):
            with self._db:
                self._db.executescript(MIGRATIONS[target])
                self._db.execute(f"PRAGMA user_version = {target + 1}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def start_run(
        self,
        environment: dict[str, Any],
        command: str,
        run_id: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> str:
        """A new run, `running`; `request` (JSON) is what `--resume` needs to finish it."""
        run_id = run_id or new_run_id()
        with self._db:
            self._db.execute(
                """INSERT INTO runs (run_id, started_at, status, command, environment, request)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (run_id, _now(), "running", command, json.dumps(environment),
                 json.dumps(request) if request is not None else None),
            )
        return run_id

    def resume_run(self, run_id: str, request: dict[str, Any] | None = None) -> None:
        """Mark a stored run `running` again (its environment notes when), optionally with a new request."""
        env = self.run(run_id)["environment"]
        env.setdefault("resumed_at", []).append(_now())
        with self._db:
            self._db.execute("UPDATE runs SET status = 'running', environment = ? WHERE run_id = ?",
                             (json.dumps(env), run_id))
            if request is not None:
                self._db.execute("UPDATE runs SET request = ? WHERE run_id = ?", (json.dumps(request), run_id))

    def add_cell(self, run_id: str, result: CellResult, extra: dict[str, Any] | None = None) -> None:
        """Commit one cell at once, so an interrupted sweep keeps everything already measured.
        `extra` joins the record (e.g. the worker's CPU affinity)."""
        record = result.as_dict()
        record.pop("environment")
        record.update(extra or {})
        c = result.cell
        samples = (
            np.asarray(result.samples_ns, dtype="<i8").tobytes() if result.samples_ns is not None else None
        )
        with self._db:
            self._db.execute(
                """INSERT INTO cells (run_id, key, status, model, backend, device, precision, batch_size,
                       threads, scenario, median_ms, record, samples_ns, measured_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    run_id,
                    c.key,
                    result.status,
                    c.model,
                    c.backend,
                    c.device,
                    c.precision,
                    c.batch_size,
                    c.threads,
                    c.scenario,
                    result.latency.median if result.latency else None,
                    json.dumps(record),
                    samples,
                    _now(),
                ),
            )

    def finish_run(self, run_id: str, status: str, load_after: float | None) -> None:
        env = self.run(run_id)["environment"]
        env["load_after"] = load_after
        with self._db:
            self._db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, environment = ? WHERE run_id = ?",
                (_now(), status, json.dumps(env), run_id),
            )

    # -- reading ---------------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            """SELECT r.run_id, r.started_at, r.finished_at, r.status, r.command,
                      COUNT(c.id) AS cells
               FROM runs r LEFT JOIN cells c ON c.run_id = r.run_id
               GROUP BY r.run_id ORDER BY r.started_at, r.rowid"""
        ).fetchall()
        return [dict(r) for r in rows]

    def latest_run_id(self) -> str:
        row = self._db.execute("SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1").fetchone()
        if row is None:
            raise UsageError(f"no runs stored in {self.folder}: run `xpubench run` first")
        return row["run_id"]

    def run(self, run_id: str) -> dict[str, Any]:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run_id!r} in {self.folder}: `xpubench show --list` lists the runs")
        run = dict(row)
        run["environment"] = json.loads(run["environment"])
        run["request"] = json.loads(run["request"]) if run.get("request") else None
        return run

    def cell_keys(self, run_id: str) -> set[str]:
        """The keys of the cells the run has stored."""
        rows = self._db.execute("SELECT key FROM cells WHERE run_id = ?", (run_id,)).fetchall()
        return {r["key"] for r in rows}

    def cells(self, run_id: str) -> list[dict[str, Any]]:
        """The run's cell records in the order they were measured, each with the run's environment."""
        environment = self.run(run_id)["environment"]
        rows = self._db.execute("SELECT record FROM cells WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        return [{**json.loads(r["record"]), "environment": environment} for r in rows]

    def samples(self, run_id: str, key: str) -> np.ndarray:
        row = self._db.execute(
            "SELECT samples_ns FROM cells WHERE run_id = ? AND key = ?", (run_id, key)
        ).fetchone()
        if row is None or row["samples_ns"] is None:
            return np.empty(0, dtype=np.int64)
        return np.frombuffer(row["samples_ns"], dtype="<i8")
