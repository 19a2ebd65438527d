"""`xpubench study hetero`: the study's experiments stored as one run, its takeaways checked from stored figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from xpubench.hardware.host import allowed_cpus
from xpubench.store import ResultStore
from xpubench.studies.hetero import CANNOT, FAILS, HOLDS, plan, render, sharded, single, splits, takeaways

CPUS = allowed_cpus()
DEVICES = (f"onnxruntime:cpu@{CPUS[0]},litert:cpu@{CPUS[-1]}" if len(CPUS) > 1 else "onnxruntime:cpu,litert:cpu")


def cell(model: str, backend: str, device: str, batch: int, per_sample_ms: float, **extra: Any) -> dict[str, Any]:
    """A stored record with the fields the study reads."""
    return {"model": model, "backend": backend, "device": device, "precision": "fp32", "batch_size": batch,
            "status": "ok", "reason": "", "options": {}, "per_sample_ms": per_sample_ms, **extra}


def data_split(model: str, speedup: float) -> dict[str, Any]:
    return cell(model, "split", "onnxruntime:cpu@0+onnxruntime:cuda", 256, 0.01, options={"mode": "data"},
                throughput_sps=1e5, split={"speedup": speedup, "efficiency": 0.9, "best_alone_part": "x",
                                           "sum_alone_sps": 1e5, "parts": []})


def shard_split(transfer_ms: float, max_abs: float) -> dict[str, Any]:
    return cell("conv3dense1", "split", "onnxruntime:cuda+onnxruntime:cpu@0", 32, 0.1,
                options={"mode": "pipeline", "cuts": "t:0"}, latency_ms={"median": 3.0}, throughput_sps=1e4,
                fidelity={"max_abs": max_abs, "top1_agreement": 1.0},
                split={"stages": [{"median_ms": 1.0}, {"median_ms": 2.0}],
                       "transfers": [{"median_ms": transfer_ms, "how": "copy"}], "stage_sum_ms": 3.0 + transfer_ms,
                       "prediction": {"latency_ms": 3.3}})


def test_takeaways_follow_the_figures_both_ways() -> None:
    study = plan("default", "onnxruntime:cpu@0,onnxruntime:cuda")
    cpu, gpu = study.parts

    def singles(gpu_big: float, cpu_small: float) -> list[dict[str, Any]]:
        """GPU per-sample time `gpu_big` at batch 256 against the CPU's 1.0; the CPU at batch 1 `cpu_small`."""
        out = []
        for model in ("dense1", "conv3dense1"):
            out += [cell(model, "onnxruntime", "cpu", 1, cpu_small), cell(model, "onnxruntime", "cpu", 256, 1.0),
                    cell(model, "onnxruntime", "cuda", 1, 5.0), cell(model, "onnxruntime", "cuda", 256, gpu_big)]
        return out

    good = singles(0.1, 2.0) + [data_split("dense1", 1.6), data_split("conv3dense1", 1.2), shard_split(0.1, 1e-7)]
    bad = singles(3.0, 0.5) + [data_split("dense1", 0.7), data_split("conv3dense1", 1.2), shard_split(2.5, 0.3)]
    checked_good = takeaways(good, study)
    checked_bad = takeaways(bad, study)
    by_claim = {g.claim: (g.verdict, b.verdict) for g, b in zip(checked_good, checked_bad, strict=True)}
    assert by_claim["GPUs performed better at large batches"] == (HOLDS, FAILS)
    assert by_claim["GPUs better handled more complex architectures (CNN)"] == (HOLDS, FAILS)
    assert by_claim["the link between the devices (USB there) was the major bottleneck"] == (FAILS, HOLDS)
    link = next(v for v in checked_bad if v.claim.startswith("the link"))
    assert "2.5 ms per batch against the slowest stage's 2 ms" in link.why  # our figures, not a fixed text
    assert by_claim["splitting each batch across both devices beats the faster one alone (small dense and CNN)"] \
        == (HOLDS, FAILS)
    sharding = [v for v in by_claim if v.startswith("a CNN's layers")]
    assert by_claim[sharding[0]] == (HOLDS, FAILS)
    amortise = [v for v in by_claim if v.startswith("large batches")]
    assert by_claim[amortise[0]] == (HOLDS, FAILS)  # bad: the CPU at 256 (1.0 ms) is slower per sample than at 1
    # No Edge TPU among the parts: that takeaway cannot be checked, yet names the part that was fastest.
    edge = checked_bad[0]
    assert edge.verdict == CANNOT and "no Edge TPU" in edge.why and cpu.spec in edge.why
    assert single(good, "dense1", gpu, 256)["per_sample_ms"] == 0.1


def test_without_a_gpu_the_gpu_takeaways_cannot_be_checked() -> None:
    study = plan("default", "onnxruntime:cpu@0,litert:cpu@1")
    records = [cell("dense1", b, "cpu", n, t) for b, n, t in
               (("onnxruntime", 1, 0.02), ("onnxruntime", 256, 0.01), ("litert", 1, 0.01), ("litert", 256, 0.005))]
    checked = {v.claim: v for v in takeaways(records, study)}
    assert checked["GPUs performed better at large batches"].verdict == CANNOT
    assert "litert:cpu@1" in checked["GPUs performed better at large batches"].why
    amortise = next(v for c, v in checked.items() if c.startswith("large batches"))
    assert amortise.verdict == HOLDS and "onnxruntime:cpu@0 dense1 0.02 -> 0.01 ms" in amortise.why


def test_bad_devices_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for devices, words in (("onnxruntime:cpu@0", "two parts"), ("onnxruntime@0,litert@0", "share CPUs"),
                           ("nonsense@0,litert@1", "nonsense")):
        done = run_cli("study", "hetero", "--quick", "--devices", devices, "--results", str(tmp_path / "r"))
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_quick_study_stores_singles_and_splits_in_one_run(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "study.json"
    done = run_cli("study", "hetero", "--quick", "--devices", DEVICES, "--results", str(results), "--json", str(out),
                   timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with ResultStore(results, create=False) as store:
        (run,) = store.runs()
        records = store.cells(run["run_id"])
        request = store.run(run["run_id"])["request"]
    assert run["status"] == "finished" and request["study"] == "hetero" and request["devices"] == DEVICES
    study = plan(request["mode"], request["devices"])
    # Each part alone on each model and batch, and every split, in the same run.
    for part in study.parts:
        for model in (study.dense, study.cnn):
            for batch in study.batches:
                alone = single(records, model, part, batch)
                assert alone is not None and alone["status"] == "ok", (part, model, batch, alone)
    for model in (study.dense, study.cnn):
        (data,) = splits(records, model, "data")
        assert data["status"] == "ok" and data["split"]["parts"][0]["alone_sps"] > 0, data["reason"]
    staged, alone = sharded(records, study.shard)
    assert staged is not None and staged["status"] == "ok", staged
    assert len(staged["split"]["stages"]) == 2 and staged["split"]["prediction"]["latency_ms"] > 0
    # The split's outputs are the unsplit model's: the same fidelity as the whole model on one part.
    whole = single(records, study.shard, study.parts[0], study.shard_batch)
    assert staged["fidelity"]["max_abs"] < 1e-4
    assert staged["fidelity"]["top1_agreement"] == whole["fidelity"]["top1_agreement"] == 1.0
    assert staged["accuracy"]["value"] == pytest.approx(whole["accuracy"]["value"])
    # The printed tables and takeaways are those computed from the stored records.
    printed = render(records, study)
    assert printed in done.stdout
    checked = json.loads(out.read_text())["takeaways"]
    assert [f"- {t['claim']}: {t['verdict']}" for t in checked] == [
        f"- {v.claim}: {v.verdict}" for v in takeaways(records, study)]
    assert all(f"- {t['claim']}: {t['verdict']}" in done.stdout for t in checked)
    assert {t["verdict"] for t in checked} - {CANNOT} and checked[0]["verdict"] == CANNOT  # no Edge TPU here
    shown = run_cli("study", "hetero", "--show", run["run_id"], "--results", str(results))
    assert shown.returncode == 0 and shown.stdout.strip() == printed.strip()
    from tests.test_metrics_doc import defined, fields

    missing = sorted(set().union(*(fields(r) for r in records)) - defined())
    assert not missing, f"fields stored but not defined in docs/metrics.md: {missing}"
