"""Test set-up: HOME and every framework cache point at one temporary folder for the session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="xpubench-tests-"))
# Set at import, before any runtime is imported: ONNX Runtime, OpenVINO and Keras write under
# $HOME, torch.compile under its cache folders.
for name, sub in (
    ("HOME", "home"),
    ("XDG_CACHE_HOME", "cache"),
    ("XPUBENCH_CACHE", "cache/xpubench"),
    ("KERAS_HOME", "keras"),
    ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
    ("TMPDIR", "tmp"),
):
    os.environ[name] = str(_HOME / sub)
    (_HOME / sub).mkdir(parents=True, exist_ok=True)
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
tempfile.tempdir = None  # re-read TMPDIR


@pytest.fixture(scope="session")
def test_home() -> Path:
    return _HOME


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `xpubench ARGS` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "xpubench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=os.environ.copy(),
    )


@pytest.fixture
def relu_onnx(tmp_path: Path) -> Path:
    """A one-node ONNX model with a dynamic batch: ONNX Runtime runs it and gives its reference, no TensorFlow."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["in"], ["out"])], "relu",
        [helper.make_tensor_value_info("in", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 16])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
