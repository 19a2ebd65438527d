"""Values in a translated graph: torch tensors (data) or numpy arrays (known while tracing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx

# Values flowing through the translated graph are either torch tensors (data) or numpy arrays
# (values known while tracing: constants and shape arithmetic). A shape vector that holds the
# symbolic batch size is a numpy object array of ints and torch SymInts, so Shape -> Gather ->
# Concat -> Reshape chains stay Python arithmetic and torch.export sees only the final reshape.


def import_torch() -> Any:
    """torch, imported on first use: planning conversions must not load it."""
    import torch

    return torch


def functional() -> Any:
    """torch.nn.functional, imported on first use."""
    import torch.nn.functional as F  # noqa: N812  (its usual name)

    return F


ONNX_TO_NUMPY = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}


def torch_dtype(onnx_type: int) -> Any:
    """The torch dtype of an ONNX element type (TensorProto's number)."""
    torch = import_torch()
    table = {
        1: torch.float32,
        2: torch.uint8,
        3: torch.int8,
        5: torch.int16,
        6: torch.int32,
        7: torch.int64,
        9: torch.bool,
        10: torch.float16,
        11: torch.float64,
        16: torch.bfloat16,
    }
    if onnx_type not in table:
        raise UnsupportedOnnx(f"ONNX element type {onnx_type} has no torch equivalent here")
    return table[onnx_type]


def is_static(value: Any) -> bool:
    """Known while tracing (a numpy array), not data (a torch tensor)."""
    return isinstance(value, np.ndarray)


def shape_array(dims: Sequence[Any]) -> np.ndarray:
    """A shape as a static value: int64 when every dim is a plain int, else an object array."""
    items = list(dims)
    if all(isinstance(d, (int, np.integer)) for d in items):
        return np.array(items, dtype=np.int64)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def ints(value: Any) -> list[Any]:
    """A known 1-D value as Python ints (or SymInts)."""
    if value is None:
        return []
    if not is_static(value):
        value = value.detach().cpu().numpy()  # only reachable while folding constants, not while tracing
    return [d if not isinstance(d, np.integer) else int(d) for d in np.asarray(value).reshape(-1).tolist()]


def scalar(value: Any) -> Any:
    """A known one-element value as a Python number."""
    if value is None:
        return None
    if not is_static(value):
        value = value.detach().cpu().numpy()
    return np.asarray(value).reshape(-1)[0].item()


def as_tensor(value: Any, like: Any = None) -> Any:
    """A static value as a tensor, with the dtype and device of `like` where both are floating."""
    torch = import_torch()
    if not is_static(value):
        return value
    if value.dtype == object:
        return torch.stack([torch.as_tensor(v) for v in value.reshape(-1)]).reshape(value.shape)
    tensor = torch.from_numpy(np.array(value, order="C", copy=True))
    if like is not None:
        dtype = like.dtype if (tensor.is_floating_point() and like.is_floating_point()) else tensor.dtype
        tensor = tensor.to(device=like.device, dtype=dtype)
    return tensor


def positive_axis(axis: int, rank: int) -> int:
    """An ONNX axis (negative counts from the end) as an index from the front."""
    return axis + rank if axis < 0 else axis
