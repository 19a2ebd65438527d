"""The service model: a served model's throughput and latency at N clients, fitted from a batch sweep (service
time per batch size) and some closed-loop levels, checked against the levels left out of the fit.

The server is K instances, each running batches of b requests in S(b) = s0 + s1 b ms, behind a front that spends
c ms of serial work per request (a transport's event loop); each request also spends t_lat ms in transfer and the
client, and each client t_cpu ms of its own work between requests. At a throughput X (req/ms) the dynamic batcher
forms batches of the requests that arrive during one service, b = clamp(X/K S(b), 1, B); the bottleneck's load is
U = max(X/K / (B / S(B)), X c) (full batches, or the front), and a request's latency is
R = t_lat + c + S(b) + alpha (S(b) + c) U / (1 - U): a queue that grows once batches can grow no more.
N clients in a closed loop give N = X (t_cpu + R): X is the root.
t_lat, c and alpha are fitted; S(b), K and B are measured or stated by the server.

SONIC's terms (arXiv 2009.04509) follow: t_SONIC = (1 - p) t_CPU + t_GPU [1 + max(0, N_CPU/N_GPU - t_ideal/t_GPU)]
+ t_latency, with t_GPU = S(1) (one request's service), t_latency = t_lat + c, (1 - p) t_CPU = t_cpu and t_ideal
the unsaturated cycle (1 - p) t_CPU + t_GPU + t_latency; one instance saturates at t_ideal / t_GPU clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BISECT_STEPS = 60
ALPHAS = np.linspace(0.0, 2.0, 21)
GRID = 40
HELD_OUT_TARGET = 0.15  # the model should predict held-out levels within this relative error


@dataclass(frozen=True)
class LoadPoint:
    """One measured closed-loop level: N clients (requests in flight), throughput req/s, mean latency ms."""

    clients: int
    throughput_rps: float
    latency_ms: float


@dataclass(frozen=True)
class ServiceModel:
    s0_ms: float
    s1_ms: float
    instances: int
    max_batch: int
    t_lat_ms: float
    front_ms: float
    alpha: float
    t_cpu_ms: float = 0.0

    # -- the model ---------------------------------------------------------------------------------------

    def service_ms(self, batch: Any) -> Any:
        return self.s0_ms + self.s1_ms * np.asarray(batch, dtype=np.float64)

    def predict(self, clients: int) -> tuple[float, float, float]:
        """(throughput req/s, mean latency ms, mean batch) at `clients` in a closed loop."""
        x, r, b = _solve(np.asarray([self.t_lat_ms]), np.asarray([self.front_ms]), np.asarray([self.alpha]),
                         self, float(clients))
        return float(x[0]) * 1e3, float(r[0]), float(b[0])

    @property
    def capacity_rps(self) -> float:
        """The throughput no load exceeds: the instances at full batches, or the front's serial work."""
        batches = self.instances * self.max_batch / float(self.service_ms(self.max_batch))
        return 1e3 * min(batches, 1 / self.front_ms if self.front_ms > 0 else np.inf)

    def sonic_terms(self) -> dict[str, float]:
        t_gpu = float(self.service_ms(1))
        t_latency = self.t_lat_ms + self.front_ms
        t_ideal = self.t_cpu_ms + t_gpu + t_latency
        return {"t_cpu_ms": self.t_cpu_ms, "t_gpu_ms": t_gpu, "t_latency_ms": t_latency, "t_ideal_ms": t_ideal,
                "saturation_clients_per_instance": t_ideal / t_gpu}

    def t_sonic_ms(self, clients: int) -> float:
        """SONIC's time per event (no batching) at `clients` clients of this server."""
        t = self.sonic_terms()
        ratio = clients / self.instances
        return t["t_cpu_ms"] + t["t_gpu_ms"] * (1 + max(0.0, ratio - t["t_ideal_ms"] / t["t_gpu_ms"])) + \
            t["t_latency_ms"]

    def best_ratio(self, most: int = 512) -> dict[str, float]:
        """The clients per instance where throughput / latency is highest (Kleinrock's operating point: past it,
        more clients buy less throughput than they cost in latency), with its throughput and latency."""
        best = max(range(1, most + 1), key=lambda n: (lambda p: p[0] / p[1])(self.predict(n * self.instances)))
        x, r, b = self.predict(best * self.instances)
        return {"clients_per_instance": best, "throughput_rps": x, "latency_ms": r, "batch": b}

    # -- fitting -------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, batch_ms: dict[int, float], points: Sequence[LoadPoint], instances: int, max_batch: int,
            t_cpu_ms: float = 0.0) -> ServiceModel:
        """S(b) by least squares on the batch sweep; t_lat, c and alpha by a grid that minimises the squared
        relative errors of throughput and latency over `points`."""
        if not points:
            raise ValueError("the service model needs at least one measured load level")
        sizes = np.asarray(sorted(batch_ms), dtype=np.float64)
        times = np.asarray([batch_ms[int(b)] for b in sizes])
        if sizes.size >= 2:
            s1, s0 = np.polyfit(sizes, times, 1)
            s1 = max(float(s1), 0.0)
            s0 = max(float(np.mean(times - s1 * sizes)), 1e-6)
        else:
            s0, s1 = float(times[0]) if times.size else 1e-3, 0.0
        max_batch = max(1, max_batch)
        shell = cls(s0, s1, max(1, instances), max_batch, 0.0, 0.0, 0.0, t_cpu_ms)
        best_x = max(p.throughput_rps for p in points) / 1e3
        lowest_r = min(p.latency_ms for p in points)
        lat = np.linspace(0.0, lowest_r, GRID)
        front = np.linspace(0.0, 0.999 / best_x, GRID)
        t_lat, c, alpha = (a.ravel() for a in np.meshgrid(lat, front, ALPHAS, indexing="ij"))
        loss = np.zeros(t_lat.size)
        for p in points:
            x, r, _ = _solve(t_lat, c, alpha, shell, float(p.clients))
            loss += (x * 1e3 / p.throughput_rps - 1) ** 2 + (r / p.latency_ms - 1) ** 2
        i = int(np.argmin(loss))
        return cls(s0, s1, shell.instances, max_batch, float(t_lat[i]), float(c[i]), float(alpha[i]), t_cpu_ms)

    def errors(self, points: Iterable[LoadPoint]) -> list[dict[str, float]]:
        """Predicted against measured at each point: relative errors of throughput and latency."""
        rows = []
        for p in points:
            x, r, b = self.predict(p.clients)
            rows.append({"clients": p.clients, "measured_rps": p.throughput_rps, "predicted_rps": x,
                         "throughput_error": x / p.throughput_rps - 1, "measured_ms": p.latency_ms,
                         "predicted_ms": r, "latency_error": r / p.latency_ms - 1, "batch": b})
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "capacity_rps": self.capacity_rps, "sonic": self.sonic_terms()}


def _solve(t_lat: np.ndarray, front: np.ndarray, alpha: np.ndarray, m: ServiceModel,
           clients: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The throughput X (req/ms) where X (t_cpu + R(X)) = clients, for each parameter set; and R and b there."""
    batches = m.instances * m.max_batch / float(m.service_ms(m.max_batch))
    cap = np.minimum(batches, np.where(front > 0, 1 / np.maximum(front, 1e-12), np.inf))
    lo, hi = np.zeros_like(t_lat), cap * (1 - 1e-9)
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        r, _ = _latency(mid, t_lat, front, alpha, m)
        over = mid * (m.t_cpu_ms + r) > clients
        hi = np.where(over, mid, hi)
        lo = np.where(over, lo, mid)
    r, b = _latency(lo, t_lat, front, alpha, m)
    return lo, r, b


def _latency(x: np.ndarray, t_lat: np.ndarray, front: np.ndarray, alpha: np.ndarray,
             m: ServiceModel) -> tuple[np.ndarray, np.ndarray]:
    per_instance = x / m.instances
    grow = per_instance * m.s1_ms
    batch = np.where(grow < 1, per_instance * m.s0_ms / np.maximum(1 - grow, 1e-12), m.max_batch)
    batch = np.clip(batch, 1, m.max_batch)
    service = m.s0_ms + m.s1_ms * batch
    # How near the bottleneck is to its capacity: full batches on every instance, or the front's serial work.
    # (A batcher that still has room to grow its batches is never saturated: its batches grow instead.)
    full = m.max_batch / float(m.service_ms(m.max_batch))
    busy = np.minimum(np.maximum(per_instance / full, x * front), 1 - 1e-9)
    return t_lat + front + service + alpha * (service + front) * busy / (1 - busy), batch


def points_from(records: Iterable[dict[str, Any]]) -> list[LoadPoint]:
    """The closed-loop levels of stored load records."""
    found = []
    for r in records:
        sr = r.get("scenario_result") or {}
        if r.get("status") == "ok" and r.get("scenario") == "load" and sr.get("concurrency"):
            found.append(LoadPoint(int(sr["concurrency"]), float(sr["throughput_rps"]),
                                   float(r["latency_ms"]["mean"])))
    return sorted(found, key=lambda p: p.clients)


def service_from(records: Iterable[dict[str, Any]]) -> dict[int, float]:
    """Service time per batch size from the server's statistics over every level (weighted by executions)."""
    total: dict[int, list[float]] = {}
    for r in records:
        server = (r.get("scenario_result") or {}).get("server") or {}
        counts = {h["batch_size"]: h["executions"] for h in server.get("batch_histogram", [])}
        for entry in server.get("service_ms", []):
            n = counts.get(entry["batch_size"], 0)
            acc = total.setdefault(int(entry["batch_size"]), [0.0, 0.0])
            acc[0] += entry["ms"] * n
            acc[1] += n
    return {b: s / n for b, (s, n) in total.items() if n > 0}


def split_held_out(points: Sequence[LoadPoint]) -> tuple[list[LoadPoint], list[LoadPoint]]:
    """Fit on the first, the last and every other level; hold out the rest (levels the fit never saw)."""
    if len(points) < 3:
        return list(points), []
    keep = {0, len(points) - 1} | set(range(0, len(points), 2))
    return [p for i, p in enumerate(points) if i in keep], [p for i, p in enumerate(points) if i not in keep]


def render(model: ServiceModel, checks: Sequence[dict[str, float]], title: str = "service model") -> str:
    t = model.sonic_terms()
    best = model.best_ratio()
    lines = [
        f"{title}: S(b) = {model.s0_ms:.3g} + {model.s1_ms:.3g} b ms, {model.instances} instance(s), max batch "
        f"{model.max_batch}; fitted t_lat {model.t_lat_ms:.3g} ms, front {model.front_ms:.3g} ms/request, queue "
        f"factor {model.alpha:.2g}; capacity {model.capacity_rps:.4g} req/s",
        f"  t_SONIC terms: (1-p) t_CPU {t['t_cpu_ms']:.3g} ms, t_GPU {t['t_gpu_ms']:.3g} ms, t_latency "
        f"{t['t_latency_ms']:.3g} ms, t_ideal {t['t_ideal_ms']:.3g} ms; one instance saturates (no batching) at "
        f"{t['saturation_clients_per_instance']:.3g} clients",
        f"  best clients-to-server ratio: {best['clients_per_instance']} clients per instance "
        f"({best['throughput_rps']:.4g} req/s, {best['latency_ms']:.3g} ms, batch {best['batch']:.3g})",
    ]
    for c in checks:
        lines.append(f"  held out N={c['clients']}: throughput {c['measured_rps']:.4g} measured, "
                     f"{c['predicted_rps']:.4g} predicted ({c['throughput_error']:+.0%}); latency "
                     f"{c['measured_ms']:.3g} ms measured, {c['predicted_ms']:.3g} predicted "
                     f"({c['latency_error']:+.0%})")
    if checks:
        worst = max(max(abs(c["throughput_error"]), abs(c["latency_error"])) for c in checks)
        verdict = "within" if worst <= HELD_OUT_TARGET else "outside"
        lines.append(f"  largest held-out error {worst:.0%}: {verdict} the {HELD_OUT_TARGET:.0%} target")
    return "\n".join(lines)
