"""A composite backend as `run --backend` names it, `split:MODE:PART+PART[:cut=TENSOR...][:executor=E]`, and
the cell it makes: the one form of a split that a matrix, its stored request and the store's cell key share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from xpubench.core.cell import Cell
from xpubench.hetero.parts import Part, check_pins, describe, parse_part

BACKEND = "split"  # a split cell's backend; its device names the parts
PREFIX = f"{BACKEND}:"
MODES = ("data", "pipeline")  # `auto` picks its cells at run time (the planner): `xpubench split` only
EXECUTORS = ("thread", "process")
OPTIONS = ("cut=", "executor=")  # the split's own, after its last part
EXAMPLE = "split:data:onnxruntime@0+litert@1 or split:pipeline:onnxruntime@0+litert@1:cut=TENSOR"


def split_cell(model: str, parts: Sequence[Part], batch: int, mode: str, **options: str) -> Cell:
    """The cell of a split: backend `split`, device the parts (`onnxruntime:cpu@0+litert:cpu@1`), precision
    theirs (or `mixed`), threads their CPUs, options the mode and its executor or cuts (`none`: one stage)."""
    precisions = {p.precision for p in parts}
    return Cell(model, BACKEND, describe(tuple(parts)), precisions.pop() if len(precisions) == 1 else "mixed",
                batch, max(1, sum(len(p.cpus) or 1 for p in parts)), "single-stream",
                options=tuple(sorted({"mode": mode, **options}.items())))


def is_composite(spec: str) -> bool:
    """Whether a --backend entry names a split rather than one backend."""
    return spec.startswith(PREFIX)


def is_split(cell: Cell) -> bool:
    """Whether a cell measures a split (its parts, not one registered backend, open the model)."""
    return cell.backend == BACKEND


@dataclass(frozen=True)
class SplitSpec:
    """The parts of a split, its mode, and the pipeline's cuts or the data-parallel executor."""

    mode: str
    parts: tuple[Part, ...]
    cuts: tuple[str, ...] = ()
    executor: str = "thread"

    def __post_init__(self) -> None:
        """ValueError, one line, for a split that cannot be measured whatever the machine."""
        if self.mode not in MODES:
            hint = ": the planner chooses its cells as it runs, use `xpubench split --mode auto`" \
                if self.mode == "auto" else ""
            raise ValueError(f"unknown split mode {self.mode!r}: choose from {', '.join(MODES)}{hint}")
        if self.mode == "data":
            if len(self.parts) < 2:
                raise ValueError("a data-parallel split needs at least two parts joined by +, e.g. "
                                 "split:data:onnxruntime@0+litert@1")
            if self.cuts:
                raise ValueError("cut= cuts a pipeline: drop it, or write split:pipeline:...")
        else:
            if not self.cuts:
                raise ValueError("a pipeline split needs its cuts, e.g. split:pipeline:onnxruntime@0+litert@1:"
                                 "cut=TENSOR (`xpubench split MODEL --devices PART --list-cuts` lists them)")
            if len(self.cuts) + 1 != len(self.parts):
                raise ValueError(f"{len(self.cuts)} cut{'s' if len(self.cuts) != 1 else ''} make "
                                 f"{len(self.cuts) + 1} stages: give {len(self.cuts) + 1} parts joined by +")
            if self.executor != "thread":
                raise ValueError("executor= chooses how data-parallel parts run: a pipeline's stages are threads")
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown split executor {self.executor!r}: choose from {', '.join(EXECUTORS)}")
        check_pins(self.parts)

    @classmethod
    def parse(cls, spec: str) -> SplitSpec:
        """`split:data:onnxruntime@0+litert:cpu@1:executor=process` -> SplitSpec; ValueError, one line that
        names the spec. Parts are joined by `+` (a comma separates backends); `cut=` and `executor=` follow the
        last part, `cut=` once per cut in graph order (a tensor name may hold a colon)."""
        try:
            return cls._parse(spec)
        except ValueError as exc:
            raise ValueError(f"{spec!r}: {exc}") from None

    @classmethod
    def _parse(cls, spec: str) -> SplitSpec:
        if not is_composite(spec):
            raise ValueError(f"no split: write {EXAMPLE}")
        mode, _, rest = spec[len(PREFIX):].partition(":")
        if not rest:
            raise ValueError(f"no parts: write {EXAMPLE}")
        fields = rest.split(":")
        start = next((i for i, f in enumerate(fields) if f.startswith(OPTIONS)), len(fields))
        options: list[list[str]] = []
        for text in fields[start:]:
            if text.startswith(OPTIONS):
                options.append(list(text.partition("=")[::2]))
            else:  # a colon inside a tensor name
                options[-1][1] += f":{text}"
        if any(not value for _, value in options):
            raise ValueError("cut= and executor= need a value")
        executors = [value for key, value in options if key == "executor"]
        if len(executors) > 1:
            raise ValueError("executor= is given twice")
        parts = tuple(parse_part(p) for p in ":".join(fields[:start]).split("+"))
        return cls(mode, parts, tuple(value for key, value in options if key == "cut"), *executors)

    @classmethod
    def of_cell(cls, cell: Cell) -> SplitSpec:
        """The split a cell of backend `split` measures (its device is the parts, its options the rest)."""
        options = dict(cell.options)
        cuts = options.get("cuts", "none")
        return cls(options["mode"], tuple(parse_part(p) for p in cell.device.split("+")),
                   () if cuts == "none" else tuple(cuts.split(",")), options.get("executor", "thread"))

    @property
    def text(self) -> str:
        """The spec as --backend writes it."""
        tail = "".join(f":cut={c}" for c in self.cuts)
        tail += f":executor={self.executor}" if self.executor != "thread" else ""
        return f"{PREFIX}{self.mode}:{'+'.join(p.spec for p in self.parts)}{tail}"

    def cell(self, model: str, batch: int, scenario: str = "single-stream", timing: str = "end-to-end") -> Cell:
        extra = {"executor": self.executor} if self.mode == "data" else {"cuts": ",".join(self.cuts)}
        return replace(split_cell(model, self.parts, batch, self.mode, **extra), scenario=scenario, timing=timing)

    def part_cells(self, cell: Cell) -> list[Cell]:
        """Each part as a cell of its own backend (what it loads when it runs the whole model)."""
        return [replace(cell, backend=p.backend, device=p.device, precision=p.precision,
                        threads=max(1, len(p.cpus)), options=p.options) for p in self.parts]
