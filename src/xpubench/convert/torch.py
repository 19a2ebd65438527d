"""PyTorch artifacts: ONNX -> torch.export (.pt2) through our own translator, .pt2 -> ONNX, nn.Module -> .pt2."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.convert.graph import ConversionContext, converter

# Stored inside the .pt2 (torch.export.save's extra_files): the model's own input and output names.
META_FILE = "xpubench.json"


class UnsupportedOnnx(ValueError):
    """The ONNX graph uses something the translator does not cover; the message names it."""


# ---------------------------------------------------------------------------------------------
# Values flowing through the translated graph are either torch tensors (data) or numpy arrays
# (values known while tracing: constants and shape arithmetic). A shape vector that holds the
# symbolic batch size is a numpy object array of ints and torch SymInts, so Shape -> Gather ->
# Concat -> Reshape chains stay Python arithmetic and torch.export sees only the final reshape.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    opset: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class _Op:
    run: Callable[..., Any]  # torch implementation: fn(node, *inputs)
    static: Callable[..., Any] | None = None  # numpy implementation when every input is known
    host: frozenset[int] = frozenset()  # inputs read as Python values (shapes, axes, scalars)
    scalars: bool = False  # a one-element known input may be passed as a Python number


_OPS: dict[str, _Op] = {}


def _op(
    *names: str, static: Callable[..., Any] | None = None, host: Sequence[int] = (), scalars: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            _OPS[name] = _Op(fn, static, frozenset(host), scalars)
        return fn

    return register


def _torch() -> Any:
    import torch

    return torch


def _F() -> Any:  # noqa: N802  (torch.nn.functional's usual name)
    import torch.nn.functional as functional

    return functional


_ONNX_TO_NUMPY = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}


def _torch_dtype(onnx_type: int) -> Any:
    torch = _torch()
    table = {
        1: torch.float32,
        2: torch.uint8,
        3: torch.int8,
        5: torch.int16,
        6: torch.int32,
        7: torch.int64,
        9: torch.bool,
        10: torch.float16,
        11: torch.float64,
        16: torch.bfloat16,
    }
    if onnx_type not in table:
        raise UnsupportedOnnx(f"ONNX element type {onnx_type} has no torch equivalent here")
    return table[onnx_type]


def _is_static(value: Any) -> bool:
    return isinstance(value, np.ndarray)


def _shape_array(dims: Sequence[Any]) -> np.ndarray:
    """A shape as a static value: int64 when every dim is a plain int, else an object array."""
    items = list(dims)
    if all(isinstance(d, (int, np.integer)) for d in items):
        return np.array(items, dtype=np.int64)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _ints(value: Any) -> list[Any]:
    """A known 1-D value as Python ints (or SymInts)."""
    if value is None:
        return []
    if not _is_static(value):
        value = value.detach().cpu().numpy()  # only reachable while folding constants, not while tracing
    return [d if not isinstance(d, np.integer) else int(d) for d in np.asarray(value).reshape(-1).tolist()]


def _scalar(value: Any) -> Any:
    if value is None:
        return None
    if not _is_static(value):
        value = value.detach().cpu().numpy()
    return np.asarray(value).reshape(-1)[0].item()


def _tensor(value: Any, like: Any = None) -> Any:
    """A static value as a tensor, with the dtype and device of `like` where both are floating."""
    torch = _torch()
    if not _is_static(value):
        return value
    if value.dtype == object:
        return torch.stack([torch.as_tensor(v) for v in value.reshape(-1)]).reshape(value.shape)
    tensor = torch.from_numpy(np.array(value, order="C", copy=True))
    if like is not None:
        dtype = like.dtype if (tensor.is_floating_point() and like.is_floating_point()) else tensor.dtype
        tensor = tensor.to(device=like.device, dtype=dtype)
    return tensor


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] over the last n dims -> torch F.pad order (last dim first)."""
    out: list[int] = []
    for b, e in zip(reversed(list(begin)), reversed(list(end)), strict=True):
        out += [int(b), int(e)]
    return out


def _spatial_pads(
    node: _Node, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Begin and end padding of each spatial dim, from `pads` or `auto_pad`."""
    n = len(kernel)
    auto = node.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - small if auto == "SAME_UPPER" else small)
        return begin, end
    if auto == "VALID":
        return [0] * n, [0] * n
    pads = list(node.get("pads", [0] * (2 * n)))
    return pads[:n], pads[n:]


def _conv_params(node: _Node, rank: int, kernel: Sequence[int]) -> tuple[list[int], list[int]]:
    n = len(kernel)
    return list(node.get("strides", [1] * n)), list(node.get("dilations", [1] * n))


# --- elementwise -------------------------------------------------------------------------------


def _np_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iuO" and b.dtype.kind in "iuO":
        return a // b
    return a / b


def _register_binary(name: str, np_fn: Callable[[Any, Any], Any], torch_fn: Callable[[Any, Any], Any]) -> None:
    _op(name, static=lambda node, a, b: np.asarray(np_fn(a, b)), scalars=True)(lambda node, a, b: torch_fn(a, b))


def _torch_div(a: Any, b: Any) -> Any:
    torch = _torch()
    tensor = a if isinstance(a, torch.Tensor) else b
    if not tensor.is_floating_point() and not isinstance(a, float) and not isinstance(b, float):
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


_register_binary("Add", lambda a, b: a + b, lambda a, b: a + b)
_register_binary("Sub", lambda a, b: a - b, lambda a, b: a - b)
_register_binary("Mul", lambda a, b: a * b, lambda a, b: a * b)
_register_binary("Div", _np_div, _torch_div)
_register_binary("Pow", lambda a, b: np.power(a, b).astype(a.dtype), lambda a, b: a**b)
_register_binary("Equal", np.equal, lambda a, b: _torch().eq(a, b))
_register_binary("Less", np.less, lambda a, b: _torch().lt(a, b))
_register_binary("LessOrEqual", np.less_equal, lambda a, b: _torch().le(a, b))
_register_binary("Greater", np.greater, lambda a, b: _torch().gt(a, b))
_register_binary("GreaterOrEqual", np.greater_equal, lambda a, b: _torch().ge(a, b))
_register_binary("And", np.logical_and, lambda a, b: _torch().logical_and(a, b))
_register_binary("Or", np.logical_or, lambda a, b: _torch().logical_or(a, b))
_register_binary("Xor", np.logical_xor, lambda a, b: _torch().logical_xor(a, b))


def _mod_static(node: _Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.fmod(a, b) if node.get("fmod", 0) else np.mod(a, b)


@_op("Mod", static=_mod_static, scalars=True)
def _mod(node: _Node, a: Any, b: Any) -> Any:
    torch = _torch()
    return torch.fmod(a, b) if node.get("fmod", 0) else torch.remainder(a, b)


def _variadic(np_fn: Callable[..., Any], torch_fn: Callable[[Any, Any], Any], name: str, mean: bool = False) -> None:
    def static(node: _Node, *xs: np.ndarray) -> np.ndarray:
        out = xs[0]
        for x in xs[1:]:
            out = np_fn(out, x)
        return np.asarray(out / len(xs) if mean else out)

    def run(node: _Node, *xs: Any) -> Any:
        out = xs[0]
        for x in xs[1:]:
            out = torch_fn(out, x)
        return out / len(xs) if mean else out

    _op(name, static=static)(run)


_variadic(np.maximum, lambda a, b: _torch().maximum(a, b), "Max")
_variadic(np.minimum, lambda a, b: _torch().minimum(a, b), "Min")
_variadic(np.add, lambda a, b: a + b, "Sum")
_variadic(np.add, lambda a, b: a + b, "Mean", mean=True)


def _unary(name: str, torch_fn: Callable[[Any], Any], np_fn: Callable[[Any], Any] | None = None) -> None:
    static = (lambda node, x: np.asarray(np_fn(x))) if np_fn is not None else None
    _op(name, static=static)(lambda node, x: torch_fn(x))


_unary("Relu", lambda x: _F().relu(x))
_unary("Sigmoid", lambda x: _torch().sigmoid(x))
_unary("Tanh", lambda x: _torch().tanh(x))
_unary("Exp", lambda x: _torch().exp(x))
_unary("Log", lambda x: _torch().log(x))
_unary("Sqrt", lambda x: _torch().sqrt(x), np.sqrt)
_unary("Reciprocal", lambda x: _torch().reciprocal(x))
_unary("Neg", lambda x: -x, lambda x: -x)
_unary("Abs", lambda x: _torch().abs(x), np.abs)
_unary("Erf", lambda x: _torch().erf(x))
_unary("Floor", lambda x: _torch().floor(x), np.floor)
_unary("Ceil", lambda x: _torch().ceil(x), np.ceil)
_unary("Round", lambda x: _torch().round(x), np.round)
_unary("Sign", lambda x: _torch().sign(x), np.sign)
_unary("Sin", lambda x: _torch().sin(x))
_unary("Cos", lambda x: _torch().cos(x))
_unary("Tan", lambda x: _torch().tan(x))
_unary("Atan", lambda x: _torch().atan(x))
_unary("Not", lambda x: _torch().logical_not(x), np.logical_not)
_unary("Softplus", lambda x: _F().softplus(x))
_unary("Softsign", lambda x: _F().softsign(x))
_unary("Mish", lambda x: _F().mish(x))
_unary("HardSwish", lambda x: _F().hardswish(x))
_unary("IsNaN", lambda x: _torch().isnan(x))
_unary("IsInf", lambda x: _torch().isinf(x))


@_op("LeakyRelu")
def _leaky_relu(node: _Node, x: Any) -> Any:
    return _F().leaky_relu(x, float(node.get("alpha", 0.01)))


@_op("Elu")
def _elu(node: _Node, x: Any) -> Any:
    return _F().elu(x, float(node.get("alpha", 1.0)))


@_op("Celu")
def _celu(node: _Node, x: Any) -> Any:
    return _F().celu(x, float(node.get("alpha", 1.0)))


@_op("Selu")
def _selu(node: _Node, x: Any) -> Any:
    alpha = float(node.get("alpha", 1.67326319217681884765625))
    gamma = float(node.get("gamma", 1.05070102214813232421875))
    return gamma * _F().elu(x, alpha)


@_op("ThresholdedRelu")
def _thresholded_relu(node: _Node, x: Any) -> Any:
    return _F().threshold(x, float(node.get("alpha", 1.0)), 0.0)


@_op("HardSigmoid")
def _hard_sigmoid(node: _Node, x: Any) -> Any:
    return _torch().clamp(x * float(node.get("alpha", 0.2)) + float(node.get("beta", 0.5)), 0.0, 1.0)


@_op("Gelu")
def _gelu(node: _Node, x: Any) -> Any:
    approximate = node.get("approximate", "none")
    return _F().gelu(x, approximate=approximate.decode() if isinstance(approximate, bytes) else approximate)


@_op("PRelu")
def _prelu(node: _Node, x: Any, slope: Any) -> Any:
    return _torch().where(x >= 0, x, x * slope)


@_op("Clip", host=(1, 2))
def _clip(node: _Node, x: Any, low: Any = None, high: Any = None) -> Any:
    low = _scalar(low) if low is not None else node.get("min")
    high = _scalar(high) if high is not None else node.get("max")
    if low == 0 and high is None:
        return _F().relu(x)
    return _torch().clamp(x, low, high)


@_op("Where", static=lambda node, c, a, b: np.where(c, a, b), scalars=True)
def _where(node: _Node, cond: Any, a: Any, b: Any) -> Any:
    return _torch().where(cond, a, b)


# --- dense, convolution, normalisation, pooling ---------------------------------------------------


@_op("MatMul")
def _matmul(node: _Node, a: Any, b: Any) -> Any:
    return _torch().matmul(a, b)


@_op("Gemm")
def _gemm(node: _Node, a: Any, b: Any, c: Any = None) -> Any:
    torch = _torch()
    alpha, beta = float(node.get("alpha", 1.0)), float(node.get("beta", 1.0))
    if node.get("transA", 0):
        a = a.t()
    if node.get("transB", 0) and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() <= 1):
        return _F().linear(a, b, c)  # the fused form torch.nn.Linear takes
    if node.get("transB", 0):
        b = b.t()
    out = torch.matmul(a, b)
    if alpha != 1.0:
        out = out * alpha
    if c is not None:
        out = out + (c * beta if beta != 1.0 else c)
    return out


@_op("Conv")
def _conv(node: _Node, x: Any, w: Any, b: Any = None) -> Any:
    F = _F()  # noqa: N806
    kernel = list(w.shape[2:])
    strides, dilations = _conv_params(node, x.dim(), kernel)
    begin, end = _spatial_pads(node, list(x.shape[2:]), kernel, strides, dilations)
    if begin != end:
        x = F.pad(x, _torch_pads(begin, end))
        begin = [0] * len(kernel)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(len(kernel))
    if fn is None:
        raise UnsupportedOnnx(f"Conv over {len(kernel)} spatial dims is not supported")
    return fn(x, w, b, strides, begin, dilations, int(node.get("group", 1)))


@_op("ConvTranspose")
def _conv_transpose(node: _Node, x: Any, w: Any, b: Any = None) -> Any:
    F = _F()  # noqa: N806
    kernel = list(w.shape[2:])
    n = len(kernel)
    strides, dilations = _conv_params(node, x.dim(), kernel)
    out_pad = list(node.get("output_padding", [0] * n))
    spatial = list(x.shape[2:])
    full = [
        (i - 1) * s + (k - 1) * d + 1 + p
        for i, s, k, d, p in zip(spatial, strides, kernel, dilations, out_pad, strict=True)
    ]
    auto = node.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    wanted = node.get("output_shape")
    if wanted is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(wanted)[-n:] if wanted is not None else [i * s for i, s in zip(spatial, strides, strict=True)]
        totals = [f - t for f, t in zip(full, target, strict=True)]
        if any(t < 0 for t in totals):
            raise UnsupportedOnnx("ConvTranspose with an output_shape larger than its full output is not supported")
        lower = auto == "SAME_LOWER"
        begin = [t - t // 2 if lower else t // 2 for t in totals]
        end = [t // 2 if lower else t - t // 2 for t in totals]
    elif auto == "VALID":
        begin, end = [0] * n, [0] * n
    else:
        pads = list(node.get("pads", [0] * (2 * n)))
        begin, end = pads[:n], pads[n:]
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}.get(n)
    if fn is None:
        raise UnsupportedOnnx(f"ConvTranspose over {n} spatial dims is not supported")
    group = int(node.get("group", 1))
    if begin == end and all(p < max(s, d) for p, s, d in zip(out_pad, strides, dilations, strict=True)):
        return fn(x, w, b, strides, begin, out_pad, group, dilations)
    # Uneven padding: compute the full output, then crop it.
    y = fn(x, w, b, strides, 0, out_pad, group, dilations)
    index = [slice(None), slice(None)] + [slice(bb, f - e) for bb, e, f in zip(begin, end, full, strict=True)]
    return y[tuple(index)]


@_op("BatchNormalization")
def _batch_norm(node: _Node, x: Any, scale: Any, bias: Any, mean: Any, var: Any) -> Any:
    return _F().batch_norm(x, mean, var, scale, bias, False, 0.0, float(node.get("epsilon", 1e-5)))


@_op("InstanceNormalization")
def _instance_norm(node: _Node, x: Any, scale: Any, bias: Any) -> Any:
    return _F().instance_norm(x, weight=scale, bias=bias, eps=float(node.get("epsilon", 1e-5)))


@_op("LayerNormalization")
def _layer_norm(node: _Node, x: Any, scale: Any, bias: Any = None) -> Any:
    axis = _axis(int(node.get("axis", -1)), x.dim())
    shape = list(x.shape[axis:])
    eps = float(node.get("epsilon", 1e-5))
    if list(scale.shape) == shape and (bias is None or list(bias.shape) == shape):
        return _F().layer_norm(x, shape, scale, bias, eps)
    dims = list(range(axis, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    y = (x - mean) / _torch().sqrt(var + eps) * scale
    return y + bias if bias is not None else y


@_op("LRN")
def _lrn(node: _Node, x: Any) -> Any:
    return _F().local_response_norm(
        x,
        int(node.get("size")),
        float(node.get("alpha", 1e-4)),
        float(node.get("beta", 0.75)),
        float(node.get("bias", 1.0)),
    )


def _pool_setup(node: _Node, x: Any) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    kernel = list(node.get("kernel_shape"))
    n = len(kernel)
    strides = list(node.get("strides", [1] * n))
    dilations = list(node.get("dilations", [1] * n))
    begin, end = _spatial_pads(node, list(x.shape[2:]), kernel, strides, dilations)
    return kernel, strides, dilations, begin, end


@_op("MaxPool")
def _max_pool(node: _Node, x: Any) -> Any:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedOnnx("MaxPool with an Indices output is not supported")
    F = _F()  # noqa: N806
    kernel, strides, dilations, begin, end = _pool_setup(node, x)
    if begin != end or any(p > k // 2 for p, k in zip(begin, kernel, strict=True)):
        x = F.pad(x, _torch_pads(begin, end), value=float("-inf"))
        begin = [0] * len(kernel)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    return fn(x, kernel, strides, begin, dilations, ceil_mode=bool(node.get("ceil_mode", 0)))


@_op("AveragePool")
def _avg_pool(node: _Node, x: Any) -> Any:
    F = _F()  # noqa: N806
    kernel, strides, dilations, begin, end = _pool_setup(node, x)
    if any(d != 1 for d in dilations):
        raise UnsupportedOnnx("AveragePool with dilations is not supported")
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel)]
    ceil = bool(node.get("ceil_mode", 0))
    include = bool(node.get("count_include_pad", 0))
    if begin == end and all(p <= k // 2 for p, k in zip(begin, kernel, strict=True)):
        return fn(x, kernel, strides, begin, ceil, include)
    pads = _torch_pads(begin, end)
    pooled = fn(F.pad(x, pads), kernel, strides, 0, ceil, True)
    if include:
        return pooled
    # Uneven padding that must not count: divide the window sums by the number of real elements.
    ones = _torch().ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    return pooled / fn(F.pad(ones, pads), kernel, strides, 0, ceil, True)


@_op("GlobalAveragePool")
def _global_avg_pool(node: _Node, x: Any) -> Any:
    return x.mean(list(range(2, x.dim())), keepdim=True)


@_op("GlobalMaxPool")
def _global_max_pool(node: _Node, x: Any) -> Any:
    return x.amax(list(range(2, x.dim())), keepdim=True)


@_op("Softmax", "LogSoftmax")
def _softmax(node: _Node, x: Any) -> Any:
    F = _F()  # noqa: N806
    fn = F.softmax if node.op == "Softmax" else F.log_softmax
    rank = x.dim()
    axis = _axis(int(node.get("axis", -1 if node.opset >= 13 else 1)), rank)
    if node.opset >= 13 or axis == rank - 1:
        return fn(x, axis)
    # Before opset 13 the input is flattened to 2-D at `axis`, normalised per row, and reshaped back.
    shape = list(x.shape)
    flat = x.reshape(-1, int(np.prod([int(d) for d in shape[axis:]])))
    return fn(flat, -1).reshape(shape)


# --- reductions --------------------------------------------------------------------------------


def _reduce_axes(node: _Node, x: Any, axes: Any) -> list[int] | None:
    rank = x.dim() if not _is_static(x) else x.ndim
    listed = _ints(axes) if axes is not None else node.get("axes")
    if not listed:
        return None if not node.get("noop_with_empty_axes", 0) else []
    return sorted(_axis(int(a), rank) for a in listed)


def _reduce_static(np_fn: Callable[..., Any]) -> Callable[..., Any]:
    def static(node: _Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
        dims = _reduce_axes(node, x, axes)
        if dims == []:
            return x
        return np.asarray(np_fn(x, axis=None if dims is None else tuple(dims), keepdims=bool(node.get("keepdims", 1))))

    return static


@_op(
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    host=(1,),
)
def _reduce(node: _Node, x: Any, axes: Any = None) -> Any:
    torch = _torch()
    dims = _reduce_axes(node, x, axes)
    if dims == []:
        return x
    if dims is None:
        dims = list(range(x.dim()))
    keep = bool(node.get("keepdims", 1))
    op = node.op
    if op == "ReduceMean":
        return x.mean(dims, keepdim=keep)
    if op == "ReduceSum":
        return x.sum(dims, keepdim=keep)
    if op == "ReduceMax":
        return x.amax(dims, keepdim=keep)
    if op == "ReduceMin":
        return x.amin(dims, keepdim=keep)
    if op == "ReduceL1":
        return x.abs().sum(dims, keepdim=keep)
    if op == "ReduceL2":
        return torch.sqrt((x * x).sum(dims, keepdim=keep))
    if op == "ReduceSumSquare":
        return (x * x).sum(dims, keepdim=keep)
    if op == "ReduceLogSumExp":
        return torch.logsumexp(x, dims, keepdim=keep)
    for d in sorted(dims, reverse=True):
        x = x.prod(d, keepdim=keep)
    return x


for _name, _np_fn in (("ReduceSum", np.sum), ("ReduceProd", np.prod), ("ReduceMax", np.max), ("ReduceMin", np.min)):
    _OPS[_name] = _Op(_reduce, _reduce_static(_np_fn), frozenset((1,)))


@_op("ArgMax", "ArgMin")
def _arg_reduce(node: _Node, x: Any) -> Any:
    torch = _torch()
    axis = _axis(int(node.get("axis", 0)), x.dim())
    keep = bool(node.get("keepdims", 1))
    fn = torch.argmax if node.op == "ArgMax" else torch.argmin
    if node.get("select_last_index", 0):
        flipped = x.flip(axis)
        return x.shape[axis] - 1 - fn(flipped, axis, keepdim=keep)
    return fn(x, axis, keepdim=keep)


# --- shapes and layout ------------------------------------------------------------------------


def _shape_of(node: _Node, x: Any) -> np.ndarray:
    dims = list(x.shape)
    start = node.get("start", 0)
    end = node.get("end")
    return _shape_array(dims[start:end])


_op("Shape", static=_shape_of)(_shape_of)


def _size_of(node: _Node, x: Any) -> np.ndarray:
    total: Any = 1
    for d in x.shape:
        total = total * d
    return _shape_array([total]).reshape(())


_op("Size", static=_size_of)(_size_of)


def _gather_static(node: _Node, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    indices = indices.astype(np.int64) if indices.dtype != object else indices
    return np.take(data, indices, axis=int(node.get("axis", 0)))


@_op("Gather", static=_gather_static, host=(1,))
def _gather(node: _Node, data: Any, indices: Any) -> Any:
    torch = _torch()
    axis = _axis(int(node.get("axis", 0)), data.dim())
    if _is_static(indices) and indices.ndim == 0:
        return data.select(axis, int(indices))
    idx = _tensor(indices).to(device=data.device, dtype=torch.int64)
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    picked = torch.index_select(data, axis, idx.reshape(-1))
    return picked.reshape(*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :])


@_op("GatherElements")
def _gather_elements(node: _Node, data: Any, indices: Any) -> Any:
    torch = _torch()
    axis = _axis(int(node.get("axis", 0)), data.dim())
    idx = indices.to(torch.int64)
    return torch.gather(data, axis, torch.where(idx < 0, idx + data.shape[axis], idx))


def _slices(node: _Node, rank: int, starts: Any, ends: Any, axes: Any, steps: Any) -> list[tuple[int, int, int, int]]:
    if node.opset < 10 and starts is None:
        starts, ends, axes = node.get("starts"), node.get("ends"), node.get("axes")
    start_list, end_list = _ints(starts), _ints(ends)
    axis_list = _ints(axes) if axes is not None and len(_ints(axes)) else list(range(len(start_list)))
    step_list = _ints(steps) if steps is not None and len(_ints(steps)) else [1] * len(start_list)
    return [
        (_axis(int(a), rank), s, e, st) for a, s, e, st in zip(axis_list, start_list, end_list, step_list, strict=True)
    ]


def _clamp_index(value: int) -> int | None:
    # ONNX marks "to the end" with huge values; Python slicing clamps them, but keep SymInt-free ints small.
    return None if isinstance(value, int) and abs(value) >= 2**62 else value


def _slice_static(
    node: _Node, data: np.ndarray, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None
) -> np.ndarray:
    index: list[Any] = [slice(None)] * data.ndim
    for axis, start, end, step in _slices(node, data.ndim, starts, ends, axes, steps):
        index[axis] = slice(_clamp_index(start), _clamp_index(end), step)
    return data[tuple(index)]


@_op("Slice", static=_slice_static, host=(1, 2, 3, 4))
def _slice(node: _Node, data: Any, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None) -> Any:
    torch = _torch()
    index: list[Any] = [slice(None)] * data.dim()
    flips = []
    for axis, start, end, step in _slices(node, data.dim(), starts, ends, axes, steps):
        if isinstance(step, int) and step < 0:
            size = int(data.shape[axis])
            picked = list(range(size))[slice(_clamp_index(start), _clamp_index(end), step)]
            flips.append((axis, picked))
            continue
        index[axis] = slice(_clamp_index(start), _clamp_index(end), step)
    out = data[tuple(index)]
    for axis, picked in flips:
        out = torch.index_select(out, axis, torch.tensor(picked, dtype=torch.int64, device=out.device))
    return out


def _concat_static(node: _Node, *xs: np.ndarray) -> np.ndarray:
    xs = tuple(x for x in xs if x is not None)
    if any(x.dtype == object for x in xs):
        xs = tuple(x.astype(object) for x in xs)
    return np.concatenate(xs, axis=int(node.get("axis")))


@_op("Concat", static=_concat_static)
def _concat(node: _Node, *xs: Any) -> Any:
    torch = _torch()
    like = next(x for x in xs if isinstance(x, torch.Tensor))
    tensors = [_tensor(x, like) for x in xs if x is not None]
    return torch.cat([t for t in tensors if t.numel() or t.dim() > 1], int(node.get("axis")))


def _cast_static(node: _Node, x: np.ndarray) -> np.ndarray:
    to = int(node.get("to"))
    if x.dtype == object:  # symbolic sizes stay symbolic: the cast matters only once they meet data
        return x
    if to not in _ONNX_TO_NUMPY:
        return None  # type: ignore[return-value]  (falls back to the torch implementation)
    return x.astype(_ONNX_TO_NUMPY[to])


@_op("Cast", static=_cast_static)
def _cast(node: _Node, x: Any) -> Any:
    return x.to(_torch_dtype(int(node.get("to"))))


@_op("CastLike", static=lambda node, x, like: x.astype(like.dtype) if x.dtype != object else x)
def _cast_like(node: _Node, x: Any, like: Any) -> Any:
    return x.to(like.dtype)


def _squeeze_axes(node: _Node, rank: int, axes: Any) -> list[int] | None:
    listed = _ints(axes) if axes is not None else node.get("axes")
    return None if listed is None else sorted(_axis(int(a), rank) for a in listed)


@_op(
    "Squeeze",
    static=lambda node, x, axes=None: np.squeeze(
        x, axis=None if (a := _squeeze_axes(node, x.ndim, axes)) is None else tuple(a)
    ),
    host=(1,),
)
def _squeeze(node: _Node, x: Any, axes: Any = None) -> Any:
    dims = _squeeze_axes(node, x.dim(), axes)
    if dims is None:
        dims = [i for i, d in enumerate(x.shape) if isinstance(d, int) and d == 1]
    return x.squeeze(tuple(dims)) if dims else x


def _unsqueeze_axes(node: _Node, rank: int, axes: Any) -> list[int]:
    listed = _ints(axes) if axes is not None else node.get("axes")
    out_rank = rank + len(listed)
    return sorted(_axis(int(a), out_rank) for a in listed)


@_op(
    "Unsqueeze",
    static=lambda node, x, axes=None: np.expand_dims(x, tuple(_unsqueeze_axes(node, x.ndim, axes))),
    host=(1,),
)
def _unsqueeze(node: _Node, x: Any, axes: Any = None) -> Any:
    for axis in _unsqueeze_axes(node, x.dim(), axes):
        x = x.unsqueeze(axis)
    return x


def _target_shape(node: _Node, current: Sequence[Any], shape: Any) -> list[Any]:
    dims = _ints(shape) if shape is not None else list(node.get("shape"))
    if node.get("allowzero", 0):
        return dims
    return [current[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(dims)]


@_op("Reshape", static=lambda node, x, shape=None: x.reshape(_target_shape(node, x.shape, shape)), host=(1,))
def _reshape(node: _Node, x: Any, shape: Any = None) -> Any:
    return x.reshape(_target_shape(node, list(x.shape), shape))


@_op("Flatten", static=lambda node, x: x.reshape(int(np.prod(x.shape[: node.get("axis", 1)])), -1))
def _flatten(node: _Node, x: Any) -> Any:
    axis = _axis(int(node.get("axis", 1)), x.dim())
    if axis == 0:
        return x.reshape(1, -1)
    rest = 1
    for d in x.shape[axis:]:
        rest = rest * d
    return x.reshape(-1, rest)


@_op("Transpose", static=lambda node, x: np.transpose(x, node.get("perm")))
def _transpose(node: _Node, x: Any) -> Any:
    perm = node.get("perm")
    return x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


@_op("Identity", "Dropout", static=lambda node, x, *rest: x, host=(1, 2))
def _identity(node: _Node, x: Any, *rest: Any) -> Any:
    return x


def _constant_value(node: _Node) -> np.ndarray:
    from onnx import numpy_helper

    if "value" in node.attrs:
        return numpy_helper.to_array(node.attrs["value"])
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in node.attrs:
            return np.array(node.attrs[key], dtype=dtype)
    raise UnsupportedOnnx(f"Constant node {node.name} has a value kind xpubench does not read ({sorted(node.attrs)})")


_op("Constant", static=lambda node: _constant_value(node))(lambda node: _constant_value(node))


def _fill_value(node: _Node) -> np.ndarray:
    from onnx import numpy_helper

    value = node.attrs.get("value")
    return numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)


def _constant_of_shape_static(node: _Node, shape: np.ndarray) -> np.ndarray | None:
    dims = _ints(shape)
    if not all(isinstance(d, int) for d in dims) or int(np.prod(dims)) > 4096:
        return None  # a symbolic or large fill is data: made by torch
    fill = _fill_value(node)
    return np.full(dims, fill[0], dtype=fill.dtype)


@_op("ConstantOfShape", static=_constant_of_shape_static, host=(0,))
def _constant_of_shape(node: _Node, shape: Any) -> Any:
    torch = _torch()
    fill = _fill_value(node)
    return torch.full(_ints(shape), fill[0].item(), dtype=torch.from_numpy(fill).dtype)


def _expand_dims(current: Sequence[Any], shape: Sequence[Any]) -> list[Any]:
    rank = max(len(current), len(shape))
    current = [1] * (rank - len(current)) + list(current)
    shape = [1] * (rank - len(shape)) + list(shape)
    # A target of 1 keeps the input's size (ONNX broadcasting); no comparison touches a SymInt.
    return [c if isinstance(s, int) and s == 1 else s for c, s in zip(current, shape, strict=True)]


@_op(
    "Expand",
    static=lambda node, x, shape: (
        np.broadcast_to(x, _expand_dims(x.shape, _ints(shape))).copy() if x.dtype != object else None
    ),
    host=(1,),
)
def _expand(node: _Node, x: Any, shape: Any) -> Any:
    dims = _expand_dims(list(x.shape), _ints(shape))
    while x.dim() < len(dims):
        x = x.unsqueeze(0)
    return x.expand(*dims)


@_op("Tile", static=lambda node, x, reps: np.tile(x, _ints(reps)), host=(1,))
def _tile(node: _Node, x: Any, reps: Any) -> Any:
    return x.repeat(*_ints(reps))


def _range_static(node: _Node, start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray | None:
    if any(v.dtype == object for v in (start, limit, delta)):
        return None
    return np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@_op("Range", static=_range_static, host=(0, 1, 2))
def _range(node: _Node, start: Any, limit: Any, delta: Any) -> Any:
    return _torch().arange(_scalar(start), _scalar(limit), _scalar(delta))


@_op("Pad", host=(1, 2, 3))
def _pad(node: _Node, x: Any, pads: Any = None, value: Any = None, axes: Any = None) -> Any:
    rank = x.dim()
    mode = node.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    listed = _ints(pads) if pads is not None else list(node.get("pads"))
    fill = _scalar(value) if value is not None else node.get("value", 0.0)
    dims = [_axis(a, rank) for a in _ints(axes)] if axes is not None else list(range(rank))
    begin = dict(zip(dims, listed[: len(dims)], strict=True))
    end = dict(zip(dims, listed[len(dims) :], strict=True))
    first = min((d for d in dims if begin[d] or end[d]), default=rank)
    torch_pads = _torch_pads([begin.get(d, 0) for d in range(first, rank)], [end.get(d, 0) for d in range(first, rank)])
    if not torch_pads:
        return x
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    if mode not in modes:
        raise UnsupportedOnnx(f"Pad mode {mode!r} is not supported")
    if mode == "constant":
        return _F().pad(x, torch_pads, value=float(fill or 0.0))
    return _F().pad(x, torch_pads, mode=modes[mode])


@_op("Split", host=(1,))
def _split(node: _Node, x: Any, split: Any = None) -> list[Any]:
    axis = _axis(int(node.get("axis", 0)), x.dim())
    sizes = _ints(split) if split is not None else node.get("split")
    if not sizes:
        parts = len(node.outputs)
        size = int(x.shape[axis])
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
    return list(_torch().split(x, list(sizes), axis))


def _resize_mode(node: _Node) -> tuple[str, str, str]:
    def text(key: str, default: str) -> str:
        value = node.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    return (
        text("mode", "nearest"),
        text(
            "coordinate_transformation_mode", "half_pixel" if node.op == "Resize" and node.opset >= 11 else "asymmetric"
        ),
        text("nearest_mode", "round_prefer_floor"),
    )


@_op("Resize", "Upsample", host=(1, 2, 3))
def _resize(node: _Node, x: Any, *extra: Any) -> Any:
    F = _F()  # noqa: N806
    mode, transform, nearest = _resize_mode(node)
    if node.op == "Upsample" or node.opset < 11:
        scales_value, sizes_value = (extra[0] if extra else None), None
        if scales_value is None:
            scales_value = np.array(node.get("scales"), np.float32)
    else:
        scales_value = extra[1] if len(extra) > 1 else None
        sizes_value = extra[2] if len(extra) > 2 else None
    spatial = list(x.shape[2:])
    if sizes_value is not None and len(_ints(sizes_value)):
        sizes = _ints(sizes_value)[-len(spatial) :]
        scales = [s / i for s, i in zip(sizes, spatial, strict=True)]
    else:
        listed = [float(s) for s in np.asarray(scales_value).reshape(-1)]
        if listed[:2] != [1.0, 1.0]:
            raise UnsupportedOnnx("Resize of the batch or channel dims is not supported")
        scales = listed[2:]
        sizes = [int(np.floor(i * s)) for i, s in zip(spatial, scales, strict=True)]
    n = len(spatial)
    if mode == "nearest" and transform == "asymmetric" and nearest == "floor":
        return F.interpolate(x, size=sizes, mode="nearest")
    if (
        mode == "nearest"
        and transform in ("half_pixel", "pytorch_half_pixel")
        and nearest in ("round_prefer_ceil", "round_prefer_floor")
        and all(float(s).is_integer() for s in scales)
    ):
        return F.interpolate(x, size=sizes, mode="nearest-exact")
    if mode == "nearest" and transform == "asymmetric" and all(float(s).is_integer() for s in scales):
        return F.interpolate(x, size=sizes, mode="nearest")
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}
    if mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return F.interpolate(x, size=sizes, mode=linear[n], align_corners=transform == "align_corners")
    if (
        mode == "cubic"
        and n == 2
        and transform in ("half_pixel", "align_corners")
        and float(node.get("cubic_coeff_a", -0.75)) == -0.75
        and not node.get("exclude_outside", 0)
    ):
        return F.interpolate(x, size=sizes, mode="bicubic", align_corners=transform == "align_corners")
    raise UnsupportedOnnx(f"{node.op} mode={mode} coordinate_transformation_mode={transform} is not supported")


@_op("DepthToSpace")
def _depth_to_space(node: _Node, x: Any) -> Any:
    block = int(node.get("blocksize"))
    mode = node.get("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "CRD":
        return _F().pixel_shuffle(x, block)
    b, c, h, w = x.shape
    y = x.reshape(b, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, c // (block * block), h * block, w * block)


@_op("SpaceToDepth")
def _space_to_depth(node: _Node, x: Any) -> Any:
    block = int(node.get("blocksize"))
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * block * block, h // block, w // block)


@_op("Einsum")
def _einsum(node: _Node, *xs: Any) -> Any:
    equation = node.get("equation")
    return _torch().einsum(equation.decode() if isinstance(equation, bytes) else equation, *xs)


@_op("CumSum", host=(1,))
def _cumsum(node: _Node, x: Any, axis: Any) -> Any:
    dim = _axis(int(_scalar(axis)), x.dim())
    if node.get("reverse", 0):
        x = x.flip(dim)
    out = x.cumsum(dim)
    if node.get("exclusive", 0):
        out = out - x
    return out.flip(dim) if node.get("reverse", 0) else out


# --- the module ---------------------------------------------------------------------------------


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import AttributeProto, helper

    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            raise UnsupportedOnnx(f"ONNX op {node.op_type} (node {node.name or '?'}) holds a subgraph: not supported")
        attrs[attr.name] = attr.t if attr.type == AttributeProto.TENSOR else helper.get_attribute_value(attr)
    return attrs


def _sorted_nodes(graph: Any, known: set[str]) -> list[Any]:
    """The graph's nodes in an order where every input is made before it is read."""
    pending = list(graph.node)
    available = set(known) | {""}
    ordered: list[Any] = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            missing = next(i for n in pending for i in n.input if i not in available)
            raise UnsupportedOnnx(f"ONNX tensor {missing!r} is read but never produced (or the graph has a cycle)")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        ordered += ready
        for n in ready:
            available.update(n.output)
    return ordered


def _run(op: _Op, node: _Node, inputs: list[Any], folding: bool) -> list[Any]:
    """One node: numpy when every input is known and the op has a numpy form, else torch."""
    present = [x for x in inputs if x is not None]
    result = None
    if op.static is not None and all(_is_static(x) for x in present):
        result = op.static(node, *inputs)
    if result is None:
        torch = _torch()
        like = next((x for x in present if isinstance(x, torch.Tensor)), None)
        ranks = max((x.dim() for x in present if isinstance(x, torch.Tensor)), default=0)
        args = []
        for i, x in enumerate(inputs):
            if _is_static(x) and i not in op.host:
                if op.scalars and like is not None and x.size == 1 and x.ndim <= ranks and x.dtype != object:
                    x = x.reshape(-1)[0].item()  # a Python number keeps the tensor's dtype (e.g. bf16)
                elif op.scalars and like is not None and x.size == 1 and x.dtype == object:
                    x = x.reshape(-1)[0]
                else:
                    x = _tensor(x, like)
            args.append(x)
        result = op.run(node, *args)
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    outputs = [_as_value(o) for o in outputs]
    if folding:
        outputs = [o if o is None or _is_static(o) else o.detach().cpu().numpy() for o in outputs]
    return outputs


def _as_value(value: Any) -> Any:
    """numpy indexing hands back scalars (np.int64, SymInt): make them 0-d static arrays again."""
    if value is None or _is_static(value) or hasattr(value, "dim"):
        return value
    if isinstance(value, (np.generic, int, float, bool)):
        return np.asarray(value)
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _load_onnx(src: Path) -> Any:
    import onnx

    return onnx.load(str(src))


def build_module(model: Any) -> Any:
    """An nn.Module that computes the ONNX `model`: initializers become buffers, nodes run in order."""
    from onnx import numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    graph = model.graph
    unsupported = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx") or n.op_type not in _OPS})
    if unsupported:
        raise UnsupportedOnnx(
            f"ONNX op{'s' if len(unsupported) > 1 else ''} {', '.join(unsupported)} "
            f"ha{'ve' if len(unsupported) > 1 else 's'} no torch translation in xpubench"
        )
    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in constants]
    steps: list[tuple[_Op, _Node]] = []
    for proto in _sorted_nodes(graph, set(constants) | set(input_names)):
        node = _Node(
            proto.op_type,
            proto.name or proto.output[0],
            tuple(proto.input),
            tuple(proto.output),
            _attributes(proto),
            opset,
        )
        op = _OPS[node.op]
        if all(i == "" or i in constants for i in node.inputs):  # fold: it depends on constants only
            try:
                values = _run(op, node, [constants[i] if i else None for i in node.inputs], folding=True)
            except UnsupportedOnnx:
                raise
            except Exception as exc:
                message = f"ONNX node {node.name} ({node.op}) failed on constants: {_first_line(exc)}"
                raise UnsupportedOnnx(message) from exc
            constants.update({name: value for name, value in zip(node.outputs, values, strict=False) if name})
            continue
        steps.append((op, node))

    module = _OnnxModule(input_names, [o.name for o in graph.output], steps, constants)
    return module.eval()


def _module_class() -> type:
    import torch

    class OnnxModule(torch.nn.Module):
        """Runs an ONNX graph with torch ops; large float constants are buffers, the rest Python values."""

        def __init__(
            self,
            inputs: list[str],
            outputs: list[str],
            steps: list[tuple[_Op, _Node]],
            constants: dict[str, np.ndarray],
        ) -> None:
            super().__init__()
            self.onnx_inputs = inputs
            self.onnx_outputs = outputs
            self._steps: list[tuple[_Op, _Node, list[tuple[str, Any]]]] = []
            buffers: dict[str, str] = {}
            for op, node in steps:
                sources: list[tuple[str, Any]] = []
                for i, name in enumerate(node.inputs):
                    if name == "":
                        sources.append(("none", None))
                    elif name not in constants:
                        sources.append(("env", name))
                    else:
                        value = constants[name]
                        if i in op.host or value.dtype.kind not in "fc" or value.size <= 1:
                            sources.append(("value", value))
                        else:
                            if name not in buffers:
                                buffers[name] = f"c{len(buffers)}_" + re.sub(r"\W", "_", name)[-60:]
                                tensor = torch.from_numpy(np.array(value, order="C", copy=True))
                                self.register_buffer(buffers[name], tensor)
                            sources.append(("buffer", buffers[name]))
                self._steps.append((op, node, sources))
            self._outputs = [("value", constants[o]) if o in constants else ("env", o) for o in outputs]

        def forward(self, *inputs: Any) -> Any:
            env: dict[str, Any] = dict(zip(self.onnx_inputs, inputs, strict=True))
            for op, node, sources in self._steps:
                args = [
                    env[ref] if kind == "env" else getattr(self, ref) if kind == "buffer" else ref
                    for kind, ref in sources
                ]
                try:
                    values = _run(op, node, args, folding=False)
                except UnsupportedOnnx as exc:
                    raise UnsupportedOnnx(f"ONNX node {node.name} ({node.op}): {exc}") from None
                except Exception as exc:
                    raise RuntimeError(f"ONNX node {node.name} ({node.op}): {_first_line(exc)}") from exc
                env.update(zip(node.outputs, values, strict=False))
            like = inputs[0] if inputs else None
            outs = [_tensor(env[ref], like) if kind == "env" else _tensor(ref, like) for kind, ref in self._outputs]
            outs = [o if isinstance(o, torch.Tensor) else torch.as_tensor(o) for o in outs]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return OnnxModule


def _OnnxModule(*args: Any) -> Any:  # noqa: N802  (builds the class on first use: torch is imported lazily)
    global _ONNX_MODULE_CLASS
    if _ONNX_MODULE_CLASS is None:
        _ONNX_MODULE_CLASS = _module_class()
    return _ONNX_MODULE_CLASS(*args)


_ONNX_MODULE_CLASS: type | None = None


# --- export and conversions ----------------------------------------------------------------------


def _onnx_input_shapes(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, list[int], bool, int]]:
    """(name, example shape, batch is dynamic, onnx element type) of each graph input."""
    initializers = {i.name for i in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]
        dynamic = bool(dims) and dims[0] is None
        given = shapes.get(value.name)
        if given is not None and len(given) == len(dims) - 1:
            dims = [dims[0], *given]
        if any(d is None for d in dims[1:]):
            raise UnsupportedOnnx(
                f"input {value.name} has dynamic dims besides the batch ({dims}): give its shape to convert it to torch"
            )
        example = [2 if dynamic else dims[0], *dims[1:]] if dims else []  # 2, not 1: torch specialises 0 and 1
        out.append((value.name, example, dynamic, tensor_type.elem_type))
    return out


def _example(shape: Sequence[int], onnx_type: int, seed: int) -> Any:
    torch = _torch()
    dtype = _torch_dtype(onnx_type)
    if dtype.is_floating_point:
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return torch.zeros(*shape, dtype=dtype)  # indices: zeros are valid for any table


def _save(program: Any, out: Path, inputs: Sequence[str], outputs: Sequence[str]) -> Path:
    import torch

    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp.pt2")  # torch.export.save wants the .pt2 suffix
    meta = json.dumps({"inputs": list(inputs), "outputs": list(outputs)})
    torch.export.save(program, str(tmp), extra_files={META_FILE: meta})
    tmp.replace(out)
    return out


def read_meta(path: Path) -> dict[str, Any]:
    """The input/output names stored with a .pt2 by xpubench ({} for a .pt2 made elsewhere)."""
    import torch

    extra = {META_FILE: ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra[META_FILE]) if extra[META_FILE] else {}


@contextlib.contextmanager
def _export_errors(what: str) -> Iterator[None]:
    try:
        yield
    except UnsupportedOnnx:
        raise
    except Exception as exc:
        raise RuntimeError(f"torch.export of {what} failed: {_first_line(exc)}") from exc


def onnx_model_to_pt2(model: Any, out: Path, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Path:
    """Translate an ONNX ModelProto into a torch.export program saved at `out`."""
    import torch

    inputs = _onnx_input_shapes(model, shapes or {})
    module = build_module(model)
    examples = tuple(_example(shape, kind, seed) for seed, (_, shape, _, kind) in enumerate(inputs))
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({0: batch} if is_dynamic else None for _, _, is_dynamic, _ in inputs)
    with _export_errors("the translated ONNX graph"), torch.inference_mode(False), torch.no_grad():
        # forward(*inputs): the dynamic shapes of the one variadic argument, as a tuple.
        program = torch.export.export(
            module, examples, dynamic_shapes=(dynamic,) if any(dynamic) else None, strict=False
        )
    return _save(program, out, [name for name, *_ in inputs], [o.name for o in model.graph.output])


def module_to_pt2(module: Any, example_inputs: Sequence[Any], out: Path, dynamic_batch: bool = True) -> Path:
    """Export a user's nn.Module (in eval mode) to a .pt2 file; axis 0 of every input is the batch,
    dynamic unless `dynamic_batch` is False."""
    import torch

    examples = tuple(x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x in example_inputs)
    dynamic = None
    if dynamic_batch:
        # torch specialises sizes 0 and 1: trace with a batch of at least 2.
        examples = tuple(torch.cat([x] * (-(-2 // x.shape[0]))) if x.shape[0] < 2 else x for x in examples)
        batch = torch.export.Dim("batch", min=1)
        dynamic = tuple({0: batch} for _ in examples)
    was_training = module.training
    module.eval()
    try:
        with _export_errors(type(module).__name__), torch.no_grad():
            program = torch.export.export(module, examples, dynamic_shapes=dynamic, strict=False)
    finally:
        module.train(was_training)
    names = _argument_names(module, len(examples)) or list(program.graph_signature.user_inputs)
    outputs = [f"output_{i}" for i in range(len(program.graph_signature.user_outputs))]
    return _save(program, out, names, outputs)


def _argument_names(module: Any, count: int) -> list[str] | None:
    """The names of forward's first `count` positional parameters (torch.export lower-cases its own)."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in kinds]
    return names[:count] if len(names) >= count else None


@converter("onnx:fp32", "pt2:fp32", requires=("torch", "onnx"))
def onnx_to_pt2(src: Path, dst: Path, ctx: ConversionContext) -> None:
    onnx_model_to_pt2(_load_onnx(src), dst, ctx.shapes)


@converter("pt2:fp32", "onnx:fp32", requires=("torch", "onnx", "onnxscript"))
def pt2_to_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """torch.onnx's torch.export-based exporter on the stored program, in one file, its dynamic
    batch kept."""
    import torch

    from xpubench.convert.keras import native_output_silenced

    extra = {META_FILE: ""}
    program = torch.export.load(str(src), extra_files=extra)
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    n_in = len(program.graph_signature.user_inputs)
    n_out = len(program.graph_signature.user_outputs)
    names = meta["inputs"] if len(meta.get("inputs", [])) == n_in else [f"input_{i}" for i in range(n_in)]
    outputs = meta["outputs"] if len(meta.get("outputs", [])) == n_out else [f"output_{i}" for i in range(n_out)]
    tmp = dst.with_name(dst.stem + ".tmp.onnx")
    with _export_errors(src.name), native_output_silenced():
        torch.onnx.export(
            program,
            (),
            str(tmp),
            dynamo=True,
            external_data=False,
            input_names=names,
            output_names=outputs,
            verbose=False,
        )
    tmp.replace(dst)

