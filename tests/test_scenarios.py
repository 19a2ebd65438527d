"""Load scenarios on real zoo models with ONNX Runtime: MLPerf LoadGen, open-loop server, batch sweep, offline."""

import json
from dataclasses import replace

import pytest

from tests.conftest import run_cli
from xpubench.core.cell import Cell
from xpubench.core.errors import InvalidSetting
from xpubench.core.measure import MeasureConfig
from xpubench.run.cell_runner import measure_cell
from xpubench.run.matrix import CellSettings, Matrix
from xpubench.scenarios import REGISTRY, SCENARIOS, SELF_BATCHING, ScenarioConfig, check_scenarios

QUICK = MeasureConfig(warmup_runs=2, warmup_time_s=0.05, min_runs=20, min_time_s=0.5, max_time_s=20)
MLPERF = ("mlperf-singlestream", "mlperf-multistream", "mlperf-server", "mlperf-offline")
# A shared 2-core machine stalls a waiting thread for milliseconds: LoadGen's server bound is generous.
MLPERF_SERVER = ScenarioConfig(bound_ms=200.0)


@pytest.fixture(scope="module")
def workloads():
    from xpubench.models import resolve

    found = {}
    for name in ("dense1", "conv3dense1"):
        # No reference: fidelity is not what these tests are about.
        found[name] = replace(resolve(name, say=lambda _m: None), reference=())
    return found


def cell_result(workloads, model, scenario, settings=None, config=QUICK):
    result = measure_cell(Cell(model, "onnxruntime", scenario=scenario), workloads[model],
                          CellSettings(config, 15.0, settings or ScenarioConfig()))
    assert result.status == "ok", result.reason
    return result


def test_scenario_names_and_settings_are_checked():
    assert set(SCENARIOS) == set(REGISTRY)
    assert check_scenarios(["server", "offline", "server"]) == ("server", "offline")
    with pytest.raises(ValueError, match="unknown scenario 'closed-loop'"):
        check_scenarios(["closed-loop"])
    with pytest.raises(InvalidSetting, match="arrival rate must be a positive") as raised:
        ScenarioConfig(qps=0)
    assert raised.value.setting == "qps"
    with pytest.raises(InvalidSetting, match="latency bound must be a positive") as raised:
        ScenarioConfig(bound_ms=-1)
    assert raised.value.setting == "bound_ms"
    with pytest.raises(ValueError, match="unknown scenario"):
        Matrix(models=("dense1",), backends=("onnxruntime",), scenarios=("nope",))


def test_cells_are_the_product_with_scenarios():
    matrix = Matrix(models=("dense1",), backends=("onnxruntime",), batch_sizes=(1, 32),
                    scenarios=("single-stream", "server", "batch-sweep"))
    cells = [(c.scenario, c.batch_size) for c in matrix.cells()]
    # Scenarios that choose their own batches get one cell (batch 1), the others one per --batch.
    assert cells == [("single-stream", 1), ("single-stream", 32), ("server", 1), ("batch-sweep", 1)]
    assert "single-stream" not in SELF_BATCHING and "offline" in SELF_BATCHING
    assert len({c.key for c in matrix.cells()}) == 4


@pytest.mark.parametrize("bad, message", [
    (["--scenario", "sideways"], "unknown scenario 'sideways'"),
    (["--scenario", "server", "--qps", "0"], "--qps: the arrival rate must be a positive"),
])
def test_cli_rejects_bad_scenario_values(bad, message, tmp_path):
    done = run_cli("run", "dense1", "--backend", "onnxruntime", *bad, "--results", str(tmp_path))
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dense1", "conv3dense1"])
@pytest.mark.parametrize("scenario", MLPERF)
def test_mlperf_scenarios_are_valid(workloads, model, scenario):
    result = cell_result(workloads, model, scenario, MLPERF_SERVER)
    found = result.scenario_result
    assert found["verdict"] == "VALID", (found.get("log_messages"), found)
    assert found["min_duration_met"] and found["min_queries_met"]
    percentiles = found["percentiles_ms"]
    assert {"50", "90", "99"} <= set(percentiles)
    assert 0 < found["min_ms"] <= percentiles["50"] <= percentiles["90"] <= percentiles["99"] <= found["max_ms"]
    assert found["samples_per_second"] > 0 and result.throughput_sps == found["samples_per_second"]
    # What ran is stored, and that it is not a submission run.
    settings = found["settings"]
    assert settings["min_duration_ms"] == 500 and settings["mode"] == "PerformanceOnly"
    assert found["parameters"]["min_duration_ms"] == 500
    assert "not a submission-valid" in found["note"]
    if scenario == "mlperf-multistream":
        assert found["samples_per_query"] == 8 and found["batch"] == 8
    if scenario == "mlperf-server":
        assert found["latency_constraint_met"] and settings["server_target_latency_ns"] == 200_000_000
    if scenario == "mlperf-offline":
        assert found["samples_per_query"] > 1 and found["batch"] >= 1
    record = json.loads(json.dumps(result.as_dict()))  # the stored record carries it all
    assert record["scenario_result"]["verdict"] == "VALID" and record["scenario"] == scenario


@pytest.mark.slow
def test_server_above_capacity_queues_up_and_below_meets_the_bound(workloads):
    single = cell_result(workloads, "dense1", "single-stream")
    capacity = single.throughput_sps
    over = cell_result(workloads, "dense1", "server", ScenarioConfig(qps=3 * capacity, bound_ms=50))
    under = cell_result(workloads, "dense1", "server", ScenarioConfig(qps=0.3 * capacity, bound_ms=50))

    high = over.scenario_result
    assert high["qps_source"] == "given" and high["qps"] == pytest.approx(3 * capacity)
    # One worker, arrivals 3x faster than it serves: each query waits for all before it.
    assert high["latency_grows"] and high["last_tenth_p50_ms"] > 2 * high["first_tenth_p50_ms"]
    assert high["verdict"] == "bound failed" and not high["bound_met"]
    assert high["p99_ms"] > 50
    assert high["achieved_qps"] < high["qps"]
    # The cell's latency counts from the scheduled time, so it holds the queueing.
    assert over.latency.median > 10 * single.latency.median

    low = under.scenario_result
    assert low["verdict"] == "bound met" and low["bound_met"] and low["unserved"] == 0
    assert low["served"] == low["offered"] > 0
    assert low["p99_ms"] <= 50
    assert low["p50_ms"] < high["p50_ms"]


@pytest.mark.slow
def test_batch_sweep_finds_a_knee_and_offline_beats_single_stream(workloads):
    settings = ScenarioConfig(max_batch=256)
    sweep = cell_result(workloads, "dense1", "batch-sweep", settings).scenario_result
    batches = [p["batch"] for p in sweep["curve"]]
    assert batches == [2**i for i in range(len(batches))] and batches[-1] <= 256
    best = max(p["throughput_sps"] for p in sweep["curve"])
    knee = next(p for p in sweep["curve"] if p["batch"] == sweep["knee"])
    assert knee["throughput_sps"] >= 0.95 * best
    assert all(p["throughput_sps"] < 0.95 * best for p in sweep["curve"] if p["batch"] < sweep["knee"])
    assert sweep["knee"] <= sweep["best_batch"] and sweep["stop"]

    single = cell_result(workloads, "dense1", "single-stream")
    offline = cell_result(workloads, "dense1", "offline", settings)
    assert offline.scenario_result["batch"] in [p["batch"] for p in offline.scenario_result["curve"]]
    # Batching amortises the per-call cost, and batch 1 is among the candidates.
    assert offline.throughput_sps >= single.throughput_sps
    assert offline.per_sample_ms == pytest.approx(offline.latency.median / offline.scenario_result["batch"])


@pytest.mark.slow
def test_cli_stores_scenario_results(tmp_path):
    out = tmp_path / "cells.json"
    done = run_cli("run", "dense1", "--backend", "onnxruntime", "--scenario", "single-stream,server",
                   "--qps", "500", "--bound-ms", "50", "--batch", "1", "--runs", "20", "--min-time", "0.3",
                   "--warmup-time", "0.05", "--results", str(tmp_path / "res"), "--json", str(out))
    assert done.returncode == 0, done.stderr
    cells = {c["scenario"]: c for c in json.loads(out.read_text())["cells"]}
    assert set(cells) == {"single-stream", "server"}
    assert cells["single-stream"]["scenario_result"] is None
    server = cells["server"]["scenario_result"]
    assert server["qps"] == 500 and server["bound_ms"] == 50 and server["verdict"] in ("bound met", "bound failed")
