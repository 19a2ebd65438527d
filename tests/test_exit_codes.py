"""Exit codes of the commands that measure (run/exits.py), each from a real small run; usage errors before
anything is stored."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.test_run import crashing  # noqa: F401  (the fixture)
from xpubench import benchmark
from xpubench.cli import main
from xpubench.run.exits import EXIT_NONE_OK, EXIT_OK, EXIT_SOME_NOT_OK, exit_code

QUICK = ["--batch", "1", "--runs", "2", "--min-time", "0", "--warmup-runs", "1", "--warmup-time", "0",
         "--repeats", "1"]


def run(model, backends, tmp_path, *extra):
    return main(["run", str(model), "--backend", backends, "--results", str(tmp_path / "r"),
                 "--json", str(tmp_path / "o.json"), *QUICK, *extra])


def statuses(tmp_path):
    return {c["backend"]: c["status"] for c in json.loads((tmp_path / "o.json").read_text())["cells"]}


def stored_runs(tmp_path) -> int:
    db = tmp_path / "r" / "xpubench.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_the_rule():
    assert exit_code(["ok", "ok"]) == EXIT_OK == 0
    assert exit_code(["ok", "unavailable"]) == exit_code(["failed", "ok"]) == EXIT_SOME_NOT_OK == 3
    assert exit_code(["failed", "unavailable"]) == exit_code([]) == EXIT_NONE_OK == 4


def test_every_cell_ok_is_0(relu_onnx, tmp_path):
    assert run(relu_onnx, "onnxruntime", tmp_path) == 0
    assert statuses(tmp_path) == {"onnxruntime": "ok"}


def test_an_unavailable_cell_beside_an_ok_one_is_3(relu_onnx, tmp_path):
    assert run(relu_onnx, "onnxruntime,edgetpu", tmp_path) == 3  # no Coral runtime here
    assert statuses(tmp_path) == {"onnxruntime": "ok", "edgetpu": "unavailable"}


def test_only_unavailable_cells_is_4(relu_onnx, tmp_path):
    assert run(relu_onnx, "edgetpu", tmp_path, "--precision", "uint8") == 4
    assert statuses(tmp_path) == {"edgetpu": "unavailable"} and stored_runs(tmp_path) == 1


def test_a_crashed_cell_is_a_failed_row_and_4_when_nothing_else_ran(relu_onnx, tmp_path, crashing):  # noqa: F811
    assert run(relu_onnx, "segfault", tmp_path) == 4
    assert statuses(tmp_path) == {"segfault": "failed"}


@pytest.mark.parametrize("args, expected", [
    (["--precision", "int9"], "unknown precision 'int9': choose from fp32"),
    (["--backend", "nosuch"], "unknown backend 'nosuch'"),
    (["--precision", "uint8"], "takes precision uint8: edgetpu, litert do"),
    (["--precision", "fixed<8,3>"], "takes precision fixed<8,3>: hls4ml does"),
])
def test_an_unknown_precision_or_backend_is_2_with_nothing_stored(relu_onnx, tmp_path, capsys, args, expected):
    code = main(["run", str(relu_onnx), "--backend", "onnxruntime", *args, "--results", str(tmp_path / "r"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert stored_runs(tmp_path) == 0


def test_a_json_file_that_is_a_folder_is_2_before_measuring(relu_onnx, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = main(["run", str(relu_onnx), "--backend", "onnxruntime", "--json", str(tmp_path / "out"),
                 "--results", str(tmp_path / "r"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and f"--json {tmp_path / 'out'} is a folder" in err and err.count("\n") == 1, err
    assert stored_runs(tmp_path) == 0
    (tmp_path / "file").write_text("")
    assert main(["run", str(relu_onnx), "--json", str(tmp_path / "file" / "o.json"),
                 "--results", str(tmp_path / "r"), *QUICK]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and stored_runs(tmp_path) == 0


def test_help_names_the_codes(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 every requested cell measured ok" in out and "3 some cells failed or unavailable" in out
    assert "4 no cell measured ok" in out and "130 interrupted" in out


def test_benchmark_returns_unavailable_cells_and_refuses_an_unknown_precision(relu_onnx, tmp_path):
    records = benchmark(str(relu_onnx), backends=("edgetpu",), precisions=("uint8",), batch_sizes=(1,),
                        results=tmp_path / "r")
    assert [r["status"] for r in records] == ["unavailable"]
    with pytest.raises(ValueError, match="unknown precision 'int9'"):
        benchmark(str(relu_onnx), backends=("onnxruntime",), precisions=("int9",), results=tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
