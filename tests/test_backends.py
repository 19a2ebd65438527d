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
    ort = get_backend("onnxruntime")
    assert ort.unavailable_reason(precision="fp16") is None
    assert ort.unavailable_reason(precision="bf16") == (
        "onnxruntime has no bf16 variant (it has fp32, fp16, int8-dynamic, int8)"
    )
    assert "NVIDIA GPU" in ort.unavailable_reason(device="cuda:0")
    assert get_backend("litert").unavailable_reason(device="cuda") == "litert runs on cpu, not cuda"
    edgetpu = get_backend("edgetpu").unavailable_reason("edgetpu", "uint8")
    assert edgetpu.startswith(("libedgetpu is not installed", "no Edge TPU attached")) and "\n" not in edgetpu


def test_options_are_checked_against_what_the_backend_offers():
    litert = get_backend("litert")
    assert litert.resolve_options({}) == {"xnnpack": "on"}
    assert litert.resolve_options({"xnnpack": "off"}) == {"xnnpack": "off"}
    with pytest.raises(ValueError, match="litert option xnnpack takes on|off, not 'maybe'"):
        litert.resolve_options({"xnnpack": "maybe"})
    with pytest.raises(ValueError, match="litert has no option 'turbo'"):
        litert.resolve_options({"turbo": "on"})


@pytest.fixture(scope="module")
def keras_mlp(tmp_path_factory):
    from xpubench.convert.keras import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("keras") / "mlp.keras"
    model.save(path)
    return path, model


def test_litert_full_integer_quantises_inside_the_timed_call(keras_mlp, tmp_path):
    from xpubench.convert.keras import keras_to_tflite

    path, model = keras_mlp
    calibration = [rng.standard_normal((64, 6)).astype(np.float32)]
    x = rng.standard_normal((5, 6)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    spread = np.abs(expected).max()
    for precision in ("int8", "uint8"):
        artifact = keras_to_tflite(model, tmp_path / f"m.{precision}.tflite", precision, calibration)
        backend = get_backend("litert")(artifact, precision=precision)
        assert backend.inputs[0].dtype == np.float32  # callers hand over floats
        assert backend.details()["io_types"] == [precision]
        (out,) = backend.predict([x])
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=0.05 * spread)
        assert 0 < backend.delegated_fraction() <= 1
    off = get_backend("litert")(artifact, precision="uint8", options={"xnnpack": "off"})
    np.testing.assert_allclose(off.predict([x])[0], expected, atol=0.05 * spread)
    assert off.delegated_fraction() is None


def test_delegated_share_follows_partition_boundaries():
    from xpubench.backends.litert import delegated_share

    # t0 -A-> t1 -B-> t2 -C-> t3; one partition took B and C (inputs t1, outputs t3).
    ops = [
        {"op_name": "A", "inputs": [0], "outputs": [1]},
        {"op_name": "B", "inputs": [1, 9], "outputs": [2]},
        {"op_name": "C", "inputs": [2], "outputs": [3]},
        {"op_name": "DELEGATE", "inputs": [1, 9], "outputs": [3]},
    ]
    assert delegated_share(ops) == pytest.approx(2 / 3)
    assert delegated_share(ops[:3]) == 0.0
