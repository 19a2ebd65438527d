"""The CLI as a user runs it: a real sweep, its JSON, the store, errors, and interruption."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli
from xpubench.models.training import model_dir
from xpubench.models.zoo import ZOO

FAST = ["--runs", "20", "--min-time", "0.05", "--warmup-runs", "2", "--warmup-time", "0"]
CELL_FIELDS = {
    "status", "reason", "model", "dataset", "backend", "device", "precision", "batch_size", "threads",
    "scenario", "latency_ms", "per_sample_ms", "throughput_sps", "runs", "duration_s", "first_inference_ms",
    "stable", "warnings", "accuracy", "model_bytes", "artifact", "energy", "environment",
    "options", "fidelity", "accuracy_delta", "delegated_fraction", "emulated", "details",
}
LATENCY_FIELDS = {"median", "p90", "p99", "mean", "stdev", "min", "max", "ci95_low", "ci95_high"}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Both zoo models on both backends at batch 1 and 32: the default suite, shortened."""
    folder = tmp_path_factory.mktemp("suite")
    out = run_cli("run", "--json", str(folder / "out.json"), "--results", str(folder / "res"), "--tdp", "15", *FAST)
    assert out.returncode == 0, out.stderr
    return folder, out, json.loads((folder / "out.json").read_text())


def test_default_suite_measures_every_cell_with_the_documented_fields(suite):
    _, out, data = suite
    cells = data["cells"]
    assert len(cells) == 8
    assert {(c["model"], c["backend"], c["batch_size"]) for c in cells} == {
        (m, b, n) for m in ("dense1", "conv3dense1") for b in ("onnxruntime", "litert") for n in (1, 32)
    }
    for c in cells:
        assert CELL_FIELDS <= set(c), CELL_FIELDS - set(c)
        assert c["status"] == "ok", c["reason"]
        assert set(c["latency_ms"]) >= LATENCY_FIELDS
        lat = c["latency_ms"]
        assert lat["min"] <= lat["ci95_low"] <= lat["median"] <= lat["ci95_high"] <= lat["max"]
        assert lat["median"] <= lat["p90"] <= lat["p99"]
        assert c["per_sample_ms"] == pytest.approx(lat["median"] / c["batch_size"])
        assert c["runs"] >= 20 and c["first_inference_ms"] > 0
        assert c["model_bytes"] > 0 and c["artifact"].endswith((".onnx", ".tflite"))
        assert c["energy"]["source"] == "modelled" and c["energy"]["k_w_ms"] == pytest.approx(15 * c["per_sample_ms"])
        assert c["environment"]["cpu_model"] and "onnxruntime" in c["environment"]["packages"]
        assert c["accuracy"]["metric"] == "top1"
        # float32 variants agree with the Keras reference on every held-out sample
        assert c["fidelity"]["top1_agreement"] == 1.0 and c["fidelity"]["max_abs"] < 1e-4
        assert c["accuracy_delta"] == 0.0 and c["emulated"] is False
        if c["backend"] == "litert":  # XNNPACK took the convolutions and the dense layer
            assert 0 < c["delegated_fraction"] <= 1
    assert "median [ms]" in out.stdout and "conv3dense1" in out.stdout


def test_converted_models_score_exactly_what_keras_scores(suite):
    _, _, data = suite
    for name, floor in (("dense1", 0.90), ("conv3dense1", 0.95)):
        keras_accuracy = json.loads((model_dir(ZOO[name]) / "meta.json").read_text())["keras_accuracy"]
        assert keras_accuracy >= floor
        scores = {c["accuracy"]["value"] for c in data["cells"] if c["model"] == name}
        assert scores == {keras_accuracy}, (name, scores, keras_accuracy)


def test_show_reads_the_stored_run_in_every_format(suite):
    folder, _, data = suite
    results = str(folder / "res")
    table = run_cli("show", "--results", results)
    assert table.returncode == 0 and data["run_id"] in table.stdout
    shown = json.loads(run_cli("show", data["run_id"], "--format", "json", "--results", results).stdout)
    assert shown == data
    csv = run_cli("show", "--format", "csv", "--results", results).stdout.splitlines()
    assert len(csv) == 9 and "latency_ms.median" in csv[0]
    markdown = run_cli("show", "--format", "markdown", "--results", results).stdout
    assert markdown.count("| dense1 |") == 4


def test_devices_and_zoo_list_what_is_here():
    devices = run_cli("devices")
    assert devices.returncode == 0
    assert "onnxruntime" in devices.stdout and "litert" in devices.stdout and "cpu" in devices.stdout
    zoo = run_cli("zoo")
    assert "dense1" in zoo.stdout and "conv3dense1" in zoo.stdout and "digits" in zoo.stdout


def test_a_users_onnx_file_runs_on_random_inputs(relu_onnx, tmp_path):
    out = run_cli("run", str(relu_onnx), "--backend", "onnxruntime,litert", "--batch", "2", "--json",
                  str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST)
    assert out.returncode == 0, out.stderr  # every cell measured
    cells = {c["backend"]: c for c in json.loads((tmp_path / "o.json").read_text())["cells"]}
    assert cells["onnxruntime"]["status"] == "ok" and cells["onnxruntime"]["accuracy"] is None
    # LiteRT through onnx2tf, compared with ONNX Runtime's float32 reference
    assert cells["litert"]["status"] == "ok" and cells["litert"]["fidelity"]["max_abs"] < 1e-6


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["run", "dense1", "--backend", "tpu9000"], "unknown backend 'tpu9000'"),
        (["run", "dense1", "--batch", "0"], "give positive integers"),
        (["run", "dense1", "--frobnicate"], "unrecognized arguments"),
        (["run", "missing.onnx"], "no such model file"),
        (["run", "dense1", "--runs", "0"], "--runs: at least 1 timed call is needed"),
        (["show", "--results", "/nonexistent/xpubench"], "no results in"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, expected, tmp_path):
    out = run_cli(*args, "--results", str(tmp_path / "r")) if args[0] == "run" else run_cli(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("suffix, content, expected", [
    (".onnx", b"not a model", "not a valid ONNX model"),
    (".tflite", b"0123456789", "not a TFLite model"),
    (".txt", b"hello", "not a model file"),
])
def test_a_file_that_is_not_a_model_is_refused(tmp_path, suffix, content, expected):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    out = run_cli("run", str(path), "--results", str(tmp_path / "r"))
    assert out.returncode == 2 and expected in out.stderr and out.stderr.count("\n") == 1, out.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_a_run_keeps_every_finished_cell(tmp_path, sig, code):
    results = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpubench", "run", "dense1", "--backend", "onnxruntime,litert",
         "--batch", "1,2,4,8,16,32,64,128", "--runs", "10", "--min-time", "1", "--warmup-time", "0",
         "--results", str(results)],  # 16 cells of a second or more: still running when it is stopped
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell starts background jobs with SIGINT ignored, and a child inherits that: give it Ctrl-C back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    stored = 0
    while stored < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (results / "xpubench.db").exists():
            with sqlite3.connect(results / "xpubench.db") as db:
                try:
                    stored = db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0
    assert stored >= 2, "the run never stored two cells"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    shown = json.loads(run_cli("show", "--format", "json", "--results", str(results)).stdout)
    assert 2 <= len(shown["cells"]) < 16
    assert all(c["status"] == "ok" for c in shown["cells"])
    assert "interrupted" in run_cli("show", "--list", "--results", str(results)).stdout
