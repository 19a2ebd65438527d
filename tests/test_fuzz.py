"""Broken model files end as a one-line usage error or a stored run of failed/unavailable rows, never as a crash of
`xpubench run`: the framework-free container checks, and a fixed slice of benchmarks/fuzz_models.py."""

from __future__ import annotations

import importlib.util
import io
import json
import sqlite3
import sys
import zipfile
from pathlib import Path

import pytest

from xpubench.cli import main
from xpubench.errors import UsageError
from xpubench.models.filecheck import check_model_file

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--batch", "1", "--runs", "2", "--min-time", "0", "--warmup-runs", "1", "--warmup-time", "0",
         "--repeats", "1"]


def fuzz_module():
    """benchmarks/fuzz_models.py (benchmarks/ is no package), registered so that its dataclasses resolve."""
    if "fuzz_models" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fuzz_models", ROOT / "benchmarks" / "fuzz_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["fuzz_models"] = module
        spec.loader.exec_module(module)
    return sys.modules["fuzz_models"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return fuzz_module().build_seeds(tmp_path_factory.mktemp("seeds"))


def refused(path: Path, fmt: str) -> str:
    with pytest.raises(UsageError) as caught:
        check_model_file(path, fmt)
    return str(caught.value)


def test_the_seeds_pass_the_container_checks(seeds):
    for fmt, path in seeds.items():
        check_model_file(path, fmt)


def test_broken_containers_are_refused_without_a_framework(seeds, tmp_path):
    onnx, tflite, keras = (seeds[f].read_bytes() for f in ("onnx", "tflite", "keras"))
    (tmp_path / "cut.onnx").write_bytes(onnx[: len(onnx) // 2])
    assert "not a valid ONNX model (field" in refused(tmp_path / "cut.onnx", "onnx")
    (tmp_path / "cut.tflite").write_bytes(tflite[:200])
    assert "not a TFLite model (" in refused(tmp_path / "cut.tflite", "tflite")
    flipped = bytearray(keras)
    with zipfile.ZipFile(io.BytesIO(keras)) as archive:
        info = archive.getinfo("model.weights.h5")
    flipped[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # inside the member's data
    (tmp_path / "flip.keras").write_bytes(bytes(flipped))
    assert "model.weights.h5 is corrupt" in refused(tmp_path / "flip.keras", "keras")
    no_weights = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(keras)) as archive, zipfile.ZipFile(no_weights, "w") as out:
        out.writestr("config.json", archive.read("config.json"))
    (tmp_path / "empty.keras").write_bytes(no_weights.getvalue())
    assert "no model.weights.h5" in refused(tmp_path / "empty.keras", "keras")


def test_text_that_is_not_utf8_is_refused(seeds, tmp_path):
    """Found by the fuzzer: a flipped byte in the symbolic batch dimension's name passed onnx.checker, and ONNX
    Runtime then raised UnicodeDecodeError reading the input's shape: failed rows instead of a usage error."""
    import onnx

    model = onnx.load(seeds["onnx"])
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "n"
    data = model.SerializeToString()
    at = data.index(b"\x12\x01n") + 2  # Dimension.dim_param, one byte long
    (tmp_path / "dim.onnx").write_bytes(data[:at] + b"\xd9" + data[at + 1:])
    onnx.checker.check_model(str(tmp_path / "dim.onnx"))  # the checker lets it through
    assert "a dim's text at byte" in refused(tmp_path / "dim.onnx", "onnx")


@pytest.mark.parametrize("flip", [20, 59])  # the buffers' offset (LiteRT's verifier), the schema version
def test_a_garbled_tflite_file_is_a_usage_error_with_nothing_stored(seeds, tmp_path, capsys, flip):
    data = bytearray(seeds["tflite"].read_bytes())
    data[flip] ^= 0xFF  # past the container check, refused by LiteRT
    (tmp_path / "bad.tflite").write_bytes(bytes(data))
    check_model_file(tmp_path / "bad.tflite", "tflite")
    (tmp_path / "bad.tflite").write_bytes(bytes(data))
    code = main(["run", str(tmp_path / "bad.tflite"), "--backend", "litert", "--results", str(tmp_path / "r"),
                 *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "is not a" in err and "TFLite model" in err and "Traceback" not in err, err
    assert not (tmp_path / "r" / "xpubench.db").exists() or not sqlite3.connect(
        tmp_path / "r" / "xpubench.db").execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.slow
def test_a_fixed_slice_of_the_fuzzer_never_crashes_the_parent(seeds, tmp_path):
    fuzz = fuzz_module()
    mutants = fuzz.make_mutants(seeds, 30, 20261130, tmp_path / "mutants")
    outcomes = [fuzz.run_one(m, tmp_path / "results") for m in mutants]
    crashes = [f"{o.mutant.path.name} ({o.mutant.what}): {o.problem}" for o in outcomes if o.kind == "CRASH"]
    assert not crashes, "\n".join(crashes)
    assert {o.kind for o in outcomes} == {"usage", "run"}  # both ends are reached
    for o in outcomes:
        if o.kind == "run":
            assert o.code == (0 if set(o.statuses) == {"ok"} else 3 if "ok" in o.statuses else 4)
    json.dumps([fuzz.label(o) for o in outcomes])  # the tally's labels are plain strings
