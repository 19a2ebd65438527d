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
    # The names the graph gives its dimensions (None where it names none): "N", "batch" mark the batch axis.
    dims: tuple[str | None, ...] = ()

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
    # Besides `distribution`, the packages whose versions say what ran: another build of the runtime,
    # the framework it holds buffers in, the tools that made its artifacts. Recorded with every run.
    depends_on: ClassVar[tuple[str, ...]] = ()
    emulated: ClassVar[bool] = False  # its latency says nothing about the target hardware
    # Whether it can time the model's compute apart from the input and output handover (`bind_compute`).
    times_compute: ClassVar[bool] = False
    # The runtime's own clock of one compute call, where it keeps one (`compute_ns` reads it), as the
    # vendor's own tool reads it; None: the host clock times the call.
    compute_clock: ClassVar[str | None] = None

    clock = staticmethod(time.perf_counter_ns)

    @classmethod
    def version(cls) -> str | None:
        return _installed_version(cls.distribution) if cls.distribution else None

    @classmethod
    def package_versions(cls) -> dict[str, str]:
        """The installed version of each package it depends on, from package metadata (nothing is
        imported); a package that is not installed is left out."""
        names = dict.fromkeys(filter(None, (cls.distribution, *cls.depends_on)))
        versions = {name: _installed_version(name) for name in names}
        return {name: version for name, version in versions.items() if version}

    @classmethod
    def importable(cls) -> bool:
        """Whether its runtime's module can be imported, found without importing it."""
        if cls.module is None:
            return True
        try:
            return importlib.util.find_spec(cls.module) is not None
        except (ImportError, ValueError):  # a missing parent package, or a module without a spec
            return False

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
        cls, device: str | None = None, precision: str | None = None, options: Mapping[str, str] | None = None
    ) -> str | None:
        """None when this backend can run here; otherwise one line saying why not (and what to do).

        Checks what the class declares first (its package, devices, precisions, options), then that
        the device is really here. A subclass adds its own checks after calling this one.
        """
        device = device or cls.devices[0]
        precision = precision or cls.precisions[0]
        if not cls.importable():
            package = cls.distribution or cls.module
            return f"{package} is not installed (pip install {package})"
        kind = device.split(":")[0]
        if kind not in cls.devices:
            return f"{cls.name} runs on {', '.join(cls.devices)}, not {device}"
        reason = cls._precision_unavailable_reason(precision)
        if reason:
            return reason
        try:
            cls.resolve_options(options)
        except ValueError as exc:
            return str(exc)
        if kind == "cuda":
            from xpubench.hardware.gpu import cuda_unavailable_reason

            return cuda_unavailable_reason()
        return None

    @classmethod
    def _precision_unavailable_reason(cls, precision: str) -> str | None:
        if cls.supports_precision(precision):
            return None
        return f"{cls.name} has no {precision} variant (it has {', '.join(cls.precisions)})"

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
        artifact: Path | str,
        device: str | None = None,
        threads: int = 1,
        precision: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        """Open `artifact` on `device` (the first of `devices` unless given) at `precision` (the first
        of `precisions` unless given), with `threads` threads and the options checked. Not timed."""
        self.artifact = Path(artifact)
        self.device = device or self.devices[0]
        self.threads = threads
        self.precision = precision or self.precisions[0]
        self.options = self.resolve_options(options)
        self.load()

    @abstractmethod
    def load(self) -> None:
        """Load the artifact into the runtime, from the attributes the constructor set: what
        `inputs`, `prepare` and `infer` need. Not timed."""

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

    def bind_compute(self, arrays: Sequence[np.ndarray]) -> Any:
        """`--timing compute`: hand host arrays to the runtime once, into its own tensors on the device (the
        input handover, not timed), and return what `compute` takes. Only where `times_compute`."""
        raise NotImplementedError(f"{self.name} cannot time compute apart from the input and output handover")

    def compute(self, bound: Any) -> Any:
        """The model's compute alone on inputs `bind_compute` handed over; the outputs stay in the runtime.
        The hot path `--timing compute` times: it returns once the device has finished."""
        raise NotImplementedError(f"{self.name} cannot time compute apart from the input and output handover")

    def compute_ns(self, bound: Any) -> int:
        """The runtime's own time of the last `compute(bound)`, in nanoseconds. Only where `compute_clock`."""
        raise NotImplementedError(f"{self.name} keeps no clock of its own")

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


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
