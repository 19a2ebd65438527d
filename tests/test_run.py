"""The orchestration room: each cell in a worker process of its own (crashes and hangs are failed rows), kill -9
then --resume, --pin, one session for run / study / benchmark(), one answer to "can this cell run here"."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.crashing_backend import REGISTRATION
from xpubench.backends import _entry_points
from xpubench.cli import main
from xpubench.core.measure import MeasureConfig
from xpubench.data.files import DataFile
from xpubench.errors import UsageError
from xpubench.run.matrix import Matrix, matrix_from_json, matrix_to_json
from xpubench.run.pins import format_cpus, halves, parse_cpus
from xpubench.store import ResultStore
from xpubench.store.db import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--runs", "20", "--min-time", "0.05", "--warmup-runs", "2", "--warmup-time", "0"]
FRAMEWORKS = ("onnxruntime", "tensorflow", "torch", "openvino", "ai_edge_litert", "keras", "onnx")




@pytest.fixture
def crashing(monkeypatch):
    """The test-only crashing backends, registered in this process and, by the environment, in workers."""
    monkeypatch.setenv("XPUBENCH_EXTRA_BACKENDS", REGISTRATION)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    _entry_points.cache_clear()
    yield
    _entry_points.cache_clear()


def live_workers(parent: int) -> list[int]:
    """Worker processes started by `parent` that are still alive (zombies do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"xpubench.run.worker" in args and str(parent).encode() in args[3:] and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by its new parent) is not alive."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until_gone(parent: int, seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := live_workers(parent)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def rows(results: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(results / "xpubench.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT id, run_id, key, status, measured_at, record FROM cells ORDER BY id").fetchall()


@pytest.mark.slow
def test_crashing_runtimes_are_failed_rows_and_the_sweep_goes_on(relu_onnx, tmp_path, crashing):
    args = ["run", str(relu_onnx), "--backend", "onnxruntime,segfault,abort,exit,edgetpu", "--batch", "2",
            "--pin", "0", "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST]
    # `xpubench run` as main() in a process of its own, which then names the ML frameworks it imported
    script = (f"import sys; from xpubench.cli import main; code = main({args!r}); "
              f"print('imported:', [m for m in {FRAMEWORKS!r} if m in sys.modules], file=sys.stderr); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stderr  # some cells failed or unavailable
    assert "imported: []" in out.stderr  # every runtime ran in the workers only
    cells = {c["backend"]: c for c in json.loads((tmp_path / "o.json").read_text())["cells"]}
    assert list(cells) == ["onnxruntime", "segfault", "abort", "exit", "edgetpu"]
    assert cells["onnxruntime"]["status"] == "ok" and cells["onnxruntime"]["latency_ms"]["median"] > 0
    assert cells["onnxruntime"]["fidelity"]["max_abs"] == 0.0  # the reference came from its own worker
    assert cells["segfault"]["status"] == "failed"
    assert cells["segfault"]["reason"].startswith("worker died: SIGSEGV (signal 11)"), cells["segfault"]["reason"]
    assert cells["abort"]["status"] == "failed"
    assert cells["abort"]["reason"].startswith("worker died: SIGABRT (signal 6)"), cells["abort"]["reason"]
    assert cells["exit"]["status"] == "failed" and "exited with code 3" in cells["exit"]["reason"]
    assert cells["edgetpu"]["status"] == "unavailable"  # no Edge TPU here: answered without a worker
    # --pin: every worker ran on CPU 0 only, and says so with its cell
    for backend in ("onnxruntime", "segfault", "abort", "exit"):
        assert cells[backend]["affinity"] == [0] and cells[backend]["threads"] == 1
        assert cells[backend]["worker"]["pid"] > 0
    assert cells["onnxruntime"]["worker"]["max_rss_mib"] > 0
    assert "SIGSEGV" in out.stdout  # the table says why


@pytest.mark.slow
def test_kill_9_mid_sweep_then_resume_measures_each_cell_exactly_once(relu_onnx, tmp_path):
    import h5py
    import numpy as np

    # --data as an HDF5 file whose arrays --x and --y name: the workers of the first run and of the
    # resumed one (started elsewhere: relative paths are the run's) must score the model on it.
    x = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["events/feats"] = x
        f["events/truth"] = x.argmax(axis=1).astype(np.int64)  # what the relu model's argmax gives
    results = tmp_path / "res"
    batches = ["1", "2", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpubench", "run", relu_onnx.name, "--backend", "onnxruntime",
         "--data", "d.h5", "--x", "events/feats", "--y", "events/truth",
         "--batch", ",".join(batches), "--runs", "20", "--min-time", "2", "--warmup-time", "0",
         "--results", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    stored: list = []
    while not stored and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if (results / "xpubench.db").exists():
            try:
                stored = rows(results)
            except sqlite3.OperationalError:
                stored = []
    assert len(stored) == 1, f"the run stored {len(stored)} cells before the kill"
    measuring: list[int] = []  # the next cell's worker, so the kill lands mid-sweep
    while not measuring and time.monotonic() < deadline and proc.poll() is None:
        measuring = live_workers(proc.pid)
    assert measuring, "no worker was running when the sweep was killed"
    proc.kill()  # SIGKILL: no handler runs, the run stays "running"
    proc.communicate(timeout=30)
    # At once: a worker left alone would finish its cell (2 s or more) before finding its parent gone
    assert wait_until_gone(proc.pid, 1.5) == [], "a worker outlived its sweep"
    # Its command line is gone first; the process itself a moment later (a dying process's memory is freed).
    gone_by = time.monotonic() + 1.5
    while any(alive(pid) for pid in measuring) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in measuring)
    run_id = stored[0]["run_id"]
    assert len(rows(results)) < len(batches)

    out = run_cli("run", "--resume", run_id, "--results", str(results), "--json", str(tmp_path / "o.json"))
    assert out.returncode == 0, out.stderr
    after = rows(results)
    assert sorted(r["key"] for r in after) == sorted(
        f"{relu_onnx.name}/onnxruntime/cpu/fp32/b{b}/t1/single-stream/end-to-end" for b in batches)
    for record in (json.loads(r["record"]) for r in after):
        assert record["dataset"] == "d.h5" and record["accuracy"]["value"] == 1.0, record
    # the cells stored before the kill are the same rows, untouched; none was measured again
    before = {r["key"]: (r["id"], r["measured_at"], r["record"]) for r in stored}
    assert all((r["id"], r["measured_at"], r["record"]) == before[r["key"]] for r in after if r["key"] in before)
    assert {r["run_id"] for r in after} == {run_id} and all(r["status"] == "ok" for r in after)
    shown = json.loads((tmp_path / "o.json").read_text())
    assert shown["run_id"] == run_id and len(shown["cells"]) == len(batches)
    with ResultStore(results, create=False) as store:
        run = store.run(run_id)
        assert run["status"] == "finished" and len(run["environment"]["resumed_at"]) == 1
    # resuming a finished run measures nothing
    assert main(["run", "--resume", run_id, "--results", str(results)]) == 0
    assert [r["id"] for r in rows(results)] == [r["id"] for r in after]


@pytest.mark.slow
def test_a_cell_past_its_time_limit_is_a_failed_row_and_its_worker_is_killed(relu_onnx, tmp_path, crashing):
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpubench", "run", str(relu_onnx), "--backend", "hang", "--batch", "2",
         "--cell-timeout", "2", "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 4, stderr  # no cell measured ok
    (cell,) = json.loads((tmp_path / "o.json").read_text())["cells"]
    assert cell["status"] == "failed" and cell["reason"] == "worker exceeded the 2 s limit"
    assert 2 <= cell["worker"]["wall_s"] < 30
    assert live_workers(proc.pid) == []


@pytest.mark.slow
def test_benchmark_from_python_runs_its_scenarios_in_workers(relu_onnx, tmp_path):
    from xpubench import benchmark

    cells = benchmark(relu_onnx, backends=["onnxruntime"], batch_sizes=[1], scenarios=["server"], qps=50,
                      bound_ms=250, results=tmp_path / "r", min_runs=10, min_time_s=0.2, warmup_runs=2)
    (cell,) = cells
    assert cell["status"] == "ok" and cell["scenario"] == "server", cell["reason"]
    assert cell["scenario_result"]["qps"] == 50 and cell["scenario_result"]["bound_ms"] == 250
    assert cell["worker"]["pid"] != os.getpid()
    with ResultStore(tmp_path / "r", create=False) as store:  # --resume could compute the same cells again
        (listed,) = store.runs()
        run = store.run(listed["run_id"])
        assert run["status"] == "finished"
        (stored,) = run["request"]["matrices"]
        assert matrix_from_json(stored).scenarios == ("server",) and matrix_from_json(stored).scenario.qps == 50


@pytest.mark.slow
def test_preparing_a_model_converts_what_its_cells_will_load(relu_onnx, tmp_path):
    from xpubench.core.cell import Cell
    from xpubench.run.launcher import ProcessLauncher
    from xpubench.run.sweep import Sweep
    from xpubench.run.tasks import load_workload

    wanted = [Cell(str(relu_onnx), "onnxruntime", precision=p) for p in ("int8", "fp16")]
    unknown = Cell(str(relu_onnx), "no-such-backend")  # screened: answered without converting anything
    matrix = Matrix(models=(str(relu_onnx),), backends=("onnxruntime",))
    with ProcessLauncher() as launcher, Sweep(launcher) as sweep:
        prepared = sweep.prepare(matrix, str(relu_onnx), cells=[*wanted, unknown])
        assert list(prepared.screened) == [unknown.key]
        workload = load_workload(prepared, print)
    # The prepare worker answered, then converted: no cell has run, yet each finds its artifact made.
    assert workload.artifacts.made("onnx:int8") and workload.artifacts.made("onnx:fp16")
    assert not workload.artifacts.made("onnx:int8-dynamic")  # which no cell asked for


@pytest.mark.slow
def test_a_zoo_model_trains_in_a_worker_of_its_own_with_onednn(tmp_path, monkeypatch):
    from xpubench.models.training import model_dir, untrained
    from xpubench.models.zoo import ZOO
    from xpubench.run.launcher import ProcessLauncher
    from xpubench.run.sweep import Sweep

    monkeypatch.setenv("XPUBENCH_CACHE", str(tmp_path / "cache"))
    assert untrained("dense1:tiny")
    with ProcessLauncher() as launcher, Sweep(launcher) as sweep:
        prepared = sweep.prepare(Matrix(models=("dense1:tiny",), backends=("onnxruntime",)), "dense1:tiny")
    assert not isinstance(prepared, str), prepared
    meta = json.loads((model_dir(ZOO["dense1"], "tiny") / "meta.json").read_text())
    assert meta["onednn"] is True and not untrained("dense1:tiny")


def test_cpu_lists_parse_and_print():
    allowed = os.sched_getaffinity(0)
    first = min(allowed)
    assert parse_cpus(str(first)) == (first,)
    if {0, 1} <= allowed:
        assert parse_cpus("0-1") == parse_cpus("1,0") == (0, 1)
    assert format_cpus([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    for bad in ("x", "3-1", "-1", ""):
        with pytest.raises(ValueError, match="is not a CPU list"):
            parse_cpus(bad)
    with pytest.raises(ValueError, match="may run on CPUs"):
        parse_cpus(str(max(allowed) + 1000))


def test_halves_share_no_core_where_they_can():
    siblings = {cpu: f"{cpu % 4},{cpu % 4 + 4}" for cpu in range(8)}  # cores 0-3, their second threads 4-7
    assert halves(tuple(range(8)), siblings.__getitem__) == ((0, 4, 1, 5), (2, 6, 3, 7))
    assert halves((0, 1), lambda cpu: "0-1") == ((0,), (1,))  # two threads of one core: split them still
    assert halves((0, 1, 2), str) == ((0,), (1, 2)) and halves((3,)) == (None, None)


def test_a_matrix_survives_its_json_round_trip(tmp_path):
    matrix = Matrix(
        models=("dense1", "model.onnx"),
        backends=("onnxruntime", "litert:xnnpack=off"),
        batch_sizes=(1, 8),
        threads=(1, 2),
        precisions=("fp32", "fixed<16,6>"),
        devices=None,
        measure=MeasureConfig(min_runs=7, min_time_s=0.1, ci_target=0.02),
        tdp_w=15.0,
        data=DataFile(tmp_path / "d.h5", x="images", y="labels", y_given=True),
        shapes=(("in", (16,)),),
    )
    stored = json.loads(json.dumps(matrix_to_json(matrix)))
    assert matrix_from_json(stored) == matrix
    assert matrix_from_json({**stored, "no_such_field": 1, "data": None}) == Matrix(
        **{**matrix.__dict__, "data": None})


@pytest.mark.parametrize("args, expected", [
    (["--resume", "nosuchrun"], "no run 'nosuchrun'"),
    (["--resume", "nosuchrun", "dense1"], "drop MODEL"),
    (["--resume", "nosuchrun", "--batch", "4"], "drop --batch"),
    (["dense1", "--pin", "zero"], "--pin 'zero'"),
    (["dense1", "--cell-timeout", "0"], "--cell-timeout: a cell's time limit must be a positive"),
])
def test_bad_resume_pin_and_timeout_are_one_line_and_exit_2(args, expected, tmp_path, capsys):
    ResultStore(tmp_path / "r").close()
    assert main(["run", *args, "--results", str(tmp_path / "r")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and expected in stderr, stderr


def test_a_run_whose_sweep_is_alive_is_not_resumed():
    import socket

    from xpubench.run.session import _check_not_running, process_start

    sweep = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)", "xpubench"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert sweep.stdout.readline() == "up\n"  # running, its command line its own
        request = {"pid": sweep.pid, "started": process_start(sweep.pid), "host": socket.gethostname()}
        with pytest.raises(UsageError, match=f"still running \\(process {sweep.pid}\\)"):
            _check_not_running("r1", "running", request)
        _check_not_running("r1", "interrupted", request)  # its status says it stopped
        _check_not_running("r1", "running", {**request, "started": request["started"] - 1})  # a reused pid
    finally:
        sweep.kill()
        sweep.wait()
        sweep.stdout.close()
    _check_not_running("r1", "running", request)  # killed -9: still "running", but gone


def test_a_run_stored_before_resume_existed_is_migrated_and_refused(tmp_path, capsys):
    db = sqlite3.connect(tmp_path / "xpubench.db")
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO runs VALUES ('old', '2026-01-01T00:00:00+00:00', NULL, 'interrupted', 'x', '{}')")
    db.commit()
    db.close()
    with ResultStore(tmp_path) as store:
        assert store.run("old")["request"] is None
    assert main(["run", "--resume", "old", "--results", str(tmp_path)]) == 2
    assert "stored without its request" in capsys.readouterr().err


@pytest.mark.slow
def test_an_mlperf_cell_without_loadgen_is_unavailable_and_starts_no_worker(relu_onnx, tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "mlperf_loadgen.py").write_text("raise ImportError('LoadGen blocked for this test')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")])))
    out = run_cli("run", str(relu_onnx), "--backend", "onnxruntime", "--batch", "1",
                  "--scenario", "mlperf-singlestream,single-stream", "--json", str(tmp_path / "o.json"),
                  "--results", str(tmp_path / "r"), *FAST)
    assert out.returncode == 3, out.stderr  # one cell unavailable
    cells = {c["scenario"]: c for c in json.loads((tmp_path / "o.json").read_text())["cells"]}
    mlperf = cells["mlperf-singlestream"]
    assert mlperf["status"] == "unavailable" and "LoadGen cannot be imported" in mlperf["reason"], mlperf["reason"]
    assert mlperf["worker"] is None and mlperf["affinity"] is None  # answered by the screening, no worker
    assert cells["single-stream"]["status"] == "ok" and cells["single-stream"]["worker"]["pid"] > 0


def test_run_study_and_benchmark_share_the_one_session():
    """The three front ends start their runs only through run.session.Session, none through the store."""
    for module in ("cli/run.py", "cli/study_seeds.py", "api.py"):
        source = (ROOT / "src" / "xpubench" / module).read_text()
        assert "Session.start(" in source, module
        assert "start_run(" not in source and "finish_run(" not in source, module


@pytest.fixture
def importable_tests(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_the_process_launcher_keeps_a_warm_worker_per_key_and_a_fresh_one_otherwise(importable_tests):
    from tests.launcher_tasks import Die, Pid, Sleep
    from xpubench.run.launcher import FAILED, RESULT, ProcessLauncher

    said: list[str] = []
    with ProcessLauncher(warm=2) as launcher:
        first = launcher.run(Pid("a"), 60, said.append)
        again = launcher.run(Pid("a"), 60)
        other = launcher.run(Pid("b"), 60)
        fresh = [launcher.run(Pid(), 60).value for _ in range(2)]
        assert first.kind == again.kind == RESULT and first.value == again.value  # the warm worker of key a
        assert other.value != first.value and len(set(fresh)) == 2 and first.value not in fresh
        assert said == [f"pid {first.value}"] and first.info.pid == first.value
        # A warm worker that overruns its limit is killed; the key's next task gets a new one.
        late = launcher.run(Sleep(30, "a"), 1)
        assert late.kind == FAILED and late.value == "worker exceeded the 1 s limit"
        assert launcher.run(Pid("a"), 60).value not in (first.value, late.info.pid)
        # One that dies is a failure with its reason, and is not kept.
        died = launcher.run(Die("b"), 60)
        assert died.kind == FAILED and "exited with code 7" in died.value
        assert launcher.run(Pid("b"), 60).value != died.info.pid
        warm = [w.pid for w in launcher._idle.values()]
    assert warm and not any(alive(pid) for pid in warm)  # closing the launcher lets its warm workers go


@pytest.mark.slow
def test_repeats_interleave_are_stored_as_they_come_and_combine(relu_onnx, tmp_path):
    out = run_cli("run", str(relu_onnx), "--backend", "onnxruntime", "--batch", "1,2", "--repeats", "3",
                  "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST)
    assert out.returncode == 0, out.stderr
    cells = json.loads((tmp_path / "o.json").read_text())["cells"]
    assert [c["batch_size"] for c in cells] == [1, 2]  # the request's order, though both finish in the last round
    for c in cells:
        repeats = c["repeats"]
        assert repeats["count"] == 3 and len(repeats["medians_ms"]) == 3 and sum(repeats["runs"]) == c["runs"]
        lat = c["latency_ms"]
        assert lat["median"] == pytest.approx(sum(repeats["medians_ms"]) / 3)
        assert lat["ci95_low"] <= min(repeats["medians_ms"]) and max(repeats["medians_ms"]) <= lat["ci95_high"]
        assert c["stop_reason"].startswith("3 repeats of at least 7 runs")  # --runs 20 shared by 3 repeats
        assert set(c["stability"]) == {"tolerance", "interval_halfwidth", "window_drift", "tail_ratio"}
    with sqlite3.connect(tmp_path / "r" / "xpubench.db") as db:
        order = [(key.split("/")[-4], repeat)
                 for key, repeat in db.execute("SELECT key, repeat FROM repeats ORDER BY rowid")]
    assert order == [("b1", 0), ("b2", 0), ("b1", 1), ("b2", 1), ("b1", 2), ("b2", 2)]  # round by round


@pytest.mark.slow
def test_an_interval_target_adds_repeats_until_it_holds_or_the_time_is_spent(relu_onnx, tmp_path):
    def run(repeats, *args):
        out = run_cli("run", str(relu_onnx), "--backend", "onnxruntime", "--batch", "1", "--repeats", repeats,
                      "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"),
                      "--runs", "20", "--min-time", "0.2", "--warmup-runs", "2", "--warmup-time", "0", *args)
        assert out.returncode == 0, out.stderr
        (cell,) = json.loads((tmp_path / "o.json").read_text())["cells"]
        return cell

    loose = run("3", "--ci-target", "0.9")
    assert loose["repeats"]["count"] == 3 and loose["stop_reason"].startswith("95 % interval of the median within")
    tight = run("2", "--ci-target", "0.0000001", "--max-time", "0.6")
    assert tight["stop_reason"].startswith("reached the maximum time of 0.6 s with the interval at")
    assert 3 <= tight["repeats"]["count"] <= 20


@pytest.mark.slow
def test_compute_timing_on_every_backend_that_separates_it(tmp_path):
    out = run_cli("run", "dense1", "--backend", "onnxruntime,openvino,litert,torch,tensorflow", "--batch", "1,4",
                  "--timing", "compute", "--scenario", "single-stream,server", "--qps", "100", "--repeats", "1",
                  "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST)
    assert out.returncode == 3, out.stderr  # the server cells are unavailable
    cells = json.loads((tmp_path / "o.json").read_text())["cells"]
    assert {c["timing"] for c in cells} == {"compute"}
    for c in cells:
        if c["scenario"] == "server":
            assert c["status"] == "unavailable" and "--timing compute applies to" in c["reason"], c
        elif c["backend"] == "tensorflow":
            assert c["status"] == "unavailable" and "cannot time compute apart from" in c["reason"], c
        else:
            assert c["status"] == "ok" and c["latency_ms"]["median"] > 0, (c["backend"], c["reason"])
            assert c["fidelity"]["max_abs"] < 1e-3  # scored end to end as ever: the outputs are the model's
            clock = "InferRequest.latency" if c["backend"] == "openvino" else "host"
            assert c["details"]["compute_clock"] == clock, c["details"]
    assert "timing" in out.stdout.splitlines()[0]  # the table names the timing when it is not end-to-end
