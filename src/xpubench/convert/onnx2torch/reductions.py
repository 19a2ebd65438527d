"""Reductions along axes: Reduce*, ArgMax/ArgMin, CumSum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.registry import OPS, Node, Op, register
from xpubench.convert.onnx2torch.values import import_torch, ints, is_static, positive_axis, scalar


def _reduce_axes(node: Node, x: Any, axes: Any) -> list[int] | None:
    rank = x.dim() if not is_static(x) else x.ndim
    listed = ints(axes) if axes is not None else node.get("axes")
    if not listed:
        return None if not node.get("noop_with_empty_axes", 0) else []
    return sorted(positive_axis(int(a), rank) for a in listed)


def _reduce_static(np_fn: Callable[..., Any]) -> Callable[..., Any]:
    def static(node: Node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
        dims = _reduce_axes(node, x, axes)
        if dims == []:
            return x
        return np.asarray(np_fn(x, axis=None if dims is None else tuple(dims), keepdims=bool(node.get("keepdims", 1))))

    return static


@register(
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
def _reduce(node: Node, x: Any, axes: Any = None) -> Any:
    torch = import_torch()
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
    OPS[_name] = Op(_reduce, _reduce_static(_np_fn), frozenset((1,)))


@register("ArgMax", "ArgMin")
def _arg_reduce(node: Node, x: Any) -> Any:
    torch = import_torch()
    axis = positive_axis(int(node.get("axis", 0)), x.dim())
    keep = bool(node.get("keepdims", 1))
    fn = torch.argmax if node.op == "ArgMax" else torch.argmin
    if node.get("select_last_index", 0):
        flipped = x.flip(axis)
        return x.shape[axis] - 1 - fn(flipped, axis, keepdim=keep)
    return fn(x, axis, keepdim=keep)


@register("CumSum", host=(1,))
def _cumsum(node: Node, x: Any, axis: Any) -> Any:
    dim = positive_axis(int(scalar(axis)), x.dim())
    if node.get("reverse", 0):
        x = x.flip(dim)
    out = x.cumsum(dim)
    if node.get("exclusive", 0):
        out = out - x
    return out.flip(dim) if node.get("reverse", 0) else out
