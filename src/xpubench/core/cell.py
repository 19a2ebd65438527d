"""A cell (one thing to measure) and its result record, as stored and as written to JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from xpubench.core import metrics
from xpubench.core.measure import Samples, Stability
from xpubench.core.stats import LatencyStats

STATUSES = ("ok", "unavailable", "failed")
TIMING_MODES = ("end-to-end", "compute")


@dataclass(frozen=True)
class Cell:
    """One (model, backend, device, precision, batch, threads, scenario) to measure."""

    model: str
    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 1
    threads: int = 1
    scenario: str = "single-stream"
    timing: str = "end-to-end"
    options: tuple[tuple[str, str], ...] = ()  # the backend's switches that differ from its defaults

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.timing not in TIMING_MODES:
            raise ValueError(f"unknown timing mode {self.timing!r}: choose from {', '.join(TIMING_MODES)}")

    @property
    def label(self) -> str:
        """The backend with its non-default options, e.g. `litert[xnnpack=off]`."""
        if not self.options:
            return self.backend
        return f"{self.backend}[{','.join(f'{k}={v}' for k, v in self.options)}]"

    @property
    def key(self) -> str:
        """Identifies the cell within a run (and matches cells across runs)."""
        return "/".join(
            str(v)
            for v in (
                self.model,
                self.label,
                self.device,
                self.precision,
                f"b{self.batch_size}",
                f"t{self.threads}",
                self.scenario,
                self.timing,
            )
        )


@dataclass(frozen=True)
class Energy:
    """The K-function, TDP x time per inference in W*ms (always that, where the TDP is known), and where a
    meter was read (source names it, e.g. "rapl:package-0", "nvml:0") the measured energy per inference:
    the meter's mean power over the timed loop minus the idle power, x busy time per inference."""

    k_w_ms: float | None
    tdp_w: float | None
    source: str  # "modelled" (only the K-function), a meter's name, or "unknown"
    # Measured only (None when modelled):
    joules_per_inference: float | None = None
    power_w: float | None = None  # the meter's mean power over the timed loop
    idle_w: float | None = None  # subtracted from power_w

    @classmethod
    def modelled(cls, tdp_w: float | None, per_sample_ms: float | None) -> Energy:
        k = metrics.k_function_w_ms(tdp_w, per_sample_ms)
        return cls(k_w_ms=k, tdp_w=tdp_w, source="unknown" if k is None else "modelled")

    @classmethod
    def measured(
        cls,
        reading: Any,
        idle_w: float | None,
        samples: Any,
        batch_size: int,
        tdp_w: float | None = None,
        throughput_sps: float | None = None,
        per_sample_ms: float | None = None,
    ) -> Energy:
        """From a meter's Reading (source, joules, seconds) over the timed loop of `samples` (Samples or
        the raw call times in ns, of `batch_size` samples each); metrics.energy_per_inference_j defines
        the figure. The K-function stays TDP x `per_sample_ms`."""
        import numpy as np

        samples_ns = np.asarray(getattr(samples, "samples_ns", samples))
        power = reading.joules / reading.seconds if reading.seconds > 0 else 0.0
        joules = metrics.energy_per_inference_j(
            power, idle_w, float(samples_ns.sum()) / 1e9, samples_ns.size * batch_size, throughput_sps
        )
        return cls(
            k_w_ms=metrics.k_function_w_ms(tdp_w, per_sample_ms),
            tdp_w=tdp_w,
            source=reading.source,
            joules_per_inference=joules,
            power_w=power,
            idle_w=idle_w,
        )

    def as_dict(self) -> dict[str, Any]:
        """The record's `energy`: the meter's figures appear only where a meter was read."""
        found = asdict(self)
        if self.source in ("modelled", "unknown"):
            for name in ("joules_per_inference", "power_w", "idle_w"):
                found.pop(name)
        return found


# Metrics that score class predictions: their models' outputs are class scores, whatever their shape.
CLASSIFICATION_METRICS = ("top1", "auc")
# An element of a map or regression output agrees with the reference when it is within this fraction
# of the largest |reference| value of its output (a scale-free tolerance: outputs come in any unit).
FIDELITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Fidelity:
    """A variant's outputs against the float32 reference's, on the same inputs.

    Class scores ([batch, classes], or the model's metric says so) get top-1 agreement; maps and
    regressions (segmentation [B, C, H, W], detection maps, continuous targets) get the relative error,
    the cosine similarity and the share of elements within a stated tolerance instead, since the argmax
    of a map's last axis is not a class and flips on differences of 1e-6.
    """

    max_abs: float
    mean_abs: float
    top1_agreement: float | None  # class scores only
    reference: str  # which runtime and artifact gave the reference
    relative_error: float | None = None  # ||output - reference|| / ||reference||, maps and regressions only
    cosine_similarity: float | None = None  # of the flattened outputs and reference, maps and regressions only
    within_tolerance: float | None = None  # share of elements with |output - reference| <= tolerance_rel x max|ref|
    tolerance_rel: float | None = None  # that tolerance, as a fraction of each output's largest |reference|

    @classmethod
    def compare(
        cls, outputs: list[Any], reference: list[Any], reference_name: str, metric: str | None = None
    ) -> Fidelity:
        """`metric` is the model's task metric, where it has one: it decides what counts as class scores."""
        import numpy as np

        outs = [np.asarray(o, np.float64) for o in outputs]
        refs = [np.asarray(r, np.float64) for r in reference]
        diffs = [np.abs(o - r) for o, r in zip(outs, refs, strict=True)]
        common = {
            "max_abs": float(max(d.max() for d in diffs)),
            "mean_abs": float(np.mean(np.concatenate([d.ravel() for d in diffs]))),
            "reference": reference_name,
        }
        if is_class_scores(outs[0], metric):
            agreement = float(np.mean(np.argmax(outs[0], axis=-1) == np.argmax(refs[0], axis=-1)))
            return cls(top1_agreement=agreement, **common)
        out, ref = np.concatenate([o.ravel() for o in outs]), np.concatenate([r.ravel() for r in refs])
        ref_norm, out_norm = float(np.linalg.norm(ref)), float(np.linalg.norm(out))
        within = [d <= FIDELITY_TOLERANCE * np.abs(r).max(initial=0.0) for d, r in zip(diffs, refs, strict=True)]
        return cls(
            top1_agreement=None,
            relative_error=float(np.linalg.norm(out - ref)) / ref_norm if ref_norm > 0 else None,
            cosine_similarity=float(out @ ref) / (out_norm * ref_norm) if out_norm > 0 and ref_norm > 0 else None,
            within_tolerance=float(np.mean(np.concatenate([w.ravel() for w in within]))),
            tolerance_rel=FIDELITY_TOLERANCE,
            **common,
        )


def is_class_scores(output: Any, metric: str | None = None) -> bool:
    """Whether a model's first output holds class scores: by its metric where it has one, else by
    shape, [batch, classes] with more than one class."""
    if metric is not None:
        return metric in CLASSIFICATION_METRICS and output.ndim >= 2 and output.shape[-1] > 1
    return output.ndim == 2 and output.shape[-1] > 1


@dataclass(frozen=True)
class CellResult:
    """Everything measured for one cell. `as_dict()` is the JSON record; its names are stable."""

    cell: Cell
    status: str
    reason: str = ""
    dataset: str | None = None
    latency: LatencyStats | None = None
    per_sample_ms: float | None = None
    throughput_sps: float | None = None
    runs: int = 0
    duration_s: float | None = None
    first_inference_ms: float | None = None
    stable: bool | None = None
    warnings: tuple[str, ...] = ()
    accuracy_metric: str | None = None
    accuracy_value: float | None = None
    model_bytes: int | None = None
    artifact: str | None = None
    energy: Energy = field(default_factory=lambda: Energy(None, None, "unknown"))
    stop_reason: str | None = None
    emulated: bool = False
    fidelity: Fidelity | None = None
    accuracy_delta: float | None = None  # accuracy minus the float32 reference's, same data
    delegated_fraction: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    samples_ns: Any = None  # np.ndarray of raw call times, kept for later statistics
    # The scenario's own figures (verdict, bound, knee and curve, LoadGen's summary, ...); None for single-stream.
    scenario_result: dict[str, Any] | None = None
    # $ per million inferences: usd_per_million, basis, device (catalogue entry); None when not in the catalogue
    price: dict[str, Any] | None = None
    # From the ONNX graph: flops, bytes, intensity, gflops, peak_gflops, peak_fraction, peak_under_load
    # (hardware/roofline.py)
    roofline: dict[str, Any] | None = None
    # The verdict's figures: tolerance, interval_halfwidth, window_drift, tail_ratio (core.measure.Stability)
    stability: dict[str, Any] | None = None
    # What the figures rest on: count of repeats, their medians and runs, the interval's method (run/repeats.py)
    repeats: dict[str, Any] | None = None
    # A split's own figures (its parts or stages, hetero/cell.py); None for every other cell
    split: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @classmethod
    def not_measured(cls, cell: Cell, status: str, reason: str, **extra: Any) -> CellResult:
        return cls(cell=cell, status=status, reason=reason, **extra)

    @classmethod
    def from_samples(
        cls,
        cell: Cell,
        samples: Samples,
        verdict: Stability,
        tdp_w: float | None,
        batch: int | None = None,
        throughput_sps: float | None = None,
        **extra: Any,
    ) -> CellResult:
        latency = LatencyStats.from_samples_ns(samples.samples_ns)
        # A scenario that picks its own batch passes it (`batch`) and may measure throughput its own way.
        batch = batch or cell.batch_size
        per_sample_ms = metrics.time_per_inference_ms(latency.median, batch)
        throughput = throughput_sps if throughput_sps is not None else metrics.busy_throughput_sps(
            samples.samples_ns, batch
        )
        return cls(
            cell=cell,
            status="ok",
            latency=latency,
            per_sample_ms=per_sample_ms,
            throughput_sps=throughput,
            runs=int(samples.samples_ns.size),
            duration_s=samples.duration_s,
            first_inference_ms=samples.first_ns / 1e6,
            stable=verdict.stable,
            warnings=verdict.warnings,
            stability=verdict.as_dict(),
            energy=Energy.modelled(tdp_w, per_sample_ms),
            stop_reason=samples.stop_reason,
            samples_ns=samples.samples_ns,
            **extra,
        )

    def as_dict(self, environment: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.cell
        return {
            "status": self.status,
            "reason": self.reason,
            "key": c.key,
            "model": c.model,
            "dataset": self.dataset,
            "backend": c.backend,
            "options": dict(c.options),
            "device": c.device,
            "precision": c.precision,
            "batch_size": c.batch_size,
            "threads": c.threads,
            "scenario": c.scenario,
            "timing": c.timing,
            "latency_ms": self.latency.as_dict() if self.latency else None,
            "per_sample_ms": self.per_sample_ms,
            "throughput_sps": self.throughput_sps,
            "runs": self.runs,
            "duration_s": self.duration_s,
            "first_inference_ms": self.first_inference_ms,
            "stable": self.stable,
            "warnings": list(self.warnings),
            "stability": self.stability,
            "repeats": self.repeats,
            "stop_reason": self.stop_reason,
            "accuracy": (
                {"metric": self.accuracy_metric, "value": self.accuracy_value}
                if self.accuracy_metric
                else None
            ),
            "accuracy_delta": self.accuracy_delta,
            "fidelity": asdict(self.fidelity) if self.fidelity else None,
            "delegated_fraction": self.delegated_fraction,
            "emulated": self.emulated,
            "details": self.details,
            "scenario_result": self.scenario_result,
            "model_bytes": self.model_bytes,
            "artifact": self.artifact,
            "energy": self.energy.as_dict(),
            "price": self.price,
            "roofline": self.roofline,
            "split": self.split,
            "environment": environment,
        }
