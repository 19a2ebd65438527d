"""Model files xpubench did not make, written here with each framework's own tools, through every
backend that can take them: the bring-your-own-model path as a user runs it."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.run.exits import exit_code

FAST = ["--runs", "5", "--min-time", "0.02", "--warmup-runs", "1", "--warmup-time", "0"]
# What this machine lacks; every other cell must be measured.
ABSENT = ("edgetpu", "tensorrt")


def absent_here(cell):
    """A cell this machine cannot run: a missing runtime, no GPU, or a CPU without bf16 for OpenVINO."""
    if cell["backend"] in ABSENT or cell["device"] == "cuda":
        return True
    if (cell["backend"], cell["precision"]) == ("openvino", "bf16"):
        from xpubench.backends.openvino import OpenVINOBackend

        return OpenVINOBackend.unavailable_reason(precision="bf16") is not None
    return False

pytestmark = pytest.mark.slow


def run_json(tmp_path, *args):
    out_file = tmp_path / "out.json"
    done = run_cli("run", *args, "--json", str(out_file), "--results", str(tmp_path / "res"), *FAST)
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: some cells unavailable or failed, which tests check
    cells = json.loads(out_file.read_text())["cells"]
    assert done.returncode == exit_code(c["status"] for c in cells)
    return done, cells


def by_key(cells):
    return {(c["backend"], tuple(sorted(c["options"].items())), c["device"], c["precision"], c["batch_size"]): c
            for c in cells}


def assert_measured(cell):
    assert cell["status"] == "ok", f"{cell['key']}: {cell['status']}: {cell['reason']}"
    assert cell["latency_ms"]["median"] > 0 and cell["model_bytes"] > 0
    assert cell["fidelity"] is not None, cell["key"]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A small CNN with odd layer names, trained for a moment so that its outputs mean something."""
    from xpubench.convert.keras import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1), name="pixels_in"),
            keras.layers.Conv2D(8, 3, activation="relu", name="Conv.odd-1"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(64, activation="relu", name="hidden_64"),
            keras.layers.Dense(3, activation="softmax", name="Scores"),
        ]
    )
    x = np.random.default_rng(1).random((300, 12, 12, 1), dtype=np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) * 3).astype(int).clip(0, 2)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    folder = tmp_path_factory.mktemp("keras")
    model.save(folder / "user model.keras")
    np.savez(folder / "data.npz", x=x[:100], y=y[:100])
    return folder / "user model.keras", folder / "data.npz"


def test_a_keras_file_runs_through_every_backend_and_precision(keras_file, tmp_path):
    path, data = keras_file
    done, cells = run_json(tmp_path, str(path), "--backend", "all", "--precision", "all", "--batch", "1,3",
                           "--data", str(data))
    cells_by = by_key(cells)
    for cell in cells:
        if absent_here(cell):
            assert cell["status"] == "unavailable" and cell["reason"], cell["key"]
            assert "\n" not in cell["reason"]
            continue
        assert_measured(cell)
        assert cell["accuracy"]["metric"] == "top1"
    measured = {(c["backend"], c["precision"], tuple(c["options"].items())) for c in cells if c["status"] == "ok"}
    assert measured >= {
        ("tensorflow", "fp32", ()),
        *(("litert", p, ()) for p in ("fp32", "int8-dynamic", "fp16", "int8", "uint8")),
        *(("onnxruntime", p, ()) for p in ("fp32", "fp16", "int8-dynamic", "int8")),
        *(("openvino", p, ()) for p in ("fp32", "int8")),
        *(("torch", p, m) for p in ("fp32", "bf16") for m in ((), (("mode", "compile"),))),
        ("tflm", "fp32", ()), ("tflm", "int8", ()), ("hls4ml", "fixed<16,6>", ()),
    }
    # Emulated cells say so, in the JSON and in the table.
    for cell in cells:
        assert cell["emulated"] is (cell["backend"] in ("tflm", "hls4ml")), cell["key"]
    assert "emulated" in done.stdout.split("\n")[0] and done.stdout.count(" emulated") >= 4
    assert cells_by[("tflm", (), "mcu-emulated", "int8", 1)]["details"]["arena_bytes"] > 0
    # Quantised LiteRT artifacts are a fraction of float32's size, and int8 stays accurate.
    size = {p: cells_by[("litert", (), "cpu", p, 1)]["model_bytes"] for p in ("fp32", "int8-dynamic", "fp16", "int8")}
    assert size["int8"] <= 0.30 * size["fp32"] and size["int8-dynamic"] <= 0.30 * size["fp32"]
    assert size["fp16"] <= 0.55 * size["fp32"]
    for backend, precision in (("litert", "int8"), ("onnxruntime", "int8"), ("openvino", "int8")):
        cell = cells_by[(backend, (), "cpu", precision, 1)]
        assert abs(cell["accuracy_delta"]) <= 0.03, cell["key"]
        assert cell["fidelity"]["top1_agreement"] >= 0.9, cell["key"]
    # Float32 on every runtime reproduces the Keras reference.
    for backend in ("litert", "onnxruntime", "openvino", "torch"):
        assert cells_by[(backend, (), "cpu", "fp32", 3)]["fidelity"]["max_abs"] < 1e-4, backend


@pytest.fixture(scope="module")
def pt2_file(tmp_path_factory):
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv_odd = torch.nn.Conv2d(2, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 5)

        def forward(self, image_in):
            h = torch.relu(self.Conv_odd(image_in)).mean(dim=(2, 3))
            return torch.softmax(self.head(h), dim=-1)

    torch.manual_seed(0)
    example = (torch.randn(2, 2, 10, 10),)
    program = torch.export.export(TinyNet().eval(), example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("pt2") / "tiny net.pt2"
    torch.export.save(program, path)
    return path


def test_a_pytorch_export_runs_on_torch_and_every_onnx_runtime(pt2_file, tmp_path):
    _, cells = run_json(tmp_path, str(pt2_file), "--backend", "torch,onnxruntime,openvino,litert",
                        "--precision", "fp32,int8", "--batch", "1,4")
    for cell in cells:
        if cell["backend"] == "torch" and cell["precision"] == "int8":
            assert cell["status"] == "unavailable", cell["key"]
            continue
        assert_measured(cell)
        if cell["precision"] == "fp32":
            # LiteRT through ONNX and onnx2tf, its NCHW image fed channels-last
            limit = 1e-4 if cell["backend"] == "litert" else 1e-5
            assert cell["fidelity"]["max_abs"] < limit and cell["fidelity"]["reference"].startswith("torch")
    litert = [c for c in cells if c["backend"] == "litert"]
    assert len(litert) == 4 and all(c["details"]["input_layout"][0]["permutation"] == [0, 2, 3, 1] for c in litert)


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    from xpubench.convert.keras import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    rng = np.random.default_rng(2)

    class Scorer(tf.Module):
        def __init__(self):
            self.w = tf.constant(rng.standard_normal((16, 6)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="feats")])
        def __call__(self, x):
            return tf.nn.softmax(tf.nn.relu(tf.matmul(x, self.w)))

    module = Scorer()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    path = tmp_path_factory.mktemp("tflite") / "scorer.tflite"
    path.write_bytes(converter.convert())
    return path


def test_a_tflite_file_runs_on_litert_tflm_and_through_onnx(tflite_file, tmp_path):
    _, cells = run_json(tmp_path, str(tflite_file), "--backend", "litert,litert:xnnpack=off,tflm,onnxruntime,openvino",
                        "--batch", "1")
    assert len(cells) == 5
    for cell in cells:
        assert_measured(cell)
        assert cell["fidelity"]["max_abs"] < 1e-5 and cell["fidelity"]["top1_agreement"] == 1.0
    xnnpack_off = next(c for c in cells if c["options"] == {"xnnpack": "off"})
    assert xnnpack_off["delegated_fraction"] is None and xnnpack_off["details"]["xnnpack"] == "off"


@pytest.fixture(scope="module")
def fp16_weights_tflite(tmp_path_factory):
    """A float model stored as published mobile models are: float16 weights that DEQUANTIZE ops turn into
    float32 at load, float32 inputs and outputs."""
    from xpubench.convert.keras import native_output_silenced, quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((6, 6, 2), name="image"), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    path = tmp_path_factory.mktemp("fp16") / "mobile.tflite"
    with native_output_silenced():
        path.write_bytes(converter.convert())
    return path


def test_a_tflite_file_with_fp16_weights_is_a_float_model(fp16_weights_tflite, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from xpubench.models import resolve

    interpreter = Interpreter(model_path=str(fp16_weights_tflite))
    assert np.float16 in {d["dtype"] for d in interpreter.get_tensor_details()}  # what the old rule saw
    assert resolve(str(fp16_weights_tflite)).source_kind == "tflite:fp32"
    _, cells = run_json(tmp_path, str(fp16_weights_tflite), "--backend", "litert,onnxruntime",
                        "--precision", "fp32", "--batch", "1")
    assert [(c["backend"], c["precision"]) for c in cells] == [("litert", "fp32"), ("onnxruntime", "fp32")]
    for cell in cells:
        assert_measured(cell)
        assert cell["fidelity"]["reference"] == "litert tflite:fp32"
        assert cell["fidelity"]["max_abs"] < 1e-5 and cell["fidelity"]["top1_agreement"] == 1.0
    assert cells[0]["details"]["precision"] == "fp32 (fp16 weights)"
    assert cells[1]["artifact"].endswith(".onnx")


@pytest.fixture(scope="module")
def fixed_batch_onnx(tmp_path_factory):
    """Batch size fixed at 4, and tensor names that are not identifiers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Conv", ["input:0/x", "w.conv"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Softmax", ["f"], ["scores.out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("input:0/x", TensorProto.FLOAT, [4, 2, 6, 6])],
        [helper.make_tensor_value_info("scores.out", TensorProto.FLOAT, [4, 3])],
        [numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w.conv")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder = tmp_path_factory.mktemp("onnx")
    onnx.save(model, folder / "fixed4.onnx")
    x = rng.standard_normal((40, 2, 6, 6)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, y=rng.integers(0, 3, 40))
    return folder / "fixed4.onnx", folder / "data.npz"


def test_a_fixed_batch_onnx_file_says_which_batch_it_takes(fixed_batch_onnx, tmp_path):
    path, data = fixed_batch_onnx
    _, cells = run_json(tmp_path, str(path), "--backend", "onnxruntime,openvino,torch", "--precision", "fp32,int8",
                        "--batch", "1,4", "--data", str(data))
    for cell in cells:
        if cell["batch_size"] == 1:
            assert cell["status"] == "unavailable"
            assert cell["reason"] in ("the model takes batch size 4 only: use --batch 4",
                                      "torch has no int8 variant (it has fp32, bf16)"), cell["reason"]
        elif cell["backend"] == "torch" and cell["precision"] == "int8":
            assert cell["status"] == "unavailable"
        else:
            assert_measured(cell)
            assert cell["accuracy"]["metric"] == "top1" and cell["dataset"] == "data.npz"


def test_dynamic_dimensions_need_a_shape(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["y"])],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "dyn.onnx")
    done = run_cli("run", str(tmp_path / "dyn.onnx"), "--results", str(tmp_path / "res"), *FAST)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "xpubench run: error: input 'x' has dynamic dimensions (?x2x?x?): fix them with --shape x=D,D,... "
        "(every dimension but the batch)"
    ]
    _, cells = run_json(tmp_path, str(tmp_path / "dyn.onnx"), "--shape", "x=2,5,7", "--batch", "3",
                        "--backend", "onnxruntime")
    assert_measured(cells[0])


def test_a_savedmodel_folder_runs_on_tensorflow_litert_and_onnxruntime(tmp_path):
    from xpubench.convert.keras import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.constant(np.random.default_rng(6).standard_normal((10, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 10], tf.float32, name="features")])
        def __call__(self, x):
            return {"scores": tf.nn.softmax(tf.matmul(x, self.w))}

    module = Affine()
    tf.saved_model.save(module, str(tmp_path / "exported"), signatures=module.__call__.get_concrete_function())
    _, cells = run_json(tmp_path, str(tmp_path / "exported"), "--backend", "tensorflow,litert,onnxruntime",
                        "--precision", "fp32,int8-dynamic", "--batch", "2")
    measured = {(c["backend"], c["precision"]) for c in cells if c["status"] == "ok"}
    assert measured == {("tensorflow", "fp32"), ("litert", "fp32"), ("litert", "int8-dynamic"),
                        ("onnxruntime", "fp32"), ("onnxruntime", "int8-dynamic")}
    for cell in cells:
        if cell["status"] == "ok":
            assert cell["fidelity"]["reference"].startswith("tensorflow savedmodel")
            assert cell["fidelity"]["top1_agreement"] >= 0.95


def test_a_torch_module_is_benchmarked_from_python(tmp_path):
    import torch

    from xpubench import benchmark

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(5, 3)

        def forward(self, features):
            return torch.softmax(self.layer(features), dim=-1)

    torch.manual_seed(1)
    records = benchmark(Mlp(), backends=["torch", "onnxruntime"], example_inputs=[torch.randn(2, 5)],
                        batch_sizes=[1, 4], results=tmp_path / "res", min_runs=5, min_time_s=0.02,
                        warmup_runs=1, warmup_time_s=0)
    assert [(r["backend"], r["batch_size"], r["status"]) for r in records] == [
        ("torch", 1, "ok"), ("torch", 4, "ok"), ("onnxruntime", 1, "ok"), ("onnxruntime", 4, "ok")]
    assert all(r["fidelity"]["max_abs"] < 1e-5 for r in records)
    with pytest.raises(ValueError, match="example_inputs"):
        benchmark(Mlp(), results=tmp_path / "res")


def test_a_torchscript_file_runs_on_torch_and_through_onnx(tmp_path):
    import torch

    class Scorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(6, 4)

        def forward(self, hits):
            return torch.softmax(self.layer(torch.relu(hits)), dim=-1)

    torch.manual_seed(3)
    scripted = torch.jit.script(Scorer().eval())
    scripted.save(str(tmp_path / "scorer.pt"))
    torch.jit.trace(Scorer().eval(), torch.randn(2, 6)).save(str(tmp_path / "traced.jit"))
    done = run_cli("run", str(tmp_path / "scorer.pt"), "--backend", "torch", "--results", str(tmp_path / "r0"), *FAST)
    assert done.returncode == 2 and "--shape hits=D,D,..." in done.stderr, done.stderr[-2000:]
    for name in ("scorer.pt", "traced.jit"):
        _, cells = run_json(tmp_path, str(tmp_path / name), "--shape", "hits=6", "--backend", "torch,onnxruntime",
                            "--precision", "fp32", "--batch", "1,3")
        assert [(c["backend"], c["batch_size"]) for c in cells] == [
            ("torch", 1), ("torch", 3), ("onnxruntime", 1), ("onnxruntime", 3)]
        for cell in cells:
            assert_measured(cell)
            assert cell["fidelity"]["reference"] == "torch torchscript:fp32"
            assert cell["fidelity"]["max_abs"] < 1e-5 and cell["fidelity"]["top1_agreement"] == 1.0
        assert cells[0]["artifact"].endswith(name) and cells[2]["artifact"].endswith(".onnx")


def test_weights_without_a_graph_get_a_hint_how_to_export_them(tmp_path):
    from xpubench.errors import UsageError
    from xpubench.models import resolve

    torch = pytest.importorskip("torch")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"\0" * 16)
    torch.save({"w": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    expected = {"hf": "optimum-cli export onnx", "weights": "torch.export.save", "checkpoint.pt": "torch.jit.script"}
    for name, hint in expected.items():
        with pytest.raises(UsageError) as caught:
            resolve(str(tmp_path / name))
        assert hint in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
