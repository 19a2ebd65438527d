"""The results store: versioned schema, per-cell commits, raw samples kept."""

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.backends.null import NullBackend
from xpubench.core.cell import Cell, CellResult
from xpubench.core.measure import MeasureConfig, measure, stability
from xpubench.errors import UsageError
from xpubench.store import SCHEMA_VERSION, ResultStore


def measured(cell: Cell) -> CellResult:
    backend = NullBackend(script=[1e-3, 2e-3])
    samples = measure(backend.infer, [np.zeros((1, 1))], MeasureConfig(0, 0, 10, 0), backend.clock)
    return CellResult.from_samples(cell, samples, stability([samples.samples_ns], None, None), None, dataset="d")


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


def test_earlier_medians_come_from_runs_on_the_same_machine_and_software_only(tmp_path):
    here = {"cpu_model": "A", "logical_cpus": 2, "os": "linux", "python": "3.12", "packages": {"onnxruntime": "1"}}
    elsewhere = {**here, "packages": {"onnxruntime": "2"}}
    cell = Cell("m", "null", batch_size=4)
    with ResultStore(tmp_path) as store:
        runs = []
        for environment, request in ((here, {}), (elsewhere, {}), (here, {"pin": [0]}), (here, {}), (here, {})):
            run_id = store.start_run(environment, "xpubench run", request=request)
            store.add_cell(run_id, measured(cell))
            store.add_cell(run_id, CellResult.not_measured(Cell("m", "gone"), "unavailable", "not installed"))
            store.finish_run(run_id, "finished", 0.5)
            runs.append(run_id)
        # The other package version and the pinned run are no reruns of the last; the unavailable cell has none.
        assert store.earlier_medians(runs[-1], cell.key) == pytest.approx([1.5, 1.5])
        assert store.earlier_medians(runs[-1], Cell("m", "gone").key) == []
        assert store.earlier_medians(runs[1], cell.key) == []


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


# -- a store that is not what it should be: one line, exit 2, never a traceback -------------------

STORE_USER = """
import os, sys, time
import xpubench
from xpubench.core.cell import Cell, CellResult
from xpubench.store import ResultStore
"""
# A sweep's writes: it opens the store at the time given (seconds since the epoch), so that several
# open a new store at once, then commits `count` cells one by one.
WRITER = STORE_USER + """
folder, name, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))
with ResultStore(folder) as store:
    run_id = store.start_run({}, name)
    for i in range(count):
        store.add_cell(run_id, CellResult.not_measured(Cell(name, f"b{i}"), "unavailable", "test"))
        print(run_id, Cell(name, f"b{i}").key, flush=True)  # reported once committed
"""


def python_env() -> dict[str, str]:
    """The environment of a child process that imports this checkout's xpubench."""
    import os

    import xpubench

    src = str(Path(xpubench.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def stored_store(folder: Path, cells: int = 3) -> str:
    with ResultStore(folder) as store:
        run_id = store.start_run({"cpu_model": "test"}, "xpubench run")
        for i in range(cells):
            store.add_cell(run_id, measured(Cell("m", "null", batch_size=i + 1)))
        store.finish_run(run_id, "finished", 0.1)
    return run_id


def assert_one_line_usage_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_results_that_names_a_file_is_a_one_line_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("notes\n")
    with pytest.raises(UsageError, match="x.txt is a file, not a"):
        ResultStore(target)
    with pytest.raises(UsageError, match="x.txt is a file, not a"):
        ResultStore(target, create=False, readonly=True)
    assert target.read_text() == "notes\n"
    assert_one_line_usage_error(run_cli("show", "--results", str(target)), "x.txt is a file")


@pytest.mark.parametrize("damage", ["text", "header", "truncated", "foreign"])
def test_a_store_that_is_not_a_database_is_a_one_line_error_and_stays_as_it_was(tmp_path, damage):
    db = tmp_path / "xpubench.db"
    if damage == "text":
        db.write_text("my notes, not a database\n" * 50)
    elif damage == "foreign":  # another program's SQLite database: never add our tables to it
        other = sqlite3.connect(db)
        other.execute("CREATE TABLE notes (text TEXT)")
        other.commit()
        other.close()
    else:
        stored_store(tmp_path, cells=40)
        data = bytearray(db.read_bytes())
        assert data.startswith(b"SQLite format 3\x00") and len(data) > 8 * 4096
        if damage == "header":  # random bytes over the header: SQLite no longer knows the file
            data[:100] = np.random.default_rng(0).bytes(100)
        else:  # the last pages are gone (a copy cut short)
            data = data[: len(data) // 3]
        db.write_bytes(bytes(data))
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(UsageError, match=r"xpubench\.db (is not an xpubench results database|is damaged)") as exc:
            with ResultStore(tmp_path, create=not readonly, readonly=readonly) as store:
                store.cells(store.latest_run_id())
        assert "\n" not in str(exc.value) and "--results" in str(exc.value)
    for command in ("show", "report", "compare a b"):
        result = run_cli(*command.split(), "--results", str(tmp_path))
        assert_one_line_usage_error(result, "xpubench.db")
    assert db.read_bytes() == before  # nothing "repaired" away


def in_read_only_mount(folder: Path, command: str) -> subprocess.CompletedProcess:
    """Run a shell command where `folder` is a read-only mount (a private mount namespace: no trace
    left behind; root ignores permission bits, a read-only mount stops even root)."""
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" "{folder}" && {command}'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env=python_env(), timeout=300)


def read_only_mounts_work(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        result = in_read_only_mount(probe, f'! touch "{probe}/file" 2>/dev/null')
    except FileNotFoundError:  # no unshare
        return False
    return result.returncode == 0


def xpubench_cli(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "xpubench", *args))


def test_a_read_only_store_is_shown_reported_and_compared(tmp_path):
    if not read_only_mounts_work(tmp_path):
        pytest.skip("no read-only bind mounts here (unshare -rm)")
    folder = tmp_path / "archive"
    run_a = stored_store(folder)
    run_b = stored_store(folder)
    assert not list(folder.glob("*-wal")) and not list(folder.glob("*-shm"))  # a cleanly closed WAL store
    report = tmp_path / "report.html"
    commands = [
        xpubench_cli("show", "--results", str(folder), "--format", "json"),
        xpubench_cli("show", "--list", "--results", str(folder)),
        xpubench_cli("compare", run_a, run_b, "--json", "--results", str(folder)),
        xpubench_cli("report", run_b, "--html", str(report), "--results", str(folder)),
        shlex.join([sys.executable, "-c", f"import xpubench; print('rows', len(xpubench.load_results('{folder}')))"]),
    ]
    result = in_read_only_mount(folder, " && ".join(commands))
    assert result.returncode == 0, result.stderr
    shown, _ = json.JSONDecoder().raw_decode(result.stdout)
    assert shown["run_id"] == run_b and [r["batch_size"] for r in shown["cells"]] == [1, 2, 3]
    assert run_a in result.stdout and '"run_b"' in result.stdout
    assert report.stat().st_size > 0 and "rows 6" in result.stdout
    # The report's default place is the (read-only) results folder: say so in one line.
    result = in_read_only_mount(folder, xpubench_cli("report", "--results", str(folder)))
    assert_one_line_usage_error(result, "--html")
    # A writer never falls back to reading: it is told at once.
    writer = shlex.join([sys.executable, "-c", STORE_USER + f"ResultStore({str(folder)!r})"])
    result = in_read_only_mount(folder, writer)
    assert result.returncode != 0 and "cannot write to" in result.stderr and "read-only" in result.stderr


def test_a_read_only_store_left_with_its_wal_keeps_every_cell(tmp_path):
    """A writer killed before its checkpoint leaves cells in xpubench.db-wal only; a read-only reader
    must still see them (SQLite's immutable mode alone would not)."""
    if not read_only_mounts_work(tmp_path):
        pytest.skip("no read-only bind mounts here (unshare -rm)")
    folder = tmp_path / "archive"
    script = STORE_USER + f"""
with ResultStore({str(folder)!r}) as store:
    store._db.execute("PRAGMA wal_autocheckpoint = 0")
    run_id = store.start_run({{}}, "x")
    for i in range(5):
        store.add_cell(run_id, CellResult.not_measured(Cell("m", f"b{{i}}"), "unavailable", "test"))
    os._exit(0)  # no close, no checkpoint: the cells live in the WAL
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=python_env(), timeout=120)
    os.remove(folder / "xpubench.db-shm")  # as a copy of the folder without its shared-memory file
    assert (folder / "xpubench.db-wal").stat().st_size > 0
    result = in_read_only_mount(folder, xpubench_cli("show", "--results", str(folder), "--format", "json"))
    assert result.returncode == 0, result.stderr
    assert [r["backend"] for r in json.loads(result.stdout)["cells"]] == [f"b{i}" for i in range(5)]


# -- concurrent writers and kill -9 ---------------------------------------------------------------


def test_two_sweeps_writing_one_new_store_at_once_lose_nothing(tmp_path):
    folder, start = tmp_path / "results", str(time.time() + 2.0)  # both open the new store after their imports
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), name, "200", start],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
        for name in ("a", "b")
    ]
    outputs = [w.communicate(timeout=300) for w in writers]
    for writer, (_, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
    with ResultStore(folder, create=False, readonly=True) as store:
        runs = store.runs()
        assert sorted(r["command"] for r in runs) == ["a", "b"]
        assert [r["cells"] for r in runs] == [200, 200]
        stored = {(r["run_id"], key) for r in runs for key in store.cell_keys(r["run_id"])}
    reported = {tuple(line.split()) for out, _ in outputs for line in out.splitlines()}
    assert len(stored) == 400 and stored == reported


def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path):
    # Three processes open twenty new stores, each store by all three at the same moment.
    opener = STORE_USER + """
folder, start = sys.argv[1], float(sys.argv[2])
for round_ in range(20):
    time.sleep(max(0.0, start + 0.05 * round_ - time.time()))
    ResultStore(f"{folder}/r{round_}").close()
"""
    start = time.time() + 2.0  # after the imports
    openers = [subprocess.Popen([sys.executable, "-c", opener, str(tmp_path), str(start)], stderr=subprocess.PIPE,
                                text=True, env=python_env()) for _ in range(3)]
    for p in openers:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for round_ in range(20):
        db = sqlite3.connect(tmp_path / f"r{round_}" / "xpubench.db")
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


def test_a_writer_killed_during_its_commits_leaves_every_committed_cell(tmp_path):
    folder = tmp_path / "results"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "w", "100000", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
    reported = []
    for line in writer.stdout:  # the child is committing the next cells while we read
        reported.append(tuple(line.split()))
        if len(reported) == 150:
            writer.send_signal(signal.SIGKILL)
            break
    writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL, writer.stderr.read()
    reported += [tuple(line.split()) for line in writer.stdout.read().splitlines()]
    with ResultStore(folder, create=False, readonly=True) as store:
        run_id = store.latest_run_id()
        stored = store.cell_keys(run_id)
    assert {key for _, key in reported} <= stored and len(stored) >= 150
    with ResultStore(folder) as store:  # and a writer goes on where it stopped
        store.add_cell(run_id, CellResult.not_measured(Cell("after", "x"), "unavailable", "test"))
        assert len(store.cell_keys(run_id)) == len(stored) + 1


def test_a_migration_killed_half_way_is_done_again_on_the_next_open(tmp_path):
    """SIGKILL after the last migration's ALTER TABLE ran, before the schema version was written: the
    migration must roll back as a whole, so the next open applies it again instead of failing."""
    folder = tmp_path / "results"
    script = STORE_USER + f"""
import signal, sqlite3
connect = sqlite3.connect
def killing_connect(*args, **kwargs):
    db = connect(*args, **kwargs)
    altered = []
    def trace(sql):
        if altered:
            os.kill(os.getpid(), signal.SIGKILL)  # the statement after ALTER TABLE never completes
        altered.extend([sql] if sql.lstrip().upper().startswith("ALTER TABLE") else [])
    db.set_trace_callback(trace)
    return db
sqlite3.connect = killing_connect
ResultStore({str(folder)!r})
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=python_env(),
                           timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with ResultStore(folder) as store:
        run_id = store.start_run({}, "x", request={"matrix": []})
        assert store.run(run_id)["request"] == {"matrix": []}
