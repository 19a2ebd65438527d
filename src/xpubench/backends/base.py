"""The contract every runtime adapter fulfils; capabilities are data on the class."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One input of a loaded model. `shape` holds None for a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape else None


class Backend(ABC):
    """Loads one artifact on one device and runs batches on it.

    A subclass is one runtime. It declares what it can do as class attributes and owns its clock
    and its synchronisation: `infer` returns only once the result is ready to be read.
    """

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # artifact formats it loads, e.g. ("onnx",)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    distribution: ClassVar[str | None] = None  # the PyPI package the runtime comes from
    module: ClassVar[str | None] = None  # the module imported to use it
    emulated: ClassVar[bool] = False

    clock = staticmethod(time.perf_counter_ns)

    @classmethod
    def version(cls) -> str | None:
        if cls.distribution is None:
            return None
        try:
            return importlib.metadata.version(cls.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    @classmethod
    def unavailable_reason(cls, device: str = "cpu", precision: str = "fp32") -> str | None:
        """None when this backend can run here; otherwise one line saying why not."""
        if cls.module and importlib.util.find_spec(cls.module) is None:
            return f"{cls.distribution or cls.module} is not installed (pip install {cls.distribution})"
        if device.split(":")[0] not in cls.devices:
            return f"{cls.name} runs on {', '.join(cls.devices)}, not {device}"
        if precision not in cls.precisions:
            return f"{cls.name} has no {precision} variant (it has {', '.join(cls.precisions)})"
        return None

    def __init__(self, artifact: Path, device: str = "cpu", threads: int = 1) -> None:
        self.artifact = Path(artifact)
        self.device = device
        self.threads = threads

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs as the runtime sees them."""

    @abstractmethod
    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        """Turn host arrays (one per input) into what `infer` takes. Not timed."""

    @abstractmethod
    def infer(self, prepared: Any) -> Any:
        """Run one batch; the hot path that is timed."""

    @abstractmethod
    def fetch(self, result: Any) -> list[np.ndarray]:
        """The outputs of `infer` as host arrays."""

    def predict(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.fetch(self.infer(self.prepare(arrays)))

    def close(self) -> None:  # noqa: B027  (optional hook; most runtimes free on garbage collection)
        """Release the runtime's resources."""
