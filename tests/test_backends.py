"""Each real backend on a real tiny model, written here with the runtime's own tools."""

import numpy as np
import pytest

from xpubench.backends import backend_names, get_backend
from xpubench.core.measure import MeasureConfig, measure

rng = np.random.default_rng(11)
W = rng.standard_normal((6, 3)).astype(np.float32)
B = rng.standard_normal(3).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["scores"])],
        "affine",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("onnx") / "affine.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.constant(W)
            self.b = tf.constant(B)

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, self.w) + self.b

    module = Affine()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    path = tmp_path_factory.mktemp("tflite") / "affine.tflite"
    path.write_bytes(converter.convert())
    return path


def test_registry_lists_the_real_backends():
    assert {"onnxruntime", "litert"} <= set(backend_names())
    assert "null" not in backend_names() and "null" in backend_names(include_hidden=True)


@pytest.mark.parametrize("name, fixture", [("onnxruntime", "onnx_file"), ("litert", "tflite_file")])
def test_backend_computes_the_model_and_is_timed(name, fixture, request):
    artifact = request.getfixturevalue(fixture)
    cls = get_backend(name)
    assert cls.unavailable_reason() is None
    assert cls.version()
    backend = cls(artifact, threads=1)
    assert backend.inputs[0].shape[1:] == (6,)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        (out,) = backend.predict([x])
        np.testing.assert_allclose(out, x @ W + B, rtol=1e-5, atol=1e-5)
    pool = [backend.prepare([rng.standard_normal((5, 6)).astype(np.float32)]) for _ in range(3)]
    samples = measure(backend.infer, pool, MeasureConfig(2, 0, 20, 0), backend.clock)
    assert samples.samples_ns.size == 20 and (samples.samples_ns > 0).all()
    backend.close()


def test_unavailable_reasons_say_why():
    cls = get_backend("onnxruntime")
    assert "not fp16" not in (cls.unavailable_reason(precision="fp16") or "")
    assert "fp16" in cls.unavailable_reason(precision="fp16")
    assert "cuda" in cls.unavailable_reason(device="cuda:0")
