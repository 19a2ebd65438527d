"""Distributed training: both engines really all-reduce (equal weights), the breakdown tiles the step, a
starved input is called input-bound, training makes the generator's showers closer to the data, a lost worker
ends its cell `failed`, and the scaling model's arithmetic. Tiny GAN, few steps."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.test_metrics_doc import defined, fields
from xpubench.hardware.catalogue import INTERCONNECTS
from xpubench.run.launcher import ProcessLauncher
from xpubench.store import ResultStore
from xpubench.train.scaling import ScalingModel, expected_max, ring_allreduce_s, straggler_s
from xpubench.train.sweep import run_cells, specs_for

MODEL = "calo-gan:tiny"


def _train(tmp_path, strategies, workers, **settings):
    with ResultStore(tmp_path / "r") as store, ProcessLauncher() as launcher:
        run_id = store.start_run({}, "test")
        results = run_cells(specs_for(MODEL, strategies, workers, ["weak"], threads=1, **settings), launcher,
                            store, run_id, 300, lambda _m: None)
        return results, store.cells(run_id)


def _check_trained(record, workers):
    assert record["status"] == "ok", record["reason"]
    sr = record["scenario_result"]
    assert sr["workers"] == workers and record["batch_size"] == sr["global_batch"] == workers * sr["local_batch"]
    # the phases, averaged over the workers, sum to worker 0's step time
    assert sr["breakdown_sum_ms"] == pytest.approx(sr["step_ms"], rel=0.05)
    assert sr["verdict"].split(",")[0] != "input-bound"
    assert len(sr["checksums"]) == workers and all(len(row) == 3 for row in sr["checksums"])
    assert sr["weights_equal"] is True
    # the trained generator is closer to the shower generator's showers than at its initial weights
    assert sr["validity"]["distance"] < sr["validity"]["untrained_distance"]
    assert 0 < sr["efficiency"] and sr["efficiency_baseline"].endswith("/train/end-to-end")


def test_torch_ddp_trains_the_gan_on_one_and_two_workers(tmp_path):
    results, records = _train(tmp_path, ["torch-ddp"], [2], steps=12, checksums=3)
    assert [r["scenario_result"]["workers"] for r in records] == [1, 2]
    for record, workers in zip(records, (1, 2), strict=True):
        _check_trained(record, workers)
    two = records[1]["scenario_result"]
    assert two["allreduce_calls"] >= 2  # a bucket each for the generator and the discriminator
    assert len(set(two["checksums"][0])) == 3  # the weights moved at every step
    missing = sorted(set().union(*(fields(r) for r in records)) - defined())
    assert not missing, f"fields stored but not defined in docs/metrics.md: {missing}"


def test_tf_distribute_trains_the_gan_on_one_and_two_workers(tmp_path):
    results, records = _train(tmp_path, ["tf-multiworker", "tf-mirrored", "tf-tpu"], [2], steps=12, checksums=3)
    by_key = {(r["backend"], r["scenario_result"]["workers"] if r["scenario_result"] else None): r for r in records}
    for workers in (1, 2):
        _check_trained(by_key[("tf-multiworker", workers)], workers)
    _check_trained(by_key[("tf-mirrored", 2)], 2)
    tpu = [r for r in records if r["backend"] == "tf-tpu"]
    assert len(tpu) == 2 and all(r["status"] == "unavailable" and "TPU" in r["reason"] for r in tpu)


def test_a_starved_input_pipeline_is_input_bound(tmp_path):
    _, records = _train(tmp_path, ["torch-ddp"], [1], steps=4, input_delay_s=0.05)
    sr = records[0]["scenario_result"]
    assert sr["verdict"].startswith("input-bound"), sr
    assert sr["breakdown_ms"]["input"] >= 50
    assert sr["breakdown_sum_ms"] == pytest.approx(sr["step_ms"], rel=0.05)


def test_a_lost_worker_ends_the_cell_failed_not_hung(tmp_path):
    out = tmp_path / "cells.json"
    done = run_cli("train", MODEL, "--workers", "2", "--strategy", "torch-ddp,tf-multiworker", "--steps", "200",
                   "--kill-worker", "1:4", "--cell-timeout", "240", "--results", str(tmp_path / "r"),
                   "--json", str(out), timeout=500)
    assert done.returncode == 3, done.stderr  # the killed cells are failed rows, the 1-worker ones ok
    shown = run_cli("show", "--results", str(tmp_path / "r"), "--format", "json")
    records = json.loads(shown.stdout)["cells"]
    assert records == json.loads(out.read_text())["cells"]
    by_key = {(r["backend"], r["options"]["workers"]): r for r in records}
    for strategy in ("torch-ddp", "tf-multiworker"):
        assert by_key[(strategy, "1")]["status"] == "ok"  # one worker has no rank 1 to lose
        lost = by_key[(strategy, "2")]
        assert lost["status"] == "failed"
        assert "1" in lost["reason"] and ("SIGKILL" in lost["reason"] or "-9" in lost["reason"]), lost["reason"]


def test_the_ring_allreduce_model():
    assert ring_allreduce_s(1, 1e6, 1e9, 1e-6) == 0
    # 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency
    assert ring_allreduce_s(4, 1e6, 1e9, 1e-6) == pytest.approx(1.5e-3 + 6e-6)
    one = {"breakdown_ms": {"input": 1.0, "forward": 4.0, "backward": 6.0, "allreduce": 0.5, "optimizer": 1.0,
                            "idle": 0.5}, "local_batch": 10, "gradient_bytes": 4_000_000}
    model = ScalingModel.fit(one, {"bandwidth_bps": 1e9, "alpha_s": 1e-4})
    # one worker: its own step, the engine's 0.5 ms around its (trivial) all-reduce included
    assert model.step_s(1, 10) == pytest.approx(13e-3)
    assert model.step_s(2, 10) == pytest.approx(13e-3 + 4e-3 + 2e-4)  # no concurrent probe: no contention
    weak = [model.efficiency(n, "weak", 10) for n in (2, 8, 128)]
    assert weak == sorted(weak, reverse=True) and weak[0] < 1
    rows = model.predictions("strong", 64)
    assert {r["interconnect"] for r in rows} >= {"25gbe", "ib-edr", "nvlink3", "tpu-v3-ici"}
    assert all(0 < r["efficiency"] <= 1 for r in rows)


def test_the_contention_and_straggler_terms():
    # E[max of n draws] from the samples: the k-th smallest of m is the max with probability (k/m)^n - ((k-1)/m)^n
    assert expected_max([1.0, 2.0, 3.0, 4.0], 1) == pytest.approx(2.5)
    assert expected_max([3.0, 1.0], 2) == pytest.approx(1 * 1 / 4 + 3 * 3 / 4)
    assert straggler_s([1.0, 3.0], 2) == pytest.approx(0.5) and straggler_s([1.0, 3.0], 1) == 0
    assert straggler_s([5.0] * 10, 128) == pytest.approx(0)  # no spread, no waiting
    one = {"breakdown_ms": {"input": 1.0, "forward": 4.0, "backward": 6.0, "allreduce": 0.5, "optimizer": 1.0,
                            "idle": 0.5}, "local_batch": 10, "gradient_bytes": 4_000_000}
    concurrent = {"copies": 2, "alone_s": [0.010, 0.010, 0.009, 0.011], "concurrent_s": [0.011, 0.013, 0.011, 0.013],
                  "segments_alone_s": [[0.004, 0.004], [0.006, 0.006]],
                  "segments_concurrent_s": [[0.004, 0.006], [0.007, 0.007]]}
    probe = {"bandwidth_bps": 1e9, "alpha_s": 1e-4, "bucket_bytes": [4_000_000], "resume_s": 1e-3}
    model = ScalingModel.fit(one, probe, concurrent)
    assert model.contention(2) == pytest.approx(1.2)  # mean concurrent 12 ms / mean alone 10 ms
    assert model.contention(4) == pytest.approx(2.4)  # beyond the copies measured: time-sharing the CPUs
    assert model.contention(2, INTERCONNECTS[0]) == 1  # one worker per device on a link
    parts = model.parts(2, 10)
    assert parts["busy_s"] == pytest.approx(12e-3)  # input + forward + backward + optimizer, one worker alone
    assert parts["contention_s"] == pytest.approx(12e-3 * 0.2)
    assert parts["straggler_s"] == pytest.approx(0.5e-3)  # 5.5 - 5 ms at the first sync point, 0 at the second
    # the engine's own (as with one worker) + the ring + resuming after compute
    assert parts["allreduce_s"] == pytest.approx(0.5e-3 + 4e-3 + 2e-4 + 1e-3)
    assert model.step_s(2, 10) == pytest.approx(sum(parts.values())) == pytest.approx(21.1e-3)
    link = INTERCONNECTS[0]  # one worker per device: the link's ring, no contention, no resumption on this host
    assert model.allreduce(2, link) == pytest.approx(0.5e-3 + ring_allreduce_s(2, 4e6, link.bandwidth_bps,
                                                                               link.latency_s))
    assert model.step_s(1, 10) == pytest.approx(13e-3)  # the 1-worker run it was fitted on: no contention, no wait
    assert model.straggler(2, 10, INTERCONNECTS[0]) == 0  # the alone segments do not scatter
    assert model.straggler(2, 5) == pytest.approx(0.5e-3 * (5 * 1.1 + 1) / 12)  # scaled to the busy time


def test_the_communication_probe_times_a_real_allreduce():
    from xpubench.train.probe import probe

    found = probe([300_000, 100_000], repeats=5, gaps_s=[0.002, 0.001])
    assert found["bucket_bytes"] == [300_000, 100_000] and found["bytes"] == 400_000
    assert found["allreduce_s"] > found["latency_s"] > 0
    assert found["bandwidth_bps"] > 0
    # the all-reduces after compute, and what they cost more than right after a barrier (never negative)
    assert found["after_compute_s"] > 0 and found["gaps_s"] == [0.002, 0.001]
    assert found["resume_s"] == pytest.approx(max(found["after_compute_s"] - found["allreduce_s"], 0))


def test_train_fits_the_scaling_model_from_probes_and_checks_it(tmp_path):
    out = tmp_path / "cells.json"
    done = run_cli("train", MODEL, "--workers", "2", "--strategy", "torch-ddp", "--steps", "6", "--model-scaling",
                   "--results", str(tmp_path / "r"), "--json", str(out), timeout=400)
    assert done.returncode == 0, done.stderr
    fitted = json.loads(out.read_text())["scaling_model"]["torch-ddp"]
    model, concurrent = fitted["model"], fitted["concurrent"]
    assert model["contention_workers"] == concurrent["copies"] == 2 and concurrent["strategy"] == "torch-ddp"
    # alone before and after the copies, and two copies at once: 6 timed steps each
    assert len(model["busy_alone_s"]) == len(model["busy_concurrent_s"]) == 12
    assert len(model["segments_concurrent_s"]) == model["allreduce_messages"] == len(fitted["probe"]["bucket_bytes"])
    assert len(fitted["probe"]["gaps_s"]) == model["allreduce_messages"]
    [check] = fitted["checks"]
    assert check["workers"] == 2 and check["predicted_step_ms"] == pytest.approx(sum(check["parts_ms"].values()))
    assert check["error"] == pytest.approx(check["predicted_step_ms"] / check["measured_step_ms"] - 1)
    assert "concurrent compute probe: 2 copies" in done.stdout and "2 workers on loopback: predicted" in done.stdout
