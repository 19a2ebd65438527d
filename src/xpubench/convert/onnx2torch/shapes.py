"""Shape and layout: Shape, Size, Reshape, Flatten, (Un)Squeeze, Transpose, Expand, Tile, Identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import ints, positive_axis, shape_array


def _shape_of(node: Node, x: Any) -> np.ndarray:
    dims = list(x.shape)
    start = node.get("start", 0)
    end = node.get("end")
    return shape_array(dims[start:end])


register("Shape", static=_shape_of)(_shape_of)


def _size_of(node: Node, x: Any) -> np.ndarray:
    total: Any = 1
    for d in x.shape:
        total = total * d
    return shape_array([total]).reshape(())


register("Size", static=_size_of)(_size_of)


def _squeeze_axes(node: Node, rank: int, axes: Any) -> list[int] | None:
    listed = ints(axes) if axes is not None else node.get("axes")
    return None if listed is None else sorted(positive_axis(int(a), rank) for a in listed)


@register(
    "Squeeze",
    static=lambda node, x, axes=None: np.squeeze(
        x, axis=None if (a := _squeeze_axes(node, x.ndim, axes)) is None else tuple(a)
    ),
    host=(1,),
)
def _squeeze(node: Node, x: Any, axes: Any = None) -> Any:
    dims = _squeeze_axes(node, x.dim(), axes)
    if dims is None:
        dims = [i for i, d in enumerate(x.shape) if isinstance(d, int) and d == 1]
    return x.squeeze(tuple(dims)) if dims else x


def _unsqueeze_axes(node: Node, rank: int, axes: Any) -> list[int]:
    listed = ints(axes) if axes is not None else node.get("axes")
    out_rank = rank + len(listed)
    return sorted(positive_axis(int(a), out_rank) for a in listed)


@register(
    "Unsqueeze",
    static=lambda node, x, axes=None: np.expand_dims(x, tuple(_unsqueeze_axes(node, x.ndim, axes))),
    host=(1,),
)
def _unsqueeze(node: Node, x: Any, axes: Any = None) -> Any:
    for axis in _unsqueeze_axes(node, x.dim(), axes):
        x = x.unsqueeze(axis)
    return x


def _target_shape(node: Node, current: Sequence[Any], shape: Any) -> list[Any]:
    dims = ints(shape) if shape is not None else list(node.get("shape"))
    if node.get("allowzero", 0):
        return dims
    return [current[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(dims)]


@register("Reshape", static=lambda node, x, shape=None: x.reshape(_target_shape(node, x.shape, shape)), host=(1,))
def _reshape(node: Node, x: Any, shape: Any = None) -> Any:
    return x.reshape(_target_shape(node, list(x.shape), shape))


@register("Flatten", static=lambda node, x: x.reshape(int(np.prod(x.shape[: node.get("axis", 1)])), -1))
def _flatten(node: Node, x: Any) -> Any:
    axis = positive_axis(int(node.get("axis", 1)), x.dim())
    if axis == 0:
        return x.reshape(1, -1)
    rest = 1
    for d in x.shape[axis:]:
        rest = rest * d
    return x.reshape(-1, rest)


@register("Transpose", static=lambda node, x: np.transpose(x, node.get("perm")))
def _transpose(node: Node, x: Any) -> Any:
    perm = node.get("perm")
    return x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


@register("Identity", "Dropout", static=lambda node, x, *rest: x, host=(1, 2))
def _identity(node: Node, x: Any, *rest: Any) -> Any:
    return x


def _expand_dims(current: Sequence[Any], shape: Sequence[Any]) -> list[Any]:
    rank = max(len(current), len(shape))
    current = [1] * (rank - len(current)) + list(current)
    shape = [1] * (rank - len(shape)) + list(shape)
    # A target of 1 keeps the input's size (ONNX broadcasting); no comparison touches a SymInt.
    return [c if isinstance(s, int) and s == 1 else s for c, s in zip(current, shape, strict=True)]


@register(
    "Expand",
    static=lambda node, x, shape: (
        np.broadcast_to(x, _expand_dims(x.shape, ints(shape))).copy() if x.dtype != object else None
    ),
    host=(1,),
)
def _expand(node: Node, x: Any, shape: Any) -> Any:
    dims = _expand_dims(list(x.shape), ints(shape))
    while x.dim() < len(dims):
        x = x.unsqueeze(0)
    return x.expand(*dims)


@register("Tile", static=lambda node, x, reps: np.tile(x, ints(reps)), host=(1,))
def _tile(node: Node, x: Any, reps: Any) -> Any:
    return x.repeat(*ints(reps))
