"""A training cell's figures from its workers' reports: the step's breakdown, the bound verdict, the scaling
efficiency, and the CellResult that is stored. Framework-free (numpy only).

Each worker times every step's phases on its own clock, one interval after the other: input wait, forward,
backward (its all-reduce, timed inside the engine's hook, taken out), all-reduce, optimizer, and idle (from
the end of the optimizer to the next step's start: the loop's own work and waiting for peers). The step time
is worker 0's wall time from one step's start to the next; the breakdown is the mean over every worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xpubench.core.cell import CellResult
from xpubench.core.measure import Samples, Stability, stability
from xpubench.train.spec import STRATEGIES, TrainSpec

PHASES = ("input", "forward", "backward", "allreduce", "optimizer", "idle")
GROUPS = {"compute": ("forward", "backward", "optimizer"), "communication": ("allreduce",), "input": ("input",)}


def verdict(shares: dict[str, float]) -> str:
    """compute-, communication- or input-bound: the group that takes the largest share of the step."""
    group = max(GROUPS, key=lambda g: shares[g])
    return f"{group}-bound"


def efficiency(samples_per_s: float, workers: int, baseline_samples_per_s: float) -> float:
    """Scaling efficiency against one worker: throughput over N x one worker's throughput. Weak scaling
    (fixed per-worker batch) makes it t1 / tN; strong scaling (fixed global batch) t1 / (N x tN)."""
    return samples_per_s / (workers * baseline_samples_per_s)


def summarise(spec: TrainSpec, reports: list[dict[str, Any]], steps_per_epoch: int) -> dict[str, Any]:
    """The training figures (the record's scenario_result) from every worker's report."""
    reports = sorted(reports, key=lambda r: r["rank"])
    first = reports[0]
    step_s = np.asarray(first["step_s"], dtype=np.float64)
    # The workers step together (an all-reduce each step): the step time is their mean, as the phases are.
    step_ms = float(np.mean([np.mean(r["step_s"]) for r in reports]) * 1e3)
    phases = {p: float(np.mean([np.mean(r["phases"][p]) for r in reports]) * 1e3) for p in PHASES}
    total = sum(phases.values())
    shares = {g: sum(phases[p] for p in members) / total for g, members in GROUPS.items()}
    shares["idle"] = phases["idle"] / total
    result: dict[str, Any] = {
        "verdict": verdict(shares),
        "engine": STRATEGIES[spec.strategy],
        "workers": spec.workers,
        "scaling": spec.scaling,
        "local_batch": spec.local_batch,
        "global_batch": spec.global_batch,
        "steps": int(step_s.size),
        "warmup_steps": spec.warmup,
        "step_ms": step_ms,
        "steps_per_epoch": steps_per_epoch,
        "epoch_s": steps_per_epoch * step_ms / 1e3,
        "samples_per_s": spec.global_batch / (step_ms / 1e3),
        "breakdown_ms": phases,
        "breakdown_sum_ms": total,
        "shares": shares,
        "forward_split": first.get("forward_split", "measured"),
        "allreduce_calls": first.get("allreduce_calls"),
        "gradient_bytes": first.get("gradient_bytes"),
        "allreduce_bucket_bytes": first.get("allreduce_bucket_bytes"),
        "parameters": first.get("parameters"),
        "input_delay_s": spec.input_delay_s,
        "efficiency": None,
        "efficiency_baseline": None,
        "validity": first.get("validity"),
    }
    if spec.checksums:
        table = [r.get("checksums", []) for r in reports]
        result["checksums"] = table  # [worker][step]
        result["weights_equal"] = weights_equal(table)
    return result


def weights_equal(table: list[list[float]], rtol: float = 1e-6) -> bool:
    """Whether every worker's weight checksum equals worker 0's after every reported step."""
    if not table or not table[0]:
        return False
    ref = np.asarray(table[0], dtype=np.float64)
    return all(len(row) == ref.size and np.allclose(row, ref, rtol=rtol, atol=0) for row in table[1:])


def cell_result(spec: TrainSpec, reports: list[dict[str, Any]], steps_per_epoch: int,
                details: dict[str, Any] | None = None, load_before: float | None = None) -> CellResult:
    """The stored result: worker 0's step times are the cell's raw samples (so `compare` tests them), the
    global batch its batch, and the training figures its scenario_result."""
    from xpubench.hardware.host import load_average

    result = summarise(spec, reports, steps_per_epoch)
    first = sorted(reports, key=lambda r: r["rank"])[0]
    samples_ns = (np.asarray(first["step_s"], dtype=np.float64) * 1e9).astype(np.int64)
    samples = Samples(first_ns=int(first.get("first_step_s", 0.0) * 1e9), warmup_runs=spec.warmup,
                      samples_ns=samples_ns, duration_s=float(np.sum(first["step_s"])),
                      stop_reason=f"{spec.steps} steps")
    verdict_on_noise: Stability = stability([samples_ns], load_before, load_average())
    return CellResult.from_samples(
        spec.cell(), samples, verdict_on_noise, None, batch=spec.global_batch,
        throughput_sps=result["samples_per_s"], scenario_result=result, details=details or {},
    )
