"""The order and layout a converted LiteRT model takes its inputs and gives its outputs in, recorded beside it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpubench.backends.base import TensorSpec

SUFFIX = ".layout.json"


@dataclass(frozen=True)
class Layout:
    """For each input of the source model, in its order: the position of the LiteRT input that takes it and the
    permutation that turns the source's layout into the model's (NCHW -> NHWC: 0,2,3,1); for each output, the
    position of the LiteRT output and the permutation that turns it back into the source's layout."""

    inputs: tuple[tuple[int, tuple[int, ...]], ...]
    outputs: tuple[tuple[int, tuple[int, ...]], ...]

    def to_model(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The source's inputs as the model takes them: its order, its layout."""
        ordered: list[np.ndarray | None] = [None] * len(self.inputs)
        for (pos, perm), array in zip(self.inputs, arrays, strict=True):
            ordered[pos] = np.transpose(array, perm) if array.ndim == len(perm) and perm != tuple(range(len(perm))) \
                else array
        return ordered  # type: ignore[return-value]

    def from_model(self, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs in the source's order and layout."""
        back = []
        for pos, perm in self.outputs:
            out = outputs[pos]
            back.append(np.transpose(out, perm) if out.ndim == len(perm) and perm != tuple(range(len(perm))) else out)
        return back

    def source_specs(self, specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        """The model's input specs as the source states them: its order, its layout."""
        found = []
        for pos, perm in self.inputs:
            spec = specs[pos]
            shape = spec.shape
            if len(perm) == len(shape):
                inverse = np.argsort(perm)
                shape = tuple(shape[i] for i in inverse)
            found.append(TensorSpec(spec.name, shape, spec.dtype, spec.rank_known))
        return found

    def to_json(self) -> str:
        return json.dumps({"inputs": [[p, list(q)] for p, q in self.inputs],
                           "outputs": [[p, list(q)] for p, q in self.outputs]})


def layout_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + SUFFIX)


def read_layout(artifact: Path) -> Layout | None:
    """The layout recorded beside `artifact`, None where there is none (the model takes the source's own)."""
    path = layout_path(Path(artifact))
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return Layout(tuple((int(p), tuple(q)) for p, q in stored["inputs"]),
                  tuple((int(p), tuple(q)) for p, q in stored["outputs"]))


def permutation(source: Sequence[int | None], model: Sequence[int | None]) -> tuple[int, ...]:
    """The permutation p with model == source[p]: channels moved last (what onnx2tf does to 3-5D tensors)
    where that fits, else none; ValueError when neither fits."""
    rank = len(source)
    channels_last = (0, *range(2, rank), 1) if rank >= 3 else None
    for perm in (channels_last, tuple(range(rank))):
        if perm is not None and len(model) == rank and all(
            a is None or b is None or a == b for a, b in zip((source[i] for i in perm), model, strict=True)
        ):
            return perm
    raise ValueError(f"the converted tensor's shape {list(model)} is no layout of the source's {list(source)}")
