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
