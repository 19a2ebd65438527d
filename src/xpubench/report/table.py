"""Cell records -> rows of a table, rendered as console text, markdown or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any

Record = dict[str, Any]


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def _latency(key: str) -> Callable[[Record], str]:
    return lambda r: _num((r.get("latency_ms") or {}).get(key))


def _accuracy(r: Record) -> str:
    acc = r.get("accuracy")
    return f"{acc['value']:.4f}" if acc and acc.get("value") is not None else ""


def _size(r: Record) -> str:
    size = r.get("model_bytes")
    return f"{size / 1024:.1f}" if size else ""


def _backend(r: Record) -> str:
    options = r.get("options") or {}
    if not options:
        return r["backend"]
    return f"{r['backend']}[{','.join(f'{k}={v}' for k, v in sorted(options.items()))}]"


def _fidelity(key: str, digits: int = 3) -> Callable[[Record], str]:
    return lambda r: _num((r.get("fidelity") or {}).get(key), digits)


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def _stable(r: Record) -> str:
    if r["status"] != "ok":
        return ""
    return "yes" if r.get("stable") else "no"


# (header with unit, how to read it from a record)
COLUMNS: tuple[tuple[str, Callable[[Record], str]], ...] = (
    ("model", lambda r: r["model"]),
    ("backend", _backend),
    ("device", lambda r: r["device"]),
    ("precision", lambda r: r["precision"]),
    ("batch", lambda r: str(r["batch_size"])),
    ("threads", lambda r: str(r["threads"])),
    ("status", lambda r: r["status"]),
    ("median [ms]", _latency("median")),
    ("p99 [ms]", _latency("p99")),
    ("per sample [ms]", lambda r: _num(r.get("per_sample_ms"))),
    ("throughput [1/s]", lambda r: _num(r.get("throughput_sps"))),
    ("accuracy", _accuracy),
    ("Δacc", lambda r: _signed(r.get("accuracy_delta"))),
    ("top-1 agree", _fidelity("top1_agreement", 4)),
    ("max |Δ|", _fidelity("max_abs")),
    ("delegated", lambda r: "" if r.get("delegated_fraction") is None else f"{r['delegated_fraction']:.0%}"),
    ("size [KiB]", _size),
    ("K [W*ms]", lambda r: _num((r.get("energy") or {}).get("k_w_ms"))),
    ("runs", lambda r: str(r.get("runs") or "")),
    ("stable", _stable),
    ("emulated", lambda r: "emulated" if r.get("emulated") else ""),
)


NUMERIC = ("batch", "threads", "runs", "accuracy", "Δacc", "top-1 agree", "max |Δ|", "delegated")


def rows(records: Sequence[Record]) -> tuple[list[str], list[list[str]]]:
    headers = [h for h, _ in COLUMNS]
    return headers, [[read(r) for _, read in COLUMNS] for r in records]


def notes(records: Sequence[Record]) -> list[str]:
    """One line per cell that was not measured, or measured with warnings."""
    lines = []
    for r in records:
        label = f"{r['model']} {_backend(r)} {r['device']} {r['precision']} b{r['batch_size']} t{r['threads']}"
        if r["status"] != "ok":
            lines.append(f"{label}: {r['status']}: {r['reason']}")
        for warning in r.get("warnings") or ():
            lines.append(f"{label}: unstable: {warning}")
    return lines


def render_text(records: Sequence[Record]) -> str:
    headers, body = rows(records)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    numeric = {i for i, h in enumerate(headers) if "[" in h or h in NUMERIC}

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in pairs)

    out = [line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)]
    extra = notes(records)
    if extra:
        out += ["", *extra]
    return "\n".join(out)


def render_markdown(records: Sequence[Record]) -> str:
    headers, body = rows(records)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    extra = notes(records)
    if extra:
        out += ["", *(f"- {n}" for n in extra)]
    return "\n".join(out)


def render_csv(records: Sequence[Record]) -> str:
    """Flat CSV of every field (nested fields as dotted names), for spreadsheets."""
    flat = [_flatten({k: v for k, v in r.items() if k != "environment"}) for r in records]
    names: list[str] = []
    for f in flat:
        names += [k for k in f if k not in names]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def _flatten(record: Record, prefix: str = "") -> Record:
    out: Record = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = "; ".join(map(str, value))
        else:
            out[name] = value
    return out
