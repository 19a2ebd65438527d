"""The PyTorch backend and conversions, on tiny models written here in PyTorch, ONNX and Keras."""

import numpy as np
import pytest

from xpubench.backends import backend_names, get_backend
from xpubench.convert.graph import ConversionContext
from xpubench.core.measure import MeasureConfig, measure

torch = pytest.importorskip("torch")

rng = np.random.default_rng(5)


class OddlyNamedNet(torch.nn.Module):
    """A small CNN whose names are not Python-friendly: a ModuleDict with dashes, a buffer with a digit first."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = torch.nn.ModuleDict(
            {
                "conv-1x": torch.nn.Conv2d(3, 8, 3, padding=1),
                "bn-1x": torch.nn.BatchNorm2d(8),
                "dw-3x3": torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
                "head-Λ": torch.nn.Linear(8 * 6 * 6, 5),
            }
        )
        self.register_buffer("_2scale", torch.tensor(0.5))
        with torch.no_grad():  # running statistics that are not the identity, as after training
            self.stages["bn-1x"].running_mean.uniform_(-0.2, 0.2)
            self.stages["bn-1x"].running_var.uniform_(0.5, 1.5)

    def forward(self, Image_In: torch.Tensor) -> torch.Tensor:  # noqa: N803  (an odd input name on purpose)
        x = torch.relu(self.stages["bn-1x"](self.stages["conv-1x"](Image_In)))
        x = torch.nn.functional.relu6(self.stages["dw-3x3"](x)) * self._2scale + x
        x = torch.nn.functional.max_pool2d(x, 2)
        return torch.softmax(self.stages["head-Λ"](x.reshape(x.shape[0], -1)), dim=-1)


def _images(batch: int) -> np.ndarray:
    return rng.standard_normal((batch, 3, 12, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def torch_net():
    torch.manual_seed(0)
    return OddlyNamedNet().eval()


@pytest.fixture(scope="module")
def net_pt2(torch_net, tmp_path_factory):
    from xpubench.convert.torch import module_to_pt2

    return module_to_pt2(torch_net, [torch.from_numpy(_images(1))], tmp_path_factory.mktemp("pt2") / "net.pt2")


def _reference(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def test_registered_and_described():
    from xpubench.backends.torch import TorchBackend

    assert "torch" in backend_names() and get_backend("torch") is TorchBackend
    assert TorchBackend.unavailable_reason() is None
    assert TorchBackend.version().startswith("2.")
    assert TorchBackend.artifact_kind("bf16", {"mode": "compile"}) == "pt2:fp32"
    assert "int8" in TorchBackend.unavailable_reason(precision="int8")
    assert "jit" in TorchBackend.unavailable_reason(options={"mode": "jit"})


def test_cuda_reason_is_one_line():
    from xpubench.backends.torch import TorchBackend

    reason = TorchBackend.unavailable_reason("cuda")
    if torch.cuda.is_available():
        assert reason is None
    else:
        assert isinstance(reason, str) and reason and "\n" not in reason


def test_module_to_pt2_keeps_a_dynamic_batch_and_the_names(net_pt2):
    from xpubench.backends.torch import TorchBackend

    backend = TorchBackend(net_pt2)
    (spec,) = backend.inputs
    assert spec.name == "Image_In" and spec.shape == (None, 3, 12, 12) and spec.dtype == np.float32


@pytest.mark.parametrize("mode", ["eager", pytest.param("compile", marks=pytest.mark.slow)])
def test_backend_runs_the_module_fp32_and_bf16(mode, torch_net, net_pt2):
    from xpubench.backends.torch import TorchBackend

    fp32 = TorchBackend(net_pt2, threads=1, options={"mode": mode})
    bf16 = TorchBackend(net_pt2, threads=1, precision="bf16", options={"mode": mode})
    assert bf16.details()["dtype"] == "bfloat16" and fp32.details()["mode"] == mode
    # Each compilation costs seconds on two cores: compiled programs run one batch size (a new size
    # only recompiles, which is torch's business); eager ones run two.
    for batch in (1, 3) if mode == "eager" else (3,):
        x = _images(batch)
        want = _reference(torch_net, x)
        (got,) = fp32.predict([x])
        assert got.shape == (batch, 5) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        (low,) = bf16.predict([x])
        assert low.dtype == np.float32  # bfloat16 on the device, float32 to the caller
        np.testing.assert_allclose(low, want, atol=3e-2)
        assert not np.array_equal(low, got)  # it really ran in bfloat16
    pool = [fp32.prepare([_images(3)]) for _ in range(3)]
    samples = measure(fp32.infer, pool, MeasureConfig(2, 0, 10, 0), fp32.clock)
    assert samples.samples_ns.size == 10 and (samples.samples_ns > 0).all()
    fp32.close()
    bf16.close()


def _helper_onnx(path):
    """Conv+Relu+MaxPool+Flatten+Gemm+Softmax with a dynamic batch, written with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "b": rng.standard_normal(4).astype(np.float32) * 0.1,
        "fc_w": rng.standard_normal((6, 4 * 4 * 4)).astype(np.float32) * 0.2,
        "fc_b": rng.standard_normal(6).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "helper_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _ort(path, arrays):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)})


def test_onnx_helper_graph_to_pt2_equals_onnxruntime(tmp_path):
    from xpubench.backends.torch import TorchBackend
    from xpubench.convert.torch import onnx_to_pt2

    src = _helper_onnx(tmp_path / "cnn.onnx")
    dst = tmp_path / "cnn.pt2"
    onnx_to_pt2(src, dst, ConversionContext("fp32"))
    backend = TorchBackend(dst)
    assert [(s.name, s.shape) for s in backend.inputs] == [("x", (None, 3, 8, 8))]
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        (got,) = backend.predict([x])
        np.testing.assert_allclose(got, _ort(src, [x])[0], rtol=1e-5, atol=1e-6)


def test_the_converter_graph_goes_onnx_to_pt2_and_back(tmp_path):
    from xpubench.convert.graph import Artifacts

    src = _helper_onnx(tmp_path / "cnn.onnx")
    there = Artifacts({"onnx:fp32": src}, tmp_path / "a").get("pt2:fp32")
    back = Artifacts({"pt2:fp32": there}, tmp_path / "b").get("onnx:fp32")
    assert there.suffix == ".pt2" and back.suffix == ".onnx"
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(_ort(back, [x])[0], _ort(src, [x])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_keras_onnx_to_pt2_equals_onnxruntime(tmp_path):
    from xpubench.convert.keras import keras_to_onnx, quiet_tensorflow
    from xpubench.convert.torch import onnx_to_pt2

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    y = keras.layers.LeakyReLU(0.1)(y)
    z = keras.layers.Conv2D(8, 1, activation="sigmoid")(y)
    x = keras.layers.Concatenate()([y, z])
    x = keras.layers.AveragePooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    bn = model.layers[2]  # moving statistics away from 0/1, as after training
    bn.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) for w in bn.get_weights()])

    src = keras_to_onnx(model, tmp_path / "keras.onnx")
    dst = tmp_path / "keras.pt2"
    onnx_to_pt2(src, dst, ConversionContext("fp32"))
    program = torch.export.load(str(dst)).module()
    for batch in (1, 3):
        x = rng.standard_normal((batch, 16, 16, 3)).astype(np.float32)
        with torch.no_grad():
            got = program(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, _ort(src, [x])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_pt2_to_onnx_round_trip(torch_net, net_pt2, tmp_path):
    import onnx

    from xpubench.convert.torch import pt2_to_onnx

    dst = tmp_path / "net.onnx"
    pt2_to_onnx(net_pt2, dst, ConversionContext("fp32"))
    model = onnx.load(str(dst))
    assert [i.name for i in model.graph.input] == ["Image_In"]
    assert not model.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")  # batch stays dynamic
    for batch in (1, 3):
        x = _images(batch)
        np.testing.assert_allclose(_ort(dst, [x])[0], _reference(torch_net, x), rtol=1e-5, atol=1e-6)


def test_unsupported_onnx_op_is_named_in_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from xpubench.convert.onnx2torch import UnsupportedOnnx
    from xpubench.convert.torch import onnx_to_pt2

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Hardmax", ["r"], ["y"])],
        "odd",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "odd.onnx")
    with pytest.raises(UnsupportedOnnx) as caught:
        onnx_to_pt2(tmp_path / "odd.onnx", tmp_path / "odd.pt2", ConversionContext("fp32"))
    message = str(caught.value)
    assert "Hardmax" in message and "Relu" not in message and "\n" not in message
    assert not (tmp_path / "odd.pt2").exists()
