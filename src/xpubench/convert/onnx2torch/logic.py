"""Comparison and logic: Equal, Less, Greater, And, Or, Not, IsNaN, Where, ..."""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.registry import Node, register, register_binary, register_unary
from xpubench.convert.onnx2torch.values import import_torch

register_binary("Equal", np.equal, lambda a, b: import_torch().eq(a, b))
register_binary("Less", np.less, lambda a, b: import_torch().lt(a, b))
register_binary("LessOrEqual", np.less_equal, lambda a, b: import_torch().le(a, b))
register_binary("Greater", np.greater, lambda a, b: import_torch().gt(a, b))
register_binary("GreaterOrEqual", np.greater_equal, lambda a, b: import_torch().ge(a, b))
register_binary("And", np.logical_and, lambda a, b: import_torch().logical_and(a, b))
register_binary("Or", np.logical_or, lambda a, b: import_torch().logical_or(a, b))
register_binary("Xor", np.logical_xor, lambda a, b: import_torch().logical_xor(a, b))
register_unary("Not", lambda x: import_torch().logical_not(x), np.logical_not)
register_unary("IsNaN", lambda x: import_torch().isnan(x))
register_unary("IsInf", lambda x: import_torch().isinf(x))


@register("Where", static=lambda node, c, a, b: np.where(c, a, b), scalars=True)
def _where(node: Node, cond: Any, a: Any, b: Any) -> Any:
    return import_torch().where(cond, a, b)
