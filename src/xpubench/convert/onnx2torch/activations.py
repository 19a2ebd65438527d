"""Activation functions, Clip and Softmax."""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.registry import Node, register, register_unary
from xpubench.convert.onnx2torch.values import functional, import_torch, positive_axis, scalar

register_unary("Relu", lambda x: functional().relu(x))
register_unary("Sigmoid", lambda x: import_torch().sigmoid(x))
register_unary("Tanh", lambda x: import_torch().tanh(x))
register_unary("Softplus", lambda x: functional().softplus(x))
register_unary("Softsign", lambda x: functional().softsign(x))
register_unary("Mish", lambda x: functional().mish(x))
register_unary("HardSwish", lambda x: functional().hardswish(x))


@register("LeakyRelu")
def _leaky_relu(node: Node, x: Any) -> Any:
    return functional().leaky_relu(x, float(node.get("alpha", 0.01)))


@register("Elu")
def _elu(node: Node, x: Any) -> Any:
    return functional().elu(x, float(node.get("alpha", 1.0)))


@register("Celu")
def _celu(node: Node, x: Any) -> Any:
    return functional().celu(x, float(node.get("alpha", 1.0)))


@register("Selu")
def _selu(node: Node, x: Any) -> Any:
    alpha = float(node.get("alpha", 1.67326319217681884765625))
    gamma = float(node.get("gamma", 1.05070102214813232421875))
    return gamma * functional().elu(x, alpha)


@register("ThresholdedRelu")
def _thresholded_relu(node: Node, x: Any) -> Any:
    return functional().threshold(x, float(node.get("alpha", 1.0)), 0.0)


@register("HardSigmoid")
def _hard_sigmoid(node: Node, x: Any) -> Any:
    return import_torch().clamp(x * float(node.get("alpha", 0.2)) + float(node.get("beta", 0.5)), 0.0, 1.0)


@register("Gelu")
def _gelu(node: Node, x: Any) -> Any:
    approximate = node.get("approximate", "none")
    return functional().gelu(x, approximate=approximate.decode() if isinstance(approximate, bytes) else approximate)


@register("PRelu")
def _prelu(node: Node, x: Any, slope: Any) -> Any:
    return import_torch().where(x >= 0, x, x * slope)


@register("Clip", host=(1, 2))
def _clip(node: Node, x: Any, low: Any = None, high: Any = None) -> Any:
    low = scalar(low) if low is not None else node.get("min")
    high = scalar(high) if high is not None else node.get("max")
    if low == 0 and high is None:
        return functional().relu(x)
    return import_torch().clamp(x, low, high)


@register("Softmax", "LogSoftmax")
def _softmax(node: Node, x: Any) -> Any:
    F = functional()  # noqa: N806
    fn = F.softmax if node.op == "Softmax" else F.log_softmax
    rank = x.dim()
    axis = positive_axis(int(node.get("axis", -1 if node.opset >= 13 else 1)), rank)
    if node.opset >= 13 or axis == rank - 1:
        return fn(x, axis)
    # Before opset 13 the input is flattened to 2-D at `axis`, normalised per row, and reshaped back.
    shape = list(x.shape)
    flat = x.reshape(-1, int(np.prod([int(d) for d in shape[axis:]])))
    return fn(flat, -1).reshape(shape)
