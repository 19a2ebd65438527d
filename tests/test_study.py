"""`xpubench study seeds`: the three tables, from stored records, beside the source studies' figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from xpubench.report.table import num
from xpubench.run.exits import exit_code
from xpubench.store import ResultStore
from xpubench.studies.seeds import EDGE_TPU, GPU, LARTPC_ROWS, QUICK_LARTPC_STAND_IN, plan, render, tables


def record(model: str, backend: str, device: str, precision: str, batch: int = 1, **extra: Any) -> dict[str, Any]:
    """A cell record as the store keeps it, with the fields the study's tables read."""
    base = {"model": model, "backend": backend, "device": device, "precision": precision, "batch_size": batch,
            "status": "ok", "reason": "", "options": {}}
    return {**base, **extra}


def row(table_text: str, label: str) -> list[str]:
    """The cells of the printed row starting with `label` (columns are separated by 2+ spaces)."""
    import re

    for line in table_text.splitlines():
        if line.startswith(label + "  ") or line == label:
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row {label!r} in\n{table_text}")


def test_tables_show_stored_values_in_the_studies_layout() -> None:
    records = [
        record("resnet50v2", "tensorflow", "cpu", "fp32", per_sample_ms=12.345678, model_bytes=94_300_000,
               accuracy={"metric": "top1", "value": 0.6415}, energy={"k_w_ms": 185.2}),
        record("resnet50v2", "tensorflow", GPU, "fp32", status="unavailable",
               reason="tensorflow runs on cpu, not cuda"),
        record("resnet50v2", "litert", "cpu", "int8", per_sample_ms=3.21, model_bytes=24_000_000,
               accuracy={"metric": "top1", "value": 0.62}, energy={"k_w_ms": 48.15}),
        record("resnet50v2", *EDGE_TPU, status="unavailable", reason="libedgetpu is not installed"),
        record("dense1", "litert", "cpu", "fp32", 1, per_sample_ms=0.0069),
        record("dense1", "litert", "cpu", "fp32", 32, per_sample_ms=0.0011),
        record("matmul-scan-64", "litert", "cpu", "fp32", per_sample_ms=0.0042, roofline={"gflops": 1.95}),
        record("matmul-scan-128", "litert", "cpu", "fp32", status="failed", reason="RuntimeError: boom"),
    ]
    found = tables(records, plan("default"))
    a = found["lartpc"][0].render()
    assert row(a, "TensorFlow") == ["TensorFlow", "94.3", "64.15%", "12.35", "not here", "-", "185.2"]
    assert row(a, "LiteRT integer (int8)") == [
        "LiteRT integer (int8)", "24", "62.00%", "3.21", "not run", "not here", "48.15"]
    assert "GPU: unavailable: tensorflow runs on cpu, not cuda" in a
    assert "best K [W*ms]: here cpu 48.15; study CPU 613.2" in a
    study_a = found["lartpc"][1].render()
    assert row(study_a, "TensorFlow")[1:] == ["274", "64.15%", "40.88 ms", "4.91 ms", "-"]
    assert len(found["lartpc"]) == 2  # no densenet169 records: no densenet169 tables
    b = found["edge"][0].render()
    assert b.splitlines()[1].split() == ["runtime", "precision", "dense1", "b1", "[us]", "dense1", "b32", "[us]"]
    assert row(b, "LiteRT fp32")[1:] == ["6.9", "1.1"]
    assert row(found["edge"][1].render(), "NVIDIA Quadro K620 / TFLite float16")[1:] == ["5", "1"]
    c = found["scans"][0].render()
    assert row(c, "64") == ["64", "0.0042", "1.95", "not run", "not run"]
    assert row(c, "128") == ["128", "failed", "-", "not run", "not run"]
    assert "litert: failed: RuntimeError: boom" in c
    assert row(found["scans"][1].render(), "1024")[-1] == "0.1555"  # the Xeon's figure in the study


def test_plan_keeps_the_matrix_to_what_the_tables_need() -> None:
    default = plan("default")
    cells = [c for m in default.matrices for c in m.cells()]
    assert len(cells) == len({c.key for c in cells}) == 104
    lartpc = {(c.backend, c.precision) for m in default.lartpc for c in m.cells() if c.device == "cpu"}
    assert lartpc == {(b, p) for _, b, p in LARTPC_ROWS}
    assert {c.batch_size for m in default.edge for c in m.cells()} == {1, 32}
    assert all(c.batch_size == 1 for m in (*default.lartpc, *default.scans) for c in m.cells())
    assert all(m.endswith(":full") or m.startswith(("matmul", "dense-scan")) for m in plan("full").models())
    with pytest.raises(ValueError, match="unknown study mode"):
        plan("huge")


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["--tdp", "-5"], ["--full", "--quick"], ["--show", "nope", "--quick"]):
        done = run_cli("study", "seeds", *args, "--results", str(tmp_path))
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = run_cli("study", "nonsense")
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.slow
def test_quick_study_stores_one_run_and_prints_its_values(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = run_cli("study", "seeds", "--quick", "--results", str(results), timeout=900)
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: cells unavailable here (e.g. bf16 without BF16)
    with ResultStore(results, create=False) as store:
        (run,) = store.runs()
        records = store.cells(run["run_id"])
        request = store.run(run["run_id"])["request"]
    assert done.returncode == exit_code(r["status"] for r in records)
    assert run["status"] == "finished" and request["study"] == "seeds" and request["mode"] == "quick"
    assert f"run {run['run_id']}" in done.stdout
    printed = render(tables(records, plan("quick")))
    assert printed in done.stdout  # the printed tables are the stored records'

    def stored(model: str, backend: str, device: str, precision: str, batch: int = 1) -> dict[str, Any]:
        (r,) = [r for r in records if (r["model"], r["backend"], r["device"], r["precision"], r["batch_size"])
                == (model, backend, device, precision, batch)]
        return r

    lite = stored(QUICK_LARTPC_STAND_IN, "litert", "cpu", "fp32")
    assert lite["status"] == "ok", lite["reason"]
    out = done.stdout
    a = out[out.index("(a) LArTPC conv3dense1: ours"):out.index("(a) LArTPC resnet50v2: the study")]
    lite_row = row(a, "LiteRT not optimised")
    assert lite_row[1:4] == [num(lite["model_bytes"] / 1e6), f"{lite['accuracy']['value'] * 100:.2f}%",
                             num(lite["per_sample_ms"])]
    assert lite_row[4] == "not here"  # GPU: no CUDA for LiteRT here
    assert stored(QUICK_LARTPC_STAND_IN, "tensorflow", GPU, "fp32")["status"] == "unavailable"
    assert row(a, "LiteRT integer (int8)")[-2] == "not here"  # Edge TPU row, with its reason below
    assert "Edge TPU: unavailable: " + stored(QUICK_LARTPC_STAND_IN, *EDGE_TPU)["reason"] in a
    dense = [stored("dense1:tiny", "litert", "cpu", "fp32", b) for b in (1, 32)]
    b = out[out.index("(b) edge networks: ours"):out.index("(b) edge networks: the study")]
    assert row(b, "LiteRT fp32")[1:] == [num(r["per_sample_ms"] * 1000) for r in dense]
    scan = stored("matmul-scan-64:tiny", "litert", "cpu", "fp32")
    c = out[out.index("(c) matmul-scan (matrix x vector): ours"):out.index("(c) dense-scan")]
    assert row(c, "64")[1] == num(scan["per_sample_ms"])
    assert "0.1555" in out and "40.88 ms" in out  # the studies' own figures beside ours
    shown = run_cli("study", "seeds", "--show", run["run_id"], "--results", str(results))
    assert shown.returncode == 0 and shown.stdout.strip() == printed.strip()
    assert run_cli("show", run["run_id"], "--results", str(results)).returncode == 0
