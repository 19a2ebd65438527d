"""Values made from attributes or scalars: Constant, ConstantOfShape, Range."""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx
from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import import_torch, ints, scalar


def _constant_value(node: Node) -> np.ndarray:
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


register("Constant", static=lambda node: _constant_value(node))(lambda node: _constant_value(node))


def _fill_value(node: Node) -> np.ndarray:
    from onnx import numpy_helper

    value = node.attrs.get("value")
    return numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)


def _constant_of_shape_static(node: Node, shape: np.ndarray) -> np.ndarray | None:
    dims = ints(shape)
    if not all(isinstance(d, int) for d in dims) or int(np.prod(dims)) > 4096:
        return None  # a symbolic or large fill is data: made by torch
    fill = _fill_value(node)
    return np.full(dims, fill[0], dtype=fill.dtype)


@register("ConstantOfShape", static=_constant_of_shape_static, host=(0,))
def _constant_of_shape(node: Node, shape: Any) -> Any:
    torch = import_torch()
    fill = _fill_value(node)
    return torch.full(
        ints(shape), fill[0].item(), dtype=torch.from_numpy(np.array(fill)).dtype
    )  # a writable copy: torch warns on onnx's read-only arrays


def _range_static(node: Node, start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray | None:
    if any(v.dtype == object for v in (start, limit, delta)):
        return None
    return np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@register("Range", static=_range_static, host=(0, 1, 2))
def _range(node: Node, start: Any, limit: Any, delta: Any) -> Any:
    return import_torch().arange(scalar(start), scalar(limit), scalar(delta))
