"""The converter graph: chains found by the planner, honest reasons when there is none, and caching."""

import numpy as np
import pytest

from xpubench.convert.graph import Artifacts, NoConversion, file_name, plan


def chain(sources, target):
    return [(step.source, step.target) for step in plan(sources, target)]


def test_planner_finds_the_shortest_chain_through_other_formats():
    assert chain(["keras:fp32"], "tflite:int8") == [("keras:fp32", "tflite:int8")]
    assert chain(["keras:fp32"], "onnx:int8") == [("keras:fp32", "onnx:fp32"), ("onnx:fp32", "onnx:int8")]
    assert chain(["tflite:fp32"], "openvino:int8") == [("tflite:fp32", "onnx:fp32"), ("onnx:fp32", "openvino:int8")]
    assert chain(["keras:fp32"], "pt2:fp32") == [("keras:fp32", "onnx:fp32"), ("onnx:fp32", "pt2:fp32")]
    assert chain(["pt2:fp32"], "onnx:fp16") == [("pt2:fp32", "onnx:fp32"), ("onnx:fp32", "onnx:fp16")]
    assert chain(["keras:fp32"], "hls4ml:fixed<12,4>")[-1][1] == "hls4ml:*"
    assert plan(["onnx:fp32"], "onnx:fp32") == []


def test_planner_says_why_when_no_chain_exists():
    with pytest.raises(NoConversion, match="no converter chain leads from tflite:fp32 to tflite:int8"):
        plan(["tflite:fp32"], "tflite:int8")  # a flatbuffer cannot be re-quantised without its source
    with pytest.raises(NoConversion, match="edgetpu_compiler is not on PATH"):
        plan(["keras:fp32"], "edgetpu:uint8")


def test_artifact_names_are_safe_and_tell_calibration_data_apart():
    assert file_name("hls4ml:fixed<16,6>") == "model.fixed-16-6.hls4ml"
    assert file_name("tflite:int8", "c0ffee", "ab12") == "model.int8-c0ffee-calab12.tflite"
    assert file_name("openvino:int8") == "model.int8.xml"


@pytest.fixture
def affine_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "affine.onnx")
    return tmp_path / "affine.onnx"


def test_artifacts_convert_once_and_reuse_the_file(affine_onnx, tmp_path):
    calls = []
    calibration = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    artifacts = Artifacts({"onnx:fp32": affine_onnx}, tmp_path / "cache")
    artifacts.use_calibration(lambda: calls.append(1) or [calibration], "data-a")
    assert artifacts.made("onnx:fp32") and not artifacts.made("onnx:int8") and not artifacts.made("tflite:fp32")
    first = artifacts.get("onnx:int8")
    assert first.exists() and calls == [1] and artifacts.made("onnx:int8")
    assert artifacts.get("onnx:int8") == first and calls == [1]
    # A fresh instance over the same folder finds the file on disk: no converter runs again.
    again = Artifacts({"onnx:fp32": affine_onnx}, tmp_path / "cache")
    again.use_calibration(lambda: pytest.fail("calibrated twice"), "data-a")
    assert again.made("onnx:int8")  # found on disk, before anything asks for it
    assert again.get("onnx:int8") == first  # ...but the converter is not called again
    # Other calibration data is another artifact.
    other = Artifacts({"onnx:fp32": affine_onnx}, tmp_path / "cache")
    other.use_calibration(lambda: [calibration * 2], "data-b")
    assert other.get("onnx:int8") != first
    assert not list((tmp_path / "cache").glob(".convert-*")), "staging folders are cleaned up"



def test_an_opset_11_model_quantises_static_and_dynamic(tmp_path):
    """ONNX Runtime's per-channel QDQ needs DequantizeLinear's `axis` (opset 13): an older model is upgraded first."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "wd"], ["y"]),
        ],
        "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [
            numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
            numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2"),
            numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "wd"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, tmp_path / "opset11.onnx")
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    artifacts = Artifacts({"onnx:fp32": tmp_path / "opset11.onnx"}, tmp_path / "cache")
    artifacts.use_calibration(lambda: [x], "x")
    reference = ort.InferenceSession(str(tmp_path / "opset11.onnx")).run(None, {"x": x})[0]
    for kind in ("onnx:int8", "onnx:int8-dynamic"):
        path = artifacts.get(kind)
        quantised = onnx.load(str(path))
        assert {o.version for o in quantised.opset_import if o.domain in ("", "ai.onnx")} == {13}
        assert any("Quant" in n.op_type or "Integer" in n.op_type for n in quantised.graph.node), kind
        out = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
        assert out.shape == (16, 4) and np.isfinite(out).all()
        assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.9, kind
    assert onnx.load(str(tmp_path / "opset11.onnx")).opset_import[0].version == 11  # the user's file is untouched
