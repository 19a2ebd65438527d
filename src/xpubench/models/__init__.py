"""Models to benchmark: zoo entries by name, or the user's own files, resolved into a Workload."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xpubench.convert.graph import Artifacts
from xpubench.errors import UsageError
from xpubench.models.inputs import draw, fixed_batch, infer_batch_axes, parse_value, pinned_array, sample_count
from xpubench.models.zoo import FAMILIES, ZOO, lookup
from xpubench.paths import cache_dir, content_digest

if TYPE_CHECKING:
    from xpubench.backends.base import TensorSpec
    from xpubench.data.files import DataFile

# A user's file: its suffix -> its artifact format.
USER_FORMATS = {
    ".onnx": "onnx",
    ".tflite": "tflite",
    ".keras": "keras",
    ".pt2": "pt2",
    ".pt": "torchscript",  # torch.jit.script / torch.jit.trace, saved with .save()
    ".jit": "torchscript",
}  # and SavedModel folders
# The runtime that runs each source format unconverted: the float32 reference for fidelity.
REFERENCE_BACKEND = {
    "keras": "tensorflow",
    "savedmodel": "tensorflow",
    "onnx": "onnxruntime",
    "tflite": "litert",
    "pt2": "torch",
    "torchscript": "torch",
}
CALIBRATION_SAMPLES = 256
RANDOM_SAMPLES = 64  # inputs drawn from the signature when the user gave no data
INPUT_SEED = 20210412


@dataclass(frozen=True)
class Workload:
    """A model ready to benchmark: its artifacts, and the data to feed, score and calibrate it. Immutable:
    a variant (with its reference, or other data) is made with dataclasses.replace; only the input specs
    and the random inputs are filled in once, on first use, as a cache."""

    name: str
    artifacts: Artifacts
    dataset: str | None = None
    metric: str | None = None
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    x_calibration: np.ndarray | None = None
    reference_accuracy: float | None = None  # the unconverted model's score on the same split
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # --shape: one sample, per input
    # Per input, by name: its batch axis where the graph does not say (--batch-axis; None: not batched), a value
    # fed the same in every call (--input), the range its random integers come from (--int-range, both included).
    batch_axes: Mapping[str, int | None] = field(default_factory=dict)
    pinned: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    int_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # --data with one array per input, named as the inputs (each in the input's own layout): replaces x_eval.
    named_eval: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    # The float32 reference's outputs on fidelity_inputs() and their source, attached by the sweep
    # (an empty tuple when the reference runtime could not give them).
    reference: tuple[list[np.ndarray], str] | tuple[()] | None = field(default=None, repr=False)
    _specs: list[TensorSpec] | None = field(default=None, repr=False)
    _random: list[np.ndarray] | None = field(default=None, repr=False)
    _axes: tuple[int | None, ...] | None = field(default=None, repr=False)

    @property
    def source_kind(self) -> str:
        return self.artifacts.source_kinds[0]

    @property
    def source_format(self) -> str:
        return self.source_kind.split(":")[0]

    def artifact(self, kind: str) -> Path:
        return self.artifacts.get(kind)

    @property
    def input_specs(self) -> list[TensorSpec]:
        """The inputs as the reference runtime reads them from the source, with --shape applied."""
        if self._specs is None:
            from xpubench.backends import get_backend

            backend = get_backend(REFERENCE_BACKEND[self.source_format])(self.artifacts.sources[self.source_kind])
            try:
                raw = backend.inputs
            finally:
                backend.close()
            axes = infer_batch_axes(raw, self.batch_axes, self.pinned)
            object.__setattr__(self, "_axes", axes)
            object.__setattr__(self, "_specs", [apply_shape(s, self.shapes, a) for s, a in zip(raw, axes, strict=True)])
        return self._specs

    @property
    def input_axes(self) -> tuple[int | None, ...]:
        """Each input's batch axis, by position (None: fed the same in every call)."""
        if self._axes is None:
            if self._simple and self.x_eval is not None:  # the data's one array, samples on axis 0: no runtime opened
                object.__setattr__(self, "_axes", (0,))
            elif self._specs is not None:  # given without the runtime (a scan's input)
                axes = infer_batch_axes(self._specs, self.batch_axes, self.pinned)
                object.__setattr__(self, "_axes", axes)
            else:
                self.input_specs  # noqa: B018  (sets the axes with the specs)
        assert self._axes is not None
        return self._axes

    @property
    def _simple(self) -> bool:
        """No input told apart: every input batched on its axis 0 and drawn as before."""
        return not (self.batch_axes or self.pinned or self.int_ranges or self.named_eval)

    def shaped(self, specs: list[TensorSpec]) -> list[TensorSpec]:
        """A runtime's view of the inputs with --shape applied, each input's batch axis taken by position."""
        axes = self.input_axes
        return [apply_shape(s, self.shapes, axes[i] if i < len(axes) else 0) for i, s in enumerate(specs)]

    def fixed_batch(self, specs: list[TensorSpec]) -> int | None:
        """The batch size a runtime's inputs (after `shaped`) are fixed at, None when they take any."""
        return fixed_batch(specs, self.input_axes)

    def fidelity_inputs(self) -> list[np.ndarray]:
        """The inputs every variant is compared on, one array per input in its own layout: the held-out data,
        or a fixed random draw, with the samples along each input's batch axis; pinned inputs as given."""
        if self._simple and self.x_eval is not None:
            return [self.x_eval]
        if self._random is None:
            object.__setattr__(self, "_random", self._feed(RANDOM_SAMPLES, INPUT_SEED, self.x_eval, self.named_eval))
        return self._random

    def calibration(self) -> list[np.ndarray]:
        if self._simple and self.x_calibration is not None:
            return [self.x_calibration[:CALIBRATION_SAMPLES]]
        if self.x_calibration is not None or self.named_eval:
            return self.fidelity_inputs()
        return self._feed(CALIBRATION_SAMPLES, INPUT_SEED + 1, None, {})

    def _feed(self, count: int, seed: int, x: np.ndarray | None, named: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One array per input: pinned values, the data's arrays, and random draws for the rest (`count`
        samples, or as many as the data holds)."""
        specs, axes = self.input_specs, self.input_axes
        rng = np.random.default_rng(seed)
        if x is not None:
            first = next((i for i, a in enumerate(axes) if a is not None and specs[i].name not in self.pinned), None)
            named = {specs[first].name: x} if first is not None else {}
        given = {s.name: named[s.name] for s in specs if s.name in named}
        missing = [s.name for s in specs if named and s.name not in given and s.name not in self.pinned]
        if missing and x is None:
            raise UsageError(
                f"--data {self.dataset} has no array for input {', '.join(map(repr, missing))} (it has "
                f"{', '.join(named)}): add one, or pin it with --input NAME=VALUE"
            )
        counts = {}
        for spec, axis in zip(specs, axes, strict=True):
            if spec.name in given and axis is not None and spec.name not in self.pinned:
                array = np.asarray(given[spec.name])
                if array.ndim <= axis:
                    raise UsageError(f"--data {self.dataset}: the array for input {spec.name!r} has "
                                     f"{array.ndim} dimensions, but its batch is on axis {axis}")
                counts[spec.name] = array.shape[axis]
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"{n}: {c}" for n, c in counts.items())
            raise UsageError(f"--data {self.dataset} holds different numbers of samples per input ({shown})")
        count = next(iter(counts.values()), count)
        arrays = []
        for spec, axis in zip(specs, axes, strict=True):
            if spec.name in self.pinned:
                arrays.append(pinned_array(spec, self.pinned[spec.name], "--input"))
            elif spec.name in given:
                array = np.asarray(given[spec.name])
                if axis is None:
                    arrays.append(pinned_array(spec, array, f"--data {self.dataset}"))
                else:
                    arrays.append(array.astype(spec.dtype, copy=False) if array.dtype != spec.dtype
                                  and np.can_cast(array.dtype, spec.dtype, "same_kind") else array)
            else:
                arrays.append(draw(spec, axis, count, rng, self.int_ranges.get(spec.name)))
        return arrays


def apply_shape(spec: TensorSpec, shapes: Mapping[str, tuple[int, ...]], axis: int | None = 0) -> TensorSpec:
    """Fix a spec's dynamic sample dimensions from --shape (by input name, or "" for any input): every
    dimension but the batch `axis` (all of them for an input with none)."""
    from xpubench.backends.base import TensorSpec

    given = shapes.get(spec.name, shapes.get(""))
    if given is None:
        return spec
    if not spec.rank_known:
        return TensorSpec(spec.name, (spec.shape[0], *given), spec.dtype)
    rest = [i for i in range(len(spec.shape)) if i != axis]
    if len(given) != len(rest):
        raise UsageError(
            f"--shape for input {spec.name!r} has {len(given)} dimensions; one sample of it has "
            f"{len(rest)} ({'x'.join('?' if spec.shape[i] is None else str(spec.shape[i]) for i in rest)})"
        )
    shape = list(spec.shape)
    for i, want in zip(rest, given, strict=True):
        if shape[i] is not None and shape[i] != want:
            raise UsageError(f"--shape {want} for input {spec.name!r} contradicts its fixed dimension {shape[i]}")
        shape[i] = want
    return TensorSpec(spec.name, tuple(shape), spec.dtype, dims=spec.dims)


def random_inputs(specs: list[TensorSpec], count: int, seed: int) -> list[np.ndarray]:
    """`count` samples per input drawn from the signature (batch on axis 0): standard normal floats, small
    integers."""
    rng = np.random.default_rng(seed)
    return [draw(spec, 0, count, rng, None) for spec in specs]


def resolve(
    name: str,
    say: Callable[[str], None] = print,
    data: Path | DataFile | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    batch_axes: Mapping[str, int | None] | None = None,
    values: Mapping[str, str] | None = None,
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> Workload:
    """A zoo name or a path to a model file -> Workload. Bad input raises UsageError.

    Per input, by name: `batch_axes` its batch axis (None: not batched), `values` a number or a .npy file fed the
    same in every call (--input), `int_ranges` the integers drawn for it (--int-range LOW:HIGH)."""
    shapes = dict(shapes or {})
    if name.partition(":")[0] in FAMILIES:
        points = FAMILIES[name.partition(":")[0]]
        raise UsageError(f"{name} is a family of {len(points)} models: {', '.join(points)}; run them by those names")
    if lookup(name) is not None:
        workload = _zoo_workload(name, say, shapes)
    else:
        path = Path(name)
        if path.is_dir() and (path / "saved_model.pb").is_file():
            workload = _user_workload(path, shapes)
        elif path.is_dir() and (hint := _weights_folder_hint(path)):
            raise UsageError(hint)
        elif path.suffix.lower() not in USER_FORMATS:
            if not path.exists():
                raise UsageError(
                    f"unknown model {name!r}: choose from {', '.join(ZOO)} (xpubench zoo) or give a model file"
                )
            raise UsageError(
                f"{name} is not a model file: give a .onnx, .tflite, .keras, .pt2 or TorchScript (.pt) file, "
                "or a SavedModel folder"
            )
        elif not path.is_file():
            raise UsageError(f"no such model file: {name}")
        else:
            workload = _user_workload(path, shapes)
    if batch_axes or values or int_ranges:
        workload = _with_inputs(workload, dict(batch_axes or {}), dict(values or {}), dict(int_ranges or {}))
    if data is not None:
        workload = _with_data(workload, data)
    _check_shapes(workload)
    return workload


def _with_inputs(workload: Workload, batch_axes: dict[str, int | None], values: dict[str, str],
                 int_ranges: dict[str, tuple[int, int]]) -> Workload:
    """The per-input options applied; calibration follows them (a pinned value, a range), so its identity too."""
    from dataclasses import replace

    for name, (low, high) in int_ranges.items():
        if low > high:
            raise UsageError(f"--int-range {name}={low}:{high}: the low end is above the high end")
    pinned = {name: parse_value(text, name) for name, text in values.items()}
    workload = replace(workload, batch_axes=batch_axes, pinned=pinned, int_ranges=int_ranges, _axes=None)
    identity = hashlib.sha256(repr((sorted(batch_axes.items()), sorted(int_ranges.items()))).encode())
    for name in sorted(pinned):
        identity.update(name.encode() + np.ascontiguousarray(pinned[name]).tobytes())
    workload.artifacts.use_calibration(workload.calibration, f"inputs:{sorted(workload.shapes.items())}"
                                                             f":{identity.hexdigest()[:16]}")
    return workload


def _check_shapes(workload: Workload) -> None:
    """--shape names inputs the model has, and agrees with the samples of --data: otherwise the cells would
    measure at the data's shape while the roofline counts the --shape graph."""
    options = {"--shape": [name for name in workload.shapes if name], "--batch-axis": list(workload.batch_axes),
               "--input": list(workload.pinned), "--int-range": list(workload.int_ranges)}
    specs = workload.input_specs if any(options.values()) else None  # opens the model in its reference runtime
    if specs is not None:
        real = [spec.name for spec in specs]
        for option, named in options.items():
            unknown = [name for name in named if name not in real]
            if unknown:
                raise UsageError(
                    f"{option} names {', '.join(map(repr, unknown))}, which {workload.name} has no input of: "
                    f"its inputs are {', '.join(map(repr, real))}"
                )
    if not workload.shapes or workload.x_eval is None:
        return
    name = specs[0].name if specs else ""  # the data feeds the first input
    given = workload.shapes.get(name, workload.shapes.get(""))
    sample = tuple(int(d) for d in workload.x_eval.shape[1:])
    if given is not None and tuple(given) != sample:
        shown = f"{name}=" if name else ""
        raise UsageError(
            f"--data {workload.dataset} holds samples of shape {_dims(sample)}, but --shape {shown}{_dims(given)} "
            "says otherwise: drop --shape to measure at the data's shape, or give data of that shape"
        )


def _dims(shape: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in shape)


def _zoo_workload(name: str, say: Callable[[str], None], shapes: dict) -> Workload:
    """`NAME` or `NAME:full` / `NAME:tiny`: trained on first use, with its held-out data (none for a scan)."""
    from xpubench.models.datasets import split_for
    from xpubench.models.training import ensure_trained, size_of

    found = lookup(name)
    assert found is not None
    entry, size_name = found
    folder = ensure_trained(entry, say, size_name)
    meta = json.loads((folder / "meta.json").read_text())
    artifacts = Artifacts({"keras:fp32": folder / "model.keras"}, folder, shapes)
    common = dict(name=name, artifacts=artifacts, dataset=entry.dataset, metric=entry.metric,
                  reference_accuracy=meta["keras_accuracy"], shapes=shapes)
    if entry.dataset is None:
        specs = None
        if "input_name" in meta:  # a scan's input, known without opening TensorFlow (its threads are fixed once)
            from xpubench.backends.base import TensorSpec

            specs = [apply_shape(TensorSpec(meta["input_name"], (None, *meta["input_shape"]), np.dtype("float32")),
                                 shapes)]
        workload = Workload(**common, _specs=specs)
        artifacts.use_calibration(workload.calibration, f"random:{sorted(shapes.items())}")
        return workload
    split = split_for(entry, size_of(entry, size_name))
    workload = Workload(**common, x_eval=np.asarray(split.x_test), y_eval=np.asarray(split.y_test),
                        x_calibration=split.x_train)
    artifacts.use_calibration(workload.calibration, f"{entry.dataset}:train:{size_name}")
    return workload


def _user_workload(path: Path, shapes: dict) -> Workload:
    fmt = "savedmodel" if path.is_dir() else USER_FORMATS[path.suffix.lower()]
    _check_is_model(path, fmt)
    precision = _tflite_precision(path) if fmt == "tflite" else "fp32"
    digest = content_digest(path)[:16]
    folder = cache_dir() / "artifacts" / f"{path.stem}-{digest}"
    artifacts = Artifacts({f"{fmt}:{precision}": path.resolve()}, folder, shapes)
    workload = Workload(name=path.name, artifacts=artifacts, shapes=shapes)
    artifacts.use_calibration(workload.calibration, f"random:{sorted(shapes.items())}")
    return workload


def _weights_folder_hint(path: Path) -> str | None:
    """A folder of weights (safetensors, a Hugging Face model folder) holds no graph to run: how to export one."""
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return (f"{path} is a Hugging Face model folder (weights, no graph): export it first, e.g. "
                f"`optimum-cli export onnx --model {path} {path.name}-onnx/`, and give the .onnx file")
    if any(path.glob("*.safetensors")):
        return (f"{path} holds safetensors weights, not a model: load them into the PyTorch module in Python and "
                "save it with torch.export.save(torch.export.export(module, example), 'model.pt2')")
    return None


def _with_data(workload: Workload, data: Path | DataFile) -> Workload:
    """--data FILE: `x` feeds accuracy, fidelity and calibration; `y` (optional) scores the outputs:
    top-1 for integer class labels, resolution for numeric targets. An .npz without `x` whose arrays are
    named as the model's inputs feeds each input its own array (a pinned input's array is fed whole)."""
    from dataclasses import replace

    from xpubench.data.files import DataFile, load_arrays, load_named_arrays

    source = data if isinstance(data, DataFile) else DataFile(Path(data))
    named, y = load_named_arrays(source, lambda: [spec.name for spec in workload.input_specs])
    if named:
        x = None
        digest = hashlib.sha256()
        for key in sorted(named):
            digest.update(key.encode() + np.ascontiguousarray(named[key]).tobytes())
    else:
        x, y = load_arrays(data)
        digest = hashlib.sha256(x.tobytes())
    workload = replace(workload, x_eval=x, y_eval=y, x_calibration=x, named_eval=named, dataset=data.name,
                       reference_accuracy=None, _random=None,
                       metric=None if y is None else "top1" if y.dtype == np.int64 else "resolution")
    if named:
        arrays = workload.fidelity_inputs()  # checks the arrays against the inputs now
        count = sample_count(arrays, workload.input_axes)
        if y is not None and len(y) != count:
            raise UsageError(f"{data.name}: the inputs hold {count} samples but {source.y} has {len(y)}")
    workload.artifacts.use_calibration(workload.calibration, f"data:{digest.hexdigest()[:16]}")
    return workload


def _tflite_precision(path: Path) -> str:
    """What a user's LiteRT file is: full integer (by its input type), float16 or dynamic range (by
    its weights and the ops that read them), or float32. Float16 weights that DEQUANTIZE ops turn into
    float32 at load make a float32 model (its LiteRT cells' details say "fp32 (fp16 weights)")."""
    from ai_edge_litert.interpreter import Interpreter

    from xpubench.backends.litert import fp16_weights_only

    try:
        interpreter = Interpreter(model_path=str(path))
    except ValueError as exc:  # LiteRT's own verifier: a garbled file is the user's, not a cell's failure
        if "not a valid Flatbuffer" not in str(exc) and "schema version" not in str(exc):
            raise
        raise UsageError(f"{path} is not a valid TFLite model ({exc})") from None
    inputs = interpreter.get_input_details()
    if inputs and inputs[0]["dtype"] in (np.int8, np.uint8):
        return "uint8" if inputs[0]["dtype"] == np.uint8 else "int8"
    types = {d["dtype"] for d in interpreter.get_tensor_details()}
    if np.float16 in types and not fp16_weights_only(interpreter):
        return "fp16"
    if np.int8 in types:
        return "int8-dynamic"
    return "fp32"


def _check_is_model(path: Path, fmt: str) -> None:
    """Cheap structural checks, so a wrong file is a one-line error rather than a runtime crash."""
    if fmt == "savedmodel":
        return
    head = path.read_bytes()[:8]
    if fmt == "tflite" and head[4:8] != b"TFL3":
        raise UsageError(f"{path} is not a TFLite model (no TFL3 identifier): give a .tflite flatbuffer")
    if fmt == "torchscript":
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
        if not any("/code/" in n for n in names):
            raise UsageError(
                f"{path} is not TorchScript (a torch.save checkpoint or pickle holds no graph): save the module "
                "with torch.jit.script(module).save('model.pt'), or torch.export.save(program, 'model.pt2')"
            )
    if fmt in ("keras", "pt2") and not zipfile.is_zipfile(path):
        how = "model.save('model.keras')" if fmt == "keras" else "torch.export.save(program, 'model.pt2')"
        raise UsageError(f"{path} is not a {fmt} archive: save it with {how}")
    if fmt == "onnx":
        import onnx

        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:  # onnx raises several types for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"{path} is not a valid ONNX model ({first})") from None
