"""`xpubench load` as a user runs it, against real `xpubench serve` processes on 127.0.0.1; the service model's
arithmetic on synthetic data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_metrics_doc import defined, fields
from xpubench.loadgen.model import LoadPoint, ServiceModel, points_from, split_held_out
from xpubench.loadgen.profile import LevelSettings, level_result, server_breakdown, unsettled, windows_stable
from xpubench.loadgen.schedule import LoadLevel, schedule, shares
from xpubench.store import ResultStore

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("uvicorn")

from tests.test_serve import serving  # noqa: E402  (needs the serve extra)


@pytest.fixture
def slow_onnx(tmp_path: Path) -> Path:
    """96 multiplications by one orthogonal 1024x1024 matrix in a row: several milliseconds a call on one thread
    of any CPU this runs on, so 800 req/s is far past capacity (the weights are stored once, 4 MB)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    orthogonal, _ = np.linalg.qr(rng.standard_normal((1024, 1024)))  # keeps the values' scale over the chain
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}" if i < 95 else "y"])
             for i in range(96)]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1024])],
                              [numpy_helper.from_array(orthogonal.astype(np.float32), "w")])
    path = tmp_path / "slow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def load(url: str, model: str, results: Path, out: Path, *options: str):
    return run_cli("load", url, "--model", model, "--duration", "1.5", "--warmup", "0.3", "--results", str(results),
                   "--json", str(out), *options, timeout=120)


def test_closed_and_open_loop_are_stored_with_the_servers_breakdown_and_shown(relu_onnx, tmp_path):
    results, out = tmp_path / "r", tmp_path / "load.json"
    first, last = min(os.sched_getaffinity(0)), max(os.sched_getaffinity(0))  # the server and the clients apart
    with serving(relu_onnx, "--max-batch", "8", "--max-queue-delay-us", "2000", "--pin", str(first)) as server:
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        assert f"Cpus_allowed_list:\t{first}\n" in status
        done = load(f"http://{server.http}", "relu", results, out, "--concurrency", "1,8", "--clients", "2",
                    "--pin", str(last))
        assert done.returncode == 0, done.stderr
        closed = json.loads(out.read_text())["cells"]
        assert all(r["scenario_result"]["client_cpus"] == [last] for r in closed)
        wrong = load(f"http://{server.http}", "relu", results, out, "--concurrency", "1", "--pin", "4096")
        assert wrong.returncode == 2 and "--pin" in wrong.stderr and "Traceback" not in wrong.stderr
        done = load(f"grpc://{server.grpc}", "relu", results, out, "--rate", "150", "--arrivals", "constant")
        assert done.returncode == 0, done.stderr
        open_loop = json.loads(out.read_text())["cells"]
    assert [r["options"] for r in closed] == [{"concurrency": "1"}, {"concurrency": "8"}]
    for r in closed + open_loop:
        sr = r["scenario_result"]
        assert r["status"] == "ok" and r["scenario"] == "load" and sr["served"] > 0 and sr["errors"] == 0
        assert sr["p50_ms"] <= sr["p90_ms"] <= sr["p99_ms"] and len(sr["windows"]) == 5
        # Measured again while its windows disagreed, three times at most (the default --max-trials).
        assert sr["stable_windows"] or sr["trials"] == 3 or sr["verdict"].startswith("past capacity")
        server_figures = sr["server"]
        assert server_figures["requests"] >= sr["served"]  # the server also counted the warm-up
        assert server_figures["compute_infer_ms"] > 0 and server_figures["queue_ms"] >= 0
        histogram = {h["batch_size"]: h["executions"] for h in server_figures["batch_histogram"]}
        assert sum(histogram.values()) == server_figures["execution_count"]
        assert server_figures["avg_batch"] == pytest.approx(
            sum(b * n for b, n in histogram.items()) / server_figures["execution_count"])
        assert sr["server_config"]["max_batch_size"] == 8 and sr["server_config"]["max_queue_delay_us"] == 2000
    # Eight in flight against a 2 ms queue delay: the server formed batches larger than one.
    assert closed[1]["scenario_result"]["server"]["avg_batch"] > 1.5
    assert closed[1]["scenario_result"]["clients"] == 2 and closed[1]["scenario_result"]["senders"] == 8
    lag = open_loop[0]["scenario_result"]["lag_ms"]
    assert open_loop[0]["scenario_result"]["latency_from"] == "scheduled send" and lag["p50"] <= lag["max"]
    assert open_loop[0]["backend"] == "oip-grpc" and open_loop[0]["options"]["rate"] == "150"
    missing = sorted(set().union(*(fields(r) for r in closed + open_loop)) - defined())
    assert not missing, f"fields stored but not defined in docs/metrics.md: {missing}"
    shown = run_cli("show", "--results", str(results))
    assert shown.returncode == 0, shown.stderr
    assert "oip-grpc[arrivals=constant,rate=150]" in shown.stdout
    html = tmp_path / "report.html"
    with ResultStore(results, create=False) as store:
        run_ids = [r["run_id"] for r in store.runs()]  # the closed and the open loop
    reported = run_cli("report", *run_ids, "--results", str(results), "--html", str(html))
    assert reported.returncode == 0, reported.stderr
    page = html.read_text()
    assert '<section id="load">' in page and 'id="plot-load-curves"' in page and 'id="plot-load-batches"' in page


def test_an_open_loop_far_past_capacity_says_so(slow_onnx, tmp_path):
    out = tmp_path / "load.json"
    with serving(slow_onnx, "--instances", "1", "--max-batch", "1") as server:
        done = load(f"http://{server.http}", "slow", tmp_path / "r", out, "--rate", "800", "--drain", "1",
                        "--warmup", "0.1")
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(out.read_text())["cells"]
    sr = record["scenario_result"]
    assert sr["latency_grows"] and sr["growth"] > 2
    assert sr["verdict"].startswith("past capacity") and "fell behind" in sr["verdict"]
    capacity = 1e3 / sr["server"]["compute_infer_ms"]  # one instance, batches of one
    assert capacity < 800 / 1.5 and sr["throughput_rps"] < 0.9 * 800
    assert sr["server"]["avg_batch"] == 1  # --max-batch 1: no batching


def test_an_unreachable_server_is_a_one_line_error(tmp_path):
    from xpubench.run.ports import free_ports

    done = run_cli("load", f"127.0.0.1:{free_ports(1)[0]}", "--model", "m", "--concurrency", "1", "--results",
                   str(tmp_path / "r"), timeout=120)
    assert done.returncode == 2 and "no ready server" in done.stderr and "Traceback" not in done.stderr


def test_schedules_are_seeded_and_shared_out():
    poisson = LoadLevel(rate=1000.0)
    a, b = schedule(poisson, 2.0, 7), schedule(poisson, 2.0, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, schedule(poisson, 2.0, 8))
    assert 1700 < a.size < 2300 and a.max() < 2e9
    constant = schedule(LoadLevel(rate=100.0, arrivals="constant"), 1.0, 0)
    assert np.allclose(np.diff(constant), 1e7, atol=1)
    parts = shares(poisson, 3, a)
    assert sorted(np.concatenate([p for _, p in parts]).tolist()) == a.tolist()
    assert [s for s, _ in shares(LoadLevel(concurrency=5), 3, None)] == [2, 2, 1]
    assert [s for s, _ in shares(LoadLevel(concurrency=2), 4, None)] == [1, 1]


def _part(done_s: np.ndarray, latency_s: float | np.ndarray) -> dict:
    """One client process's records: answers at `done_s` (seconds into a 5 s level) after `latency_s`."""
    done = (done_s * 1e9).astype(np.int64)
    sent = done - (np.asarray(latency_s) * 1e9).astype(np.int64)
    return {"scheduled_ns": sent, "sent_ns": sent, "done_ns": done, "send_ns": np.zeros_like(done),
            "recv_ns": np.zeros_like(done), "senders": 1, "max_in_flight": 1, "cpu_busy": 0.5, "cpu_s": 2.0}


STEADY = np.arange(1.0, 5.0, 0.001)
SLOWING = np.concatenate([np.arange(1.0, 4.2, 0.001), np.arange(4.2, 5.0, 0.01)])  # tenfold slower at the end


def _level(level: LoadLevel, done_s: np.ndarray, latency_s: float | np.ndarray):
    """A level's result from one client process that answered at `done_s`."""
    settings = LevelSettings("grpc://127.0.0.1:1", "grpc", "m", 1, 1, 5.0, 1.0, 0)
    return level_result(level, settings, [_part(done_s, latency_s)], None, None)


class ScriptedClients:
    """A launcher whose client processes answer at once with the records scripted for each trial in turn: the
    runner's loop under test, against a real server's statistics."""

    def __init__(self, *trials: np.ndarray) -> None:
        self.trials = list(trials)

    def start(self, task, say=None):
        from xpubench.run.launcher import Running, TaskOutcome

        running = Running(lambda: None)
        running._finish(TaskOutcome("result", _part(self.trials.pop(0), 0.001)))
        return running


@pytest.mark.parametrize("script, trials, stable", [((SLOWING, STEADY), 2, True), ((SLOWING, SLOWING), 2, False),
                                                    ((STEADY, SLOWING), 1, True)])
def test_the_runner_measures_a_level_again_while_its_windows_disagree(relu_onnx, script, trials, stable):
    from xpubench.loadgen.runner import LoadRequest, run_levels
    from xpubench.loadgen.transport import Endpoint

    said: list[str] = []
    with serving(relu_onnx) as server:
        request = LoadRequest(Endpoint("grpc", server.grpc), "relu", (LoadLevel(concurrency=1),), 5.0,
                              warmup_s=1.0, clients=1, trials=2)
        (result,) = run_levels(request, ScriptedClients(*script), None, None, said.append)
    assert result.scenario_result["trials"] == trials and result.scenario_result["stable_windows"] == stable
    assert sum("again" in line for line in said) == trials - 1


def test_a_level_whose_windows_disagree_is_measured_again_unless_past_capacity():
    steady = _level(LoadLevel(concurrency=1), STEADY, 0.001)
    assert steady.scenario_result["stable_windows"] and not unsettled(steady)
    assert steady.scenario_result["client_cpu_ms"] == pytest.approx(2e3 / 4000, rel=0.01)
    # Answers slow down tenfold in the last window: the last three windows disagree.
    slowing = _level(LoadLevel(concurrency=1), SLOWING, 0.001)
    assert not slowing.scenario_result["stable_windows"] and unsettled(slowing)
    # An open loop whose latency grows over the level is past capacity: measuring again would not settle it.
    done = np.arange(1.0, 5.0, 0.01)
    growing = _level(LoadLevel(rate=200.0), done, np.linspace(0.001, 1.0, done.size))
    assert growing.scenario_result["verdict"].startswith("past capacity") and not unsettled(growing)


def test_windows_and_the_statistics_difference():
    steady = [{"throughput_rps": 100.0, "p50_ms": 1.0}] * 2 + [{"throughput_rps": v, "p50_ms": 1.0}
                                                              for v in (95.0, 100.0, 105.0)]
    assert windows_stable(steady) == (True, pytest.approx(0.05))
    assert not windows_stable(steady[:4] + [{"throughput_rps": 150.0, "p50_ms": 1.0}])[0]
    before = {"inference_count": 10, "execution_count": 10, "inference_stats": {
        "success": {"count": 10, "ns": 10_000_000}, "queue": {"count": 10, "ns": 1_000_000}},
        "batch_stats": [{"batch_size": 1, **{s: {"count": 10, "ns": 5_000_000} for s in
                                             ("compute_input", "compute_infer", "compute_output")}}]}
    after = {"inference_count": 50, "execution_count": 15, "inference_stats": {
        "success": {"count": 50, "ns": 90_000_000}, "queue": {"count": 50, "ns": 41_000_000}},
        "batch_stats": [before["batch_stats"][0], {"batch_size": 8, **{s: {"count": 5, "ns": 10_000_000} for s in
                                                                       ("compute_input", "compute_infer",
                                                                        "compute_output")}}]}
    d = server_breakdown(before, after)
    assert d["requests"] == 40 and d["request_ms"] == pytest.approx(2.0) and d["queue_ms"] == pytest.approx(1.0)
    assert d["avg_batch"] == pytest.approx(40 / 5) and d["batch_histogram"] == [{"batch_size": 8, "executions": 5}]
    assert d["service_ms"] == [{"batch_size": 8, "ms": pytest.approx(6.0)}]  # three stages of 2 ms each
    assert server_breakdown(None, after) is None


def test_the_service_model_recovers_a_known_server_and_predicts_held_out_levels():
    true = ServiceModel(s0_ms=0.5, s1_ms=0.05, instances=1, max_batch=32, t_lat_ms=0.3, client_ms=0.1, front_ms=0.2)
    points = [LoadPoint(n, *true.predict(n)[:2], client_cpu_ms=0.12) for n in (1, 2, 4, 8, 16, 32, 64)]
    fit, held = split_held_out(points)
    assert [p.clients for p in held] == [2, 8, 32]
    model = ServiceModel.fit({b: float(true.service_ms(b)) for b in (1, 2, 4, 8, 16, 32)}, fit, 1, 32)
    assert model.s0_ms == pytest.approx(0.5) and model.s1_ms == pytest.approx(0.05)
    assert model.front_ms == pytest.approx(0.2, abs=0.02) and model.client_ms <= 0.12  # the clients' measured CPU
    for row in model.errors(held):
        assert abs(row["throughput_error"]) < 0.02 and abs(row["latency_error"]) < 0.02
    # One request alone queues behind nothing; throughput rises and saturates below capacity; Little's law.
    assert true.predict(1)[1] == pytest.approx(0.3 + 0.1 + 0.2 + 0.55)
    x = [model.predict(n)[0] for n in (1, 4, 64, 256)]
    assert x == sorted(x) and x[-1] <= model.capacity_rps * (1 + 1e-9)
    assert x[-1] == pytest.approx(model.capacity_rps, rel=0.01)
    x64, r64, b64 = model.predict(64)
    assert x64 * r64 / 1e3 == pytest.approx(64, rel=1e-3)
    assert 1 < b64 <= 32  # the batcher forms batches under load


def test_the_service_model_without_batching_is_a_closed_network_of_queues():
    """Max batch 1, no client work, no delay: one queue of service time S; N requests keep it busy from N = 1,
    so throughput is 1/S at every N and latency N S (the exact answer of mean value analysis)."""
    m = ServiceModel(s0_ms=2.0, s1_ms=0.0, instances=1, max_batch=1, t_lat_ms=0.0, client_ms=0.0, front_ms=0.0)
    for n in (1, 3, 10):
        x, r, b = m.predict(n)
        assert x == pytest.approx(500.0) and r == pytest.approx(2.0 * n) and b == pytest.approx(1.0)
    # Two queues of equal service S with N = 2 in flight: X = 2 / (S (1 + 1/2) + S (1 + 1/2)) = 2 / 3S.
    two = ServiceModel(s0_ms=1.0, s1_ms=0.0, instances=1, max_batch=1, t_lat_ms=0.0, client_ms=1.0, front_ms=0.0)
    assert two.predict(2)[0] == pytest.approx(1e3 * 2 / 3)


def test_a_level_measured_in_rounds_is_one_point_at_its_medians():
    def record(clients: int, rps: float, mean_ms: float, cpu: float | None) -> dict:
        return {"status": "ok", "scenario": "load", "latency_ms": {"mean": mean_ms},
                "scenario_result": {"concurrency": clients, "throughput_rps": rps, "client_cpu_ms": cpu}}

    rounds = [record(2, 900.0, 2.2, 0.3), record(1, 500.0, 2.0, None), record(2, 1000.0, 2.0, 0.2),
              record(2, 1500.0, 1.3, 0.25), {**record(2, 1.0, 99.0, 9.0), "status": "failed"}]
    # Three ok rounds at 2 clients: the middle one by throughput, all its figures from that one round.
    assert points_from(rounds) == [LoadPoint(1, 500.0, 2.0, None), LoadPoint(2, 1000.0, 2.0, 0.2)]
    # Two ok rounds: the lower middle.
    assert points_from(rounds[:2] + rounds[3:]) == [LoadPoint(1, 500.0, 2.0, None), LoadPoint(2, 900.0, 2.2, 0.3)]


def test_sonic_terms_follow_the_formula():
    model = ServiceModel(s0_ms=1.5, s1_ms=0.0, instances=2, max_batch=1, t_lat_ms=0.75, client_ms=0.25,
                         front_ms=0.5, t_cpu_ms=3.0)
    t = model.sonic_terms()
    assert t["t_gpu_ms"] == 2.0 and t["t_ideal_ms"] == 6.0 and t["saturation_clients_per_instance"] == 3.0
    assert model.t_sonic_ms(2) == pytest.approx(6.0)  # one client per instance: unsaturated
    # 20 clients on 2 instances: 10 per instance, 7 past saturation, t_GPU x (1 + 7) + the rest
    assert model.t_sonic_ms(20) == pytest.approx(3.0 + 2.0 * 8 + 1.0)
    assert model.best_ratio()["clients_per_instance"] >= 1
    # Two instances: one request alone takes the whole trip; many keep both busy and the front's serial work.
    assert model.predict(1)[1] == pytest.approx(0.75 + 0.25 + 0.5 + 1.5)
    assert model.capacity_rps == pytest.approx(1e3 / (0.5 + 1.5 / 2))
    assert model.predict(400)[0] == pytest.approx(model.capacity_rps, rel=0.01)
