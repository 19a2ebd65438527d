"""Every operator of the ONNX -> torch translator, one single-node ONNX model each, against ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xpubench.convert.onnx2torch import OPS, SUPPORTED_OPS, build_module  # noqa: E402


@dataclass(frozen=True)
class Input:
    """One input of the node: its value, and whether the model stores it or is fed it."""

    array: np.ndarray
    constant: bool  # an initializer (shapes, axes, weights) rather than a graph input


@dataclass(frozen=True)
class Case:
    """One single-node model: the op, its inputs and attributes, the opset, and the tolerance of the comparison."""

    op: str
    inputs: tuple[Input | None, ...]  # None: an optional input left out ("")
    attrs: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    opset: int = 17
    outputs: int = 1
    rtol: float = 1e-5
    atol: float = 1e-6
    export: bool = False  # also through torch.export with a dynamic batch (slow: a handful only)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.variant}" if self.variant else self.op


_rng = np.random.default_rng(2026)


def x(*shape: int, low: float | None = None, high: float | None = None) -> Input:
    """A float32 graph input: standard normal, or uniform in [low, high)."""
    if low is None:
        return Input(_rng.standard_normal(shape).astype(np.float32), False)
    return Input(_rng.uniform(low, high, shape).astype(np.float32), False)


def ints(*shape: int, low: int = -5, high: int = 6, dtype: Any = np.int64) -> Input:
    return Input(_rng.integers(low, high, shape).astype(dtype), False)


def ties(*shape: int) -> Input:
    """Whole float32 numbers from 0 to 2: comparisons meet equal values."""
    return Input(_rng.integers(0, 3, shape).astype(np.float32), False)


def bools(*shape: int) -> Input:
    return Input(_rng.random(shape) < 0.5, False)


def given(value: Any, dtype: Any) -> Input:
    """A graph input with the values written here."""
    return Input(np.asarray(value, dtype=dtype), False)


def k(value: Any, dtype: Any = np.int64) -> Input:
    """A constant input (initializer)."""
    return Input(np.asarray(value, dtype=dtype), True)


def kx(*shape: int, low: float | None = None, high: float | None = None) -> Input:
    """A random float32 constant (weights)."""
    made = x(*shape, low=low, high=high)
    return Input(made.array, True)


def specials(shape: tuple[int, ...], *values: float) -> Input:
    """A standard-normal float32 graph input that starts with `values` (0, nan, inf)."""
    array = _rng.standard_normal(shape).astype(np.float32)
    array.reshape(-1)[: len(values)] = values
    return Input(array, False)


NCHW = (2, 3, 6, 7)

CASES: list[Case] = [
    # --- elementwise arithmetic and math
    Case("Add", (x(2, 3, 4), x(3, 4))),
    Case("Add", (x(2, 3), k(2.5, np.float32)), variant="scalar"),
    Case("Sub", (x(2, 3, 4), x(2, 1, 4))),
    Case("Mul", (x(2, 3, 4), x(4))),
    Case("Mul", (ints(3, 4), k(3)), variant="int-scalar"),
    Case("Div", (x(2, 3, 4), x(3, 4, low=0.5, high=2.0))),
    Case("Div", (ints(3, 4, low=-20, high=20), given([3, -4, 5, 7], np.int64)), variant="int"),
    Case("Pow", (x(2, 3, low=0.5, high=2.0), x(2, 3))),
    Case("Pow", (x(2, 3), k(2.0, np.float32)), variant="square"),
    Case("Mod", (ints(3, 4, low=-20, high=20), given([3, -4, 5, 7], np.int64))),
    Case("Mod", (x(3, 4, low=-5, high=5), x(3, 4, low=0.5, high=2.0)), {"fmod": 1}, variant="fmod"),
    Case("Max", (x(2, 3), x(3), x(2, 3))),
    Case("Min", (x(2, 3), x(3), x(2, 3))),
    Case("Sum", (x(2, 3), x(3), x(2, 3))),
    Case("Mean", (x(2, 3), x(3), x(2, 3))),
    Case("Sqrt", (x(2, 5, low=0.0, high=4.0),)),
    Case("Exp", (x(2, 5),)),
    Case("Log", (x(2, 5, low=0.1, high=4.0),)),
    Case("Reciprocal", (x(2, 5, low=0.5, high=4.0),)),
    Case("Neg", (x(2, 5),)),
    Case("Abs", (x(2, 5),)),
    Case("Erf", (x(2, 5),)),
    Case("Floor", (x(2, 5, low=-4, high=4),)),
    Case("Ceil", (x(2, 5, low=-4, high=4),)),
    Case("Round", (given([[-2.5, -1.5, -0.5, 0.5, 1.5], [2.5, 0.2, -0.7, 3.49, -3.51]], np.float32),)),
    Case("Sign", (specials((2, 5), 0.0),)),
    Case("Sin", (x(2, 5),)),
    Case("Cos", (x(2, 5),)),
    Case("Tan", (x(2, 5, low=-1.2, high=1.2),)),
    Case("Atan", (x(2, 5, low=-5, high=5),)),
    Case("Cast", (x(2, 5, low=-100, high=100),), {"to": TensorProto.INT64}),
    Case("Cast", (ints(2, 5),), {"to": TensorProto.FLOAT}, variant="int-to-float"),
    Case("Cast", (specials((2, 5), 0.0),), {"to": TensorProto.BOOL}, variant="to-bool"),
    Case("CastLike", (ints(2, 5, dtype=np.int32), x(1))),
    # --- comparison and logic
    Case("Equal", (ints(3, 4, low=0, high=3), ints(4, low=0, high=3))),
    Case("Less", (x(3, 4), x(4))),
    Case("LessOrEqual", (ties(3, 4), ties(4))),
    Case("Greater", (x(3, 4), x(4))),
    Case("GreaterOrEqual", (ties(3, 4), ties(4))),
    Case("And", (bools(3, 4), bools(4))),
    Case("Or", (bools(3, 4), bools(4))),
    Case("Xor", (bools(3, 4), bools(4))),
    Case("Not", (bools(3, 4),)),
    Case("IsNaN", (specials((2, 5), np.nan, np.inf),)),
    Case("IsInf", (specials((2, 5), np.nan, np.inf, -np.inf),)),
    Case("Where", (bools(3, 4), x(3, 4), x(4))),
    # --- activations
    Case("Relu", (x(2, 5),)),
    Case("Sigmoid", (x(2, 5),)),
    Case("Tanh", (x(2, 5),)),
    Case("Softplus", (x(2, 5),)),
    Case("Softsign", (x(2, 5),)),
    Case("Mish", (x(2, 5),), opset=18),
    Case("HardSwish", (x(2, 5, low=-5, high=5),), opset=14),
    Case("LeakyRelu", (x(2, 5),), {"alpha": 0.1}),
    Case("Elu", (x(2, 5),), {"alpha": 0.5}),
    Case("Celu", (x(2, 5),), {"alpha": 2.0}),
    Case("Selu", (x(2, 5),)),
    Case("ThresholdedRelu", (x(2, 5),), {"alpha": 0.3}),
    Case("HardSigmoid", (x(2, 5, low=-5, high=5),), {"alpha": 0.3, "beta": 0.4}),
    Case("Gelu", (x(2, 5),), opset=20),
    Case("Gelu", (x(2, 5),), {"approximate": "tanh"}, variant="tanh", opset=20),
    Case("PRelu", (x(*NCHW), kx(3, 1, 1))),
    Case("Clip", (x(2, 5), k(-0.5, np.float32), k(0.7, np.float32))),
    Case("Clip", (x(2, 5), k(0.0, np.float32)), variant="relu"),
    Case("Clip", (x(2, 5),), {"min": -0.5, "max": 0.7}, variant="opset6", opset=6),
    Case("Softmax", (x(2, 3, 5),), {"axis": 1}, export=True),
    Case("Softmax", (x(2, 3, 5),), {"axis": 1}, variant="opset11", opset=11),
    Case("LogSoftmax", (x(2, 3, 5),), {"axis": -1}),
    # --- linear algebra
    Case("MatMul", (x(2, 3, 4), kx(4, 5))),
    Case("Gemm", (x(3, 4), kx(5, 4), kx(5)), {"transB": 1}, export=True),
    Case("Gemm", (x(4, 3), kx(4, 5), kx(3, 5)), {"alpha": 0.5, "beta": 2.0, "transA": 1}, variant="alpha-beta-transA"),
    Case("Einsum", (x(2, 3, 4), x(2, 4, 5)), {"equation": "bij,bjk->bik"}, opset=12),
    # --- convolution
    Case("Conv", (x(*NCHW), kx(4, 3, 3, 3), kx(4)), {"pads": [1, 1, 1, 1]}, rtol=1e-4, atol=1e-5, export=True),
    Case("Conv", (x(*NCHW), kx(4, 3, 3, 3)), {"pads": [0, 1, 2, 0]}, variant="pads", rtol=1e-4, atol=1e-5),
    Case(
        "Conv",
        (x(*NCHW), kx(4, 3, 3, 3)),
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        variant="same-upper-strides",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Conv",
        (x(2, 6, 9, 9), kx(6, 2, 3, 3), kx(6)),
        {"group": 3, "dilations": [2, 2]},
        variant="group-dilation",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case("Conv", (x(2, 3, 11), kx(4, 3, 3)), {"strides": [2]}, variant="1d", rtol=1e-4, atol=1e-5),
    Case(
        "Conv", (x(1, 2, 4, 5, 5), kx(3, 2, 2, 3, 3)), {"pads": [0, 1, 1, 1, 1, 0]}, variant="3d", rtol=1e-4, atol=1e-5
    ),
    Case(
        "ConvTranspose",
        (x(*NCHW), kx(3, 4, 3, 3), kx(4)),
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "ConvTranspose",
        (x(*NCHW), kx(3, 4, 3, 3)),
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
        variant="same-upper",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "ConvTranspose",
        (x(*NCHW), kx(3, 4, 3, 3)),
        {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
        variant="same-lower",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "ConvTranspose",
        (x(*NCHW), kx(3, 4, 3, 3)),
        {"strides": [2, 2], "output_shape": [12, 14]},
        variant="output-shape",
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "ConvTranspose",
        (x(*NCHW), kx(3, 2, 3, 3)),
        {"pads": [0, 1, 1, 0], "group": 1},
        variant="uneven-pads",
        rtol=1e-4,
        atol=1e-5,
    ),
    # --- pooling
    Case("MaxPool", (x(*NCHW),), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, export=True),
    Case(
        "MaxPool",
        (x(*NCHW),),
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        variant="same-upper",
    ),
    Case("MaxPool", (x(*NCHW),), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, variant="ceil"),
    Case("AveragePool", (x(*NCHW),), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("AveragePool", (x(*NCHW),), {"kernel_shape": [3, 3], "pads": [0, 0, 1, 2]}, variant="uneven-pads"),
    Case(
        "AveragePool",
        (x(*NCHW),),
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        variant="count-include-pad",
    ),
    Case("MaxPool", (x(*NCHW),), {"kernel_shape": [2, 3], "dilations": [2, 2]}, variant="dilations"),
    Case("GlobalAveragePool", (x(*NCHW),)),
    Case("GlobalMaxPool", (x(*NCHW),)),
    # --- normalisation
    Case(
        "BatchNormalization",
        (x(*NCHW), kx(3), kx(3), kx(3), kx(3, low=0.5, high=2.0)),
        {"epsilon": 1e-3},
        opset=15,
        rtol=1e-4,
        atol=1e-5,
    ),
    Case("InstanceNormalization", (x(*NCHW), kx(3), kx(3)), rtol=1e-4, atol=1e-5),
    Case("LayerNormalization", (x(2, 3, 8), kx(8), kx(8)), {"epsilon": 1e-5}, rtol=1e-4, atol=1e-5, export=True),
    Case(
        "LayerNormalization", (x(2, 3, 4, 5), kx(5)), {"axis": 2}, variant="axis-broadcast-scale", rtol=1e-4, atol=1e-5
    ),
    Case("LRN", (x(*NCHW),), {"size": 3, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}, rtol=1e-4, atol=1e-5),
    # --- reductions
    Case("ReduceMean", (x(2, 3, 4),), {"axes": [1], "keepdims": 1}),
    Case("ReduceMean", (x(2, 3, 4),), {"keepdims": 0}, variant="all"),
    Case("ReduceSum", (x(2, 3, 4), k([-1, 0])), {"keepdims": 0}, opset=13),
    Case("ReduceSum", (x(2, 3, 4),), {"noop_with_empty_axes": 1}, variant="noop", opset=13),
    Case("ReduceMax", (x(2, 3, 4), k([1])), opset=18),
    Case("ReduceMin", (x(2, 3, 4), k([2])), {"keepdims": 0}, opset=18),
    Case("ReduceProd", (x(2, 3, 4, low=0.5, high=1.5), k([1, 2])), opset=18),
    Case("ReduceL1", (x(2, 3, 4), k([1])), opset=18),
    Case("ReduceL2", (x(2, 3, 4), k([2])), opset=18),
    Case("ReduceSumSquare", (x(2, 3, 4), k([0, 2])), opset=18),
    Case("ReduceLogSumExp", (x(2, 3, 4), k([1])), opset=18),
    Case("ArgMax", (ints(3, 5, low=0, high=3),), {"axis": 1, "keepdims": 0}),
    Case("ArgMin", (ints(3, 5, low=0, high=3),), {"axis": -1, "select_last_index": 1}),
    Case("CumSum", (x(2, 5), k(1))),
    Case("CumSum", (x(2, 5), k(-1)), {"exclusive": 1, "reverse": 1}, variant="exclusive-reverse"),
    # --- shape and layout
    Case("Shape", (x(*NCHW),)),
    Case("Shape", (x(*NCHW),), {"start": 1, "end": -1}, variant="start-end", opset=15),
    Case("Size", (x(*NCHW),)),
    Case("Reshape", (x(*NCHW), k([0, -1])), export=True),
    Case("Reshape", (x(2, 3, 4), k([4, 0, 2])), {"allowzero": 0}, variant="copy-dim", opset=14),
    Case("Flatten", (x(*NCHW),), {"axis": 2}),
    Case("Flatten", (x(*NCHW),), {"axis": 0}, variant="axis0"),
    Case("Squeeze", (x(2, 1, 4, 1), k([1]))),
    Case("Squeeze", (x(2, 1, 4, 1),), variant="all-ones"),
    Case("Squeeze", (x(2, 1, 4, 1),), {"axes": [-1]}, variant="opset11", opset=11),
    Case("Unsqueeze", (x(2, 3), k([0, -1]))),
    Case("Unsqueeze", (x(2, 3),), {"axes": [1]}, variant="opset11", opset=11),
    Case("Transpose", (x(2, 3, 4),), {"perm": [1, 2, 0]}),
    Case("Transpose", (x(2, 3, 4),), variant="reverse"),
    Case("Expand", (x(3, 1), k([2, 1, 4]))),
    Case("Tile", (x(2, 3), k([2, 3]))),
    Case("Identity", (x(2, 3),)),
    Case("Dropout", (x(2, 3),), opset=13),
    # --- indexing, joining, splitting
    Case("Gather", (x(3, 5, 2), k([[0, 2], [4, -1]])), {"axis": 1}),
    Case("Gather", (x(3, 5), k(-2)), {"axis": 0}, variant="scalar-index"),
    Case("GatherElements", (x(3, 4), ints(3, 2, low=-3, high=3)), {"axis": 1}),
    Case("Slice", (x(4, 6, 5), k([1, 0]), k([5, 100]), k([1, 2]), k([1, 2])), export=True),
    Case("Slice", (x(4, 6), k([-1]), k([-100]), k([1]), k([-2])), variant="negative-step"),
    Case("Slice", (x(4, 6),), {"starts": [1, 2], "ends": [3, -1], "axes": [0, 1]}, variant="opset9", opset=9),
    Case("Concat", (x(2, 3), x(2, 1), x(2, 4)), {"axis": 1}),
    Case("Split", (x(3, 6), k([2, 4])), {"axis": 1}, outputs=2, opset=13),
    Case("Split", (x(6, 3),), {"axis": 0}, variant="equal", outputs=3, opset=13),
    Case("Split", (x(3, 7),), {"axis": 1, "split": [3, 4]}, variant="opset11", outputs=2, opset=11),
    # --- made from attributes or scalars
    Case("Constant", (), {"value": numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))}),
    Case("Constant", (), {"value_ints": [3, 1, 4]}, variant="value-ints"),
    Case("ConstantOfShape", (k([2, 3]),), {"value": numpy_helper.from_array(np.array([1.5], np.float32))}),
    Case(
        "ConstantOfShape", (k([80, 80]),), {"value": numpy_helper.from_array(np.array([7], np.int64))}, variant="large"
    ),
    Case("Range", (k(2), k(11), k(3))),
    Case("Range", (k(0.5, np.float32), k(-2.0, np.float32), k(-0.75, np.float32)), variant="float"),
    Case("Range", (given(1, np.int64), k(9), k(2)), variant="from-data"),
    # --- spatial layout
    Case("Pad", (x(*NCHW), k([0, 0, 1, 2, 0, 0, 2, 1]), k(0.5, np.float32)), opset=13),
    Case("Pad", (x(*NCHW), k([0, 0, 1, 2, 0, 0, 2, 1])), {"mode": "reflect"}, variant="reflect", opset=13),
    Case("Pad", (x(*NCHW), k([0, 0, 1, 2, 0, 0, 2, 1])), {"mode": "edge"}, variant="edge", opset=13),
    Case("Pad", (x(*NCHW), k([0, 0, 1, 2, 0, 0, 2, 1])), {"mode": "wrap"}, variant="wrap", opset=19),
    Case("Pad", (x(*NCHW), k([1, 2, 3, 0]), None, k([2, -1])), variant="axes", opset=18),
    Case(
        "Resize",
        (x(*NCHW), None, k([1, 1, 2, 2], np.float32)),
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        opset=13,
    ),
    Case(
        "Resize",
        (x(*NCHW), None, k([1, 1, 2, 3], np.float32)),
        {"mode": "nearest", "coordinate_transformation_mode": "half_pixel"},
        variant="nearest-half-pixel",
        opset=13,
    ),
    Case(
        "Resize",
        (x(*NCHW), None, None, k([2, 3, 9, 11])),
        {"mode": "linear"},
        variant="linear-sizes",
        opset=13,
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Resize",
        (x(*NCHW), None, k([1, 1, 2, 2], np.float32)),
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        variant="linear-align-corners",
        opset=13,
        rtol=1e-4,
        atol=1e-5,
    ),
    Case(
        "Resize",
        (x(*NCHW), None, k([1, 1, 2, 2], np.float32)),
        {"mode": "cubic"},
        variant="cubic",
        opset=13,
        rtol=1e-4,
        atol=1e-4,
    ),
    Case("Upsample", (x(*NCHW), k([1, 1, 2, 2], np.float32)), {"mode": "nearest"}, opset=9),
    Case("DepthToSpace", (x(2, 8, 3, 4),), {"blocksize": 2}),
    Case("DepthToSpace", (x(2, 8, 3, 4),), {"blocksize": 2, "mode": "CRD"}, variant="crd"),
    Case("SpaceToDepth", (x(2, 3, 4, 6),), {"blocksize": 2}),
]


def _onnx_model(case: Case, fold: bool) -> tuple[Any, dict[str, np.ndarray]]:
    """The single-node model and its feeds; with `fold`, every input is an initializer (no feeds)."""
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for i, item in enumerate(case.inputs):
        if item is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if item.constant or fold:
            initializers.append(numpy_helper.from_array(item.array, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(item.array.dtype)
            dims: list[Any] = list(item.array.shape)
            if case.export and i == 0:
                dims[0] = "batch"
            graph_inputs.append(helper.make_tensor_value_info(name, elem, dims))
            feeds[name] = item.array
    outputs = [f"out{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, names, outputs, **case.attrs)
    graph = helper.make_graph(
        [node], case.id, graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outputs], initializers
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model, strict_mode=True), feeds


def _onnx_runtime(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _as_list(result: Any) -> list[np.ndarray]:
    outs = result if isinstance(result, tuple) else (result,)
    return [o.detach().numpy() for o in outs]


def _assert_same(got: list[np.ndarray], want: list[np.ndarray], case: Case, path: str) -> None:
    assert len(got) == len(want), path
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype, f"{path}: dtype {g.dtype}, ONNX Runtime {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol, err_msg=path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_operator_matches_onnxruntime(case: Case, tmp_path) -> None:
    model, feeds = _onnx_model(case, fold=False)
    want = _onnx_runtime(model, feeds)
    with torch.no_grad():
        # Eagerly: the same module torch.export traces, run op by op on real tensors.
        module = build_module(model)
        got = _as_list(module(*(torch.from_numpy(a.copy()) for a in feeds.values())))
    _assert_same(got, want, case, "torch")

    if OPS[case.op].static is not None and feeds:
        # Every input known: the op folds while the module is built (its numpy form, e.g. for shape arithmetic).
        folded, _ = _onnx_model(case, fold=True)
        with torch.no_grad():
            _assert_same(_as_list(build_module(folded)()), want, case, "folded")

    if case.export:
        from xpubench.convert.torch import onnx_model_to_pt2

        program = torch.export.load(str(onnx_model_to_pt2(model, tmp_path / "op.pt2"))).module()
        for batch in (1, 3):  # the batch dim stays dynamic: other sizes than the traced one
            sized = {n: np.concatenate([a] * 3)[:batch] if i == 0 else a for i, (n, a) in enumerate(feeds.items())}
            with torch.no_grad():
                got = _as_list(program(*(torch.from_numpy(a.copy()) for a in sized.values())))
            _assert_same(got, _onnx_runtime(model, sized), case, f"torch.export, batch {batch}")


def test_every_operator_in_the_registry_has_a_case() -> None:
    covered = {c.op for c in CASES}
    assert sorted(set(SUPPORTED_OPS) - covered) == []
    assert sorted(covered - set(SUPPORTED_OPS)) == []
    assert len({c.id for c in CASES}) == len(CASES)  # ids are unique
