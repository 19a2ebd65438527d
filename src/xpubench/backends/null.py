"""A backend with no runtime: scripted latencies on a virtual clock, for testing the orchestration."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xpubench.backends.base import Backend, TensorSpec


class NullBackend(Backend):
    """Each `infer` advances a virtual clock by the next scripted latency and returns zeros.

    The script is an iterable of seconds (cycled); by default 1 ms per call. Tests set
    `NullBackend.script` or pass `script=` to get exact, repeatable timings in no real time.
    """

    name = "null"
    formats = ("null",)
    precisions = ("fp32", "fp16", "int8")
    script: ClassVar[Iterable[float]] = (1e-3,)
    outputs: ClassVar[int] = 10

    def __init__(
        self,
        artifact: Path | str = "null",
        *,
        script: Iterable[float] | None = None,
        input_shape: tuple[int | None, ...] = (None, 28, 28, 1),
        **common: Any,
    ) -> None:
        """`common` are every backend's device, threads, precision and options."""
        self._latencies = itertools.cycle(script if script is not None else self.script)
        self._input_shape = input_shape
        super().__init__(artifact, **common)

    def load(self) -> None:
        self._now_ns = 0
        self.calls = 0

    def clock(self) -> int:
        return self._now_ns

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("x", self._input_shape, np.dtype(np.float32))]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        return arrays[0]

    def infer(self, prepared: Any) -> Any:
        self.calls += 1
        self._now_ns += int(next(self._latencies) * 1e9)
        return np.zeros((len(prepared), self.outputs), dtype=np.float32)

    def fetch(self, result: Any) -> list[np.ndarray]:
        return [result]
