"""The service model: a served model's throughput and latency at N clients in a closed loop, fitted from a batch
sweep (service time per batch size) and some measured levels, and checked against the levels left out of the fit.

N requests circulate through a closed queueing network, solved exactly for 1..N by mean value analysis (Reiser and
Lavenberg, 1980):
- the clients' own serial work per request, `client_ms` (serialising, the protocol's client): one queue, as the
  client processes share their CPUs;
- the server, a load-dependent station: with j requests there, its K instances run batches of
  b = min(B, j / min(j, K)) requests in S(b) = s0 + s1 b ms each, and every request also costs `front_ms` of the
  server's serial work (the protocol's server, the batcher). On a CPU server both share its cores, so a request
  takes front + S(b) / (b min(j, K)) of its time (a flow-equivalent server: the batcher always finds j waiting);
- the rest of the trip, `t_lat_ms`: a delay nothing queues for (transfer, wake-ups);
- `t_cpu_ms`: each client's own work between requests, a delay outside the request's latency.
t_lat, client and front are fitted; S(b), K and B are measured or stated by the server. One request alone takes
t_lat + client + front + S(1): nothing queues behind itself.

SONIC's terms (arXiv 2009.04509) follow: t_SONIC = (1 - p) t_CPU + t_GPU [1 + max(0, N_CPU/N_GPU - t_ideal/t_GPU)]
+ t_latency, with t_GPU = front + S(1) (the server's time for one request), t_latency = t_lat + client,
(1 - p) t_CPU = t_cpu and t_ideal = (1 - p) t_CPU + t_GPU + t_latency, one request's cycle alone; one instance
saturates at t_ideal / t_GPU clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

GRID = 28  # fit: points per parameter on the coarse grid, then as many again around its best
CHUNK_CELLS = 1 << 20  # fit: parameter sets x clients solved at once
HELD_OUT_TARGET = 0.15  # the model should predict held-out levels within this relative error


@dataclass(frozen=True)
class LoadPoint:
    """One measured closed-loop level: N clients (requests in flight), throughput req/s, mean latency ms."""

    clients: int
    throughput_rps: float
    latency_ms: float
    client_cpu_ms: float | None = None  # the clients' CPU time per request, where the generator measured it


@dataclass(frozen=True)
class ServiceModel:
    s0_ms: float
    s1_ms: float
    instances: int
    max_batch: int
    t_lat_ms: float
    client_ms: float
    front_ms: float
    t_cpu_ms: float = 0.0

    # -- the model ---------------------------------------------------------------------------------------

    def service_ms(self, batch: Any) -> Any:
        return self.s0_ms + self.s1_ms * np.asarray(batch, dtype=np.float64)

    def curve(self, most: int) -> dict[str, np.ndarray]:
        """Throughput (req/s), mean latency (ms) and mean batch at 1..`most` clients."""
        x, r, b = _solve(self, *(np.asarray([v]) for v in (self.t_lat_ms, self.client_ms, self.front_ms)), most)
        return {"clients": np.arange(1, most + 1), "throughput_rps": x[0] * 1e3, "latency_ms": r[0], "batch": b[0]}

    def predict(self, clients: int) -> tuple[float, float, float]:
        """(throughput req/s, mean latency ms, mean batch) at `clients` in a closed loop."""
        c = self.curve(clients)
        return float(c["throughput_rps"][-1]), float(c["latency_ms"][-1]), float(c["batch"][-1])

    @property
    def capacity_rps(self) -> float:
        """The server's most: every instance busy with full batches, and its serial work per request."""
        per_request = self.front_ms + float(self.service_ms(self.max_batch)) / (self.max_batch * self.instances)
        return 1e3 / per_request

    @property
    def client_limit_rps(self) -> float | None:
        """The most the clients can send, whatever the server: their serial work per request (None: none fitted).
        The clients are one queue: on several CPUs, `client_ms` is their serial equivalent."""
        return 1e3 / self.client_ms if self.client_ms > 0 else None

    def sonic_terms(self) -> dict[str, float]:
        t_gpu = self.front_ms + float(self.service_ms(1))
        t_latency = self.t_lat_ms + self.client_ms
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
        c = self.curve(most * self.instances)
        whole = slice(self.instances - 1, None, self.instances)  # k clients per instance, k = 1..most
        per_instance = int(np.argmax(c["throughput_rps"][whole] / c["latency_ms"][whole])) + 1
        n = per_instance * self.instances - 1
        return {"clients_per_instance": per_instance, "throughput_rps": float(c["throughput_rps"][n]),
                "latency_ms": float(c["latency_ms"][n]), "batch": float(c["batch"][n])}

    # -- fitting -------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, batch_ms: dict[int, float], points: Sequence[LoadPoint], instances: int, max_batch: int,
            t_cpu_ms: float = 0.0) -> ServiceModel:
        """S(b) by least squares on the batch sweep; t_lat, client and front on a grid (then a finer one around
        its best) that minimises the squared relative errors of throughput and latency over `points`. The clients'
        serial work is at most their measured CPU time per request (the median over `points`, where measured): a
        closed loop alone cannot tell the clients' queue from the server's."""
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
        shell = cls(s0, s1, max(1, instances), max(1, max_batch), 0.0, 0.0, 0.0, t_cpu_ms)
        # One request alone spends at most the lowest latency measured outside S(1): each term lies below it.
        top = max(min(p.latency_ms for p in points) - s0 - s1, 1e-3)
        measured = [p.client_cpu_ms for p in points if p.client_cpu_ms is not None]
        highest = (top, min(top, float(np.median(measured))) if measured else top, top)
        axes = [np.linspace(0.0, h, GRID) for h in highest]
        for _ in range(2):
            t_lat, client, front = (a.ravel() for a in np.meshgrid(*axes, indexing="ij"))
            loss = _loss(shell, t_lat, client, front, points)
            i = int(np.argmin(loss))
            best = (t_lat[i], client[i], front[i])
            steps = [float(a[1] - a[0]) for a in axes]
            axes = [np.linspace(max(v - d, 0.0), min(v + d, h), GRID) for v, d, h in zip(best, steps, highest,
                                                                                        strict=True)]
        return cls(s0, s1, shell.instances, shell.max_batch, *(float(v) for v in best), t_cpu_ms)

    def errors(self, points: Sequence[LoadPoint]) -> list[dict[str, float]]:
        """Predicted against measured at each point (one solve up to the highest): relative errors of throughput
        and latency."""
        if not points:
            return []
        c = self.curve(max(p.clients for p in points))
        rows = []
        for p in points:
            x, r, b = (float(c[k][p.clients - 1]) for k in ("throughput_rps", "latency_ms", "batch"))
            rows.append({"clients": p.clients, "measured_rps": p.throughput_rps, "predicted_rps": x,
                         "throughput_error": x / p.throughput_rps - 1, "measured_ms": p.latency_ms,
                         "predicted_ms": r, "latency_error": r / p.latency_ms - 1, "batch": b})
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "capacity_rps": self.capacity_rps, "client_limit_rps": self.client_limit_rps,
                "sonic": self.sonic_terms()}


def _loss(shell: ServiceModel, t_lat: np.ndarray, client: np.ndarray, front: np.ndarray,
          points: Sequence[LoadPoint]) -> np.ndarray:
    """The fit's loss for each parameter set, solved a chunk of sets at a time: memory stays near CHUNK_CELLS
    floats per array however many clients the highest level had."""
    most = max(p.clients for p in points)
    chunk = max(1, CHUNK_CELLS // (most + 1))
    loss = np.zeros(t_lat.size)
    for start in range(0, t_lat.size, chunk):
        part = slice(start, start + chunk)
        x, r, _ = _solve(shell, t_lat[part], client[part], front[part], most)
        for p in points:
            loss[part] += (x[:, p.clients - 1] * 1e3 / p.throughput_rps - 1) ** 2 + \
                (r[:, p.clients - 1] / p.latency_ms - 1) ** 2
    return loss


def _solve(m: ServiceModel, t_lat: np.ndarray, client: np.ndarray, front: np.ndarray,
           most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean value analysis for 1..`most` requests in flight, for each parameter set (one per row): throughput
    (req/ms), mean latency (ms) and the server's mean batch, each of shape (sets, most)."""
    sets = t_lat.size
    j = np.arange(1, most + 1, dtype=np.float64)
    busy = np.minimum(j, m.instances)
    batch = np.minimum(m.max_batch, j / busy)
    own = m.service_ms(batch) / (batch * busy)  # the instances' time per request with j at the server
    per_request = front[:, None] + own[None, :]  # 1 / its rate with j there
    queue = np.zeros(sets)  # requests at the clients' queue with n - 1 in flight
    marginal = np.zeros((sets, most + 1))  # P(j at the server | n - 1 in flight)
    marginal[:, 0] = 1.0
    x_all, r_all, b_all = (np.zeros((sets, most)) for _ in range(3))
    for n in range(1, most + 1):
        at_client = client * (1 + queue)
        at_server = np.sum(j[:n] * per_request[:, :n] * marginal[:, :n], axis=1)
        latency = t_lat + at_client + at_server
        x = n / (m.t_cpu_ms + latency)
        queue = x * at_client
        given_n = x[:, None] * per_request[:, :n] * marginal[:, :n]  # P(j at the server | n), j = 1..n
        given_n /= np.maximum(given_n.sum(axis=1, keepdims=True), 1.0)  # rounding may push the sum past 1
        marginal = np.zeros((sets, most + 1))
        marginal[:, 1:n + 1] = given_n
        marginal[:, 0] = 1 - given_n.sum(axis=1)
        executions = np.sum(given_n / (per_request[:, :n] * batch[None, :n]), axis=1)  # batches per ms
        x_all[:, n - 1], r_all[:, n - 1] = x, latency
        b_all[:, n - 1] = np.clip(x / np.maximum(executions, 1e-12), 1.0, m.max_batch)
    return x_all, r_all, b_all


def median_rounds(records: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per concurrency, the record of its median round by throughput (the lower middle of an even count) among the
    ok closed-loop levels of stored load records: a level measured in several rounds is that one round."""
    found: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        sr = r.get("scenario_result") or {}
        if r.get("status") == "ok" and r.get("scenario") == "load" and sr.get("concurrency"):
            found.setdefault(int(sr["concurrency"]), []).append(r)
    median = {}
    for clients, rounds in sorted(found.items()):
        rounds.sort(key=lambda r: r["scenario_result"]["throughput_rps"])
        median[clients] = rounds[(len(rounds) - 1) // 2]
    return median


def points_from(records: Iterable[dict[str, Any]]) -> list[LoadPoint]:
    """The closed-loop levels of stored load records, one point per concurrency (its median round)."""
    return [LoadPoint(clients, float(r["scenario_result"]["throughput_rps"]), float(r["latency_ms"]["mean"]),
                      r["scenario_result"].get("client_cpu_ms")) for clients, r in median_rounds(records).items()]


def split_held_out(points: Sequence[LoadPoint]) -> tuple[list[LoadPoint], list[LoadPoint]]:
    """Fit on the first, the last and every other level; hold out the rest (levels the fit never saw)."""
    if len(points) < 3:
        return list(points), []
    keep = {0, len(points) - 1} | set(range(0, len(points), 2))
    return [p for i, p in enumerate(points) if i in keep], [p for i, p in enumerate(points) if i not in keep]

