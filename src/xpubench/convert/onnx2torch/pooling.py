"""Pooling: MaxPool, AveragePool and their global forms."""

from __future__ import annotations

from typing import Any

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx
from xpubench.convert.onnx2torch.padding import spatial_pads, torch_pads
from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import functional, import_torch


def _pool_setup(node: Node, x: Any) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    kernel = list(node.get("kernel_shape"))
    n = len(kernel)
    strides = list(node.get("strides", [1] * n))
    dilations = list(node.get("dilations", [1] * n))
    begin, end = spatial_pads(node, list(x.shape[2:]), kernel, strides, dilations)
    return kernel, strides, dilations, begin, end


@register("MaxPool")
def _max_pool(node: Node, x: Any) -> Any:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedOnnx("MaxPool with an Indices output is not supported")
    F = functional()  # noqa: N806
    kernel, strides, dilations, begin, end = _pool_setup(node, x)
    if begin != end or any(p > k // 2 for p, k in zip(begin, kernel, strict=True)):
        x = F.pad(x, torch_pads(begin, end), value=float("-inf"))
        begin = [0] * len(kernel)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    return fn(x, kernel, strides, begin, dilations, ceil_mode=bool(node.get("ceil_mode", 0)))


@register("AveragePool")
def _avg_pool(node: Node, x: Any) -> Any:
    F = functional()  # noqa: N806
    kernel, strides, dilations, begin, end = _pool_setup(node, x)
    if any(d != 1 for d in dilations):
        raise UnsupportedOnnx("AveragePool with dilations is not supported")
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel)]
    ceil = bool(node.get("ceil_mode", 0))
    include = bool(node.get("count_include_pad", 0))
    if begin == end and all(p <= k // 2 for p, k in zip(begin, kernel, strict=True)):
        return fn(x, kernel, strides, begin, ceil, include)
    pads = torch_pads(begin, end)
    pooled = fn(F.pad(x, pads), kernel, strides, 0, ceil, True)
    if include:
        return pooled
    # Uneven padding that must not count: divide the window sums by the number of real elements.
    ones = import_torch().ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    return pooled / fn(F.pad(ones, pads), kernel, strides, 0, ceil, True)


@register("GlobalAveragePool")
def _global_avg_pool(node: Node, x: Any) -> Any:
    return x.mean(list(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def _global_max_pool(node: Node, x: Any) -> Any:
    return x.amax(list(range(2, x.dim())), keepdim=True)
