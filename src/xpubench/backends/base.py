"""The contract every runtime adapter fulfils; capabilities are data on the class."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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
    # False where the file records no shape at all (a TorchScript module's Tensor argument): `shape` is
    # then (None,), and --shape gives every dimension after the batch.
    rank_known: bool = True

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
    devices: ClassVar[tuple[str, ...]] = ("cpu",)  # the first is where it runs unless told otherwise
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # what `--precision all` expands to
    # Named switches and their values, the first being the default, e.g. {"xnnpack": ("on", "off")}.
    option_choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    swept_options: ClassVar[tuple[str, ...]] = ()  # options whose every value `--backend all` measures
    distribution: ClassVar[str | None] = None  # the PyPI package the runtime comes from
    module: ClassVar[str | None] = None  # the module imported to use it
    emulated: ClassVar[bool] = False  # its latency says nothing about the target hardware

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
    def supports_precision(cls, precision: str) -> bool:
        return precision in cls.precisions

    @classmethod
    def artifact_kind(cls, precision: str, options: Mapping[str, str] | None = None) -> str:
        """The artifact (`format:precision`) this backend loads to run at `precision`."""
        return f"{cls.formats[0]}:{precision}"

    @classmethod
    def artifact_kinds(cls, precision: str, options: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """Every artifact kind it can run `precision` from, the preferred first."""
        return (cls.artifact_kind(precision, options),)

    @classmethod
    def unavailable_reason(
        cls, device: str = "cpu", precision: str = "fp32", options: Mapping[str, str] | None = None
    ) -> str | None:
        """None when this backend can run here; otherwise one line saying why not."""
        if cls.module and importlib.util.find_spec(cls.module) is None:
            return f"{cls.distribution or cls.module} is not installed (pip install {cls.distribution})"
        if device.split(":")[0] not in cls.devices:
            return f"{cls.name} runs on {', '.join(cls.devices)}, not {device}"
        if not cls.supports_precision(precision):
            return f"{cls.name} has no {precision} variant (it has {', '.join(cls.precisions)})"
        return None

    @classmethod
    def claim_process(cls, threads: int) -> None:
        """Called once before a sweep's first cell with this backend, with that cell's thread count:
        for runtimes whose process-wide settings are fixed at start-up."""
        return None

    @classmethod
    def resolve_options(cls, given: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every option with its value: the given ones checked, the rest at their defaults."""
        given = dict(given or {})
        for key, value in given.items():
            if key not in cls.option_choices:
                known = ", ".join(cls.option_choices) or "none"
                raise ValueError(f"{cls.name} has no option {key!r} (it has {known})")
            if value not in cls.option_choices[key]:
                raise ValueError(f"{cls.name} option {key} takes {'|'.join(cls.option_choices[key])}, not {value!r}")
        return {key: given.get(key, values[0]) for key, values in cls.option_choices.items()}

    def __init__(
        self,
        artifact: Path,
        device: str = "cpu",
        threads: int = 1,
        precision: str = "fp32",
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.artifact = Path(artifact)
        self.device = device
        self.threads = threads
        self.precision = precision
        self.options = self.resolve_options(options)

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs as the runtime sees them."""

    @abstractmethod
    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        """Turn host arrays (one per input, float as the model's source takes them) into what
        `infer` takes. Not timed. Quantising inputs belongs to `infer` (end-to-end timing)."""

    @abstractmethod
    def infer(self, prepared: Any) -> Any:
        """Run one batch; the hot path that is timed."""

    @abstractmethod
    def fetch(self, result: Any) -> list[np.ndarray]:
        """The outputs of `infer` as host arrays, dequantised to float where the model is quantised."""

    def predict(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.fetch(self.infer(self.prepare(arrays)))

    def delegated_fraction(self) -> float | None:
        """The share of the graph's nodes that the accelerator or delegate runs; None where the
        runtime has no such split (everything runs on the one device)."""
        return None

    def details(self) -> dict[str, Any]:
        """Runtime-specific figures stored with the cell (arena bytes, providers, ...)."""
        return {}

    def model_bytes(self) -> int:
        """The size of what is deployed: the artifact file, or all files of an artifact folder."""
        if self.artifact.is_dir():
            return sum(f.stat().st_size for f in self.artifact.rglob("*") if f.is_file())
        return self.artifact.stat().st_size

    def close(self) -> None:  # noqa: B027  (optional hook; most runtimes free on garbage collection)
        """Release the runtime's resources."""
