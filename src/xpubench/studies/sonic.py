"""`xpubench study sonic`: inference as a service (SONIC) measured here, beside the study's own figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from xpubench.core.measure import MeasureConfig
from xpubench.loadgen.model import (
    HELD_OUT_TARGET,
    LoadPoint,
    ServiceModel,
    median_rounds,
    points_from,
    split_held_out,
)
from xpubench.report.table import num
from xpubench.run.limits import LOAD_TRIALS
from xpubench.run.matrix import Matrix
from xpubench.studies.seeds import NOT_APPLICABLE, QUICK_MEASURE, STUDY_MEASURE, Table, base

Record = dict[str, Any]
MODES = ("quick", "default")
MODELS = ("facile", "toptag-resnet")
BACKEND, PRECISION = "onnxruntime", "fp32"  # the served variant, also measured in-process
MAX_BATCH = 32
# Two servers of the same variant: Triton's dynamic batching (no queue delay: a closed loop keeps the queue fed,
# and a delay would only add to every request at low load) against one request per execution.
POLICIES = (("dynamic", MAX_BATCH), ("none", 1))  # name -> --max-batch
SATURATION_SHARE = 0.9  # a curve saturates at the first level reaching this share of its highest throughput
UNREACHED = 10  # a clients' limit this many times the server's capacity is shown as none

SONIC_SOURCE = (
    "M. Liu, 'Real-time Artificial Intelligence with heterogeneous compute', IEEE Real-Time 2020, 'Single GPU "
    "server inference speedup' and 'Accelerating Proto-DUNE reconstruction' slides (seed 003); arXiv 2007.10359, "
    "2009.04509"
)
# Model -> the study's network, and its (CPU, GPU as-a-service, gain) per inference, as printed.
SONIC_NETWORKS = {"facile": "FACILE", "toptag-resnet": "ResNet top tag"}
SONIC_TIMES = {"facile": ("16 ms", "2 ms (GPU)", "8x (GPU)"),
               "toptag-resnet": ("~1 s", "1-2 ms (GPU/FPGA)", "500x")}
# ProtoDUNE's CNN on one NVIDIA T4: 11 s ~ t_preprocess + t_transmit + t_travel + t_GPU, as printed.
SONIC_TERMS = {"t_cpu_ms": "7 s (preprocess)", "t_gpu_ms": "1.8 s", "t_latency_ms": "2.4 s (2 transmit + 0.4 ping)",
               "t_ideal_ms": "11 s (ML module, served)",
               "cpu_alone": "220 s (ML module on CPU)", "saturation": "68 CPU processes per T4",
               "batching": "'significant gain'"}
SONIC_FORMULA = "t_SONIC = (1-p) t_CPU + t_GPU [1 + max(0, N_CPU/N_GPU - t_ideal/t_GPU)] + t_latency"


@dataclass(frozen=True)
class Plan:
    """What the study measures: the models in-process (a batch sweep), then each served under each policy and
    loaded at each concurrency (closed loop) for `duration_s` a level, every level once a round: a level's figures
    are its median over the rounds."""

    mode: str
    models: tuple[str, ...]  # as resolved, with the size (facile:tiny under --quick)
    batch_sizes: tuple[int, ...]
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    measure: MeasureConfig
    rounds: int = 1
    trials: int = LOAD_TRIALS  # a level whose windows disagree is measured again, up to this many times a round

    @property
    def matrix(self) -> Matrix:
        # One worker session per cell: the study quotes one figure per cell, as the source does.
        return Matrix(models=self.models, backends=(BACKEND,), batch_sizes=self.batch_sizes,
                      precisions=(PRECISION,), measure=self.measure, repeats=1)


def plan(mode: str = "default", models: Sequence[str] | None = None) -> Plan:
    """`quick`: FACILE at its tiny size, three levels of 1.5 s, one round (about a minute); `default`: both
    networks, six levels of 3 s in three rounds (about nine minutes on 2 cores, training on first use included).
    One round leaves each level to the moment and to one server process: on 2 cores, facile's level of 1 client
    measured 944 to 1229 req/s in four runs in a row against one server, and 817 against 1360 req/s on two
    servers that did the same work."""
    if mode not in MODES:
        raise ValueError(f"unknown study mode {mode!r}: choose from {', '.join(MODES)}")
    quick = mode == "quick"
    chosen = tuple(models) if models else (MODELS[:1] if quick else MODELS)
    sized = tuple(m if ":" in m or not quick else f"{m}:tiny" for m in chosen)
    if quick:
        return Plan(mode, sized, (1, 8, 32), (1, 4, 8), 1.5, 0.3, QUICK_MEASURE, trials=1)  # a smoke test
    return Plan(mode, sized, (1, 2, 4, 8, 16, 32), (1, 2, 4, 8, 16, 32), 3.0, 0.6, STUDY_MEASURE, rounds=3)


# ---------------------------------------------------------------------------------------------------------------
# From stored records to the study's figures


@dataclass(frozen=True)
class Curve:
    """One model's closed-loop levels under one policy, and the service model fitted on some of them."""

    policy: str
    records: tuple[Record, ...]
    model: ServiceModel | None
    held_out: tuple[dict[str, float], ...]

    @cached_property
    def points(self) -> list[LoadPoint]:
        """Each level's median round as a point (loadgen.model.points_from)."""
        return points_from(self.records)

    @cached_property
    def medians(self) -> dict[int, Record]:
        """Each level's median round (loadgen.model.median_rounds)."""
        return median_rounds(self.records)

    def level(self, clients: int) -> Record | None:
        """The level's record: its median round, or a failed one when none is ok."""
        found = self.medians.get(clients)
        return found or next((r for r in self.records
                              if (r.get("scenario_result") or {}).get("concurrency") == clients), None)

    @property
    def worst_error(self) -> float | None:
        errors = [max(abs(c["throughput_error"]), abs(c["latency_error"])) for c in self.held_out]
        return max(errors) if errors else None

    def saturation_clients(self) -> int | None:
        """The fewest clients whose throughput reached SATURATION_SHARE of the curve's highest."""
        points = self.points
        if not points:
            return None
        top = max(p.throughput_rps for p in points)
        return next(p.clients for p in points if p.throughput_rps >= SATURATION_SHARE * top)


def batch_times(records: Iterable[Record], model: str) -> dict[int, float]:
    """The in-process batch sweep of `model`: median time of one call per batch size, ms."""
    return {int(r["batch_size"]): float(r["latency_ms"]["median"]) for r in records
            if base(r["model"]) == model and r["scenario"] != "load" and r["status"] == "ok" and r.get("latency_ms")}


def curve(policy: str, max_batch: int, records: Sequence[Record], batch_ms: Mapping[int, float]) -> Curve:
    """Fit the service model on the first, last and every other level, and check it on the rest. No fit without
    a batch sweep or a measured level. The clients of a closed loop do no work of their own: t_cpu is 0 here."""
    points = points_from(records)
    fitted, held = split_held_out(points)
    if not batch_ms or not fitted:
        return Curve(policy, tuple(records), None, ())
    measured = next(r for r in records if r["status"] == "ok")
    instances = int(((measured.get("scenario_result") or {}).get("server_config") or {}).get("instances", 1))
    service = ServiceModel.fit(dict(batch_ms), fitted, instances, max_batch)
    return Curve(policy, tuple(records), service, tuple(service.errors(held)))


@dataclass(frozen=True)
class Measured:
    """One model's study: its in-process records and its curves by policy."""

    model: str  # without its size
    in_process: tuple[Record, ...]
    curves: dict[str, Curve]

    def t_cpu_ms(self) -> float | None:
        one = next((r for r in self.in_process if r["batch_size"] == 1 and r["status"] == "ok"), None)
        return float(one["latency_ms"]["median"]) if one else None

    def served_ms(self, policy: str = "dynamic") -> float | None:
        """The served latency of one client alone (p50 at N=1): what a job waits for an inference."""
        c = self.curves.get(policy)
        one = c.level(1) if c else None
        return float(one["scenario_result"]["p50_ms"]) if one and one["status"] == "ok" else None

    def gain(self, clients: int) -> float | None:
        dynamic, single = (self.curves.get(p) for p, _ in POLICIES)
        a, b = (c.level(clients) if c else None for c in (dynamic, single))
        if not a or not b or a["status"] != "ok" or b["status"] != "ok":
            return None
        return a["scenario_result"]["throughput_rps"] / b["scenario_result"]["throughput_rps"]


def measured(in_process: Sequence[Record], loads: Mapping[str, Sequence[Record]], models: Sequence[str]
             ) -> list[Measured]:
    """Each model's study from the in-process run's records and each policy's load records."""
    found = []
    for model in dict.fromkeys(base(m) for m in models):
        own = tuple(r for r in in_process if base(r["model"]) == model)
        batch_ms = batch_times(own, model)
        curves = {}
        for policy, max_batch in POLICIES:
            levels = [r for r in loads.get(policy, ()) if base(r["model"]) == model]
            curves[policy] = curve(policy, max_batch, levels, batch_ms)
        found.append(Measured(model, own, curves))
    return found


# ---------------------------------------------------------------------------------------------------------------
# Tables


def times_table(studies: Sequence[Measured]) -> Table:
    """The study's 'single GPU server inference speedup' table: CPU, as-a-service and the gain, per network."""
    headers = [""]
    for s in studies:
        headers += [f"{s.model} here", f"{SONIC_NETWORKS.get(s.model, s.model)} (SONIC)"]
    rows: list[list[str]] = [["in each client (CPU) [ms]"], ["as a service [ms]"], ["gain"]]
    for s in studies:
        t_cpu, served = s.t_cpu_ms(), s.served_ms()
        study = SONIC_TIMES.get(s.model, (NOT_APPLICABLE,) * 3)
        gain = f"{t_cpu / served:.3g}x" if t_cpu and served else NOT_APPLICABLE
        for row, ours, theirs in zip(rows, (num(t_cpu), num(served), gain), study, strict=True):
            row += [ours or NOT_APPLICABLE, theirs]
    notes = [f"here: {BACKEND} {PRECISION} on this CPU, 1 thread; in-process median of one call at batch 1; as a "
             "service: p50 of one client's requests (gRPC on 127.0.0.1, dynamic batching on)",
             "SONIC: FACILE's request is an event (a batch of ~16,000 channels); here one request is one sample",
             f"source: {SONIC_SOURCE}"]
    return Table("inference time: in each client against as a service", headers, rows, notes)


def load_table(s: Measured) -> Table:
    """Throughput against clients with and without dynamic batching, and the gain."""
    dynamic, single = s.curves["dynamic"], s.curves["none"]
    clients = sorted({p.clients for c in (dynamic, single) for p in c.points})
    rows = []
    for n in clients:
        row = [str(n)]
        for c in (single, dynamic):
            r = c.level(n)
            sr = (r or {}).get("scenario_result") or {}
            ok = r is not None and r["status"] == "ok"
            row += [num(sr.get("throughput_rps")) if ok else NOT_APPLICABLE,
                    num(sr.get("p50_ms")) if ok else NOT_APPLICABLE]
        batch = ((dynamic.level(n) or {}).get("scenario_result") or {}).get("server") or {}
        gain = s.gain(n)
        row += [num(batch.get("avg_batch"), 3) or NOT_APPLICABLE, f"{gain:.3g}x" if gain else NOT_APPLICABLE]
        rows.append(row)
    notes = [f"saturation (first level at {SATURATION_SHARE:.0%} of the highest throughput): "
             f"max batch 1 at {single.saturation_clients() or NOT_APPLICABLE} clients, dynamic batching at "
             f"{dynamic.saturation_clients() or NOT_APPLICABLE} clients, one server instance",
             f"SONIC: {SONIC_TERMS['batching']} from dynamic batching; {SONIC_TERMS['saturation']}"]
    failed = []
    for c in (single, dynamic):
        rounds_at: dict[int, list[Record]] = {}
        for r in c.records:  # failed rounds too: their options name the level
            rounds_at.setdefault(int(r["options"]["concurrency"]), []).append(r)
        for n, rounds in sorted(rounds_at.items()):
            bad = [r for r in rounds if r["status"] != "ok"]
            if bad:
                failed.append(f"{c.policy} at {n} clients: {len(bad)} of {len(rounds)} round(s) failed: "
                              f"{bad[0]['reason']}")
    return Table(f"{s.model}: throughput against clients (closed loop, one server instance, 1 thread)",
                 ["clients", "max batch 1 [req/s]", "p50 [ms]", f"dynamic b<={MAX_BATCH} [req/s]", "p50 [ms]",
                  "avg batch", "batching gain"], rows, notes + failed)


def model_table(s: Measured) -> Table:
    """The t_SONIC terms of each fitted curve beside ProtoDUNE's, and the fit's error at held-out levels."""
    columns = [s.curves["none"], s.curves["dynamic"]]
    terms = [c.model.sonic_terms() if c.model else None for c in columns]
    best = [c.model.best_ratio() if c.model else None for c in columns]

    def row(label: str, values: Sequence[str], study: str) -> list[str]:
        return [label, *(v or NOT_APPLICABLE for v in values), study]

    t_cpu = s.t_cpu_ms()
    rows = [
        row("t_CPU in-process [ms]", [num(t_cpu)] * 2, SONIC_TERMS["cpu_alone"]),
        row("(1-p) t_CPU [ms]", [num(t["t_cpu_ms"]) if t else "" for t in terms], SONIC_TERMS["t_cpu_ms"]),
        row("t_GPU = front + S(1) [ms]", [num(t["t_gpu_ms"]) if t else "" for t in terms], SONIC_TERMS["t_gpu_ms"]),
        row("t_latency [ms]", [num(t["t_latency_ms"]) if t else "" for t in terms], SONIC_TERMS["t_latency_ms"]),
        row("t_ideal [ms]", [num(t["t_ideal_ms"]) if t else "" for t in terms], SONIC_TERMS["t_ideal_ms"]),
        row("saturation: clients per instance", [num(t["saturation_clients_per_instance"], 3) if t else ""
                                                 for t in terms], SONIC_TERMS["saturation"]),
        row("best clients per instance", [str(b["clients_per_instance"]) if b else "" for b in best],
            NOT_APPLICABLE),
        row("server capacity [req/s]", [num(c.model.capacity_rps) if c.model else "" for c in columns],
            NOT_APPLICABLE),
        row("the clients' own limit [req/s]", [_client_limit(c.model) if c.model else "" for c in columns],
            NOT_APPLICABLE),
        row("held-out error (largest)", [f"{c.worst_error:.0%}" if c.worst_error is not None else ""
                                         for c in columns], NOT_APPLICABLE),
    ]
    notes = [SONIC_FORMULA,
             "here the clients only send requests: p = 1, so (1-p) t_CPU = 0; t_GPU is the server's time for one "
             "request: its serial work (front) and the in-process batch-1 time S(1) of the served variant, which "
             "share its CPU; t_latency = transfer + the clients' own work per request",
             "the model: the clients' queue, the server's (batches of what waits there) and the transfer, solved "
             "for N requests in flight by mean value analysis (loadgen/model.py)"]
    for c in columns:
        if c.model is None:
            notes.append(f"{c.policy}: no fit (no batch sweep or no measured level)")
            continue
        notes.append(f"{c.policy}: S(b) = {c.model.s0_ms:.3g} + {c.model.s1_ms:.3g} b ms, max batch "
                     f"{c.model.max_batch}; fitted t_lat {c.model.t_lat_ms:.3g} ms, client {c.model.client_ms:.3g} ms, "
                     f"front {c.model.front_ms:.3g} ms")
        for h in c.held_out:
            notes.append(f"{c.policy} held out N={h['clients']:g}: {h['measured_rps']:.4g} req/s measured, "
                         f"{h['predicted_rps']:.4g} predicted ({h['throughput_error']:+.0%}); {h['measured_ms']:.3g} "
                         f"ms measured, {h['predicted_ms']:.3g} predicted ({h['latency_error']:+.0%})")
        if c.worst_error is not None:
            verdict = "within" if c.worst_error <= HELD_OUT_TARGET else "outside"
            notes.append(f"{c.policy}: largest held-out error {c.worst_error:.0%}, {verdict} the "
                         f"{HELD_OUT_TARGET:.0%} target")
    return Table(f"{s.model}: the service model (t_SONIC terms), fitted on some levels, checked on the rest",
                 ["term", "max batch 1", f"dynamic b<={MAX_BATCH}", "ProtoDUNE on a T4 (SONIC)"], rows, notes)


def _client_limit(model: ServiceModel) -> str:
    """The clients' limit, or "none fitted" where it lies so far above the server's capacity that no load reaches
    it (their fitted serial work is about nil)."""
    limit = model.client_limit_rps
    return num(limit) if limit is not None and limit < UNREACHED * model.capacity_rps else "none fitted"


def tables(studies: Sequence[Measured]) -> list[Table]:
    return [times_table(studies), *(t for s in studies for t in (load_table(s), model_table(s)))]


def render(studies: Sequence[Measured]) -> str:
    return "\n\n".join(t.render() for t in tables(studies))


def summary(studies: Sequence[Measured]) -> list[dict[str, Any]]:
    """The figures of the tables as JSON: per model, t_CPU, served latency, the fits and their errors."""
    out = []
    for s in studies:
        fits = {}
        for policy, c in s.curves.items():
            fits[policy] = None if c.model is None else {
                **c.model.as_dict(), "best": c.model.best_ratio(), "held_out": list(c.held_out),
                "largest_held_out_error": c.worst_error, "saturation_clients_measured": c.saturation_clients()}
        out.append({"model": s.model, "t_cpu_ms": s.t_cpu_ms(), "served_p50_ms": s.served_ms(),
                    "batching_gain": {str(p.clients): s.gain(p.clients) for p in s.curves["dynamic"].points},
                    "fits": fits})
    return out
