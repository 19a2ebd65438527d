"""Option types and options shared by several subcommands."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from xpubench.paths import DEFAULT_RESULTS


def positive_int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 1,32") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 1,32")
    return values


def name_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("give at least one name")
    return values


def precision_list(text: str) -> tuple[str, ...]:
    """Comma-separated precisions; commas inside fixed<W,I> belong to the precision."""
    values = tuple(v.strip() for v in re.split(r",(?![^<]*>)", text) if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("give at least one precision, e.g. fp32,int8")
    return values


def shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """`[NAME=]D,D,...` -> (NAME or "" for every input, dims)."""
    name, eq, dims = text.rpartition("=")
    try:
        values = tuple(int(v) for v in dims.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give one sample's shape as positive integers, e.g. 28,28,1")
    return name, values


def _named(text: str, option: str, example: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give {option} NAME=VALUE, e.g. {example}")
    return name.strip(), value.strip()


def batch_axis_option(text: str) -> tuple[str, int | None]:
    """`NAME=AXIS` or `NAME=none` -> (NAME, AXIS or None)."""
    name, value = _named(text, "--batch-axis", "state=1 or sample_rate=none")
    if value.lower() == "none":
        return name, None
    try:
        axis = int(value)
    except ValueError:
        axis = -1
    if axis < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the batch axis is a dimension index (0, 1, ...) or none")
    return name, axis


def input_value_option(text: str) -> tuple[str, str]:
    """`NAME=NUMBER` or `NAME=FILE.npy` -> (NAME, the text after =), read when the model is resolved."""
    name, value = _named(text, "--input", "sample_rate=16000 or mask=mask.npy")
    try:
        float(value)
    except ValueError:
        if not value.lower().endswith(".npy"):
            raise argparse.ArgumentTypeError(f"{text!r}: give a number or an array file saved as FILE.npy") from None
    return name, value


def int_range_option(text: str) -> tuple[str, tuple[int, int]]:
    """`NAME=LOW:HIGH` -> (NAME, (LOW, HIGH)), both ends included."""
    name, value = _named(text, "--int-range", "token_ids=0:30521")
    low, colon, high = value.partition(":")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        bounds = None
    if not colon or bounds is None or bounds[0] > bounds[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: give the integers' range as LOW:HIGH (both included), LOW <= HIGH")
    return name, bounds


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        metavar="DIR",
        help=f"results folder holding xpubench.db (default: ./{DEFAULT_RESULTS})",
    )


# The option that sets each library setting (xpubench.core.errors.InvalidSetting names the setting).
SETTING_FLAGS = {
    "warmup_runs": "--warmup-runs",
    "warmup_time_s": "--warmup-time",
    "min_runs": "--runs",
    "min_time_s": "--min-time",
    "max_time_s": "--max-time",
    "ci_target": "--ci-target",
    "qps": "--qps",
    "bound_ms": "--bound-ms",
    "cell_timeout_s": "--cell-timeout",
    "pin": "--pin",
    "tdp_w": "--tdp",
    "repeats": "--repeats",
}


def add_cell_timeout_option(p: argparse.ArgumentParser, cells: str = "a cell's") -> None:
    """--cell-timeout as the studies take it: the limit of one cell's worker."""
    from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S

    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                   help=f"stop {cells} worker after S seconds, a failed row (default: {DEFAULT_CELL_TIMEOUT_S:g})")


def pin_cpus(text: str | None) -> tuple[int, ...] | None:
    """--pin's CPU list, checked (None when not given); a one-line error when it is not one."""
    from xpubench.errors import UsageError
    from xpubench.run.pins import parse_cpus

    if text is None:
        return None
    try:
        return parse_cpus(text)
    except ValueError as exc:
        raise UsageError(f"--pin {exc}") from None


def require_serve_extra(command: str) -> None:
    """A one-line error when the `serve` extra (tritonclient, uvicorn, grpcio) is not installed."""
    import importlib.util

    from xpubench.errors import UsageError

    missing = [m for m in ("tritonclient", "uvicorn", "grpc") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{command} needs {', '.join(missing)}: pip install 'xpubench[serve]'")


def check_output_file(path: Path | None, flag: str) -> None:
    """Refuse an output file that could not be written, before anything is measured: a folder, a place under
    a file, or a folder that is not writable. A one-line UsageError naming the file."""
    from xpubench.errors import UsageError

    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder: give a file name, e.g. {path / 'cells.json'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the folders to make are made when it is written
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: {folder} is a file, not a folder: give another place")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise UsageError(f"{flag} {path}: permission denied: give a file in a folder you can write to")


def add_measure_options(p: argparse.ArgumentParser) -> None:
    """The stop rules of the timing loop, as every command that measures cells takes them."""
    p.add_argument("--runs", type=int, default=100, metavar="N", help="measure at least N calls (default: 100)")
    p.add_argument("--min-time", type=float, default=2.0, metavar="S", help="and at least S seconds (default: 2)")
    p.add_argument("--max-time", type=float, default=60.0, metavar="S", help="but at most S seconds (default: 60)")
    p.add_argument("--warmup-runs", type=int, default=10, metavar="N", help="warm-up calls, at least (default: 10)")
    p.add_argument(
        "--warmup-time", type=float, default=0.5, metavar="S", help="warm-up seconds, at least (default: 0.5)"
    )


def measure_config(args: argparse.Namespace, ci_target: float | None = None):  # -> MeasureConfig
    """The MeasureConfig of the options `add_measure_options` added (checked when built)."""
    from xpubench.core.measure import MeasureConfig

    return MeasureConfig(warmup_runs=args.warmup_runs, warmup_time_s=args.warmup_time, min_runs=args.runs,
                         min_time_s=args.min_time, max_time_s=args.max_time, ci_target=ci_target)
