"""Convolutions: Conv and ConvTranspose in 1, 2 and 3 spatial dims."""

from __future__ import annotations

from typing import Any

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx
from xpubench.convert.onnx2torch.padding import conv_params, spatial_pads, torch_pads
from xpubench.convert.onnx2torch.registry import Node, register
from xpubench.convert.onnx2torch.values import functional


@register("Conv")
def _conv(node: Node, x: Any, w: Any, b: Any = None) -> Any:
    F = functional()  # noqa: N806
    kernel = list(w.shape[2:])
    strides, dilations = conv_params(node, x.dim(), kernel)
    begin, end = spatial_pads(node, list(x.shape[2:]), kernel, strides, dilations)
    if begin != end:
        x = F.pad(x, torch_pads(begin, end))
        begin = [0] * len(kernel)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(len(kernel))
    if fn is None:
        raise UnsupportedOnnx(f"Conv over {len(kernel)} spatial dims is not supported")
    return fn(x, w, b, strides, begin, dilations, int(node.get("group", 1)))


@register("ConvTranspose")
def _conv_transpose(node: Node, x: Any, w: Any, b: Any = None) -> Any:
    F = functional()  # noqa: N806
    kernel = list(w.shape[2:])
    n = len(kernel)
    strides, dilations = conv_params(node, x.dim(), kernel)
    out_pad = list(node.get("output_padding", [0] * n))
    spatial = list(x.shape[2:])
    full = [
        (i - 1) * s + (k - 1) * d + 1 + p
        for i, s, k, d, p in zip(spatial, strides, kernel, dilations, out_pad, strict=True)
    ]
    auto = node.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    wanted = node.get("output_shape")
    if wanted is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(wanted)[-n:] if wanted is not None else [i * s for i, s in zip(spatial, strides, strict=True)]
        totals = [f - t for f, t in zip(full, target, strict=True)]
        if any(t < 0 for t in totals):
            raise UnsupportedOnnx("ConvTranspose with an output_shape larger than its full output is not supported")
        # Only SAME_UPPER puts the smaller half first; SAME_LOWER and an output_shape without auto_pad put the
        # larger half first (the ONNX spec, and what ONNX Runtime computes).
        upper = auto == "SAME_UPPER"
        begin = [t // 2 if upper else t - t // 2 for t in totals]
        end = [t - t // 2 if upper else t // 2 for t in totals]
    elif auto == "VALID":
        begin, end = [0] * n, [0] * n
    else:
        pads = list(node.get("pads", [0] * (2 * n)))
        begin, end = pads[:n], pads[n:]
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}.get(n)
    if fn is None:
        raise UnsupportedOnnx(f"ConvTranspose over {n} spatial dims is not supported")
    group = int(node.get("group", 1))
    if begin == end and all(p < max(s, d) for p, s, d in zip(out_pad, strides, dilations, strict=True)):
        return fn(x, w, b, strides, begin, out_pad, group, dilations)
    # Uneven padding: compute the full output, then crop it.
    y = fn(x, w, b, strides, 0, out_pad, group, dilations)
    index = [slice(None), slice(None)] + [slice(bb, f - e) for bb, e, f in zip(begin, end, full, strict=True)]
    return y[tuple(index)]
