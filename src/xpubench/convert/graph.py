"""The converter graph: artifact kinds are nodes, converters are edges, and a planner finds the chain.

A kind is `format:precision`, e.g. `onnx:fp32`, `tflite:int8`, `openvino:int8`, `hls4ml:fixed<16,6>`.
Converter modules register their edges with `@converter`; the frameworks they use are imported
inside each conversion, so planning imports none of them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Modules that register converters; imported on first planning.
CONVERTER_MODULES = (
    "xpubench.convert.keras",
    "xpubench.convert.onnx",
    "xpubench.convert.tflite",
    "xpubench.convert.onnx2tflite",
    "xpubench.convert.torch",
    "xpubench.convert.torchscript",
    "xpubench.convert.openvino",
    "xpubench.convert.hls4ml",
    "xpubench.convert.edgetpu",
)

# How an artifact of each format is named on disk ("" for a folder).
FORMAT_SUFFIX = {
    "keras": ".keras",
    "savedmodel": ".savedmodel",
    "onnx": ".onnx",
    "tflite": ".tflite",
    "openvino": ".xml",
    "pt2": ".pt2",
    "torchscript": ".pt",
    "hls4ml": ".hls4ml",
    "edgetpu": "_edgetpu.tflite",
}


class NoConversion(LookupError):
    """No chain of converters leads to the requested kind; the message says why."""


@dataclass(frozen=True)
class ConversionContext:
    """What a conversion may need beyond its source file."""

    target_precision: str
    # Representative inputs for calibration: one array per model input, samples along axis 0.
    calibration: Callable[[], list[np.ndarray]] | None = None
    # The shape of one sample of each input (batch dimension excluded), where the user fixed it.
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def calibration_inputs(self) -> list[np.ndarray]:
        if self.calibration is None:
            raise NoConversion(f"a {self.target_precision} conversion needs calibration data: pass --data FILE.npz")
        return self.calibration()


ConvertFn = Callable[[Path, Path, ConversionContext], None]


@dataclass(frozen=True)
class Converter:
    source: str  # a kind
    target: str  # a kind; its precision may be "*" (any, e.g. hls4ml:*), passed on as target_precision
    convert: ConvertFn
    calibrated: bool = False  # its output depends on the calibration data
    requires: tuple[str, ...] = ()  # Python modules, or executables written as "bin:NAME"

    @property
    def version(self) -> str:
        """A digest of the module that defines the conversion: a changed converter never reuses
        artifacts its earlier code made."""
        return _module_digest(self.convert.__module__)

    def produces(self, kind: str) -> bool:
        fmt, precision = split_kind(kind)
        target_fmt, target_precision = split_kind(self.target)
        return fmt == target_fmt and target_precision in ("*", precision)

    def missing(self) -> str | None:
        """What this converter needs that is not here, as one line; None when it can run."""
        for need in self.requires:
            if need.startswith("bin:"):
                if shutil.which(need[4:]) is None:
                    return f"{need[4:]} is not on PATH"
            elif importlib.util.find_spec(need) is None:
                return f"the Python module {need} is not installed"
        return None


_REGISTRY: list[Converter] = []


@functools.cache
def _module_digest(module: str) -> str:
    source = inspect.getsource(sys.modules[module])
    return hashlib.sha256(source.encode()).hexdigest()[:6]


def converter(
    source: str, target: str, calibrated: bool = False, requires: Sequence[str] = ()
) -> Callable[[ConvertFn], ConvertFn]:
    """Register the decorated function as the edge source -> target."""

    def register(fn: ConvertFn) -> ConvertFn:
        _REGISTRY.append(Converter(source, target, fn, calibrated, tuple(requires)))
        return fn

    return register


def converters() -> list[Converter]:
    for name in CONVERTER_MODULES:
        importlib.import_module(name)
    return list(_REGISTRY)


def split_kind(kind: str) -> tuple[str, str]:
    fmt, _, precision = kind.partition(":")
    return fmt, precision or "fp32"


def plan(sources: Sequence[str], target: str) -> list[Converter]:
    """The shortest chain of converters from any of `sources` to `target` (empty when a source is
    the target). Raises NoConversion with the reason when there is none."""
    if target in sources:
        return []
    edges = converters()
    # Never back into a source's own format through another (a flatbuffer re-quantised by way of ONNX and onnx2tf):
    # the source itself is the better start.
    own = {split_kind(kind)[0] for kind in sources}
    edges = [e for e in edges
             if split_kind(e.target)[0] not in own or split_kind(e.source)[0] == split_kind(e.target)[0]]
    blocked: list[str] = []
    previous: dict[str, tuple[str, Converter]] = {}
    queue = deque(sources)
    seen = set(sources)
    while queue:
        kind = queue.popleft()
        for edge in edges:
            if edge.source != kind:
                continue
            missing = edge.missing()
            if missing:
                if edge.produces(target):
                    blocked.append(missing)
                continue
            reached = target if edge.produces(target) else edge.target
            if "*" in reached or reached in seen:
                continue
            seen.add(reached)
            previous[reached] = (kind, edge)
            if reached == target:
                chain = []
                while reached not in sources:
                    reached, step = previous[reached]
                    chain.append(step)
                return chain[::-1]
            queue.append(reached)
    if blocked:
        raise NoConversion(f"cannot make {target}: {blocked[0]}")
    raise NoConversion(f"no converter chain leads from {' or '.join(sources)} to {target}")


def file_name(kind: str, version: str = "", calibration_digest: str | None = None) -> str:
    """`model.<precision>[-<converter chain version>][-cal<calibration data>]<suffix>`."""
    fmt, precision = split_kind(kind)
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", precision).strip("-")
    if version:
        safe += f"-{version}"
    if calibration_digest:
        safe += f"-cal{calibration_digest}"
    return f"model.{safe}{FORMAT_SUFFIX.get(fmt, '.' + fmt)}"


class Artifacts:
    """A model's artifacts: the source files it came with, and every kind converted from them.

    Conversions are cached on disk in `folder` (keyed by the source's content hash by whoever
    picks the folder), so nothing converts twice, within a run or across runs.
    """

    def __init__(
        self,
        sources: Mapping[str, Path],
        folder: Path,
        shapes: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.sources = {kind: Path(path) for kind, path in sources.items()}
        self.folder = Path(folder)
        self._shapes = dict(shapes or {})
        self._calibration: Callable[[], list[np.ndarray]] | None = None
        self._calibration_digest = ""
        self._made: dict[str, Path] = {}

    def use_calibration(self, inputs: Callable[[], list[np.ndarray]], identity: str) -> None:
        """Calibrate with `inputs()`; `identity` names that data, so artifacts calibrated on other
        data are told apart on disk."""
        self._calibration = inputs
        self._calibration_digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
        self._made = {}  # found again on disk, under the names for this data

    @property
    def source_kinds(self) -> list[str]:
        return list(self.sources)

    def reason(self, kind: str) -> str | None:
        """None when `kind` can be had; otherwise why not, in one line."""
        try:
            plan(self.source_kinds, kind)
        except NoConversion as exc:
            return str(exc)
        return None

    def get(self, kind: str) -> Path:
        """The artifact of `kind`, converting along the planned chain the first time."""
        if kind in self.sources:
            return self.sources[kind]
        if kind in self._made:
            return self._made[kind]
        chain = self._chain(kind)
        for step, reached, path in chain:
            if not path.exists():
                source_path = self.sources.get(step.source) or self._made[step.source]
                self._convert(step, source_path, path, split_kind(reached)[1])
            self._made[reached] = path
        return chain[-1][2]

    def made(self, kind: str) -> bool:
        """Whether the artifact of `kind` is at hand already: getting it converts nothing."""
        if kind in self.sources or kind in self._made:
            return True
        try:
            return self._chain(kind)[-1][2].exists()
        except NoConversion:
            return False

    def _chain(self, kind: str) -> list[tuple[Converter, str, Path]]:
        """The planned converters to `kind`, each with the kind it reaches and the file that holds it."""
        chain = []
        calibrated = False
        version = ""
        for step in plan(self.source_kinds, kind):
            reached = kind if step.produces(kind) else step.target
            calibrated = calibrated or step.calibrated
            version = hashlib.sha256(f"{version}{step.version}".encode()).hexdigest()[:6]
            path = self.folder / file_name(reached, version, self._calibration_digest if calibrated else None)
            chain.append((step, reached, path))
        return chain

    def _convert(self, step: Converter, source: Path, out: Path, precision: str) -> None:
        """Convert into a private folder, then move the result in: a crash leaves no half artifact."""
        self.folder.mkdir(parents=True, exist_ok=True)
        context = ConversionContext(precision, self._calibration, self._shapes)
        with tempfile.TemporaryDirectory(prefix=".convert-", dir=self.folder) as tmp:
            staged = Path(tmp) / out.name
            step.convert(source, staged, context)
            if not staged.exists():
                raise RuntimeError(f"converting {step.source} -> {step.target} wrote no {out.name}")
            for item in sorted(Path(tmp).iterdir(), key=lambda p: p == staged):  # the main file last
                item.replace(self.folder / item.name)
