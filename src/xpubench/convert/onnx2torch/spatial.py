"""Spatial layout of images: Pad, Resize/Upsample, DepthToSpace, SpaceToDepth."""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx
from xpubench.convert.onnx2torch.padding import torch_pads
from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import functional, ints, positive_axis, scalar


@register("Pad", host=(1, 2, 3))
def _pad(node: Node, x: Any, pads: Any = None, value: Any = None, axes: Any = None) -> Any:
    rank = x.dim()
    mode = node.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    listed = ints(pads) if pads is not None else list(node.get("pads"))
    fill = scalar(value) if value is not None else node.get("value", 0.0)
    dims = [positive_axis(a, rank) for a in ints(axes)] if axes is not None else list(range(rank))
    begin = dict(zip(dims, listed[: len(dims)], strict=True))
    end = dict(zip(dims, listed[len(dims) :], strict=True))
    first = min((d for d in dims if begin[d] or end[d]), default=rank)
    widths = torch_pads([begin.get(d, 0) for d in range(first, rank)], [end.get(d, 0) for d in range(first, rank)])
    if not widths:
        return x
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    if mode not in modes:
        raise UnsupportedOnnx(f"Pad mode {mode!r} is not supported")
    if mode == "constant":
        return functional().pad(x, widths, value=float(fill or 0.0))
    return functional().pad(x, widths, mode=modes[mode])


def _resize_mode(node: Node) -> tuple[str, str, str]:
    def text(key: str, default: str) -> str:
        value = node.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    return (
        text("mode", "nearest"),
        text(
            "coordinate_transformation_mode", "half_pixel" if node.op == "Resize" and node.opset >= 11 else "asymmetric"
        ),
        text("nearest_mode", "round_prefer_floor"),
    )


@register("Resize", "Upsample", host=(1, 2, 3))
def _resize(node: Node, x: Any, *extra: Any) -> Any:
    F = functional()  # noqa: N806
    mode, transform, nearest = _resize_mode(node)
    if node.op == "Upsample" or node.opset < 11:
        scales_value, sizes_value = (extra[0] if extra else None), None
        if scales_value is None:
            scales_value = np.array(node.get("scales"), np.float32)
    else:
        scales_value = extra[1] if len(extra) > 1 else None
        sizes_value = extra[2] if len(extra) > 2 else None
    spatial = list(x.shape[2:])
    if sizes_value is not None and len(ints(sizes_value)):
        sizes = ints(sizes_value)[-len(spatial) :]
        scales = [s / i for s, i in zip(sizes, spatial, strict=True)]
    else:
        listed = [float(s) for s in np.asarray(scales_value).reshape(-1)]
        if listed[:2] != [1.0, 1.0]:
            raise UnsupportedOnnx("Resize of the batch or channel dims is not supported")
        scales = listed[2:]
        sizes = [int(np.floor(i * s)) for i, s in zip(spatial, scales, strict=True)]
    n = len(spatial)
    if mode == "nearest" and transform == "asymmetric" and nearest == "floor":
        return F.interpolate(x, size=sizes, mode="nearest")
    if (
        mode == "nearest"
        and transform in ("half_pixel", "pytorch_half_pixel")
        and nearest in ("round_prefer_ceil", "round_prefer_floor")
        and all(float(s).is_integer() for s in scales)
    ):
        return F.interpolate(x, size=sizes, mode="nearest-exact")
    if mode == "nearest" and transform == "asymmetric" and all(float(s).is_integer() for s in scales):
        return F.interpolate(x, size=sizes, mode="nearest")
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}
    if mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return F.interpolate(x, size=sizes, mode=linear[n], align_corners=transform == "align_corners")
    if (
        mode == "cubic"
        and n == 2
        and transform in ("half_pixel", "align_corners")
        and float(node.get("cubic_coeff_a", -0.75)) == -0.75
        and not node.get("exclude_outside", 0)
    ):
        return F.interpolate(x, size=sizes, mode="bicubic", align_corners=transform == "align_corners")
    raise UnsupportedOnnx(f"{node.op} mode={mode} coordinate_transformation_mode={transform} is not supported")


@register("DepthToSpace")
def _depth_to_space(node: Node, x: Any) -> Any:
    block = int(node.get("blocksize"))
    mode = node.get("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "CRD":
        return functional().pixel_shuffle(x, block)
    b, c, h, w = x.shape
    y = x.reshape(b, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, c // (block * block), h * block, w * block)


@register("SpaceToDepth")
def _space_to_depth(node: Node, x: Any) -> Any:
    block = int(node.get("blocksize"))
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * block * block, h // block, w // block)
