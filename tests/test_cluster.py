"""A sweep fanned out over a real Dask cluster on 127.0.0.1: a `dask scheduler` and `dask worker` processes (one
offering a `gpu` resource), a worker killed mid-run, resources nobody offers, and `--cluster local:2` against a
plain local run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from xpubench.run.ports import free_ports

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--runs", "5", "--min-time", "0.01", "--warmup-runs", "1", "--warmup-time", "0"]


def environment() -> dict[str, str]:
    """This process's environment (HOME and caches from conftest), with this checkout's sources first: the
    scheduler, the workers and the workers' cell processes must import the xpubench under test."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")]))
    return env



@contextlib.contextmanager
def dask_cluster(tmp: Path, workers: dict[str, str | None]) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """A scheduler and one `--nthreads 1` worker per name (with its --resources), all stopped at the end."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    started: list[subprocess.Popen] = []
    named: dict[str, subprocess.Popen] = {}

    def start(args: list[str], log: str) -> subprocess.Popen:
        with (tmp / log).open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                                    env=environment(), start_new_session=True)
        started.append(proc)
        return proc

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
              "scheduler.log")
        for name, resources in workers.items():
            # No nanny: the process killed below is the worker itself, not a parent that would restart it.
            named[name] = start(["worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", *(["--resources", resources] if resources else [])],
                                f"worker-{name}.log")
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(len(workers), timeout=60)
        yield address, named
    finally:
        for proc in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def stored(results: Path) -> list[dict]:
    """The stored cells' records, with key and status."""
    db = results / "xpubench.db"
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            found = conn.execute("SELECT key, status, record FROM cells ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # the schema is being made
            return []
    return [{"key": key, "status": status, **json.loads(record)} for key, status, record in found]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    with dask_cluster(tmp_path_factory.mktemp("dask"), {"plain": None, "gpu": "gpu=1"}) as found:
        yield found


def test_a_cell_goes_to_the_worker_with_its_resource_and_one_nobody_offers_is_unavailable(
    cluster, relu_onnx, tmp_path
):
    address, _ = cluster
    done = run_cli("run", str(relu_onnx), "--backend", "onnxruntime", "--device", "cpu,cuda,edgetpu",
                   "--batch", "1", *FAST, "--cluster", address, "--results", str(tmp_path / "r"), timeout=120)
    assert done.returncode == 3, done.stderr  # the edgetpu cell is unavailable
    cells = {c["device"]: c for c in stored(tmp_path / "r")}
    assert set(cells) == {"cpu", "cuda", "edgetpu"}
    assert cells["cpu"]["status"] == "ok"
    # Loaded from the worker's own cache, where the task's bytes were written, not from the path given here.
    assert "/received/" in cells["cpu"]["artifact"]
    # The cuda cell asked for a gpu: only that worker offers one. It has no CUDA device, so its own
    # process answers `unavailable`, but it ran there.
    assert cells["cuda"]["worker"]["node"] == "gpu"
    assert cells["cuda"]["worker"]["environment"]["python"]
    assert cells["cuda"]["status"] == "unavailable"
    assert cells["edgetpu"]["status"] == "unavailable"
    assert cells["edgetpu"]["worker"] is None
    assert "no worker of the cluster" in cells["edgetpu"]["reason"] and "edgetpu=1" in cells["edgetpu"]["reason"]


def test_a_worker_killed_mid_run_loses_no_cell_and_stores_none_twice(cluster, relu_onnx, tmp_path):
    address, workers = cluster
    results = tmp_path / "r"
    batches = ",".join(str(b) for b in range(1, 11))
    with (tmp_path / "run.log").open("w+") as log:
        proc = subprocess.Popen(
            # One repeat a cell: each cell is one task, so the one the killed worker had runs again, whole.
            [sys.executable, "-m", "xpubench", "run", str(relu_onnx), "--backend", "onnxruntime", "--batch", batches,
             "--threads", "1,2,3", *FAST, "--repeats", "1", "--cluster", address, "--results", str(results)],
            stdout=subprocess.DEVNULL, stderr=log, env=environment(),
        )
        try:
            deadline = time.monotonic() + 120
            while len(stored(results)) < 4 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() is None, "the run ended before the worker could be killed"
            workers["plain"].send_signal(signal.SIGKILL)  # while both workers measure a cell
            assert proc.wait(180) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        log.seek(0)
        said = log.read()
    cells = stored(results)
    keys = [c["key"] for c in cells]
    assert len(keys) == 30 and len(set(keys)) == 30, said
    for cell in cells:
        # A cell fails only when its worker was lost on the retry too.
        assert cell["status"] == "ok" or "lost twice" in cell["reason"], cell["reason"]
    assert any(c["worker"]["node"] == "gpu" for c in cells)
    if "was lost; running it again on gpu" in said:  # the killed worker was measuring a cell: it ran again
        retried = said.split("was lost; running it again on gpu")[0].rsplit("\n", 1)[-1].split(": its worker")[0]
        assert [c["worker"]["node"] for c in cells if c["key"] == retried] == ["gpu"]


def test_local_cluster_and_a_local_run_measure_the_same_cells_alike(relu_onnx, tmp_path):
    results = tmp_path / "r"
    # One thread a cell: the cluster's two workers measure at once on the 2 cores without oversubscribing them.
    matrix = [str(relu_onnx), "--backend", "onnxruntime", "--batch", "1,4,16,64", "--threads", "1", *FAST,
              "--results", str(results)]
    local = run_cli("run", *matrix, "--json", str(tmp_path / "local.json"), timeout=120)
    assert local.returncode == 0, local.stderr
    clustered = run_cli("run", *matrix, "--cluster", "local:2", "--json", str(tmp_path / "cluster.json"),
                        timeout=120)
    assert clustered.returncode == 0, clustered.stderr
    assert "running" in clustered.stderr and "done" in clustered.stderr  # the progress line
    runs = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("local", "cluster")]
    assert sorted(c["key"] for c in runs[0]["cells"]) == sorted(c["key"] for c in runs[1]["cells"])
    assert all(c["status"] == "ok" for run in runs for c in run["cells"])
    assert {c["worker"]["node"] for c in runs[1]["cells"]} <= {"0", "1"}
    # Loose: one machine, the same cells; the cluster's two workers measure at once, sharing its 2 cores.
    compared = run_cli("compare", runs[0]["run_id"], runs[1]["run_id"], "--threshold", "1.0", "--json",
                       "--results", str(results))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    verdicts = {c["key"]: c["verdict"] for c in json.loads(compared.stdout)["cells"]}
    assert len(verdicts) == 4 and not {"regression", "improvement"} & set(verdicts.values()), verdicts


def test_a_task_whose_worker_is_lost_twice_fails_with_the_reason(monkeypatch):
    from tests.cluster_tasks import KillsItsWorker
    from xpubench.cluster import connect

    monkeypatch.setenv("PYTHONPATH", environment()["PYTHONPATH"])  # the workers' cell processes import the task
    with connect("local:2") as launcher:  # each worker under a nanny, which starts it again once killed
        outcome = launcher.submit(KillsItsWorker(), 60).result(timeout=120)
    assert outcome.kind == "failed"
    assert "lost twice" in outcome.value, outcome.value


def test_a_cluster_run_stopped_then_resumed_goes_on_on_a_new_local_cluster(relu_onnx, tmp_path):
    results = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpubench", "run", str(relu_onnx), "--backend", "onnxruntime", "--batch", "1,2,3,4",
         *FAST, "--cluster", "local:2", "--results", str(results)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment(),
    )
    try:
        deadline = time.monotonic() + 120
        while not stored(results) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    run_id = err.split("run ", 1)[1].split(":", 1)[0]
    before = stored(results)
    assert 1 <= len(before) < 4
    with contextlib.closing(sqlite3.connect(results / "xpubench.db")) as conn:
        (request,) = conn.execute("SELECT request FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert json.loads(request)["cluster"] == "local:2"

    resumed = run_cli("run", "--resume", run_id, "--results", str(results), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "connecting to the cluster local:2" in resumed.stderr
    keys = [c["key"] for c in stored(results)]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert all(c["worker"]["node"] in {"0", "1"} for c in stored(results))


def test_a_parcel_carries_the_model_to_a_machine_without_its_files(relu_onnx, tmp_path, monkeypatch):
    """What a cluster's task carries is enough: the model file and the conversions made here are deleted,
    the cache is another, and the cell still loads the artifact (from the parcel's bytes)."""
    import pickle
    import shutil

    from xpubench.core.cell import Cell
    from xpubench.core.measure import MeasureConfig
    from xpubench.models import resolve
    from xpubench.run.cell_runner import measure_cell
    from xpubench.run.matrix import CellSettings
    from xpubench.run.parcel import pack, unpack

    monkeypatch.setenv("XPUBENCH_CACHE", str(tmp_path / "here"))
    workload = resolve(str(relu_onnx), print)
    workload.artifact("onnx:fp16")  # converted here
    parcel = pickle.loads(pickle.dumps(pack(workload)))  # as it travels
    relu_onnx.unlink()
    shutil.rmtree(tmp_path / "here")
    monkeypatch.setenv("XPUBENCH_CACHE", str(tmp_path / "there"))
    received = unpack(parcel)
    source = received.artifacts.sources["onnx:fp32"]
    assert source.is_file() and (tmp_path / "there") in source.parents
    assert received.artifacts.made("onnx:fp16")  # the conversion travelled too: nothing converts again
    settings = CellSettings(MeasureConfig(warmup_runs=1, warmup_time_s=0, min_runs=5, min_time_s=0.01))
    result = measure_cell(Cell(str(relu_onnx), "onnxruntime", precision="fp16"), received, settings)
    assert result.status == "ok", result.reason
