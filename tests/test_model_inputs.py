"""--shape and --data checked against the model's real inputs when a user's model is resolved."""

import numpy as np
import pytest

from xpubench.errors import UsageError
from xpubench.models import resolve


@pytest.fixture
def dynamic_onnx(tmp_path):
    """One input `pixels` of shape [n, 2, h, w]: only --shape or --data can fix h and w."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"])],
        "dyn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 2, "h", "w"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n", 2, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "dyn.onnx")
    return tmp_path / "dyn.onnx"


def test_a_shape_for_an_input_the_model_lacks_names_the_real_inputs(dynamic_onnx):
    with pytest.raises(UsageError) as caught:
        resolve(str(dynamic_onnx), shapes={"image": (2, 5, 7)})
    assert str(caught.value) == "--shape names 'image', which dyn.onnx has no input of: its inputs are 'pixels'"
    workload = resolve(str(dynamic_onnx), shapes={"pixels": (2, 5, 7)})
    assert workload.input_specs[0].shape == (None, 2, 5, 7)


def test_data_that_contradicts_the_shape_is_refused_with_both_shapes(dynamic_onnx, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((8, 2, 4, 4)).astype(np.float32))
    for shapes, given in (({"pixels": (2, 5, 7)}, "pixels=2,5,7"), ({"": (2, 5, 7)}, "2,5,7")):
        with pytest.raises(UsageError) as caught:
            resolve(str(dynamic_onnx), data=data, shapes=shapes)
        assert str(caught.value) == (
            f"--data data.npz holds samples of shape 2,4,4, but --shape {given} says otherwise: "
            "drop --shape to measure at the data's shape, or give data of that shape"
        )
    agreeing = resolve(str(dynamic_onnx), data=data, shapes={"pixels": (2, 4, 4)})
    assert agreeing.x_eval.shape == (8, 2, 4, 4)


# -- inputs told apart: a recurrent state batched on axis 1, a pinned side input, a scalar ----------------------

FAST = ["--runs", "10", "--min-time", "0.02", "--warmup-runs", "1", "--warmup-time", "0", "--repeats", "1"]


def _save(model, path):
    import onnx

    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def stateful_onnx(tmp_path):
    """Inputs state [2, d1, 128] (its batch on axis 1, a dimension the graph names otherwise), side [128]
    (the same in every call) and scale (an int64 scalar); out = (state @ W + side) * float(scale)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(1).standard_normal((128, 128)).astype(np.float32) / 16
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["state", "W"], ["mixed"]),
         helper.make_node("Add", ["mixed", "side"], ["shifted"]),
         helper.make_node("Cast", ["scale"], ["scale_f"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["shifted", "scale_f"], ["out"])],
        "stateful",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "d1", 128]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, [128]),
         helper.make_tensor_value_info("scale", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, "d1", 128])],
        [numpy_helper.from_array(weight, "W")],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "stateful.onnx")


def _cells(path):
    import json

    return {c["batch_size"]: c for c in json.loads(path.read_text())["cells"]}


@pytest.mark.slow
def test_a_state_batched_on_axis_1_with_a_pinned_side_input_and_scalar_runs_with_fidelity(stateful_onnx, tmp_path):
    from tests.conftest import run_cli

    np.save(tmp_path / "side.npy", np.linspace(-1, 1, 128, dtype=np.float32))
    out = run_cli("run", str(stateful_onnx), "--backend", "onnxruntime", "--batch", "1,4",
                  "--batch-axis", "state=1", "--input", "scale=3", "--input", f"side={tmp_path / 'side.npy'}",
                  "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST, timeout=300)
    assert out.returncode == 0, out.stderr
    cells = _cells(tmp_path / "o.json")
    assert sorted(cells) == [1, 4]
    for cell in cells.values():
        assert cell["status"] == "ok", cell.get("reason")
        assert cell["fidelity"] is not None and cell["fidelity"]["max_abs"] < 1e-5, cell["fidelity"]


def test_the_batch_axis_is_found_from_the_graph_or_given_and_pinned_inputs_are_fed_whole(stateful_onnx, tmp_path):
    from xpubench.run.cell_runner import input_pool

    side = np.linspace(-1, 1, 128, dtype=np.float32)
    np.save(tmp_path / "side.npy", side)
    inferred = resolve(str(stateful_onnx))
    assert inferred.input_axes == (0, 0, None)  # "d1" is no batch name; a scalar has no batch
    workload = resolve(str(stateful_onnx), batch_axes={"state": 1}, values={"scale": "3", "side": str(tmp_path /
                       "side.npy")}, int_ranges={})
    assert workload.input_axes == (1, None, None)
    batch = input_pool(workload, 4)[0]
    assert batch[0].shape == (2, 4, 128) and batch[0].dtype == np.float32
    assert np.array_equal(batch[1], side) and batch[2].shape == () and batch[2].dtype == np.int64 and batch[2] == 3
    with pytest.raises(UsageError) as caught:
        resolve(str(stateful_onnx), batch_axes={"hidden": 1})
    assert str(caught.value) == ("--batch-axis names 'hidden', which stateful.onnx has no input of: its inputs are "
                                 "'state', 'side', 'scale'")
    with pytest.raises(UsageError, match="input 'state' has 3 dimensions"):
        resolve(str(stateful_onnx), batch_axes={"state": 3}).input_axes  # noqa: B018


def test_integer_inputs_are_drawn_from_the_range_given(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["out"], to=TensorProto.FLOAT)], "ids",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 12])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 12])],
    )
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "ids.onnx")
    assert onnx.load(path).graph.input[0].name == "ids"
    ids = resolve(str(path), int_ranges={"ids": (1000, 1003)}).fidelity_inputs()[0]
    assert ids.dtype == np.int64 and ids.min() == 1000 and ids.max() == 1003
    assert resolve(str(path)).fidelity_inputs()[0].max() <= 9  # today's default, 0..9


@pytest.mark.slow
def test_a_model_fixed_at_batch_1_gets_fidelity(tmp_path):
    """Its first input is a scalar gain: the batch the model takes is that of x, [1, 8]."""
    from onnx import TensorProto, helper

    from tests.conftest import run_cli

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "gain"], ["out"])], "fixed1",
        [helper.make_tensor_value_info("gain", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8])],
    )
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fixed1.onnx")
    out = run_cli("run", str(path), "--backend", "onnxruntime", "--batch", "1", "--json", str(tmp_path / "o.json"),
                  "--results", str(tmp_path / "r"), *FAST, timeout=300)
    assert out.returncode == 0, out.stderr
    cell = _cells(tmp_path / "o.json")[1]
    assert cell["status"] == "ok" and cell["fidelity"]["max_abs"] == 0.0, cell


@pytest.mark.slow
def test_an_npz_with_one_array_per_input_feeds_every_input(stateful_onnx, tmp_path):
    from tests.conftest import run_cli

    rng = np.random.default_rng(3)
    state = rng.standard_normal((2, 10, 128)).astype(np.float32)
    side = rng.standard_normal(128).astype(np.float32)
    np.savez(tmp_path / "d.npz", state=state, side=side, scale=np.int64(2))
    workload = resolve(str(stateful_onnx), data=tmp_path / "d.npz", batch_axes={"state": 1, "side": None})
    fed = workload.fidelity_inputs()
    assert np.array_equal(fed[0], state) and np.array_equal(fed[1], side) and fed[2] == 2
    out = run_cli("run", str(stateful_onnx), "--backend", "onnxruntime", "--batch", "4", "--data",
                  str(tmp_path / "d.npz"), "--batch-axis", "state=1", "--batch-axis", "side=none",
                  "--json", str(tmp_path / "o.json"), "--results", str(tmp_path / "r"), *FAST, timeout=300)
    assert out.returncode == 0, out.stderr
    cell = _cells(tmp_path / "o.json")[4]
    assert cell["status"] == "ok" and cell["dataset"] == "d.npz", cell
    assert cell["fidelity"]["max_abs"] < 1e-5  # 10 samples at batch 4: the last call padded, then cut
    missing = tmp_path / "part.npz"
    np.savez(missing, state=state, side=side)
    with pytest.raises(UsageError, match="scale"):
        resolve(str(stateful_onnx), data=missing, batch_axes={"state": 1, "side": None}).fidelity_inputs()


def test_the_input_options_survive_the_stored_request():
    from xpubench.run.matrix import Matrix, matrix_from_json, matrix_to_json

    matrix = Matrix(models=("m.onnx",), backends=("onnxruntime",), batch_axes=(("side", None), ("state", 1)),
                    input_values=(("scale", "3"),), int_ranges=(("ids", (0, 99)),))
    assert matrix_from_json(matrix_to_json(matrix)) == matrix
