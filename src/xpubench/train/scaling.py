"""The scaling model: a step is compute (per sample) + optimizer + input + idle + a ring all-reduce of the
gradients, 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency. Fitted on a measured 1-worker cell and the
communication probe; it predicts the step time and the scaling efficiency of N workers on the catalogue's
interconnects, beside the TPU study's 128-device figures. Framework-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def ring_allreduce_s(workers: int, nbytes: float, bandwidth_bps: float, latency_s: float) -> float:
    """A ring all-reduce: each worker sends and receives 2(N-1)/N of the bytes in 2(N-1) steps."""
    if workers <= 1:
        return 0.0
    return 2 * (workers - 1) / workers * nbytes / bandwidth_bps + 2 * (workers - 1) * latency_s


@dataclass(frozen=True)
class ScalingModel:
    compute_s_per_sample: float  # forward + backward, one worker
    input_s_per_sample: float
    optimizer_s: float  # per step
    idle_s: float  # per step, outside every phase
    gradient_bytes: int
    local_batch: int  # the batch it was fitted at
    probe_bandwidth_bps: float
    probe_latency_s: float

    @classmethod
    def fit(cls, one_worker: dict[str, Any], probe: dict[str, float]) -> ScalingModel:
        """From a 1-worker cell's scenario_result and the probe's figures."""
        b = one_worker["breakdown_ms"]
        batch = one_worker["local_batch"]
        return cls(
            compute_s_per_sample=(b["forward"] + b["backward"]) / 1e3 / batch,
            input_s_per_sample=b["input"] / 1e3 / batch,
            optimizer_s=b["optimizer"] / 1e3,
            idle_s=b["idle"] / 1e3,
            gradient_bytes=int(one_worker["gradient_bytes"]),
            local_batch=batch,
            probe_bandwidth_bps=probe["bandwidth_bps"],
            probe_latency_s=probe["alpha_s"],
        )

    def step_s(self, workers: int, local_batch: int, link: Interconnect | None = None) -> float:
        """Predicted step time of `workers` workers at `local_batch` each, over `link` (None: the probe's)."""
        bandwidth = link.bandwidth_bps if link else self.probe_bandwidth_bps
        latency = link.latency_s if link else self.probe_latency_s
        return ((self.compute_s_per_sample + self.input_s_per_sample) * local_batch + self.optimizer_s + self.idle_s
                + ring_allreduce_s(workers, self.gradient_bytes, bandwidth, latency))

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
                comm = ring_allreduce_s(n, self.gradient_bytes, link.bandwidth_bps, link.latency_s)
                rows.append({"interconnect": link.id, "workers": n, "scaling": scaling, "step_ms": step * 1e3,
                             "communication_share": comm / step,
                             "efficiency": self.efficiency(n, scaling, batch, link)})
        return rows


def render(model: ScalingModel, rows: list[dict[str, Any]]) -> str:
    """The predictions as a table, with the study's 128-device figures beside them."""
    lines = [f"scaling model: compute {model.compute_s_per_sample * 1e3:.3g} ms/sample, optimizer "
             f"{model.optimizer_s * 1e3:.3g} ms, idle {model.idle_s * 1e3:.3g} ms per step, gradients "
             f"{model.gradient_bytes} B; probe (gloo, loopback): {model.probe_bandwidth_bps / 1e9:.3g} GB/s, "
             f"{model.probe_latency_s * 1e6:.3g} us per message",
             f"{'interconnect':<12} {'workers':>7} {'scaling':>7} {'step ms':>9} {'comm %':>7} {'efficiency':>10}"]
    for r in rows:
        lines.append(f"{r['interconnect']:<12} {r['workers']:>7} {r['scaling']:>7} {r['step_ms']:>9.4g} "
                     f"{r['communication_share'] * 100:>7.2f} {r['efficiency'] * 100:>9.1f}%")
    s = STUDY
    lines.append(f"TPU study (3D GAN, 128 devices): {s['tpu_128_cores_epoch_s']:g} s/epoch on 128 TPU cores, "
                 f"{s['gpu_128_epoch_s']:g} s on 128 GPUs, near-linear speed-up; forward {s['forward_share']:.0%}, "
                 f"backprop {s['backward_share']:.0%}; idle {s['tpu_idle_share']:.1%} (TPU) / "
                 f"{s['gpu_idle_share']:.1%} (GPU), mostly all-reduce")
    return "\n".join(lines)
