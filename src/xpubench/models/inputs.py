"""How each input of a model is fed: which axis is its batch, a value pinned by the user, the range of its integers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xpubench.errors import UsageError

if TYPE_CHECKING:
    from xpubench.backends.base import TensorSpec

# Dimension names that exporters give the batch (torch.onnx's dynamic_axes, tf2onnx's "unk__", Keras' "batch").
BATCH_DIM_NAMES = frozenset({"n", "b", "bs", "batch", "batch_size", "batchsize", "nbatch", "num_batch"})
DEFAULT_INT_RANGE = (0, 9)  # integers drawn for an integer input nobody gave values or a range for


def is_batch_name(dim: str) -> bool:
    low = dim.strip().lower()
    return low in BATCH_DIM_NAMES or low.startswith("batch")


def infer_batch_axes(specs: Sequence[TensorSpec], given: Mapping[str, int | None], pinned: Collection[str] = ()
               ) -> tuple[int | None, ...]:
    """Each input's batch axis (the axis that holds samples), or None for an input fed the same in every call
    (state, side and scalar inputs). Given with --batch-axis; else none for a pinned (--input) or rank-0 input;
    else the axis the graph names as the batch ("N", "batch", ...); else its only unnamed dynamic dimension;
    else axis 0, unless that is fixed while another input's batch is dynamic (a side input of fixed shape)."""
    found = [_axis(spec, given, spec.name in pinned) for spec in specs]
    dynamic = any(axis is not None and sure and spec.rank_known and spec.shape[axis] is None
                  for spec, (axis, sure) in zip(specs, found, strict=True))
    return tuple(None if not sure and dynamic and spec.rank_known and spec.shape[0] is not None else axis
                 for spec, (axis, sure) in zip(specs, found, strict=True))


def _axis(spec: TensorSpec, given: Mapping[str, int | None], pinned: bool) -> tuple[int | None, bool]:
    """(the input's batch axis, whether anything said so rather than the fall-back to axis 0)."""
    if spec.name in given:
        axis = given[spec.name]
        if axis is not None and spec.rank_known and not -len(spec.shape) <= axis < len(spec.shape):
            raise UsageError(
                f"--batch-axis {spec.name}={axis}: input {spec.name!r} has {len(spec.shape)} dimensions "
                f"({_shown(spec.shape)})"
            )
        return (axis % len(spec.shape) if axis is not None and spec.rank_known else axis), True
    if pinned or (spec.rank_known and not spec.shape):
        return None, True
    named = [i for i, name in enumerate(spec.dims) if name and is_batch_name(name)]
    if named:
        return named[0], True
    # A dimension the graph leaves unnamed (or names as TensorFlow's unknown) may be the batch; a named one
    # ("seq", "height") is not.
    names = spec.dims or (None,) * len(spec.shape)
    dynamic = [i for i, (d, name) in enumerate(zip(spec.shape, names, strict=False))
               if d is None and (not name or name.startswith("unk__"))]
    return (dynamic[0], True) if len(dynamic) == 1 else (0, False)


def fixed_batch(specs: Sequence[TensorSpec], axes: Sequence[int | None]) -> int | None:
    """The batch size the model is fixed at (its first batched input's batch dimension), None when it takes any."""
    for spec, axis in zip(specs, axes, strict=False):
        if axis is not None and spec.rank_known and axis < len(spec.shape):
            return spec.shape[axis]
    return None


def parse_value(text: str, name: str) -> np.ndarray:
    """--input NAME=VALUE: a number, or an array saved with numpy.save (FILE.npy)."""
    try:
        number = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = None
    if number is not None:
        return np.asarray(number)
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"--input {name}={text}: no such file (give a number, or an array saved as FILE.npy)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--input {name}={text} is not a readable .npy array ({exc})") from None


def pinned_array(spec: TensorSpec, value: np.ndarray, origin: str) -> np.ndarray:
    """A pinned value as the input takes it: its data type, and its shape where the graph fixes one (a single
    number fills a one-element input of any rank)."""
    value = np.asarray(value).astype(spec.dtype, copy=False)
    if not spec.rank_known:
        return value
    if value.ndim != len(spec.shape) and value.size == 1 and all(d in (None, 1) for d in spec.shape):
        value = value.reshape((1,) * len(spec.shape))
    fits = value.ndim == len(spec.shape) and all(d is None or d == v for d, v in zip(spec.shape, value.shape,
                                                                                      strict=True))
    if not fits:
        raise UsageError(
            f"{origin} for input {spec.name!r} has shape {_shown(value.shape) or 'scalar'}, but the input takes "
            f"{_shown(spec.shape) or 'a scalar'}"
        )
    return value


def draw(spec: TensorSpec, axis: int | None, count: int, rng: np.random.Generator,
         int_range: tuple[int, int] | None) -> np.ndarray:
    """Random values for one input: `count` samples along `axis` (one call's worth where it has none), standard
    normal floats, integers from `int_range` (both ends included)."""
    if not spec.rank_known:
        raise UsageError(
            f"input {spec.name!r} has no recorded shape (TorchScript keeps none): give one sample's shape "
            f"with --shape {spec.name}=D,D,..."
        )
    dims = [d for i, d in enumerate(spec.shape) if i != axis]
    if any(d is None for d in dims):
        raise UsageError(
            f"input {spec.name!r} has dynamic dimensions ({_shown(spec.shape)}): fix them with --shape "
            f"{spec.name}=D,D,... (every dimension but the batch)"
        )
    shape = tuple(count if i == axis else d for i, d in enumerate(spec.shape))
    if np.issubdtype(spec.dtype, np.floating):
        return rng.standard_normal(shape).astype(spec.dtype)
    if spec.dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    low, high = int_range or DEFAULT_INT_RANGE
    return rng.integers(low, high + 1, shape).astype(spec.dtype)


def sample_count(arrays: Sequence[np.ndarray], axes: Sequence[int | None]) -> int:
    """How many samples the batched inputs hold (1 where no input is batched: every call is the same)."""
    counts = {a.shape[axis] for a, axis in zip(arrays, axes, strict=True) if axis is not None}
    if len(counts) > 1:
        raise UsageError(f"the inputs hold different numbers of samples along their batch axes: {sorted(counts)}")
    return counts.pop() if counts else 1


def take(arrays: Sequence[np.ndarray], axes: Sequence[int | None], rows: np.ndarray) -> list[np.ndarray]:
    """One call's inputs: the samples `rows` of each batched input, along its batch axis; the others as they are."""
    return [a if axis is None else np.take(a, rows, axis=axis) for a, axis in zip(arrays, axes, strict=True)]


def output_axis(shape: tuple[int, ...], batch: int, inputs: Sequence[np.ndarray],
                axes: Sequence[int | None]) -> int | None:
    """Where an output computed on `batch` samples holds them: the axis of a batched input of the very same
    shape; else its only dimension of that size; else that of the batched inputs of its rank; else the first.
    None when no dimension has that size (an output per call)."""
    candidates = [i for i, d in enumerate(shape) if d == batch]
    if not candidates:
        return None
    batched = [(a.shape, axis) for a, axis in zip(inputs, axes, strict=True) if axis is not None]
    same = [axis for s, axis in batched if tuple(s) == tuple(shape) and axis in candidates]
    if same:
        return same[0]
    if len(candidates) == 1:
        return candidates[0]
    ranked = Counter(axis for s, axis in batched if len(s) == len(shape) and axis in candidates).most_common(1)
    return ranked[0][0] if ranked else candidates[0]


def _shown(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)
