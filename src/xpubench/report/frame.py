"""Stored cell records flattened into a pandas DataFrame: one row per cell, documented columns."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.report.table import backend_label, energy_mj

if TYPE_CHECKING:
    import pandas as pd

Record = dict[str, Any]

# Column -> meaning. Nested record fields are flattened with dots, so a column names the path of its
# value in the JSON record (`xpubench show --format json`): `latency_ms.median` is
# record["latency_ms"]["median"]. Every column is present in every frame (empty when no cell has it).
COLUMNS: dict[str, str] = {
    "run_id": "the run the cell belongs to",
    "run_started_at": "when that run started (UTC, ISO 8601)",
    "key": "the cell's identity within a run: model/backend[options]/device/precision/bN/tN/scenario/timing",
    "status": "ok | unavailable | failed",
    "reason": "why the cell was not measured (empty when ok)",
    "model": "zoo name or model file",
    "dataset": "the data accuracy and fidelity were computed on",
    "backend": "runtime name",
    "options": "the backend's non-default options, `k=v,k=v` (empty: defaults)",
    "label": "backend with its options, e.g. `litert[xnnpack=off]`",
    "device": "cpu, cuda:0, mcu-emulated, ...",
    "precision": "fp32, fp16, bf16, int8-dynamic, int8, uint8, fixed<W,I>",
    "batch_size": "samples per call",
    "threads": "intra-op threads of the runtime",
    "scenario": "how load was applied (single-stream, ...)",
    "timing": "end-to-end (host arrays in and out) or compute",
    "latency_ms.median": "median time of one call (one batch), ms",
    "latency_ms.p90": "90th percentile of the call time, ms",
    "latency_ms.p99": "99th percentile of the call time, ms",
    "latency_ms.mean": "mean call time, ms",
    "latency_ms.stdev": "sample standard deviation of the call time, ms",
    "latency_ms.min": "fastest call, ms",
    "latency_ms.max": "slowest call, ms",
    "latency_ms.ci95_low": "95 % bootstrap interval of the median, lower end, ms",
    "latency_ms.ci95_high": "95 % bootstrap interval of the median, upper end, ms",
    "per_sample_ms": "median call time / batch size, ms per inference",
    "throughput_sps": "samples per second over the timed calls",
    "runs": "timed calls",
    "duration_s": "time spent measuring, s",
    "first_inference_ms": "the first (cold) call, ms",
    "stable": "False when window medians drift, stdev >= 10 % of the mean, or the load rose",
    "warnings": "the stability warnings, joined by `; `",
    "stop_reason": "why measurement stopped",
    "accuracy.metric": "the task metric (top1, auc, resolution, ...)",
    "accuracy.value": "its value on the held-out data",
    "accuracy_delta": "accuracy minus the float32 reference's on the same data",
    "fidelity.max_abs": "largest absolute difference of any output from the float32 reference",
    "fidelity.mean_abs": "mean absolute difference from the float32 reference",
    "fidelity.top1_agreement": "share of samples whose top class equals the reference's (class scores only)",
    "fidelity.relative_error": "||output - reference|| / ||reference||, all outputs flattened (maps, regressions)",
    "fidelity.cosine_similarity": "cosine of the flattened outputs and reference (maps, regressions)",
    "fidelity.within_tolerance": "share of output elements within the tolerance of the reference (maps, regressions)",
    "fidelity.tolerance_rel": "that tolerance, as a fraction of the largest |reference| value of each output",
    "fidelity.reference": "the runtime and artifact that gave the reference outputs",
    "delegated_fraction": "share of the graph the delegate or accelerator ran (empty: not applicable)",
    "emulated": "True when the device is emulated (latency says nothing about the chip)",
    "model_bytes": "size of the artifact the backend loaded, bytes",
    "artifact": "path of that artifact",
    "energy.k_w_ms": "K-function: TDP x time per inference, W*ms (= mJ, modelled)",
    "energy.tdp_w": "the TDP used, W",
    "energy.source": "modelled, a meter's name (rapl:..., nvml:...), or unknown",
    "energy_mj": "energy per inference, mJ: the meter's when measured, else the K-function",
    "price.usd_per_million": "US dollars per million inferences",
    "price.basis": "how the price was computed (cloud $/h, or purchase amortised + energy)",
    "roofline.flops": "floating-point operations per inference, counted from the ONNX graph",
    "roofline.gflops": "achieved GFLOP/s",
    "roofline.peak_fraction": "achieved GFLOP/s / this machine's measured peak",
    "roofline.peak_under_load": "True when that peak was measured while other work ran (the fraction is too high)",
    "scenario_result.verdict": "the load scenario's verdict (e.g. VALID, bound met)",
    "details": "backend-specific details, JSON text",
}
# Any other field a record has (added by later versions) becomes a column too, by the same rule.

BOOL_COLUMNS = ("stable", "emulated", "roofline.peak_under_load")
FLOAT_COLUMNS = tuple(
    c for c in COLUMNS if c not in BOOL_COLUMNS
    and c.startswith(("latency_ms.", "fidelity.m", "energy.k", "energy.t", "price.u", "roofline."))
    or c in ("per_sample_ms", "throughput_sps", "duration_s", "first_inference_ms", "accuracy.value",
             "accuracy_delta", "fidelity.top1_agreement", "fidelity.relative_error", "fidelity.cosine_similarity",
             "fidelity.within_tolerance", "fidelity.tolerance_rel", "delegated_fraction", "energy_mj")
)
INT_COLUMNS = ("batch_size", "threads", "runs", "model_bytes")
JSON_FIELDS = ("details", "confusion")  # kept whole, as JSON text: their shape varies


def flatten(record: Record, run: Record | None = None) -> Record:
    """One cell record -> one row: nested fields as dotted names, lists as `; `-joined text."""
    row: Record = {"run_id": (run or {}).get("run_id"), "run_started_at": (run or {}).get("started_at")}
    for key, value in record.items():
        if key == "environment":
            continue  # per run, not per cell: `xpubench show --format json` has it
        if key in JSON_FIELDS:
            row[key] = json.dumps(value, sort_keys=True) if value not in (None, {}, []) else None
        elif key == "options":
            row[key] = ",".join(f"{k}={v}" for k, v in sorted((value or {}).items()))
        else:
            _put(row, key, value)
    row["label"] = backend_label(record)
    row["energy_mj"] = energy_mj(record)
    return row


def _put(row: Record, name: str, value: Any) -> None:
    if value is None and name not in COLUMNS:
        return  # an absent group (no latency for an unavailable cell): its members stay empty
    if isinstance(value, dict):
        for key, inner in value.items():
            _put(row, f"{name}.{key}", inner)
    elif isinstance(value, list | tuple):
        scalars = all(not isinstance(v, dict | list | tuple) for v in value)
        row[name] = "; ".join(map(str, value)) if scalars else json.dumps(value)
    else:
        row[name] = value


def frame(records: Sequence[Record], run: Record | None = None) -> pd.DataFrame:
    """Records of one run -> DataFrame with COLUMNS first, then any further fields."""
    return frame_of_runs([(run or {}, records)])


def frame_of_runs(runs: Iterable[tuple[Record, Sequence[Record]]]) -> pd.DataFrame:
    import pandas as pd

    rows = [flatten(r, run) for run, records in runs for r in records]
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in COLUMNS and k not in extra]
    df = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    for name in FLOAT_COLUMNS:
        df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
    for name in INT_COLUMNS:
        df[name] = pd.to_numeric(df[name], errors="coerce").astype("Int64")
    for name in BOOL_COLUMNS:
        df[name] = df[name].astype("boolean")
    for name in COLUMNS:
        if name not in (*FLOAT_COLUMNS, *INT_COLUMNS, *BOOL_COLUMNS):
            df[name] = df[name].astype("str")  # text even where every cell lacks it
    return df


def load(path: str | Path, run_id: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The stored cells of `path` (a results folder or its xpubench.db) as a DataFrame."""
    from xpubench.store import ResultStore
    from xpubench.store.db import DB_NAME

    folder = Path(path)
    if folder.name == DB_NAME:
        folder = folder.parent
    with ResultStore(folder, create=False, readonly=True) as store:
        if run_id is None:
            ids = [r["run_id"] for r in store.runs()]
        else:
            ids = [run_id] if isinstance(run_id, str) else list(run_id)
        return frame_of_runs([(store.run(i), store.cells(i)) for i in ids])
