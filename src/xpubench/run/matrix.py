"""The matrix of a request (models x backends x ... x scenarios), its cells, and its stored (JSON) form."""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.backends import get_backend
from xpubench.backends.base import Backend
from xpubench.core.cell import Cell
from xpubench.core.errors import InvalidSetting
from xpubench.core.measure import MeasureConfig
from xpubench.hetero.spec import SplitSpec, is_composite
from xpubench.run.limits import DEFAULT_REPEATS, MAX_REPEATS
from xpubench.scenarios import SELF_BATCHING, ScenarioConfig, check_scenarios

if TYPE_CHECKING:
    from xpubench.data.files import DataFile




@dataclass(frozen=True)
class CellSettings:
    """What every cell of a matrix is measured with, handed to its worker as one value. `measure` holds the
    cell's stop rules as a whole; each of its `repeats` measures its share (`per_repeat`)."""

    measure: MeasureConfig = field(default_factory=MeasureConfig)
    tdp_w: float | None = None  # the device's TDP for the K-function; None: unknown
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    repeats: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise InvalidSetting("repeats", f"a cell is measured in 1 to {MAX_REPEATS} repeats, got {self.repeats}")

    def per_repeat(self) -> MeasureConfig:
        """One repeat's stop rules: its share of the cell's runs, times and warm-up time (the warm-up calls in
        full: each repeat is a session of its own); the interval target is the sweep's to check, across
        repeats."""
        m, share = self.measure, self.repeats
        return replace(m, min_runs=math.ceil(m.min_runs / share), min_time_s=m.min_time_s / share,
                       max_time_s=m.max_time_s / share, warmup_time_s=m.warmup_time_s / share, ci_target=None,
                       max_runs=math.ceil(m.max_runs / share) if m.max_runs else None)


@dataclass(frozen=True)
class Matrix:
    """What a sweep measures: models x backends (x their options, devices, precisions) x batches x threads.

    A backend is named alone or with options, `litert:xnnpack=off`, or is a split over parts
    (`split:data:onnxruntime@0+litert@1`, hetero.spec). `precisions` and `devices`
    may be ("all",): each backend's own list. `devices=None` runs each backend where it runs by
    default (its first device). `every_option` measures every value of a backend's swept options
    (torch eager and compiled) where the name came without options.
    """

    models: tuple[str, ...]
    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] | None = None
    every_option: bool = False
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    tdp_w: float | None = None  # overrides the catalogue
    # Each cell runs under each scenario; those that pick their own batch get one cell at batch 1.
    scenarios: tuple[str, ...] = ("single-stream",)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    # How every model is resolved (again, in each worker): --data and --shape (input name -> one sample's shape),
    # and per input name: --batch-axis (None: not batched), --input (a number or .npy path), --int-range (LOW, HIGH).
    data: DataFile | Path | None = None
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    batch_axes: tuple[tuple[str, int | None], ...] = ()
    input_values: tuple[tuple[str, str], ...] = ()
    int_ranges: tuple[tuple[str, tuple[int, int]], ...] = ()
    # Worker sessions per single-stream cell, interleaved with the other cells (other scenarios run once).
    repeats: int = DEFAULT_REPEATS
    # end-to-end (host arrays in and out), compute (the runtime's compute alone), or both.
    timings: tuple[str, ...] = ("end-to-end",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", check_scenarios(self.scenarios))
        self.settings_for(Cell("m", "b"))  # the repeats are checked now

    def cells(self) -> list[Cell]:
        cells = []
        for model, spec in itertools.product(self.models, self.backends):
            if is_composite(spec):
                cells += self._split_cells(model, SplitSpec.parse(spec))
                continue
            name, given = parse_backend(spec)
            try:
                cls = get_backend(name)
            except KeyError:
                cls = None  # measured as an unavailable row with the reason
            for options, device, precision, scenario, timing in itertools.product(
                self._option_sets(cls, given),
                self._devices(cls),
                cls.precisions if cls and self.precisions == ("all",) else self.precisions,
                self.scenarios,
                self.timings,
            ):
                batches = (1,) if scenario in SELF_BATCHING else self.batch_sizes
                for batch, threads in itertools.product(batches, self.threads):
                    cells.append(Cell(model, name, device, precision, batch, threads, scenario, timing, options))
        return cells

    def check_choices(self) -> None:
        """Raise ValueError naming what to choose when a backend is unknown (or its options are), a precision is
        none any backend declares (nor fixed<W,I>), or none of the chosen backends takes a precision: a request
        that could only store rows that say so is refused before anything is stored."""
        from xpubench.backends import backend_names

        known = backend_names(include_hidden=True)
        chosen: dict[str, type[Backend]] = {}
        for spec in self.backends:
            if is_composite(spec):  # its parts carry their own devices and precisions
                for part in SplitSpec.parse(spec).parts:
                    if part.backend not in known:
                        raise ValueError(f"unknown backend {part.backend!r} in {spec!r}: choose from "
                                         f"{', '.join(backend_names())}")
                    get_backend(part.backend).resolve_options(dict(part.options))
                continue
            name, options = parse_backend(spec)
            if name not in known:
                raise ValueError(f"unknown backend {name!r}: choose from {', '.join(backend_names())} or all")
            chosen[name] = get_backend(name)
            chosen[name].resolve_options(options)
        if self.precisions == ("all",) or not chosen:
            return
        every = {name: get_backend(name) for name in known}
        for precision in self.precisions:
            takers = [name for name, cls in every.items() if cls.supports_precision(precision)]
            if not takers:
                declared = Counter(p for cls in every.values() for p in cls.precisions if "<" not in p)
                names = sorted(declared, key=lambda p: (-declared[p], p))  # the most widely taken first
                raise ValueError(f"unknown precision {precision!r}: choose from {', '.join(names)}, fixed<W,I> "
                                 "or all")
            if not any(cls.supports_precision(precision) for cls in chosen.values()):
                raise ValueError(f"no chosen backend ({', '.join(chosen)}) takes precision {precision}: "
                                 f"{', '.join(takers)} {'does' if len(takers) == 1 else 'do'}")

    def settings_for(self, cell: Cell, tdp_w: float | None = None) -> CellSettings:
        """A cell's settings: the matrix's repeats for single-stream cells, one for the scenarios that run
        their own load; `tdp_w` where the matrix gives none (`tdp()`)."""
        repeats = self.repeats if cell.scenario == "single-stream" else 1
        return CellSettings(self.measure, self.tdp_w if self.tdp_w is not None else tdp_w, self.scenario, repeats)

    def tdp(self) -> float | None:
        """The TDP for the K-function: the matrix's, else the hardware catalogue's for this CPU."""
        from xpubench.hardware import catalogue, host

        return self.tdp_w if self.tdp_w is not None else catalogue.cpu_tdp_w(host.cpu_model())

    def _split_cells(self, model: str, spec: SplitSpec) -> list[Cell]:
        """A split's cells: one per batch size, scenario and timing (its parts name their devices, precisions and
        CPUs, so --device, --precision and --threads leave it alone)."""
        cells = []
        for scenario, timing in itertools.product(self.scenarios, self.timings):
            for batch in (1,) if scenario in SELF_BATCHING else self.batch_sizes:
                cells.append(spec.cell(model, batch, scenario, timing))
        return cells

    def _devices(self, cls: type[Backend] | None) -> tuple[str, ...]:
        if cls is None:
            return self.devices if self.devices and self.devices != ("all",) else ("cpu",)
        if self.devices == ("all",):
            return cls.devices
        return self.devices or cls.devices[:1]

    def _option_sets(self, cls: type[Backend] | None, given: dict[str, str]) -> list[tuple[tuple[str, str], ...]]:
        if cls is None:
            return [tuple(sorted(given.items()))]
        if given or not self.every_option:
            return [non_default(cls, given)]
        swept = [[(key, value) for value in cls.option_choices[key]] for key in cls.swept_options]
        return [non_default(cls, dict(combo)) for combo in itertools.product(*swept)]


def parse_backend(spec: str) -> tuple[str, dict[str, str]]:
    """`torch:mode=compile` -> ("torch", {"mode": "compile"}). Raises ValueError on a malformed option."""
    name, *parts = spec.split(":")
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise ValueError(f"backend option {part!r} in {spec!r} is not KEY=VALUE, e.g. litert:xnnpack=off")
        options[key] = value
    return name, options


def non_default(cls: type[Backend], options: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The options as a cell stores them: checked, sorted, defaults left out."""
    resolved = cls.resolve_options(options)
    return tuple(sorted((k, v) for k, v in resolved.items() if v != cls.option_choices[k][0]))


def matrix_to_json(matrix: Matrix) -> dict[str, Any]:
    """The matrix as JSON, stored with its run so `--resume` can compute the same cells again."""
    return _jsonable(matrix)


def matrix_from_json(stored: Mapping[str, Any]) -> Matrix:
    """The inverse of matrix_to_json; fields it lacks take their defaults, unknown ones are ignored."""
    return _from_json(Matrix, stored)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _from_json(kind: Any, value: Any) -> Any:
    """`value` (from JSON) as the annotated type `kind`: dataclasses, tuples, unions with None, Paths."""
    if value is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
        from xpubench.data.files import DataFile

        hints = typing.get_type_hints(kind, localns={"DataFile": DataFile, "Path": Path})
        known = {f.name for f in dataclasses.fields(kind) if f.init}
        return kind(**{k: _from_json(hints.get(k, Any), v) for k, v in value.items() if k in known})
    if origin in (types.UnionType, typing.Union):
        if isinstance(value, Mapping):  # a dataclass among the choices
            for arg in args:
                if dataclasses.is_dataclass(arg):
                    return _from_json(arg, value)
        if isinstance(value, str) and Path in args:
            return Path(value)
        return value
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_from_json(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    return value
