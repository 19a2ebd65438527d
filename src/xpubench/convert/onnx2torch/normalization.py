"""Normalisation: BatchNormalization, InstanceNormalization, LayerNormalization, LRN."""

from __future__ import annotations

from typing import Any

from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import functional, import_torch, positive_axis


@register("BatchNormalization")
def _batch_norm(node: Node, x: Any, scale: Any, bias: Any, mean: Any, var: Any) -> Any:
    return functional().batch_norm(x, mean, var, scale, bias, False, 0.0, float(node.get("epsilon", 1e-5)))


@register("InstanceNormalization")
def _instance_norm(node: Node, x: Any, scale: Any, bias: Any) -> Any:
    return functional().instance_norm(x, weight=scale, bias=bias, eps=float(node.get("epsilon", 1e-5)))


@register("LayerNormalization")
def _layer_norm(node: Node, x: Any, scale: Any, bias: Any = None) -> Any:
    axis = positive_axis(int(node.get("axis", -1)), x.dim())
    shape = list(x.shape[axis:])
    eps = float(node.get("epsilon", 1e-5))
    if list(scale.shape) == shape and (bias is None or list(bias.shape) == shape):
        return functional().layer_norm(x, shape, scale, bias, eps)
    dims = list(range(axis, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    y = (x - mean) / import_torch().sqrt(var + eps) * scale
    return y + bias if bias is not None else y


@register("LRN")
def _lrn(node: Node, x: Any) -> Any:
    return functional().local_response_norm(
        x,
        int(node.get("size")),
        float(node.get("alpha", 1e-4)),
        float(node.get("beta", 0.75)),
        float(node.get("bias", 1.0)),
    )
