"""Split execution: data-parallel parts and a layer pipeline give the whole model's outputs, cuts inside a
skip connection are refused with their reason, and a split is stored as a cell whose fields are defined."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.core.measure import MeasureConfig
from xpubench.hardware.host import allowed_cpus
from xpubench.hetero.cuts import check_cuts, cut_points, extract_stages
from xpubench.hetero.parts import Part, parse_parts
from xpubench.run.matrix import CellSettings

QUICK = CellSettings(MeasureConfig(warmup_runs=2, warmup_time_s=0.0, min_runs=5, min_time_s=0.05, max_time_s=5), 15.0)
CPUS = allowed_cpus()
FIRST, LAST = (CPUS[0],), (CPUS[-1],)  # two cores here; the same one where there is only one


@pytest.fixture(scope="module")
def conv():
    """conv3dense1 at tiny size (trains in seconds) with its float32 reference, prepared in a worker as a sweep
    prepares it: this process may have started TensorFlow already, with other threads than the reference's."""
    from xpubench.run.launcher import ProcessLauncher
    from xpubench.run.matrix import Matrix
    from xpubench.run.sweep import Sweep
    from xpubench.run.tasks import load_workload

    model = "conv3dense1:tiny"
    with ProcessLauncher() as launcher, Sweep(launcher) as sweep:
        prepared = sweep.prepare(Matrix(models=(model,), backends=("onnxruntime",)), model, cells=())
        assert not isinstance(prepared, str), prepared
        assert prepared.reference_note is None, prepared.reference_note
        return load_workload(prepared, print)


def assert_sound_trace(split, rows):
    """The stored trace: a few batches, every interval ordered and inside the window, on the named rows; the
    attribution adds up to the wall time per batch."""
    trace = split["trace"]
    assert trace["batches"] == 4 and [r for r in trace["rows"] if r in rows] == rows
    intervals = trace["intervals"]
    starts = [i["start_ms"] for i in intervals]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert all(0 <= i["start_ms"] <= i["end_ms"] <= trace["window_ms"] for i in intervals)
    assert {i["row"] for i in intervals if i["kind"] == "work"} == set(rows)
    assert {i["batch"] for i in intervals} == {0, 1, 2, 3}
    attribution = split["attribution"]
    assert attribution["speedup"] > 0 and attribution["parallel_speedup"] > 0
    assert attribution["ideal_ms"] + sum(attribution["lost_ms"].values()) == pytest.approx(attribution["wall_ms"])


def test_parts_parse_and_refuse_shared_cpus():
    parts = parse_parts(f"onnxruntime:cpu@{CPUS[0]},litert:xnnpack=off:int8-dynamic")
    assert parts[0] == Part("onnxruntime", "cpu", "fp32", FIRST)
    assert parts[1] == Part("litert", "cpu", "int8-dynamic", (), (("xnnpack", "off"),))
    assert parts[1].spec == "litert:xnnpack=off:cpu:int8-dynamic"
    with pytest.raises(ValueError, match="share CPUs"):
        parse_parts(f"onnxruntime@{CPUS[0]},litert@{CPUS[0]}")


def test_data_parallel_split_equals_the_unsplit_model(conv):
    from xpubench.hetero.cell import measure_data_parallel
    from xpubench.hetero.data_parallel import DataParallel, single_outputs

    parts = (Part("onnxruntime", cpus=FIRST), Part("litert", cpus=LAST))
    x = [conv.fidelity_inputs()[0][:48]]
    split = DataParallel(parts, conv)
    try:
        split.rates = [2.0, 1.0]  # 32 rows to onnxruntime, 16 to litert
        joined = split.predict(x)[0]
        assert split.calls[-1][1] == [32, 16]
    finally:
        split.close()
    np.testing.assert_allclose(joined[:32], single_outputs(parts[0], conv, [x[0][:32]])[0], atol=1e-6)
    np.testing.assert_allclose(joined[32:], single_outputs(parts[1], conv, [x[0][32:]])[0], atol=1e-6)
    np.testing.assert_allclose(joined, single_outputs(parts[0], conv, x)[0], atol=1e-5)  # runtimes agree

    measured = measure_data_parallel("conv3dense1:tiny", conv, parts, 32, QUICK)
    result, record = measured.result, measured.split
    assert result.status == "ok", result.reason
    assert result.cell.device == f"onnxruntime:cpu@{CPUS[0]}+litert:cpu@{CPUS[-1]}"
    assert result.fidelity is not None and result.fidelity.max_abs < 1e-4
    assert [p["part"] for p in record["parts"]] == [p.spec for p in parts]
    assert sum(p["share"] for p in record["parts"]) == pytest.approx(1.0)
    assert sum(p["samples_per_batch"] for p in record["parts"]) == 32
    assert all(p["busy_ms"] > 0 and p["idle_ms"] >= 0 and p["alone_sps"] > 0 for p in record["parts"])
    assert record["search"] and record["speedup"] > 0 and record["best_alone_part"] in {p.spec for p in parts}
    assert_sound_trace(record, [p.spec for p in parts])
    calls = [[i for i in record["trace"]["intervals"] if i["batch"] == b] for b in range(4)]
    assert all(max(i["end_ms"] for i in c) <= min(i["start_ms"] for i in d) for c, d in itertools.pairwise(calls))


@pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: every part runs on it")
def test_a_part_stays_on_its_cpus_while_it_runs(conv):
    import os

    from xpubench.hetero.executors import ThreadPart, run_once

    x = [conv.fidelity_inputs()[0][:8]]
    for backend in ("onnxruntime", "openvino", "litert"):
        runner = ThreadPart(Part(backend, cpus=LAST), conv)
        try:
            runner.call(run_once, runner.backend, x)
            assert runner.call(os.sched_getaffinity, 0) == set(LAST), backend
        finally:
            runner.close()


@pytest.mark.parametrize("backends", [("onnxruntime", "openvino"), ("onnxruntime", "openvino", "onnxruntime")])
def test_pipeline_stages_chain_to_the_whole_model(conv, backends):
    import onnx

    from xpubench.hetero.cell import measure_pipeline

    model = onnx.load(str(conv.artifact("onnx:fp32")))
    valid = [c.tensor for c in cut_points(model) if c.valid]
    cuts = [valid[3], valid[5]][: len(backends) - 1]  # after the pooling, after the second convolution
    parts = tuple(Part(b, cpus=(CPUS[i % len(CPUS)],)) for i, b in enumerate(backends))
    measured = measure_pipeline("conv3dense1:tiny", conv, parts, cuts, 16, QUICK, conv.artifacts.folder / "split")
    result, record = measured.result, measured.split
    assert result.status == "ok", result.reason
    assert result.fidelity.max_abs < 1e-5  # float32 rounding against the whole model in TensorFlow
    assert [s["part"] for s in record["stages"]] == [p.spec for p in parts]
    assert all(s["median_ms"] > 0 for s in record["stages"])
    assert len(record["transfers"]) == len(cuts) and all(t["median_ms"] > 0 and t["bytes"] > 0
                                                         for t in record["transfers"])
    assert record["stream"]["throughput_sps"] == result.throughput_sps > 0
    assert_sound_trace(record, [f"stage {i} {p.spec}" for i, p in enumerate(parts)])
    # Each batch goes through the stages in order; a stage takes the batches in order.
    for b in range(4):
        mine = [i for i in record["trace"]["intervals"] if i["batch"] == b]
        assert [i["row"] for i in mine if i["kind"] == "work"] == [f"stage {j} {p.spec}" for j, p in enumerate(parts)]
        assert all(x["end_ms"] <= y["start_ms"] for x, y in itertools.pairwise(mine))


def skip_model(path):
    """Two inputs; x1 skips over a MatMul and a Relu to an Add; the second input joins at the end."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(1).standard_normal((4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("Relu", ["a"], ["x1"]), helper.make_node("MatMul", ["x1", "w"], ["x2"]),
             helper.make_node("Relu", ["x2"], ["x3"]), helper.make_node("Add", ["x3", "x1"], ["s"]),
             helper.make_node("Mul", ["s", "b"], ["y"])]
    graph = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 4])
                                              for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return model


def test_cuts_inside_a_skip_connection_are_refused_with_a_reason(tmp_path):
    import onnxruntime as ort

    model = skip_model(tmp_path / "skip.onnx")
    cuts = {c.tensor: c for c in cut_points(model)}
    assert [t for t, c in cuts.items() if c.valid] == ["x1", "s"]  # b, a model input, is fed, not carried
    for tensor in ("x2", "x3"):
        reason = cuts[tensor].reason
        assert reason.startswith(f"{tensor}: inside a skip connection") and "x1" in reason and "Add" in reason
        assert "\n" not in reason
        with pytest.raises(ValueError, match="skip connection"):
            check_cuts(model, [tensor])
    with pytest.raises(ValueError, match="input of the model"):
        check_cuts(model, ["b"])
    # Allowed to carry every live tensor, the cut in the skip still gives the whole model's outputs.
    carried = check_cuts(model, ["x2"], carry_skips=True)
    assert carried[0].carried == ("x2", "x1")
    stages = extract_stages(tmp_path / "skip.onnx", carried, tmp_path / "stages")
    assert stages[1].inputs == ("x2", "x1", "b")
    a, b = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    values = {"a": a, "b": b}
    for stage in stages:
        out = ort.InferenceSession(str(stage.path)).run(None, {n: values[n] for n in stage.inputs})
        values.update(zip(stage.outputs, out, strict=True))
    whole = ort.InferenceSession(str(tmp_path / "skip.onnx")).run(None, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(values["y"], whole)


def test_cli_lists_cuts_and_stores_a_split_whose_fields_are_defined(tmp_path):
    from tests.test_metrics_doc import defined, fields

    skip_model(tmp_path / "skip.onnx")
    listed = run_cli("split", str(tmp_path / "skip.onnx"), "--devices", "onnxruntime", "--list-cuts")
    assert listed.returncode == 0, listed.stderr
    assert "valid cut: x1" in listed.stdout and "refused:   x2: inside a skip connection" in listed.stdout
    bad = run_cli("split", str(tmp_path / "skip.onnx"), "--devices", f"onnxruntime@{CPUS[0]},litert@{CPUS[0]}")
    assert bad.returncode == 2 and "share CPUs" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    out = tmp_path / "cells.json"
    done = run_cli("split", str(tmp_path / "skip.onnx"), "--devices",
                   f"onnxruntime@{CPUS[0]},onnxruntime@{CPUS[-1]}", "--mode", "auto", "--batch", "8", "--runs", "5",
                   "--min-time", "0.05", "--warmup-runs", "1", "--warmup-time", "0", "--results", str(tmp_path / "r"),
                   "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "predicted" in done.stdout and "measured" in done.stdout
    records = json.loads(out.read_text())["cells"]
    assert records and all(r["status"] == "ok" and r["backend"] == "split" and r["split"] for r in records)
    missing = sorted(set().union(*(fields(r) for r in records)) - defined())
    assert not missing, f"fields stored but not defined in docs/metrics.md: {missing}"
    assert all(r["split"]["trace"]["intervals"] for r in records)

    # The report draws a timeline for each split cell and none for a single cell beside them.
    single = tmp_path / "single.json"
    done = run_cli("run", str(tmp_path / "skip.onnx"), "--backend", "onnxruntime", "--batch", "8", "--runs", "5",
                   "--min-time", "0.05", "--warmup-runs", "1", "--warmup-time", "0", "--results", str(tmp_path / "r"),
                   "--json", str(single))
    assert done.returncode == 0, done.stderr
    runs = [json.loads(out.read_text())["run_id"], json.loads(single.read_text())["run_id"]]
    page = tmp_path / "report.html"
    done = run_cli("report", *runs, "--html", str(page), "--results", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert html.count('id="plot-timeline-') == len(records) and 'id="timelines"' in html
    assert "speed-up" in html and "stage 0 onnxruntime" in html
    single_device = json.loads(single.read_text())["cells"][0]["device"]
    assert f"on {single_device} " not in html.replace("</b>", "")  # no timeline titled for the single cell
    shown = run_cli("show", runs[0], "--results", str(tmp_path / "r"))
    assert shown.returncode == 0 and "speed-up" in shown.stdout and "over the" in shown.stdout


def test_speedup_attribution_names_each_loss():
    from xpubench.hetero.trace import data_attribution, pipeline_attribution
    from xpubench.report.timeline import attribution_line

    # Parts of 100 and 50 samples/ms alone; together 100 rows in 1.0 ms and 50 in 1.1 ms, 0.05 ms of copies,
    # 1.2 ms per call.
    found = data_attribution(150, [1e5, 5e4], [(1_200_000, [100, 50], [1_000_000, 1_100_000], 50_000)])
    assert found["reference_ms"] == pytest.approx(1.5) and found["ideal_ms"] == pytest.approx(1.0)
    assert found["speedup"] == pytest.approx(1.25) and found["parallel_speedup"] == pytest.approx(1.5)
    lost = found["lost_ms"]
    assert lost["contention"] == pytest.approx(150 / (100 + 50 / 1.1) - 1.0)
    assert lost["imbalance"] == pytest.approx(1.1 - 150 / (100 + 50 / 1.1))
    assert lost["transfers"] == pytest.approx(0.05) and lost["handoff"] == pytest.approx(0.05)
    # Stages of 3 and 1 ms, a 0.5 ms copy between; the second stage streams at 1.5 ms, the stream at 3.2 ms a batch.
    found = pipeline_attribution([3.0, 1.0], [0.5], [3.0, 1.5], 3.2)
    assert found["reference_ms"] == 4.0 and found["ideal_ms"] == 2.0 and found["parallel_speedup"] == 2.0
    assert found["lost_ms"] == pytest.approx({"contention": 0.0, "imbalance": 1.0, "transfers": 0.0, "handoff": 0.2})
    line = attribution_line({"split": {"attribution": found}})
    assert line.startswith("speed-up 1.25x over the stages back to back: parallel work 2.00x")
    assert "imbalance 31 %" in line
    assert attribution_line({"split": None}) is None


def test_planner_predicts_stages_as_profiled_with_hops_and_slowdown():
    from xpubench.hetero.cuts import Cut
    from xpubench.hetero.planner import Profile

    a, b, c = Part("onnxruntime", cpus=(0,)), Part("openvino", cpus=(1,)), Part("litert", cpus=(2,))
    cuts = (Cut("t1", 0, ("t1",)), Cut("t2", 1, ("t2",)))
    found = Profile(cuts, segment_ms=((4.0, 4.0, 4.0), (4.0, 4.0, 4.0), (4.0, 4.0, 4.0)), transfer_ms=(0.5, 0.25),
                    refused=(), batch=100, first_ms=((3.0, 9.0, 9.0), (6.0, 9.0, 9.0)),
                    last_ms=((7.0, 5.0, 9.0), (9.0, 2.0, 9.0)), whole_ms=(10.0, 10.0, 6.0), slowdown=(1.5, 1.2, 1.0),
                    hop_ms=0.01)
    # Two stages: the profiled first and last stage graphs, not their segments' sums (12 ms on every part).
    plan = found.predict(["t1"], [a, b], [a, b, c])
    assert plan.stage_ms == (3.0, 5.0) and plan.latency_ms == pytest.approx(3.0 + 5.0 + 0.5 + 3 * 0.01)
    # Streaming, the first stage works beside the slower second all its time (3 ms x a's 1.5 = 4.5 ms); the
    # second (5 + 0.5 ms) is slowed by b's 1.2 for 4.5 ms of its period x: x = 5.5 (1 + 0.2 x 4.5 / x).
    slowest = (5.5 + (5.5**2 + 4 * 5.5 * 0.9) ** 0.5) / 2
    assert plan.throughput_sps == pytest.approx(100 / (slowest / 1e3), rel=1e-3)
    # The whole model on one part is its own profile; a middle stage its segments scaled by whole / sum (6 / 12).
    assert found.predict([], [a], [a, b, c]).stage_ms == (10.0,)
    assert found.predict(["t1", "t2"], [b, c, a], [a, b, c]).stage_ms == (9.0, 2.0, 9.0)
