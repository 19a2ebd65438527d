"""Indexing, joining and splitting: Gather, GatherElements, Slice, Concat, Split."""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import as_tensor, import_torch, ints, is_static, positive_axis


def _gather_static(node: Node, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    indices = indices.astype(np.int64) if indices.dtype != object else indices
    return np.take(data, indices, axis=int(node.get("axis", 0)))


@register("Gather", static=_gather_static, host=(1,))
def _gather(node: Node, data: Any, indices: Any) -> Any:
    torch = import_torch()
    axis = positive_axis(int(node.get("axis", 0)), data.dim())
    if is_static(indices) and indices.ndim == 0:
        return data.select(axis, int(indices))
    idx = as_tensor(indices).to(device=data.device, dtype=torch.int64)
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    picked = torch.index_select(data, axis, idx.reshape(-1))
    return picked.reshape(*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :])


@register("GatherElements")
def _gather_elements(node: Node, data: Any, indices: Any) -> Any:
    torch = import_torch()
    axis = positive_axis(int(node.get("axis", 0)), data.dim())
    idx = indices.to(torch.int64)
    return torch.gather(data, axis, torch.where(idx < 0, idx + data.shape[axis], idx))


def _slices(node: Node, rank: int, starts: Any, ends: Any, axes: Any, steps: Any) -> list[tuple[int, int, int, int]]:
    if node.opset < 10 and starts is None:
        starts, ends, axes = (
            np.asarray(v) if v is not None else None for v in map(node.get, ("starts", "ends", "axes"))
        )
    start_list, end_list = ints(starts), ints(ends)
    axis_list = ints(axes) if axes is not None and len(ints(axes)) else list(range(len(start_list)))
    step_list = ints(steps) if steps is not None and len(ints(steps)) else [1] * len(start_list)
    return [
        (positive_axis(int(a), rank), s, e, st)
        for a, s, e, st in zip(axis_list, start_list, end_list, step_list, strict=True)
    ]


def _clamp_index(value: int) -> int | None:
    # ONNX marks "to the end" with huge values; Python slicing clamps them, but keep SymInt-free ints small.
    return None if isinstance(value, int) and abs(value) >= 2**62 else value


def _slice_static(
    node: Node, data: np.ndarray, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None
) -> np.ndarray:
    index: list[Any] = [slice(None)] * data.ndim
    for axis, start, end, step in _slices(node, data.ndim, starts, ends, axes, steps):
        index[axis] = slice(_clamp_index(start), _clamp_index(end), step)
    return data[tuple(index)]


@register("Slice", static=_slice_static, host=(1, 2, 3, 4))
def _slice(node: Node, data: Any, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None) -> Any:
    torch = import_torch()
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


def _concat_static(node: Node, *xs: np.ndarray) -> np.ndarray:
    xs = tuple(x for x in xs if x is not None)
    if any(x.dtype == object for x in xs):
        xs = tuple(x.astype(object) for x in xs)
    return np.concatenate(xs, axis=int(node.get("axis")))


@register("Concat", static=_concat_static)
def _concat(node: Node, *xs: Any) -> Any:
    torch = import_torch()
    like = next(x for x in xs if isinstance(x, torch.Tensor))
    tensors = [as_tensor(x, like) for x in xs if x is not None]
    return torch.cat([t for t in tensors if t.numel() or t.dim() > 1], int(node.get("axis")))


@register("Split", host=(1,))
def _split(node: Node, x: Any, split: Any = None) -> list[Any]:
    axis = positive_axis(int(node.get("axis", 0)), x.dim())
    sizes = ints(split) if split is not None else node.get("split")
    if not sizes:
        parts = len(node.outputs)
        size = int(x.shape[axis])
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
    return list(import_torch().split(x, list(sizes), axis))
