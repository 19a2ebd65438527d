"""ONNX padding (`pads`, `auto_pad`) in the order and form torch's conv and pool functions take."""

from __future__ import annotations

from collections.abc import Sequence

from xpubench.convert.onnx2torch.registry import Node


def torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] over the last n dims -> torch F.pad order (last dim first)."""
    out: list[int] = []
    for b, e in zip(reversed(list(begin)), reversed(list(end)), strict=True):
        out += [int(b), int(e)]
    return out


def spatial_pads(
    node: Node, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Begin and end padding of each spatial dim, from `pads` or `auto_pad`."""
    n = len(kernel)
    auto = node.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - small if auto == "SAME_UPPER" else small)
        return begin, end
    if auto == "VALID":
        return [0] * n, [0] * n
    pads = list(node.get("pads", [0] * (2 * n)))
    return pads[:n], pads[n:]


def conv_params(node: Node, rank: int, kernel: Sequence[int]) -> tuple[list[int], list[int]]:
    n = len(kernel)
    return list(node.get("strides", [1] * n)), list(node.get("dilations", [1] * n))
