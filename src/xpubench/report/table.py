"""Cell records -> rows of a table, rendered as console text, markdown or CSV.

Every column reads one stored field (a dotted path into the cell record) and formats it by one
rule, so the console, markdown and HTML tables show the same figure for the same value:

- plain numbers (`num`): 4 significant digits (`%.4g`), values of 10^4 and more as integers,
  0 as `0`, nothing when absent;
- accuracy: 4 decimals; accuracy difference: signed, 4 decimals;
- fractions shown as percentages (delegated): `%.0f%%` of value x 100;
- sizes in KiB: bytes / 1024 with 1 decimal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xpubench.report.timeline import attribution_line

Record = dict[str, Any]
BOLD, PLAIN = "\033[1m", "\033[0m"
BEST_MARK = "*"


def num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def decimals4(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def kib(value: int | None) -> str:
    return f"{value / 1024:.1f}" if value else ""


def text(value: Any) -> str:
    return "" if value is None else str(value)


def field(record: Record, path: str) -> Any:
    """The value at a dotted path of a record (`latency_ms.median`), None when any part is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def backend_label(r: Record) -> str:
    options = r.get("options") or {}
    if not options:
        return r["backend"]
    return f"{r['backend']}[{','.join(f'{k}={v}' for k, v in sorted(options.items()))}]"


def cell_name(r: Record) -> str:
    """A cell in words: model backend[options] device precision bN tN (+ scenario unless single-stream)."""
    name = f"{r['model']} {backend_label(r)} {r['device']} {r['precision']} b{r['batch_size']} t{r['threads']}"
    scenario = r.get("scenario")
    name = f"{name} {scenario}" if scenario and scenario != "single-stream" else name
    return f"{name} {r['timing']}" if r.get("timing", "end-to-end") != "end-to-end" else name


def energy_mj(r: Record) -> float | None:
    """Energy per inference in mJ (= W*ms): measured joules when a meter gave them, else the K-function."""
    energy = r.get("energy") or {}
    for name in ("j_per_inference", "joules_per_inference", "joules"):
        if energy.get(name) is not None:
            return float(energy[name]) * 1000.0
    return energy.get("k_w_ms")


def scenario_summary(r: Record) -> str | None:
    """The scenario's figures in one line (verdict, knee, bound...), None for single-stream cells."""
    result = r.get("scenario_result")
    if not result:
        return None
    try:
        from xpubench.scenarios import summary
    except ImportError:  # an older xpubench reading a newer store: show the verdict alone
        return str(result.get("verdict") or "")
    return summary(result)


def _stable(r: Record) -> str:
    if r["status"] != "ok":
        return ""
    return "yes" if r.get("stable") else "no"


def _node(r: Record) -> str | None:
    worker = r.get("worker") or {}
    if not worker.get("node"):
        return None
    return f"{worker['node']}@{worker.get('host') or '?'}"


@dataclass(frozen=True)
class Column:
    """A table column: its header (with unit), the record field it shows and how it formats it.

    `scale` converts the stored value to the unit shown (KiB = bytes / 1024, % = fraction x 100), so a
    reader of the table can check a figure against the store. `optional` columns appear only when
    some record has a value for them (fields other parts of xpubench add, e.g. price).
    """

    header: str
    path: str
    format: Callable[[Any], str] = num
    scale: float | None = 1.0  # None: not a number
    optional: bool = False
    read: Callable[[Record], Any] | None = None  # computed columns; else field(record, path)

    def value(self, record: Record) -> Any:
        return self.read(record) if self.read else field(record, self.path)

    def cell(self, record: Record) -> str:
        return self.format(self.value(record))


CELL_COLUMNS: tuple[Column, ...] = (  # what names a cell; every table starts with them
    Column("model", "model", text, None),
    Column("backend", "backend", text, None, read=backend_label),
    Column("device", "device", text, None),
    Column("precision", "precision", text, None),
    Column("batch", "batch_size", text),
    Column("threads", "threads", text),
    Column("scenario", "scenario", text, None, optional=True),
    Column("timing", "timing", text, None, optional=True),
)
COLUMNS: tuple[Column, ...] = (
    *CELL_COLUMNS,
    Column("status", "status", text, None),
    Column("median [ms]", "latency_ms.median"),
    Column("±95%", "stability.interval_halfwidth", lambda v: "" if v is None else f"{v:.1%}", 100.0, optional=True),
    Column("p99 [ms]", "latency_ms.p99"),
    Column("per sample [ms]", "per_sample_ms"),
    Column("throughput [1/s]", "throughput_sps"),
    Column("accuracy", "accuracy.value", decimals4),
    Column("Δacc", "accuracy_delta", signed),
    Column("top-1 agree", "fidelity.top1_agreement", lambda v: num(v, 4)),
    Column("max |Δ|", "fidelity.max_abs", lambda v: num(v, 3)),
    Column("delegated", "delegated_fraction", percent, 100.0),
    Column("size [KiB]", "model_bytes", kib, 1 / 1024),
    Column("K [W*ms]", "energy.k_w_ms", optional=True),
    Column("energy [mJ]", "energy", num, optional=True,
           read=lambda r: energy_mj(r) if (r.get("energy") or {}).get("source") not in ("modelled", "unknown", None)
           else None),
    Column("price [$/M inf]", "price.usd_per_million", optional=True),
    Column("GFLOP/s", "roofline.gflops", optional=True),
    Column("scenario result", "scenario_result", text, None, optional=True, read=scenario_summary),
    Column("runs", "runs", lambda v: str(v or "")),
    Column("stable", "stable", text, None, read=_stable),
    Column("emulated", "emulated", text, None, read=lambda r: "emulated" if r.get("emulated") else ""),
    # Cells measured on a cluster: which worker, on which machine (sort by it to group them).
    Column("node", "worker.node", text, None, optional=True, read=lambda r: _node(r)),
)


def shown(column: Column, records: Sequence[Record]) -> bool:
    """Whether an optional column has something to say: the scenario when it is not single-stream for all."""
    if not column.optional:
        return True
    if column.path == "scenario":
        return {r.get("scenario") or "single-stream" for r in records} != {"single-stream"}
    if column.path == "timing":
        return {r.get("timing") or "end-to-end" for r in records} != {"end-to-end"}
    return any(column.value(r) not in (None, "") for r in records)


def columns_for(records: Sequence[Record]) -> list[Column]:
    """COLUMNS, less the optional ones no record has a value for."""
    return [c for c in COLUMNS if shown(c, records)]


def best_per_model(records: Sequence[Record]) -> set[int]:
    """Indices of the fastest cell per model: lowest per-sample time among measured, non-emulated cells timed
    end to end (compute alone is not what an application sees)."""
    best: dict[str, tuple[float, int]] = {}
    for i, r in enumerate(records):
        t = r.get("per_sample_ms")
        if r["status"] != "ok" or t is None or r.get("emulated") or r.get("timing", "end-to-end") != "end-to-end":
            continue
        if r["model"] not in best or t < best[r["model"]][0]:
            best[r["model"]] = (t, i)
    return {i for _, i in best.values()}


def rows(records: Sequence[Record]) -> tuple[list[str], list[list[str]]]:
    cols = columns_for(records)
    return [c.header for c in cols], [[c.cell(r) for c in cols] for r in records]


def notes(records: Sequence[Record]) -> list[str]:
    """One line per cell that was not measured, or measured with warnings; a split's speed-up attribution."""
    lines = []
    for r in records:
        label = cell_name(r)
        if r["status"] != "ok":
            lines.append(f"{label}: {r['status']}: {r['reason']}")
        for warning in r.get("warnings") or ():
            lines.append(f"{label}: unstable: {warning}")
        attribution = attribution_line(r)
        if attribution:
            lines.append(f"{label}: {attribution}")
    return lines


BEST_NOTE = ("fastest cell of its model (lowest per-sample median among measured, non-emulated cells timed end "
             "to end)")


def render_text(records: Sequence[Record], bold: bool | None = None) -> str:
    """A console table; the best cell per model is bold on a terminal and marked `*` in any case."""
    if bold is None:
        bold = sys.stdout.isatty()
    headers, body = rows(records)
    best = best_per_model(records)
    headers = [" ", *headers]
    body = [[BEST_MARK if i in best else "", *row] for i, row in enumerate(body)]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    numeric = {i + 1 for i, c in enumerate(columns_for(records)) if c.scale is not None}

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in pairs).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    for i, row in enumerate(body):
        out.append(f"{BOLD}{line(row)}{PLAIN}" if bold and i in best else line(row))
    if best:
        out += ["", f"{BEST_MARK} {BEST_NOTE}"]
    extra = notes(records)
    if extra:
        out += ["", *extra]
    return "\n".join(out)


def render_markdown(records: Sequence[Record]) -> str:
    """A markdown table; the best cell per model marked `*` in the first column."""
    headers, body = rows(records)
    best = best_per_model(records)
    headers = [" ", *headers]
    body = [[BEST_MARK if i in best else "", *row] for i, row in enumerate(body)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("*", "\\*") for c in cells) + " |"

    out = [line(headers), "|" + "|".join(" --- " for _ in headers) + "|", *(line(row) for row in body)]
    if best:
        out += ["", f"\\* {BEST_NOTE}"]
    extra = notes(records)
    if extra:
        out += ["", *(f"- {n}" for n in extra)]
    return "\n".join(out)

