"""Tensor data types by their protocol names, and the checks every transport applies to inputs."""

from __future__ import annotations

import numpy as np

from xpubench.serve.errors import InvalidInput

# The Open Inference Protocol's datatype names; BYTES (strings) is not served.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


def datatype_name(dtype: np.dtype) -> str:
    try:
        return _NAMES[np.dtype(dtype)]
    except KeyError:
        raise InvalidInput(f"data type {dtype} has no Open Inference Protocol name") from None


def numpy_dtype(datatype: str) -> np.dtype:
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise InvalidInput(f"datatype {datatype!r} is not served: use one of {', '.join(DATATYPES)}") from None


def from_bytes(raw: bytes | memoryview, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """A tensor from its row-major bytes (binary extension, gRPC raw contents), without a copy."""
    dtype = numpy_dtype(datatype)
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(f"input {name!r}: {len(raw)} bytes for shape {list(shape)} of {datatype} "
                           f"({count * dtype.itemsize} expected)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def from_list(data: list, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """A tensor from the protocol's JSON `data` (flat or nested, row-major)."""
    try:
        array = np.asarray(data, dtype=numpy_dtype(datatype))
        return array.reshape(shape)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"input {name!r}: data does not fit shape {list(shape)} of {datatype}: {exc}") from None
