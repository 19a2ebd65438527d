"""The operator table: each ONNX op name maps to its torch (and numpy) implementation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Node:
    """One ONNX node as the translations read it: attributes decoded, the model's opset attached."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    opset: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class Op:
    """How one ONNX op runs: in torch always, in numpy when its inputs are known and it has a numpy form."""

    run: Callable[..., Any]  # torch implementation: fn(node, *inputs)
    static: Callable[..., Any] | None = None  # numpy implementation when every input is known
    host: frozenset[int] = frozenset()  # inputs read as Python values (shapes, axes, scalars)
    scalars: bool = False  # a one-element known input may be passed as a Python number


# The one list of translated operators: the family modules fill it when the package is imported.
OPS: dict[str, Op] = {}


def register(
    *names: str, static: Callable[..., Any] | None = None, host: Sequence[int] = (), scalars: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `fn(node, *inputs)` translates the ONNX ops `names`."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            OPS[name] = Op(fn, static, frozenset(host), scalars)
        return fn

    return add


def register_binary(name: str, np_fn: Callable[[Any, Any], Any], torch_fn: Callable[[Any, Any], Any]) -> None:
    """A broadcasting two-input op without attributes; a known one-element input may stay a Python number."""
    register(name, static=lambda node, a, b: np.asarray(np_fn(a, b)), scalars=True)(lambda node, a, b: torch_fn(a, b))


def register_variadic(
    np_fn: Callable[..., Any], torch_fn: Callable[[Any, Any], Any], name: str, mean: bool = False
) -> None:
    """An op over any number of inputs, folded pairwise (divided by their count for Mean)."""

    def static(node: Node, *xs: np.ndarray) -> np.ndarray:
        out = xs[0]
        for x in xs[1:]:
            out = np_fn(out, x)
        return np.asarray(out / len(xs) if mean else out)

    def run(node: Node, *xs: Any) -> Any:
        out = xs[0]
        for x in xs[1:]:
            out = torch_fn(out, x)
        return out / len(xs) if mean else out

    register(name, static=static)(run)


def register_unary(name: str, torch_fn: Callable[[Any], Any], np_fn: Callable[[Any], Any] | None = None) -> None:
    """A one-input op without attributes."""
    static = (lambda node, x: np.asarray(np_fn(x))) if np_fn is not None else None
    register(name, static=static)(lambda node, x: torch_fn(x))
