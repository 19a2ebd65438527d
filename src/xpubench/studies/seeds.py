"""`xpubench study seeds`: the source studies' three tables, measured here, beside the studies' own figures."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xpubench.core.measure import MeasureConfig
from xpubench.report.table import num
from xpubench.run.matrix import Matrix

Record = dict[str, Any]
NOT_RUN = "not run"  # a cell this run's matrix did not hold (--quick measures a few)
NOT_APPLICABLE = "-"  # as in the studies' tables: the row has no such cell (an Edge TPU runs int8 models only)
MODES = ("quick", "default", "full")
QUICK_LARTPC_STAND_IN = "conv3dense1:tiny"  # table (a) under --quick: the pipeline, not the study

# How the study measures each cell: the source studies quote one figure per cell (a mean of 30-100
# calls, or a median), so a shorter window than `xpubench run`'s default suffices and keeps the
# whole study (about 75 cells, each in a worker process of its own) under 20 minutes on 2 cores, training included.
STUDY_MEASURE = MeasureConfig(warmup_runs=3, warmup_time_s=0.1, min_runs=20, min_time_s=0.5, max_time_s=10.0)
QUICK_MEASURE = MeasureConfig(warmup_runs=1, warmup_time_s=0.0, min_runs=5, min_time_s=0.05, max_time_s=5.0)

# ---------------------------------------------------------------------------------------------------------------
# The source studies' own figures, as printed in their slides (/work/shared/seeds/*.txt), kept as printed.

LARTPC_SOURCE = (
    "S. Vergani, 'Benchmarking New Hardware and Software for Machine Learning in Particle Physics', "
    "IoP APP/HEPP/NP 2021, 'RESULTS for ResNet-50 V2 / DenseNet-169' and 'K function' slides (seed 000)"
)
LARTPC_DEVICES = "CPU: Intel Core i7-8550U (15 W), GPU: NVIDIA Tesla P100 (250 W), Edge TPU: Coral (2 W)"
# model -> optimisation -> (size MB, accuracy, CPU, GPU, Edge TPU), per inference, batch 1.
LARTPC_STUDY: dict[str, dict[str, tuple[str, str, str, str, str]]] = {
    "resnet50v2": {
        "tensorflow": ("274", "64.15%", "40.88 ms", "4.91 ms", "-"),
        "fp32": ("90", "64.15%", "89.36 ms", "94.4 ms", "-"),
        "int8-dynamic": ("23", "54.35%", "548.54 ms", "314.76 ms", "-"),
        "fp16": ("45", "64.15%", "114.16 ms", "64.05 ms", "-"),
        "int8": ("24", "N.A. (~2% lower)", "6.1 s", "9.3 s", "42.41 ms"),
    },
    "densenet169": {
        "tensorflow": ("157", "68.6%", "48.04 ms", "1.83 ms", "-"),
        "fp32": ("48", "68.6%", "81.02 ms", "112.14 ms", "-"),
        "int8-dynamic": ("13", "63.65%", "530.95 ms", "296.88 ms", "-"),
        "fp16": ("25", "68.6%", "81.92 ms", "114.21 ms", "-"),
        "int8": ("13", "N.A. (~2% lower)", "7.6 s", "7.2 s", "23.67 ms"),
    },
}
# Best K = TDP x time per inference [W*ms] per device, as on the slide.
LARTPC_K_STUDY = {
    "resnet50v2": {"CPU": "613.2", "GPU": "1227.5", "Edge TPU": "84.42"},
    "densenet169": {"CPU": "720.6", "GPU": "457.5", "Edge TPU": "47.34"},
}

EDGE_SOURCE = (
    "R. Zingg, B. Zimmermann (ZHAW), 'Benchmarking the Intelligent Edge', 'Dense1 / Conv3Dense1 / MobileNet - "
    "Results' slides (seed 002); MobileNet there: 2,270,794 parameters on CIFAR-10 (our mobilenet-v2 at --full)"
)
EDGE_MODELS = ("dense1", "conv3dense1", "mobilenet-v2")
# (hardware, compiler, data type) -> model -> (median us for 1 sample, per sample in a batch of 32), as printed.
EDGE_STUDY: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {
    ("STM32F4 Cortex-M4", "TFLite", "int8"): {"dense1": ("1120", "-"), "conv3dense1": ("331'600", "-")},
    ("STM32F4 Cortex-M4", "ST-Cube-AI", "float16"): {"dense1": ("3950", "-"), "conv3dense1": ("300'340", "-")},
    ("STM32F4 Cortex-M4", "nnom with cmsis", "int8"): {"dense1": ("207", "-"), "conv3dense1": ("104'600", "-")},
    ("NVIDIA Nano", "TFLite", "float32"): {
        "dense1": ("32", "10"), "conv3dense1": ("564", "535"), "mobilenet-v2": ("4'916", "4453")},
    ("NVIDIA TX2", "TFLite", "float32"): {
        "dense1": ("16", "7"), "conv3dense1": ("404", "388"), "mobilenet-v2": ("3'600", "3210")},
    ("NVIDIA Xavier", "TFLite", "float32"): {
        "dense1": ("10", "4"), "conv3dense1": ("260", "259"), "mobilenet-v2": ("2'205", "2079")},
    ("NVIDIA Quadro K620", "None (Keras)", "float32"): {"dense1": ("13'909", "430")},
    ("NVIDIA Quadro K620", "TFLite", "float32"): {
        "dense1": ("6", "4"), "conv3dense1": ("182", "184"), "mobilenet-v2": ("1'200", "1210")},
    ("NVIDIA Quadro K620", "TFLite", "float16"): {
        "dense1": ("5", "1"), "conv3dense1": ("80", "30"), "mobilenet-v2": ("1'100", "314")},
}

SCAN_SOURCE = (
    "P. Damle, P. Jayakumar, 'Optimizing Inference on Heterogeneous Platforms' (CS 6501), Table 1, "
    "matrix-vector multiplication, mean of 100 trials (seed 001); the dense-layer scan is a plot there, no figures"
)
SCAN_SIDES = (64, 128, 256, 512, 1024)
# device -> time per inference [ms] at each side of SCAN_SIDES, as printed.
SCAN_STUDY: dict[str, tuple[str, ...]] = {
    "Edge TPU (with memory loading)": ("0.1518", "0.3469", "0.9515", "3.5786", "14.0721"),
    "GTX 1650 (with memory loading)": ("0.2009", "0.3865", "0.4294", "0.6712", "1.3720"),
    "Edge TPU (inference only)": ("0.0586", "0.2931", "0.9932", "3.4194", "14.0038"),
    "GTX 1650 (inference only)": ("0.0624", "0.1252", "0.0718", "0.0930", "0.1106"),
    "Intel Xeon @ 2.2GHz": ("0.0412", "0.0687", "0.0518", "0.0661", "0.1555"),
}

# ---------------------------------------------------------------------------------------------------------------
# What is measured: the rows of each table as (label, backend, precision).

LARTPC_ROWS = (
    ("TensorFlow", "tensorflow", "fp32"),
    ("LiteRT not optimised", "litert", "fp32"),
    ("LiteRT dynamic-range int8", "litert", "int8-dynamic"),
    ("LiteRT float16", "litert", "fp16"),
    ("LiteRT integer (int8)", "litert", "int8"),
)
EDGE_TPU = ("edgetpu", "edgetpu", "uint8")  # backend, device, precision: the Edge TPU takes uint8 only
GPU = "cuda"
EDGE_ROWS = (
    ("TensorFlow (Keras)", "tensorflow", "fp32"),
    ("LiteRT", "litert", "fp32"),
    ("LiteRT", "litert", "fp16"),
    ("LiteRT", "litert", "int8"),
    ("ONNX Runtime", "onnxruntime", "fp32"),
    ("TFLM (MCU, emulated)", "tflm", "int8"),
)
SCAN_RUNTIMES = ("tensorflow", "litert", "onnxruntime")
SCAN_FAMILIES = ("matmul-scan", "dense-scan")


@dataclass(frozen=True)
class Plan:
    """The study's matrices, table by table, all stored in one run."""

    mode: str
    lartpc: tuple[Matrix, ...]
    edge: tuple[Matrix, ...]
    scans: tuple[Matrix, ...]

    @property
    def matrices(self) -> tuple[Matrix, ...]:
        """In the order they are measured: the quick tables first, the LArTPC networks (the longest to
        train and convert) last."""
        return (*self.edge, *self.scans, *self.lartpc)

    def models(self) -> list[str]:
        return list(dict.fromkeys(m for matrix in self.matrices for m in matrix.models))


def plan(mode: str = "default", tdp_w: float | None = None) -> Plan:
    """The study's cells. `quick`: the tiniest sizes and a few cells (for tests); `full`: the studies' sizes."""
    if mode not in MODES:
        raise ValueError(f"unknown study mode {mode!r}: choose from {', '.join(MODES)}")
    measure = QUICK_MEASURE if mode == "quick" else STUDY_MEASURE
    suffix = {"quick": ":tiny", "default": "", "full": ":full"}[mode]

    def matrix(models: Iterable[str], backends: Sequence[str], batches: Sequence[int], precisions: Sequence[str],
               devices: Sequence[str] | None = None) -> Matrix:
        return Matrix(models=tuple(models), backends=tuple(backends), batch_sizes=tuple(batches),
                      precisions=tuple(precisions), devices=tuple(devices) if devices else None,
                      measure=measure, tdp_w=tdp_w)

    if mode == "quick":
        # ResNet50V2 converts for minutes even at its tiny size: a small CNN stands in for it
        lartpc_models, lartpc_precisions = (QUICK_LARTPC_STAND_IN,), ("fp32", "int8")
        edge_models, edge_rows = ("dense1:tiny",), (("litert", "fp32"),)
        sides, scan_runtimes = (64,), ("litert",)
    else:
        lartpc_models = tuple(m + suffix for m in LARTPC_STUDY)
        lartpc_precisions = tuple(p for _, b, p in LARTPC_ROWS if b == "litert")
        edge_models = tuple(m + suffix for m in EDGE_MODELS)
        edge_rows = tuple((b, p) for _, b, p in EDGE_ROWS)
        sides, scan_runtimes = SCAN_SIDES, SCAN_RUNTIMES
    lartpc = (
        matrix(lartpc_models, ("tensorflow",), (1,), ("fp32",), ("cpu", GPU)),
        matrix(lartpc_models, ("litert",), (1,), lartpc_precisions, ("cpu", GPU)),
        matrix(lartpc_models, (EDGE_TPU[0],), (1,), (EDGE_TPU[2],), (EDGE_TPU[1],)),
    )
    edge = []
    for backend in dict.fromkeys(b for b, _ in edge_rows):
        precisions = tuple(p for b, p in edge_rows if b == backend)
        if backend == "tflm":  # the microcontroller rows: batch 1, and not MobileNet (too large, as in the study)
            edge.append(matrix([m for m in edge_models if not m.startswith("mobilenet")], (backend,), (1,),
                               precisions, ("mcu-emulated",)))
        else:
            edge.append(matrix(edge_models, (backend,), (1, 32), precisions))
    scan_models = tuple(f"{family}-{side}" + (":tiny" if mode == "quick" else "")
                        for family in SCAN_FAMILIES for side in sides)
    scans = (
        matrix(scan_models, scan_runtimes, (1,), ("fp32",)),
        matrix(scan_models, ("onnxruntime",), (1,), ("fp32",), (GPU,)),
        matrix(scan_models, (EDGE_TPU[0],), (1,), (EDGE_TPU[2],), (EDGE_TPU[1],)),
    )
    return Plan(mode, lartpc, tuple(edge), scans)


# ---------------------------------------------------------------------------------------------------------------
# Tables


@dataclass
class Table:
    """One printed block: a title, a header row, rows of strings and notes under it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.headers)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        out = [self.title, line(self.headers), line(["-" * w for w in widths]), *(line(r) for r in self.rows)]
        return "\n".join([*out, *(f"  {n}" for n in self.notes)])


class Index:
    """The run's records by (model without its size, backend, device, precision, batch)."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records: dict[tuple[str, str, str, str, int], Record] = {}
        for r in records:
            key = (base(r["model"]), r["backend"], r["device"], r["precision"], int(r["batch_size"]))
            self.records.setdefault(key, r)

    def get(self, model: str, backend: str, device: str, precision: str, batch: int = 1) -> Record | None:
        return self.records.get((model, backend, device, precision, batch))

    def models(self) -> list[str]:
        """The models (without their size), in the order they were measured."""
        return list(dict.fromkeys(k[0] for k in self.records))


def base(model: str) -> str:
    return model.partition(":")[0]


def per_sample_ms(r: Record | None) -> float | None:
    return r.get("per_sample_ms") if r and r.get("status") == "ok" else None


def figure(r: Record | None, value: Callable[[Record], float | None], reasons: dict[str, str], label: str) -> str:
    """A measured value as printed, or why there is none: `not here` (unavailable), `failed`, or `not run` (not
    in this run's matrix). The reasons of unavailable/failed cells are gathered into `reasons` (label -> reason)."""
    if r is None:
        return NOT_RUN
    if r["status"] == "ok":
        return num(value(r))
    reasons.setdefault(label, f"{r['status']}: {r['reason']}")
    return "not here" if r["status"] == "unavailable" else r["status"]


def size_mb(r: Record | None) -> float | None:
    return r["model_bytes"] / 1e6 if r and r.get("model_bytes") else None


def accuracy_text(r: Record | None) -> str:
    value = (r or {}).get("accuracy") or {}
    return f"{value['value'] * 100:.2f}%" if value.get("value") is not None else ""


def k_w_ms(r: Record) -> float | None:
    return (r.get("energy") or {}).get("k_w_ms")


NO_TDP = "no TDP"


def k_text(r: Record | None) -> str:
    """The K-function (TDP x time per inference) of a measured cell, as printed."""
    if per_sample_ms(r) is None:
        return NOT_APPLICABLE
    k = k_w_ms(r)  # type: ignore[arg-type]
    return NO_TDP if k is None else num(k)


def gflops(r: Record) -> float | None:
    return (r.get("roofline") or {}).get("gflops")


def reason_notes(reasons: Mapping[str, str]) -> list[str]:
    return [f"{label}: {reason}" for label, reason in reasons.items()]


def lartpc_tables(index: Index) -> list[Table]:
    tables = []
    for model in index.models():
        compared = model if model in LARTPC_STUDY else next(iter(LARTPC_STUDY))
        reasons: dict[str, str] = {}
        rows = []
        for label, backend, precision in LARTPC_ROWS:
            cpu = index.get(model, backend, "cpu", precision)
            gpu = index.get(model, backend, GPU, precision)
            tpu = index.get(model, *EDGE_TPU) if precision == "int8" else None
            if cpu is None and gpu is None:
                continue
            rows.append([
                label,
                num(size_mb(cpu)) or NOT_APPLICABLE,
                accuracy_text(cpu) or NOT_APPLICABLE,
                figure(cpu, per_sample_ms, reasons, f"{label} on cpu"),
                figure(gpu, per_sample_ms, reasons, "GPU"),
                figure(tpu, per_sample_ms, reasons, "Edge TPU") if precision == "int8" else NOT_APPLICABLE,
                k_text(cpu),
            ])
        notes = reason_notes(reasons)
        if any(row[-1] == NO_TDP for row in rows):
            notes.append(f"{NO_TDP}: the catalogue has no TDP for this CPU, so no K-function; give it with --tdp W")
        best = [k for label, backend, precision in LARTPC_ROWS
                if (r := index.get(model, backend, "cpu", precision)) and per_sample_ms(r) is not None
                and (k := k_w_ms(r)) is not None]
        study_k = LARTPC_K_STUDY[compared]
        notes.append(f"best K [W*ms]: here cpu {num(min(best)) if best else 'n/a'}; study CPU {study_k['CPU']}, "
                     f"GPU {study_k['GPU']}, Edge TPU {study_k['Edge TPU']}")
        tables.append(Table(
            f"(a) LArTPC {model}: ours (time per inference, batch 1, 1 thread)",
            ["optimisation", "size [MB]", "accuracy", "CPU [ms]", "GPU [ms]", "Edge TPU [ms]", "K cpu [W*ms]"],
            rows, notes,
        ))
        study_rows = [[label, *LARTPC_STUDY[compared]["tensorflow" if backend == "tensorflow" else precision]]
                      for label, backend, precision in LARTPC_ROWS]
        tables.append(Table(
            f"(a) LArTPC {compared}: the study ({LARTPC_DEVICES})",
            ["optimisation", "size [MB]", "accuracy", "CPU", "GPU", "Edge TPU"], study_rows,
            [f"source: {LARTPC_SOURCE}"] + ([] if compared == model else [
                f"{model} stood in for {compared} in this run (--quick): not comparable"]),
        ))
    return tables


def edge_tables(index: Index) -> list[Table]:
    models = index.models()
    if not models:
        return []
    reasons: dict[str, str] = {}
    rows = []
    for label, backend, precision in EDGE_ROWS:
        device = "mcu-emulated" if backend == "tflm" else "cpu"
        cells = [index.get(m, backend, device, precision, b) for m in models for b in (1, 32)]
        if all(c is None for c in cells):
            continue
        texts = [figure(c, lambda r: r["per_sample_ms"] * 1000.0, reasons, f"{label} {precision}") for c in cells]
        rows.append([f"{label} {precision}", *texts])
    headers = ["runtime precision", *(f"{m} b{b} [us]" for m in models for b in (1, 32))]
    ours = Table("(b) edge networks: ours (median time per sample on this CPU, 1 thread; b32: per sample in a "
                 "batch of 32)", headers, rows, reason_notes(reasons))
    study_rows = [[f"{hw} / {compiler} {dtype}", *(figures.get(m, ("", ""))[b] for m in models for b in (0, 1))]
                  for (hw, compiler, dtype), figures in EDGE_STUDY.items()]
    study = Table("(b) edge networks: the study", ["hardware / compiler data type", *headers[1:]], study_rows,
                  [f"source: {EDGE_SOURCE}"])
    return [ours, study]


def scan_tables(index: Index) -> list[Table]:
    tables = []
    for family in SCAN_FAMILIES:
        sides = [s for s in SCAN_SIDES if f"{family}-{s}" in index.models()]
        if not sides:
            continue
        runtimes = [rt for rt in SCAN_RUNTIMES if any(index.get(f"{family}-{s}", rt, "cpu", "fp32") for s in sides)]
        with_gflops = [rt for rt in runtimes
                       if any((r := index.get(f"{family}-{s}", rt, "cpu", "fp32")) and gflops(r) for s in sides)]
        reasons: dict[str, str] = {}
        rows = []
        for side in sides:
            model = f"{family}-{side}"
            cpu = [index.get(model, rt, "cpu", "fp32") for rt in runtimes]
            row = [str(side), *(figure(r, per_sample_ms, reasons, rt) for r, rt in zip(cpu, runtimes, strict=True))]
            row += [num(gflops(r)) if per_sample_ms(r := index.get(model, rt, "cpu", "fp32")) and gflops(r)
                    else NOT_APPLICABLE for rt in with_gflops]
            row.append(figure(index.get(model, "onnxruntime", GPU, "fp32"), per_sample_ms, reasons, "GPU"))
            row.append(figure(index.get(model, *EDGE_TPU), per_sample_ms, reasons, "Edge TPU"))
            rows.append(row)
        headers = ["side", *(f"{rt} [ms]" for rt in runtimes), *(f"{rt} [GFLOP/s]" for rt in with_gflops),
                   "GPU [ms]", "Edge TPU [ms]"]
        what = "matrix x vector" if family == "matmul-scan" else "dense net side -> side -> side -> 10"
        tables.append(Table(f"(c) {family} ({what}): ours (time per inference on this CPU, batch 1, 1 thread)",
                            headers, rows, reason_notes(reasons)))
    if any(t.title.startswith("(c) matmul-scan") for t in tables):
        devices = list(SCAN_STUDY)
        study_rows = [[str(side), *(SCAN_STUDY[d][i] for d in devices)] for i, side in enumerate(SCAN_SIDES)]
        tables.append(Table("(c) matmul-scan: the study (time per inference [ms])", ["side", *devices], study_rows,
                            [f"source: {SCAN_SOURCE}"]))
    return tables


def tables(records: Sequence[Record], study: Plan) -> dict[str, list[Table]]:
    """The three tables (a, b, c) from a study run's records, each with the study's own figures beside it;
    `study` (the run's plan) says which models belong to which table."""

    def index(matrices: Sequence[Matrix]) -> Index:
        models = {m for matrix in matrices for m in matrix.models}
        return Index(r for r in records if r["model"] in models)

    return {"lartpc": lartpc_tables(index(study.lartpc)), "edge": edge_tables(index(study.edge)),
            "scans": scan_tables(index(study.scans))}


def render(found: Mapping[str, list[Table]]) -> str:
    blocks = [t.render() for part in found.values() for t in part]
    return "\n\n".join(blocks)
