"""SQLite store: a versioned schema, one row per cell committed the moment it is measured."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    # Each repeat of a cell (a worker session of its own), stored as it comes, so that an interrupted
    # run keeps the repeats of the cells it had not finished; the cell's row combines them.
    """
    CREATE TABLE repeats (
        run_id       TEXT NOT NULL REFERENCES runs(run_id),
        key          TEXT NOT NULL,
        repeat       INTEGER NOT NULL,
        record       TEXT NOT NULL,           -- the repeat's JSON record
        samples_ns   BLOB,                    -- its raw call times, little-endian int64
        measured_at  TEXT NOT NULL,
        UNIQUE (run_id, key, repeat)
    );
    -- A cell's place in its run's request: repeats finish cells out of order, the run lists them in order.
    ALTER TABLE cells ADD COLUMN position INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _statements(script: str) -> list[str]:
    """A migration's statements one by one (executescript would commit each on its own)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()!r}")
    return statements


def _busy(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _blob(samples_ns: Any) -> bytes | None:
    return np.asarray(samples_ns, dtype="<i8").tobytes() if samples_ns is not None else None


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# SQLite waits this long for another writer's lock before a statement gives up (busy timeout);
# a transaction that still meets SQLITE_BUSY is tried again until WRITE_PATIENCE_S has passed.
BUSY_TIMEOUT_S = 10.0
WRITE_PATIENCE_S = 60.0


class ResultStore:
    """The results folder's database. Safe to read while other processes write (WAL), and for
    several processes to write at once: each transaction takes the write lock first (BEGIN
    IMMEDIATE) and waits for it. `readonly=True` opens a store that cannot be written (a read-only
    file, folder or mount) for reading only; writers never fall back to it."""

    def __init__(self, folder: Path | str, create: bool = True, readonly: bool = False) -> None:
        if readonly and create:
            raise ValueError("a read-only store cannot be created: pass create=False")
        folder = Path(folder)
        if folder.name == DB_NAME and folder.is_file():  # the database itself rather than its folder
            folder = folder.parent
        self.folder = folder
        self.path = folder / DB_NAME
        self.readonly = readonly
        self._copy: Path | None = None  # a temporary copy read in place of a read-only store, see _open_readonly
        if folder.exists() and not folder.is_dir():
            raise UsageError(
                f"--results {folder} is a file, not a folder: give the folder that holds {DB_NAME}, or a new folder"
            )
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a folder, not a database: give another --results folder or move it away")
        if not self.path.exists():
            if not create:
                raise UsageError(f"no results in {self.folder}: run `xpubench run` first, or pass --results DIR")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create {folder}: {exc.strerror}; give --results a folder you can write to"
                ) from exc
        self._db: sqlite3.Connection | None = None
        try:
            with self._errors("opening"):
                if readonly:
                    self._open_readonly()
                else:
                    self._open_for_writing()
        except BaseException:
            self.close()
            raise

    def _open_for_writing(self) -> None:
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE ... COMMIT), not the module's.
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._check_is_a_database()
        # Before WAL mode rewrites its header. The version and the tables are read in one snapshot: a store
        # another process is creating at this moment is not taken for someone else's database.
        self._retry(lambda: self._db.execute("BEGIN"))
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] == 0:
                self._refuse_foreign_tables()
        finally:
            self._db.execute("COMMIT")
        # FULL: a commit is on disk before add_cell returns, so a killed process or a lost power
        # keeps every cell committed before.
        self._db.execute("PRAGMA synchronous=FULL")
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            # Changing the journal mode takes the write lock: wait for a writer that made the file first.
            self._retry(lambda: self._db.execute("PRAGMA journal_mode=WAL").fetchone())
        self._migrate()

    def _open_readonly(self) -> None:
        uri = self.path.resolve().as_uri()
        try:
            self._connect_readonly(f"{uri}?mode=ro")
        except sqlite3.OperationalError as exc:
            # A WAL database opens read-only only where SQLite can create (or find) its -shm file: a
            # store on a read-only mount or in a read-only folder fails here.
            if exc.sqlite_errorname != "SQLITE_CANTOPEN" or not os.access(self.path, os.R_OK):
                raise
            wal = self.path.with_name(DB_NAME + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                # Cells committed but not yet checkpointed live in the -wal file, which immutable=1
                # would ignore: read a copy of the pair instead, where SQLite can replay the log.
                self._copy = Path(tempfile.mkdtemp(prefix="xpubench-store-"))
                shutil.copy2(self.path, self._copy / DB_NAME)
                shutil.copy2(wal, self._copy / wal.name)
                self._connect_readonly((self._copy / DB_NAME).as_uri() + "?mode=ro")
            else:  # everything is in the database file, and nobody can write it: nothing can change under us
                self._connect_readonly(f"{uri}?mode=ro&immutable=1")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(self._newer_schema(version))
        if version == 0:
            self._refuse_foreign_tables()
            raise UsageError(f"no results in {self.folder}: run `xpubench run` first, or pass --results DIR")

    def _connect_readonly(self, uri: str) -> None:
        if self._db is not None:
            self._db.close()
        self._db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._check_is_a_database()

    def _check_is_a_database(self) -> None:
        """Read the schema now, so a file that is not a database fails here rather than mid-sweep."""
        self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _refuse_foreign_tables(self) -> None:
        """A database of schema version 0 with tables is someone else's: never add ours to it."""
        if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise UsageError(
                f"{self.path} is not an xpubench results database (it holds other tables): "
                "give another --results folder or move the file away"
            )

    def _newer_schema(self, version: int) -> str:
        return (f"{self.path} has schema version {version}, newer than this xpubench knows "
                f"({SCHEMA_VERSION}): upgrade xpubench")

    def _migrate(self) -> None:
        """Bring the schema up to date in one transaction under the write lock: two processes opening
        a new store at once migrate it once, and a killed migration leaves the schema as it was."""
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(self._newer_schema(version))
            if version == 0:
                self._refuse_foreign_tables()
            for target in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[target]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target + 1}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: the write lock is taken (waiting for other writers) before the
        first statement, so no statement of ours meets a lock half-way; a BEGIN or COMMIT that still
        meets SQLITE_BUSY is tried again."""
        self._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        try:
            self._retry(lambda: self._db.execute("COMMIT"))
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _retry(self, statement: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WRITE_PATIENCE_S
        pause = 0.01
        while True:
            try:
                return statement()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Every SQLite failure but a programming error becomes one line that names the file and what to do."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.DatabaseError as exc:
            raise UsageError(self._explain(exc, doing)) from exc
        except OSError as exc:  # copying a read-only store's log
            raise UsageError(f"cannot read {self.path} ({exc.strerror}) while {doing}: "
                             "check that the folder and its files can be read") from exc

    def _explain(self, exc: sqlite3.DatabaseError, doing: str) -> str:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name == "SQLITE_NOTADB":
            return (f"{self.path} is not an xpubench results database ({exc}): "
                    "give another --results folder or move the file away")
        if name.startswith("SQLITE_CORRUPT"):
            return (f"{self.path} is damaged ({exc}): give another --results folder or move the file away "
                    f"(`sqlite3 {self.path} .recover` may save its cells)")
        if name.startswith("SQLITE_READONLY") or (name.startswith("SQLITE_CANTOPEN") and not self.readonly):
            return (f"cannot write to {self.path}: read-only ({exc}); give --results a folder you can write to "
                    "(show, report and compare can read this one)")
        if _busy(exc):
            return (f"{self.path} stayed locked by another process for over {WRITE_PATIENCE_S:.0f} s ({exc}) while "
                    f"{doing}: wait for it to finish, or give another --results folder")
        if name.startswith("SQLITE_CANTOPEN"):
            return f"cannot open {self.path} ({exc}): check that the file and its folder can be read"
        if name.startswith("SQLITE_FULL"):
            return f"cannot write to {self.path}: the disk is full ({exc}); free some space and run again"
        return (f"{self.path}: {exc} ({name or type(exc).__name__}) while {doing}: check the file, or give "
                "another --results folder")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

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
        with self._errors("starting a run"), self._transaction():
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
        with self._errors("resuming a run"), self._transaction():
            self._db.execute("UPDATE runs SET status = 'running', environment = ? WHERE run_id = ?",
                             (json.dumps(env), run_id))
            if request is not None:
                self._db.execute("UPDATE runs SET request = ? WHERE run_id = ?", (json.dumps(request), run_id))

    def add_cell(self, run_id: str, result: CellResult, extra: dict[str, Any] | None = None) -> None:
        """Commit one cell at once, so an interrupted sweep keeps everything already measured.
        `extra` joins the record (e.g. the worker's CPU affinity)."""
        record = result.as_dict()
        record.pop("environment")
        self.add_record(run_id, {**record, **(extra or {})}, result.samples_ns)

    def add_record(
        self, run_id: str, record: dict[str, Any], samples_ns: Any = None, position: int | None = None
    ) -> None:
        """Commit one cell's JSON record (as CellResult.as_dict writes it, without the environment) and its
        raw call times; `position` is its place in the run's request (the order `cells` lists them in)."""
        latency = record.get("latency_ms") or {}
        with self._errors("storing a cell"), self._transaction():
            self._db.execute(
                """INSERT INTO cells (run_id, key, status, model, backend, device, precision, batch_size,
                       threads, scenario, median_ms, record, samples_ns, measured_at, position)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    run_id,
                    record["key"],
                    record["status"],
                    record["model"],
                    record["backend"],
                    record["device"],
                    record["precision"],
                    record["batch_size"],
                    record["threads"],
                    record["scenario"],
                    latency.get("median"),
                    json.dumps(record),
                    _blob(samples_ns),
                    _now(),
                    position,
                ),
            )

    def add_repeat(self, run_id: str, key: str, repeat: int, record: dict[str, Any], samples_ns: Any) -> None:
        """Commit one repeat of a cell that is not finished yet."""
        with self._errors("storing a repeat"), self._transaction():
            self._db.execute(
                "INSERT INTO repeats (run_id, key, repeat, record, samples_ns, measured_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, key, repeat, json.dumps(record), _blob(samples_ns), _now()),
            )

    def finish_run(self, run_id: str, status: str, load_after: float | None) -> None:
        env = self.run(run_id)["environment"]
        env["load_after"] = load_after
        with self._errors("finishing a run"), self._transaction():
            self._db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, environment = ? WHERE run_id = ?",
                (_now(), status, json.dumps(env), run_id),
            )

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._errors("reading"):
            return self._db.execute(sql, params).fetchall()

    def runs(self) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT r.run_id, r.started_at, r.finished_at, r.status, r.command,
                      COUNT(c.id) AS cells
               FROM runs r LEFT JOIN cells c ON c.run_id = r.run_id
               GROUP BY r.run_id ORDER BY r.started_at, r.rowid"""
        )
        return [dict(r) for r in rows]

    def latest_run_id(self) -> str:
        rows = self._read("SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1")
        if not rows:
            raise UsageError(f"no runs stored in {self.folder}: run `xpubench run` first")
        return rows[0]["run_id"]

    def run(self, run_id: str) -> dict[str, Any]:
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise UsageError(f"no run {run_id!r} in {self.folder}: `xpubench show --list` lists the runs")
        return _parsed_run(rows[0])

    def cell_keys(self, run_id: str) -> set[str]:
        """The keys of the cells the run has stored."""
        rows = self._read("SELECT key FROM cells WHERE run_id = ?", (run_id,))
        return {r["key"] for r in rows}

    def cells(self, run_id: str) -> list[dict[str, Any]]:
        """The run's cell records in the order of its request (cells stored without a place: in the order they
        were stored), each with the run's environment."""
        environment = self.run(run_id)["environment"]
        rows = self._read("SELECT record FROM cells WHERE run_id = ? ORDER BY COALESCE(position, id), id", (run_id,))
        return [{**json.loads(r["record"]), "environment": environment} for r in rows]

    def earlier_medians(self, run_id: str, key: str, limit: int = 10) -> list[float]:
        """The medians (ms) of cell `key` in other runs on the same machine and software as `run_id` (`_setup`),
        newest first, at most `limit`: the spread between runs, which a run's own repeats cannot see."""
        setup = _setup(self.run(run_id))
        rows = self._read(
            """SELECT c.median_ms, r.* FROM cells c JOIN runs r ON r.run_id = c.run_id
               WHERE c.key = ? AND c.status = 'ok' AND c.run_id != ? AND c.median_ms IS NOT NULL
               ORDER BY c.id DESC LIMIT ?""",
            (key, run_id, limit * 5),
        )
        found = [float(r["median_ms"]) for r in rows if _setup(_parsed_run(r)) == setup]
        return found[:limit]

    def repeats(self, run_id: str) -> dict[str, list[tuple[dict[str, Any], np.ndarray]]]:
        """The stored repeats of the run's cells, by cell key, in repeat order: (record, raw call times)."""
        rows = self._read("SELECT key, record, samples_ns FROM repeats WHERE run_id = ? ORDER BY key, repeat",
                          (run_id,))
        found: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = {}
        for r in rows:
            samples = np.frombuffer(r["samples_ns"], dtype="<i8") if r["samples_ns"] is not None else np.empty(0)
            found.setdefault(r["key"], []).append((json.loads(r["record"]), samples))
        return found

    def samples(self, run_id: str, key: str) -> np.ndarray:
        rows = self._read("SELECT samples_ns FROM cells WHERE run_id = ? AND key = ?", (run_id, key))
        if not rows or rows[0]["samples_ns"] is None:
            return np.empty(0, dtype=np.int64)
        return np.frombuffer(rows[0]["samples_ns"], dtype="<i8")


def _parsed_run(row: sqlite3.Row) -> dict[str, Any]:
    """A runs row with its environment and request read from their JSON."""
    run = dict(row)
    run["environment"] = json.loads(run["environment"])
    run["request"] = json.loads(run["request"]) if run.get("request") else None
    return run


def _setup(run: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two runs' figures of a cell comparable as reruns: the CPU, OS, Python, package versions, the
    variables that size thread pools, and the CPUs the cells were pinned to."""
    environment, request = run["environment"], run.get("request") or {}
    return (
        environment.get("cpu_model"), environment.get("logical_cpus"), environment.get("os"),
        environment.get("python"), json.dumps(environment.get("packages"), sort_keys=True),
        json.dumps((environment.get("settings") or {}).get("variables"), sort_keys=True), request.get("pin"),
    )
