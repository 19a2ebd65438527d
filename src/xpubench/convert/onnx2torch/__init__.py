"""ONNX -> torch translator: an ONNX graph becomes an nn.Module of torch ops, and a torch.export program."""

from __future__ import annotations

# Each family module registers its operators in registry.OPS when imported.
from xpubench.convert.onnx2torch import (  # noqa: F401
    activations,
    constants,
    convolution,
    elementwise,
    indexing,
    linalg,
    logic,
    normalization,
    pooling,
    reductions,
    shapes,
    spatial,
)
from xpubench.convert.onnx2torch.errors import UnsupportedOnnx
from xpubench.convert.onnx2torch.export import export_program
from xpubench.convert.onnx2torch.registry import OPS
from xpubench.convert.onnx2torch.translate import build_module

# The ONNX ops (default domain) the translator covers, sorted.
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(OPS))

__all__ = ["OPS", "SUPPORTED_OPS", "UnsupportedOnnx", "build_module", "export_program"]
