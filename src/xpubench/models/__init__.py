"""Models to benchmark: zoo entries by name, or the user's own files, resolved into a Workload."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xpubench.errors import UsageError
from xpubench.models.zoo import ZOO
from xpubench.paths import cache_dir

USER_FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".keras": "keras"}


@dataclass
class Workload:
    """A model ready to benchmark: artifacts per format, and the data to feed and score it."""

    name: str
    source_format: str
    dataset: str | None = None
    metric: str | None = None
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    reference_accuracy: float | None = None  # the unconverted model's score on the same split
    _make: dict[str, Callable[[], Path]] = field(default_factory=dict, repr=False)
    _made: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self._make)

    def artifact(self, fmt: str) -> Path:
        """The artifact in `fmt`, converted (once, cached) from the source when needed."""
        if fmt not in self._make:
            raise LookupError(f"no {fmt} artifact can be made from a {self.source_format} model")
        if fmt not in self._made:
            self._made[fmt] = self._make[fmt]()
        return self._made[fmt]


def resolve(name: str, say: Callable[[str], None] = print) -> Workload:
    """A zoo name or a path to a model file -> Workload. Bad input raises UsageError."""
    if name in ZOO:
        return _zoo_workload(name, say)
    path = Path(name)
    if path.suffix.lower() not in USER_FORMATS:
        if not path.exists():
            raise UsageError(
                f"unknown model {name!r}: choose from {', '.join(ZOO)} (xpubench zoo) or give a model file"
            )
        raise UsageError(f"{name} is not a model file: give a .onnx, .tflite or .keras file")
    if not path.is_file():
        raise UsageError(f"no such model file: {name}")
    return _user_workload(path)


def _zoo_workload(name: str, say: Callable[[str], None]) -> Workload:
    from xpubench.models.datasets import load_dataset
    from xpubench.models.training import ensure_trained

    entry = ZOO[name]
    folder = ensure_trained(entry, say)
    meta = json.loads((folder / "meta.json").read_text())
    split = load_dataset(entry.dataset)
    keras_path = folder / "model.keras"
    return Workload(
        name=name,
        source_format="keras",
        dataset=entry.dataset,
        metric=entry.metric,
        x_eval=split.x_test,
        y_eval=split.y_test,
        reference_accuracy=meta["keras_accuracy"],
        _make=_conversions(keras_path, folder),
    )


def _conversions(keras_path: Path, folder: Path) -> dict[str, Callable[[], Path]]:
    from xpubench.convert import keras as kc

    def cached(out: Path, convert: Callable) -> Callable[[], Path]:
        def make() -> Path:
            if not out.exists():
                convert(kc.load_keras(keras_path), out)
            return out

        return make

    return {
        "keras": lambda: keras_path,
        "onnx": cached(folder / "model.onnx", kc.keras_to_onnx),
        "tflite": cached(folder / "model.fp32.tflite", kc.keras_to_tflite_fp32),
    }


def _user_workload(path: Path) -> Workload:
    fmt = USER_FORMATS[path.suffix.lower()]
    _check_is_model(path, fmt)
    if fmt == "keras":
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        folder = cache_dir() / "artifacts" / f"{path.stem}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        make = _conversions(path, folder)
    else:
        make = {fmt: lambda: path}
    return Workload(name=path.name, source_format=fmt, _make=make)


def _check_is_model(path: Path, fmt: str) -> None:
    """Cheap structural checks, so a wrong file is a one-line error rather than a runtime crash."""
    head = path.read_bytes()[:8]
    if fmt == "tflite" and head[4:8] != b"TFL3":
        raise UsageError(f"{path} is not a TFLite model (no TFL3 identifier): give a .tflite flatbuffer")
    if fmt == "keras" and not zipfile.is_zipfile(path):
        raise UsageError(f"{path} is not a Keras 3 .keras archive: save it with model.save('model.keras')")
    if fmt == "onnx":
        import onnx

        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:  # onnx raises several types for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"{path} is not a valid ONNX model ({first})") from None
