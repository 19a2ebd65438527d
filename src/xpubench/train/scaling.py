"""The scaling model: a step is its busy part (input, forward, backward, optimizer), slowed by N workers computing
at once on the same machine (contention), plus waiting for the slowest of N workers (straggler), the loop's
idle, and a ring all-reduce of the gradients, 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency per bucket.
Fitted on a measured 1-worker cell, the communication probe and the concurrent compute probe, never on the
N-worker run it predicts; it predicts the step time and scaling efficiency of N workers here and on the
catalogue's interconnects, beside the TPU study's 128-device figures. Framework-free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpubench.hardware.catalogue import INTERCONNECTS, Interconnect

# The CERN openlab TPU study (Cardoso & Vallecorsa, 2021), its 3D GAN at 128 devices.
STUDY = {
    "tpu_128_cores_epoch_s": 28.0,
    "gpu_128_epoch_s": 34.0,
    "forward_share": 0.38,
    "backward_share": 0.61,
    "tpu_idle_share": 0.007,
    "gpu_idle_share": 0.029,
}
PREDICT_WORKERS = (4, 8, 16, 32, 64, 128)


def ring_allreduce_s(workers: int, nbytes: float, bandwidth_bps: float, latency_s: float, messages: int = 1) -> float:
    """A ring all-reduce: each worker sends and receives 2(N-1)/N of the bytes in 2(N-1) steps, for each of
    `messages` buckets sent one after the other."""
    if workers <= 1:
        return 0.0
    return 2 * (workers - 1) / workers * nbytes / bandwidth_bps + 2 * (workers - 1) * latency_s * messages


def expected_max(samples: Sequence[float], n: int) -> float:
    """E[max of n independent draws] from the samples' empirical distribution: the k-th smallest of m samples is
    the maximum with probability (k/m)^n - ((k-1)/m)^n."""
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    m = ordered.size
    if m == 0:
        return 0.0
    k = np.arange(1, m + 1)
    return float(np.sum(ordered * ((k / m) ** n - ((k - 1) / m) ** n)))


def straggler_s(samples: Sequence[float], n: int) -> float:
    """What a synchronous step of n workers waits for the slowest: E[max of n step times] - their mean."""
    if n <= 1 or len(samples) == 0:
        return 0.0
    return expected_max(samples, n) - float(np.mean(samples))


@dataclass(frozen=True)
class ScalingModel:
    compute_s_per_sample: float  # forward + backward, one worker alone
    input_s_per_sample: float
    optimizer_s: float  # per step
    idle_s: float  # per step, outside every phase
    gradient_bytes: int
    local_batch: int  # the batch it was fitted at
    probe_bandwidth_bps: float
    probe_latency_s: float
    allreduce_messages: int = 1  # buckets per step, each a ring of its own latency
    threads: int = 1  # intra-op threads per worker, the same in the 1-worker fit as in the N-worker runs
    # The concurrent compute probe: per-step busy times (s) of one copy alone and of `contention_workers` copies
    # at once on this machine. Contention applies here up to that count; on the catalogue's hardware one worker
    # per device is assumed (factor 1), and the straggler term is drawn from the alone samples.
    contention_workers: int = 1
    busy_alone_s: tuple[float, ...] = ()
    busy_concurrent_s: tuple[float, ...] = ()
    # The work before each of a step's sync points (one column per point), alone and concurrent: at each point the
    # workers wait for the slowest, so the straggler term is a sum over the points.
    segments_alone_s: tuple[tuple[float, ...], ...] = ()
    segments_concurrent_s: tuple[tuple[float, ...], ...] = ()
    # The 1-worker step's own all-reduce: the engine's path around each collective (hook, hand-off to its
    # communication thread and back), paid at every N; the ring's transfer comes on top of it.
    collective_overhead_s: float = 0.0
    # What the step's all-reduce costs more when it follows compute than right after a barrier (the probe's mean
    # after the step's gaps - its median after a barrier): threads woken on this host, paid here at N >= 2.
    probe_resume_s: float = 0.0

    @classmethod
    def fit(cls, one_worker: dict[str, Any], probe: dict[str, Any], concurrent: dict[str, Any] | None = None,
            threads: int = 1) -> ScalingModel:
        """From a 1-worker cell's scenario_result, the probe's figures and the concurrent compute probe's."""
        b = one_worker["breakdown_ms"]
        batch = one_worker["local_batch"]
        concurrent = concurrent or {}
        return cls(
            compute_s_per_sample=(b["forward"] + b["backward"]) / 1e3 / batch,
            input_s_per_sample=b["input"] / 1e3 / batch,
            optimizer_s=b["optimizer"] / 1e3,
            idle_s=b["idle"] / 1e3,
            gradient_bytes=int(one_worker["gradient_bytes"]),
            local_batch=batch,
            probe_bandwidth_bps=probe["bandwidth_bps"],
            probe_latency_s=probe["alpha_s"],
            allreduce_messages=len(probe.get("bucket_bytes") or [0]),
            threads=threads,
            contention_workers=int(concurrent.get("copies", 1)),
            busy_alone_s=tuple(concurrent.get("alone_s", ())),
            busy_concurrent_s=tuple(concurrent.get("concurrent_s", ())),
            segments_alone_s=tuple(tuple(c) for c in concurrent.get("segments_alone_s", ())),
            segments_concurrent_s=tuple(tuple(c) for c in concurrent.get("segments_concurrent_s", ())),
            collective_overhead_s=b["allreduce"] / 1e3,
            probe_resume_s=float(probe.get("resume_s", 0.0)),
        )

    def contention(self, workers: int, link: Interconnect | None = None) -> float:
        """How much slower each worker's busy part is with `workers` computing at once: measured here (mean
        concurrent / mean alone busy step) for up to contention_workers; beyond them the workers are assumed to
        time-share the same CPUs (x workers / contention_workers); 1 with one worker per device (a link)."""
        if link is not None or workers <= 1 or not self.busy_alone_s or not self.busy_concurrent_s:
            return 1.0
        measured = float(np.mean(self.busy_concurrent_s) / np.mean(self.busy_alone_s))
        return measured * max(1.0, workers / self.contention_workers)

    def busy_s(self, local_batch: int) -> float:
        """One worker's busy part alone: input, forward, backward and optimizer."""
        return (self.compute_s_per_sample + self.input_s_per_sample) * local_batch + self.optimizer_s

    def straggler(self, workers: int, local_batch: int, link: Interconnect | None = None) -> float:
        """Waiting for the slowest of `workers` at each sync point of a step, summed, from the probe's samples of
        the work before each point (concurrent ones here, alone ones on a link; the busy steps when no points
        were timed), scaled to `local_batch`'s busy time."""
        columns = self.segments_alone_s if link is not None else self.segments_concurrent_s
        if not columns:
            columns = (self.busy_alone_s if link is not None else self.busy_concurrent_s,)
        wait = sum(straggler_s(column, workers) for column in columns)
        return wait * self.busy_s(local_batch) / self.busy_s(self.local_batch)

    def allreduce(self, workers: int, link: Interconnect | None = None) -> float:
        """The step's all-reduce: the engine's own path (as with one worker), and from 2 workers on the ring's
        transfer over `link` (None: the probe's loopback) and, here, its resumption after compute (a cost of
        this shared host's scheduling, not taken to the catalogue's hardware, whose link latency stands for it)."""
        bandwidth = link.bandwidth_bps if link else self.probe_bandwidth_bps
        latency = link.latency_s if link else self.probe_latency_s
        ring = ring_allreduce_s(workers, self.gradient_bytes, bandwidth, latency, self.allreduce_messages)
        return self.collective_overhead_s + ring + (self.probe_resume_s if workers > 1 and link is None else 0.0)

    def parts(self, workers: int, local_batch: int, link: Interconnect | None = None) -> dict[str, float]:
        """The predicted step's parts, s: busy (alone), contention (the extra from computing at once),
        straggler, idle and allreduce (the engine's overhead + the ring); they sum to step_s."""
        busy = self.busy_s(local_batch)
        return {"busy_s": busy, "contention_s": busy * (self.contention(workers, link) - 1),
                "straggler_s": self.straggler(workers, local_batch, link), "idle_s": self.idle_s,
                "allreduce_s": self.allreduce(workers, link)}

    def step_s(self, workers: int, local_batch: int, link: Interconnect | None = None) -> float:
        """Predicted step time of `workers` workers at `local_batch` each, over `link` (None: here, loopback)."""
        return sum(self.parts(workers, local_batch, link).values())

    def efficiency(self, workers: int, scaling: str, batch: int, link: Interconnect | None = None) -> float:
        """Predicted efficiency against one worker: weak keeps `batch` per worker, strong splits it."""
        if scaling == "weak":
            return self.step_s(1, batch, link) / self.step_s(workers, batch, link)
        return self.step_s(1, batch, link) / (workers * self.step_s(workers, max(batch // workers, 1), link))

    def predictions(self, scaling: str, batch: int, workers: tuple[int, ...] = PREDICT_WORKERS) -> list[dict[str, Any]]:
        rows = []
        for link in INTERCONNECTS:
            for n in workers:
                local = batch if scaling == "weak" else max(batch // n, 1)
                step = self.step_s(n, local, link)
                comm = self.allreduce(n, link)
                rows.append({"interconnect": link.id, "workers": n, "scaling": scaling, "step_ms": step * 1e3,
                             "communication_share": comm / step,
                             "straggler_ms": self.straggler(n, local, link) * 1e3,
                             "efficiency": self.efficiency(n, scaling, batch, link)})
        return rows


def render(model: ScalingModel, rows: list[dict[str, Any]]) -> str:
    """The predictions as a table, with the study's 128-device figures beside them."""
    n = model.contention_workers
    lines = [f"scaling model: compute {model.compute_s_per_sample * 1e3:.3g} ms/sample, optimizer "
             f"{model.optimizer_s * 1e3:.3g} ms, idle {model.idle_s * 1e3:.3g} ms per step ({model.threads} "
             f"thread(s) per worker, as in the 1-worker fit), gradients {model.gradient_bytes} B in "
             f"{model.allreduce_messages} bucket(s); probe (gloo, loopback): {model.probe_bandwidth_bps / 1e9:.3g} "
             f"GB/s, {model.probe_latency_s * 1e6:.3g} us per message, +{model.probe_resume_s * 1e3:.3g} ms a step "
             "when the all-reduce follows compute (here only)",
             f"concurrent compute probe: {n} copies at once run each step x{model.contention(n):.3g} as slow "
             f"as one alone, and wait {model.straggler(n, model.local_batch) * 1e3:.3g} ms for the slowest "
             f"(E[max of {n}] - mean); on the interconnects below: one worker per device (no contention), "
             "the wait drawn from the alone steps",
             f"{'interconnect':<12} {'workers':>7} {'scaling':>7} {'step ms':>9} {'comm %':>7} {'wait ms':>8} "
             f"{'efficiency':>10}"]
    for r in rows:
        lines.append(f"{r['interconnect']:<12} {r['workers']:>7} {r['scaling']:>7} {r['step_ms']:>9.4g} "
                     f"{r['communication_share'] * 100:>7.2f} {r['straggler_ms']:>8.3g} {r['efficiency'] * 100:>9.1f}%")
    s = STUDY
    lines.append(f"TPU study (3D GAN, 128 devices): {s['tpu_128_cores_epoch_s']:g} s/epoch on 128 TPU cores, "
                 f"{s['gpu_128_epoch_s']:g} s on 128 GPUs, near-linear speed-up; forward {s['forward_share']:.0%}, "
                 f"backprop {s['backward_share']:.0%}; idle {s['tpu_idle_share']:.1%} (TPU) / "
                 f"{s['gpu_idle_share']:.1%} (GPU), mostly all-reduce")
    return "\n".join(lines)
