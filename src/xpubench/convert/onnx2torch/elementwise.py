"""Elementwise arithmetic and math: binary, variadic and unary ops, and casts."""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.registry import Node, register, register_binary, register_unary, register_variadic
from xpubench.convert.onnx2torch.values import ONNX_TO_NUMPY, import_torch, torch_dtype


def _np_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype == object or b.dtype == object:
        return a // b  # symbolic sizes: non-negative, so floor and truncation agree, and no guard on a SymInt's sign
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        # ONNX integer division truncates toward zero (as torch's trunc mode does); numpy's // floors.
        quotient = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -quotient, quotient).astype(np.result_type(a, b))
    return a / b


def _torch_div(a: Any, b: Any) -> Any:
    torch = import_torch()
    tensor = a if isinstance(a, torch.Tensor) else b
    if not tensor.is_floating_point() and not isinstance(a, float) and not isinstance(b, float):
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


register_binary("Add", lambda a, b: a + b, lambda a, b: a + b)
register_binary("Sub", lambda a, b: a - b, lambda a, b: a - b)
register_binary("Mul", lambda a, b: a * b, lambda a, b: a * b)
register_binary("Div", _np_div, _torch_div)
register_binary("Pow", lambda a, b: np.power(a, b).astype(a.dtype), lambda a, b: a**b)


def _mod_static(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.fmod(a, b) if node.get("fmod", 0) else np.mod(a, b)


@register("Mod", static=_mod_static, scalars=True)
def _mod(node: Node, a: Any, b: Any) -> Any:
    torch = import_torch()
    return torch.fmod(a, b) if node.get("fmod", 0) else torch.remainder(a, b)


register_variadic(np.maximum, lambda a, b: import_torch().maximum(a, b), "Max")
register_variadic(np.minimum, lambda a, b: import_torch().minimum(a, b), "Min")
register_variadic(np.add, lambda a, b: a + b, "Sum")
register_variadic(np.add, lambda a, b: a + b, "Mean", mean=True)


register_unary("Exp", lambda x: import_torch().exp(x))
register_unary("Log", lambda x: import_torch().log(x))
register_unary("Sqrt", lambda x: import_torch().sqrt(x), np.sqrt)
register_unary("Reciprocal", lambda x: import_torch().reciprocal(x))
register_unary("Neg", lambda x: -x, lambda x: -x)
register_unary("Abs", lambda x: import_torch().abs(x), np.abs)
register_unary("Erf", lambda x: import_torch().erf(x))
register_unary("Floor", lambda x: import_torch().floor(x), np.floor)
register_unary("Ceil", lambda x: import_torch().ceil(x), np.ceil)
register_unary("Round", lambda x: import_torch().round(x), np.round)
register_unary("Sign", lambda x: import_torch().sign(x), np.sign)
register_unary("Sin", lambda x: import_torch().sin(x))
register_unary("Cos", lambda x: import_torch().cos(x))
register_unary("Tan", lambda x: import_torch().tan(x))
register_unary("Atan", lambda x: import_torch().atan(x))


def _cast_static(node: Node, x: np.ndarray) -> np.ndarray:
    to = int(node.get("to"))
    if x.dtype == object:  # symbolic sizes stay symbolic: the cast matters only once they meet data
        return x
    if to not in ONNX_TO_NUMPY:
        return None  # type: ignore[return-value]  (falls back to the torch implementation)
    return x.astype(ONNX_TO_NUMPY[to])


@register("Cast", static=_cast_static)
def _cast(node: Node, x: Any) -> Any:
    return x.to(torch_dtype(int(node.get("to"))))


@register("CastLike", static=lambda node, x, like: x.astype(like.dtype) if x.dtype != object else x)
def _cast_like(node: Node, x: Any, like: Any) -> Any:
    return x.to(like.dtype)
