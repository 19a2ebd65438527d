"""`run --backend split:MODE:PART+PART` puts split cells in a matrix beside single ones: their own cell keys, the
same feasibility answer, measured (with repeats) in the sweep's workers, stored with the split record."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from xpubench.hardware.host import allowed_cpus
from xpubench.hetero.parts import Part
from xpubench.hetero.spec import SplitSpec
from xpubench.run.matrix import Matrix, matrix_from_json, matrix_to_json
from xpubench.run.resources import resources_for_cell

CPUS = allowed_cpus()
# Two parts on cores of their own where there are two; unpinned on a one-core machine.
A, B = (f"@{CPUS[0]}", f"@{CPUS[-1]}") if len(CPUS) > 1 else ("", "")
CUT = "dense1_1/dense_1/MatMul:0"  # a tensor name with a colon, as Keras' ONNX export writes them
QUICK = ("--runs", "5", "--min-time", "0.05", "--max-time", "2", "--warmup-runs", "1", "--warmup-time", "0")


def test_a_split_spec_parses_round_trips_and_refuses_what_cannot_run_anywhere():
    spec = SplitSpec.parse(f"split:pipeline:onnxruntime@0+litert:xnnpack=off:int8-dynamic@1:cut={CUT}")
    assert spec.parts == (Part("onnxruntime", cpus=(0,)), Part("litert", "cpu", "int8-dynamic", (1,),
                                                               (("xnnpack", "off"),)))
    assert spec.cuts == (CUT,) and SplitSpec.parse(spec.text) == spec
    cell = spec.cell("dense1", 8)
    assert SplitSpec.of_cell(cell) == spec and cell.precision == "mixed" and cell.threads == 2
    assert SplitSpec.parse("split:data:onnxruntime+litert:executor=process").executor == "process"
    gpus = SplitSpec.parse("split:data:onnxruntime:cuda:0:fp16@0+torch:cuda:1")
    assert [(p.device, p.precision) for p in gpus.parts] == [("cuda:0", "fp16"), ("cuda:1", "fp32")]
    assert resources_for_cell(gpus.cell("dense1", 8)) == {"gpu": 2}  # a cluster worker gives it both GPUs
    for bad, why in [("split:data:onnxruntime@0", "at least two parts"), ("split:auto:onnxruntime+litert", "auto"),
                     ("split:pipeline:onnxruntime+litert", "needs its cuts"), ("split:data", "no parts"),
                     ("split:data:onnxruntime@0+litert@0", "share CPUs"), ("split:data:a+b:cut=x", "cuts a pipeline"),
                     ("split:pipeline:a+b:cut=x:cut=y", "2 cuts make 3 stages")]:
        with pytest.raises(ValueError, match=why):
            SplitSpec.parse(bad)


def test_split_cells_sit_in_the_matrix_with_keys_of_their_own_and_survive_resume():
    matrix = Matrix(models=("dense1",), backends=("onnxruntime", "split:data:onnxruntime+litert",
                                                 f"split:pipeline:onnxruntime+litert:cut={CUT}"),
                    batch_sizes=(1, 32), threads=(1, 2))
    matrix.check_choices()
    cells = matrix.cells()
    splits = [c for c in cells if c.backend == "split"]
    assert len(cells) == 8 and len(splits) == 4  # a split's threads are its parts', not --threads'
    assert len({c.key for c in cells}) == len(cells)
    assert {dict(c.options)["mode"] for c in splits} == {"data", "pipeline"}
    assert matrix_from_json(json.loads(json.dumps(matrix_to_json(matrix)))).cells() == cells
    with pytest.raises(ValueError, match="unknown backend 'tensorflw'"):
        Matrix(models=("dense1",), backends=("split:data:onnxruntime+tensorflw",)).check_choices()


def test_a_malformed_split_exits_2_with_one_line_before_anything_is_stored(tmp_path):
    done = run_cli("run", "dense1", "--backend", "onnxruntime,split:data:onnxruntime", "--results", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "at least two parts" in done.stderr
    assert not list(tmp_path.iterdir())


def test_run_stores_single_and_split_cells_in_one_run(tmp_path):
    out = tmp_path / "cells.json"
    backends = (f"onnxruntime,split:data:onnxruntime{A}+onnxruntime{B},"
                f"split:pipeline:onnxruntime{A}+onnxruntime{B}:cut={CUT},"
                f"split:pipeline:onnxruntime{A}+onnxruntime{B}:cut=no_such_tensor")
    done = run_cli("run", "dense1", "--backend", backends, "--batch", "16", "--repeats", "2", *QUICK,
                   "--results", str(tmp_path / "r"), "--json", str(out))
    assert done.returncode == 3, done.stderr  # the cut this model lacks is an unavailable row
    records = {(r["backend"], r["options"].get("mode"), r["status"]): r for r in json.loads(out.read_text())["cells"]}
    single = records["onnxruntime", None, "ok"]
    data, pipeline = records["split", "data", "ok"], records["split", "pipeline", "ok"]
    assert "no_such_tensor is no tensor" in records["split", "pipeline", "unavailable"]["reason"]
    assert single["split"] is None
    assert data["split"]["mode"] == "data" and len(data["split"]["parts"]) == 2
    assert pipeline["split"]["mode"] == "pipeline" and len(pipeline["split"]["stages"]) == 2
    for split in (data, pipeline):
        assert split["repeats"]["count"] == 2  # measured in repeats like any single-stream cell
        assert split["fidelity"]["top1_agreement"] == single["fidelity"]["top1_agreement"] == 1.0
        assert split["fidelity"]["max_abs"] == pytest.approx(single["fidelity"]["max_abs"], abs=1e-6)
        assert split["accuracy"] == single["accuracy"]
    assert data["split"]["speedup"] == pytest.approx(data["throughput_sps"] / data["split"]["best_alone_sps"])
    shown = run_cli("show", "--results", str(tmp_path / "r"))
    assert shown.returncode == 0, shown.stderr
    assert "split[executor=thread,mode=data]" in shown.stdout and f"cuts={CUT}" in shown.stdout
