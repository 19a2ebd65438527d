"""Linear algebra: MatMul, Gemm, Einsum."""

from __future__ import annotations

from typing import Any

from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import functional, import_torch


@register("MatMul")
def _matmul(node: Node, a: Any, b: Any) -> Any:
    return import_torch().matmul(a, b)


@register("Gemm")
def _gemm(node: Node, a: Any, b: Any, c: Any = None) -> Any:
    torch = import_torch()
    alpha, beta = float(node.get("alpha", 1.0)), float(node.get("beta", 1.0))
    if node.get("transA", 0):
        a = a.t()
    if node.get("transB", 0) and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() <= 1):
        return functional().linear(a, b, c)  # the fused form torch.nn.Linear takes
    if node.get("transB", 0):
        b = b.t()
    out = torch.matmul(a, b)
    if alpha != 1.0:
        out = out * alpha
    if c is not None:
        out = out + (c * beta if beta != 1.0 else c)
    return out


@register("Einsum")
def _einsum(node: Node, *xs: Any) -> Any:
    equation = node.get("equation")
    return import_torch().einsum(equation.decode() if isinstance(equation, bytes) else equation, *xs)
