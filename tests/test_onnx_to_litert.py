"""An ONNX model reaches LiteRT through onnx2tf: NCHW inputs fed in the layout the converted model takes, outputs
compared with ONNX Runtime's float32 reference."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytest.importorskip("onnx2tf")

FAST = ["--runs", "10", "--min-time", "0.02", "--warmup-runs", "1", "--warmup-time", "0", "--repeats", "1"]


@pytest.fixture
def conv_onnx(tmp_path):
    """A small NCHW conv net with a dynamic batch: Conv 3->4 (3x3), Relu, flatten, MatMul to 5 scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2, "W"),
               numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "B"),
               numpy_helper.from_array(rng.standard_normal((4 * 8 * 8, 5)).astype(np.float32) * 0.05, "FW"),
               numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Reshape", ["r", "flat"], ["f"]),
         helper.make_node("MatMul", ["f", "FW"], ["y"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "conv.onnx")
    return tmp_path / "conv.onnx"


@pytest.mark.slow
def test_onnx_models_run_on_litert_fp32_and_int8_with_fidelity(relu_onnx, conv_onnx, tmp_path):
    out = run_cli("run", str(relu_onnx), str(conv_onnx), "--backend", "litert", "--precision", "fp32,int8",
                  "--batch", "2", "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST,
                  timeout=600)
    assert out.returncode == 0, out.stderr
    cells = {(Path(c["model"]).name, c["precision"]): c for c in json.loads((tmp_path / "o.json").read_text())["cells"]}
    assert sorted(cells) == [("conv.onnx", "fp32"), ("conv.onnx", "int8"), ("relu.onnx", "fp32"),
                             ("relu.onnx", "int8")]
    for (model, precision), cell in cells.items():
        assert cell["status"] == "ok", (model, precision, cell["reason"])
        assert cell["fidelity"]["reference"] == "onnxruntime onnx:fp32"
        limit = 1e-4 if precision == "fp32" else 0.1  # int8: a quantisation step or so of the outputs' range
        assert cell["fidelity"]["max_abs"] < limit, (model, precision, cell["fidelity"])
    # the conv net's input went in channels-last: recorded with the cell, as the converted model takes it
    assert cells[("conv.onnx", "fp32")]["details"]["input_layout"] == [{"position": 0, "permutation": [0, 2, 3, 1]}]
    assert cells[("conv.onnx", "int8")]["details"]["io_types"] == ["int8"]


def test_the_layout_turns_nchw_inputs_channels_last_and_outputs_back():
    from xpubench.backends.base import TensorSpec
    from xpubench.backends.tflite_layout import Layout, permutation

    assert permutation([None, 3, 8, 6], [None, 8, 6, 3]) == (0, 2, 3, 1)
    assert permutation([None, 16], [None, 16]) == (0, 1)
    with pytest.raises(ValueError):
        permutation([None, 3, 8, 6], [None, 6, 3, 8])
    layout = Layout(inputs=((1, (0, 2, 3, 1)), (0, (0, 1))), outputs=((0, (0, 3, 1, 2)),))
    image, side = np.zeros((2, 3, 8, 6), np.float32), np.ones((2, 4), np.float32)
    fed = layout.to_model([image, side])
    assert fed[0] is side and fed[1].shape == (2, 8, 6, 3)
    assert layout.from_model([np.zeros((2, 8, 6, 3))])[0].shape == (2, 3, 8, 6)
    specs = [TensorSpec("s", (None, 4), np.dtype("float32")), TensorSpec("i", (None, 8, 6, 3), np.dtype("float32"))]
    assert [s.shape for s in layout.source_specs(specs)] == [(None, 3, 8, 6), (None, 4)]
