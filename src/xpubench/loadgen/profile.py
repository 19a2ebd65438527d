"""A load level's figures from its client processes' raw records and the server's statistics, as one stored cell.

Latency is a request's answer time minus its scheduled send time (open loop) or its send time (closed loop).
Requests scheduled in the warm-up are left out; the rest are split into windows by answer time, and the level is
stable when its last 3 windows' throughput and median latency are each within 10 % of their mean
(perf_analyzer's rule). The server's breakdown is the difference of its statistics read before and after the
level, warm-up included (the statistics extension has no clock of its own to cut it at).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpubench.core.cell import Cell, CellResult
from xpubench.core.measure import Samples, Stability
from xpubench.loadgen.client import NOT_DONE
from xpubench.loadgen.schedule import LoadLevel

SCENARIO = "load"
WINDOWS = 5
STABLE_WINDOWS = 3
STABILITY_TOLERANCE = 0.10
GROWTH_LIMIT = 2.0  # late/early median latency above this: the queue grew during the level
LAG_LIMIT_MS = 2.0  # p99 send lag above this and above a tenth of the p50 latency: the open loop's sends ran late
CLIENT_BUSY_LIMIT = 0.9  # a client process busier than this share of a core may be the bottleneck
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class LevelSettings:
    """What one level ran with, as stored."""

    url: str
    protocol: str
    model: str
    batch: int
    clients: int
    duration_s: float
    warmup_s: float
    seed: int
    precision: str = "fp32"
    cpus: tuple[int, ...] | None = None  # the client processes' CPUs, when pinned
    trial: int = 1  # the how-many-th measurement of this level (runner: again while its windows disagree)


def cell_for(level: LoadLevel, settings: LevelSettings) -> Cell:
    """The stored cell: the client's protocol as the backend, the remote host as the device, the request's
    batch, and the level as options, so that each level has a key of its own and matches across runs."""
    host = settings.url.split("://", 1)[-1].rsplit(":", 1)[0]
    return Cell(model=settings.model, backend=f"oip-{settings.protocol}", device=f"remote:{host}",
                precision=settings.precision, batch_size=settings.batch, threads=1, scenario=SCENARIO,
                options=level.options())


def level_result(level: LoadLevel, settings: LevelSettings, parts: Sequence[dict[str, Any]],
                 stats_before: dict[str, Any] | None, stats_after: dict[str, Any] | None,
                 server_config: dict[str, Any] | None = None, failures: Sequence[str] = ()) -> CellResult:
    """The level's CellResult; `failed` when no request was answered in its measured part."""
    cell = cell_for(level, settings)
    merged = {k: np.concatenate([p[k] for p in parts]) if parts else np.empty(0, np.int64)
              for k in ("scheduled_ns", "sent_ns", "done_ns", "send_ns", "recv_ns")}
    warmup_ns = int(settings.warmup_s * 1e9)
    end_ns = int(settings.duration_s * 1e9)
    measured = merged["scheduled_ns"] >= warmup_ns
    answered = measured & (merged["done_ns"] != NOT_DONE)
    errors = int(np.sum(measured & (merged["sent_ns"] != NOT_DONE) & (merged["done_ns"] == NOT_DONE)))
    unsent = int(np.sum(measured & (merged["sent_ns"] == NOT_DONE)))
    first_error = next((p["error"] for p in parts if p.get("error")), None)
    if not np.any(answered):
        reason = "; ".join(failures) or first_error or (
            f"none of the {int(np.sum(measured))} measured requests was answered within the level and its drain "
            f"(past capacity? {int(np.sum(merged['done_ns'] != NOT_DONE))} warm-up requests were)")
        return CellResult.not_measured(cell, "failed", f"{level.label}: {reason}")

    order = np.argsort(merged["scheduled_ns"][answered], kind="stable")
    scheduled = merged["scheduled_ns"][answered][order]
    done = merged["done_ns"][answered][order]
    sent = merged["sent_ns"][answered][order]
    latency_ns = done - scheduled
    window_ns = max(end_ns - warmup_ns, 1)
    # Throughput: answers that came within the measured part, over its length.
    in_window = (done >= warmup_ns) & (done < end_ns)
    throughput_rps = float(np.sum(in_window)) / (window_ns / 1e9)
    edges = np.linspace(warmup_ns, end_ns, WINDOWS + 1)
    windows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (done >= lo) & (done < hi)
        windows.append({"throughput_rps": float(np.sum(inside)) / ((hi - lo) / 1e9),
                        "p50_ms": float(np.median(latency_ns[inside])) / 1e6 if np.any(inside) else None})
    stable, spread = windows_stable(windows)
    tenth = max(1, latency_ns.size // 10)
    first_p50 = float(np.median(latency_ns[:tenth])) / 1e6
    last_p50 = float(np.median(latency_ns[-tenth:])) / 1e6
    growth = last_p50 / first_p50 if first_p50 > 0 else None
    lag_ms = (sent - scheduled) / 1e6
    busy = [p["cpu_busy"] for p in parts if p.get("cpu_busy") is not None]
    senders = sum(p["senders"] for p in parts)
    saturated_senders = all(p["max_in_flight"] >= p["senders"] for p in parts)
    pct = {q: float(np.percentile(latency_ns, q)) / 1e6 for q in (50, 90, 99)}
    result: dict[str, Any] = {
        "mode": level.mode,
        "concurrency": level.concurrency,
        "qps": level.rate,
        "arrivals": level.arrivals if level.rate is not None else None,
        "seed": settings.seed if level.rate is not None else None,
        "latency_from": "scheduled send" if level.rate is not None else "send",
        "url": settings.url,
        "protocol": settings.protocol,
        "clients": len(parts),
        "client_cpus": list(settings.cpus) if settings.cpus else None,
        "senders": senders,
        "duration_s": settings.duration_s,
        "warmup_s": settings.warmup_s,
        "offered": int(np.sum(measured)),
        "served": int(np.sum(answered)),
        "errors": errors,
        "unsent": unsent,
        "first_error": first_error,
        "throughput_rps": throughput_rps,
        "achieved_qps": throughput_rps,
        "p50_ms": pct[50], "p90_ms": pct[90], "p99_ms": pct[99],
        "max_ms": float(latency_ns.max()) / 1e6,
        "windows": windows,
        "stable_windows": stable,
        "window_spread": spread,
        "first_tenth_p50_ms": first_p50,
        "last_tenth_p50_ms": last_p50,
        "growth": growth,
        "latency_grows": bool(level.rate is not None and growth is not None and growth > GROWTH_LIMIT),
        "lag_ms": {"p50": float(np.percentile(lag_ms, 50)), "p99": float(np.percentile(lag_ms, 99)),
                   "max": float(lag_ms.max())} if level.rate is not None else None,
        "client_ms": {"send": float(np.mean(merged["send_ns"][answered])) / 1e6,
                      "recv": float(np.mean(merged["recv_ns"][answered])) / 1e6},
        "client_busy": max(busy) if busy else None,
        "client_cpu_ms": client_cpu_ms(parts, merged["done_ns"]),
        "trials": settings.trial,
        "client_late_s": max((p.get("late_s", 0.0) for p in parts), default=0.0),
        "server": server_breakdown(stats_before, stats_after),
        "server_config": config_summary(server_config),
    }
    # A closed loop's queue cannot grow without bound (N requests at most): past capacity is an open loop's verdict.
    result["past_capacity"] = bool(level.rate is not None and (result["latency_grows"] or result["unsent"] or
                                                               throughput_rps < 0.9 * level.rate))
    result["verdict"] = verdict(level, result, saturated_senders)
    samples = Samples(first_ns=int(latency_ns[0]), warmup_runs=int(np.sum(~measured)), samples_ns=latency_ns,
                      duration_s=window_ns / 1e9,
                      stop_reason=f"{settings.duration_s:g} s level ({settings.warmup_s:g} s warm-up left out)")
    doubts = () if stable else (f"the last {STABLE_WINDOWS} windows differ by {spread:.0%} "
                                f"(> {STABILITY_TOLERANCE:.0%})",)
    notes = tuple(n for n in (_generator_note(level, result, saturated_senders),) if n)
    verdict_on_noise = Stability(stable, doubts + notes, STABILITY_TOLERANCE, None, spread,
                                 pct[99] / pct[50] if pct[50] > 0 else None)
    return CellResult.from_samples(cell, samples, verdict_on_noise, None, batch=settings.batch,
                                   throughput_sps=throughput_rps * settings.batch, scenario_result=result)


def client_cpu_ms(parts: Sequence[dict[str, Any]], done_ns: np.ndarray) -> float | None:
    """The client processes' CPU time per answered request, ms, warm-up included on both sides: the most serial
    work the clients can add to a request (the service model's bound on it). An open loop's senders also spin for
    the last 0.2 ms before each arrival (client.SPIN_NS), which counts here."""
    answered = int(np.sum(done_ns != NOT_DONE))
    cpu = [p.get("cpu_s") for p in parts]
    return 1e3 * sum(cpu) / answered if cpu and None not in cpu and answered else None


def unsettled(result: CellResult) -> bool:
    """Whether measuring the level again may settle it: it was measured, its last windows disagree, and it is not
    past capacity (an open loop's growing queue never settles)."""
    r = result.scenario_result or {}
    return result.status == "ok" and not r.get("stable_windows", True) and not r.get("past_capacity")


def windows_stable(windows: Sequence[dict[str, Any]]) -> tuple[bool, float]:
    """perf_analyzer's rule: the last 3 windows' throughput and p50 each within 10 % of their mean; the largest
    such deviation."""
    last = windows[-STABLE_WINDOWS:]
    spread = 0.0
    for name in ("throughput_rps", "p50_ms"):
        values = [w[name] for w in last]
        if any(v is None for v in values):
            return False, 1.0
        mean = float(np.mean(values))
        if mean > 0:
            spread = max(spread, max(abs(v - mean) for v in values) / mean)
    return bool(spread <= STABILITY_TOLERANCE), float(spread)


def verdict(level: LoadLevel, r: dict[str, Any], saturated_senders: bool) -> str:
    words = []
    if r["past_capacity"]:  # an open loop's alone
        words.append(f"past capacity: latency grows x{r['growth']:.3g} over the level, "
                     f"{r['throughput_rps']:.4g} of {level.rate:g} req/s answered")
    elif not r["stable_windows"]:
        words.append(f"unstable: the last {STABLE_WINDOWS} windows differ by {r['window_spread']:.0%}")
    else:
        words.append("stable")
    if r["errors"]:
        words.append(f"{r['errors']} requests failed")
    if r["client_late_s"] > r["warmup_s"]:
        words.append(f"a client process started {r['client_late_s']:.2g} s late, after the warm-up")
    note = _generator_note(level, r, saturated_senders)
    if note:
        words.append(note)
    return "; ".join(words)


def _generator_note(level: LoadLevel, r: dict[str, Any], saturated_senders: bool) -> str | None:
    """Whether the generator kept its schedule, and why not."""
    if level.rate is not None and r["lag_ms"] and r["lag_ms"]["p99"] > max(LAG_LIMIT_MS, r["p50_ms"] / 10):
        why = ("every sender was waiting for an answer, so the server set the pace (latency still counts from "
               "the schedule)") if saturated_senders else "the client processes were too slow: add --clients"
        return f"the generator fell behind its schedule (p99 send lag {r['lag_ms']['p99']:.3g} ms): {why}"
    if r["client_busy"] is not None and r["client_busy"] > CLIENT_BUSY_LIMIT:
        return f"a client process was busy {r['client_busy']:.0%} of a core: it may be the bottleneck, add --clients"
    return None


def server_breakdown(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """The statistics extension's difference over the level: mean per-request queue and compute times (ms), the
    batches the server formed and the mean batch size (inference_count / execution_count)."""
    if before is None or after is None:
        return None
    stats_a, stats_b = after.get("inference_stats", {}), before.get("inference_stats", {})

    def delta(stage: str) -> tuple[int, int]:
        a, b = stats_a.get(stage, {}), stats_b.get(stage, {})
        return int(a.get("count", 0)) - int(b.get("count", 0)), int(a.get("ns", 0)) - int(b.get("ns", 0))

    requests, success_ns = delta("success")
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    per_request = {f"{s}_ms": (delta(s)[1] / delta(s)[0] / 1e6 if delta(s)[0] > 0 else None) for s in STAGES}
    old = {int(b["batch_size"]): b for b in before.get("batch_stats", []) or []}
    histogram = []
    service = []
    for entry in after.get("batch_stats", []) or []:
        size = int(entry["batch_size"])
        prior = old.get(size, {})
        count = int(entry["compute_infer"]["count"]) - int(prior.get("compute_infer", {}).get("count", 0))
        if count <= 0:
            continue
        histogram.append({"batch_size": size, "executions": count})
        ns = sum(int(entry[s]["ns"]) - int(prior.get(s, {}).get("ns", 0)) for s in STAGES[1:] if s in entry)
        service.append({"batch_size": size, "ms": ns / count / 1e6})
    return {
        "requests": requests,
        "failed": delta("fail")[0],
        "request_ms": success_ns / requests / 1e6 if requests > 0 else None,
        **per_request,
        "inference_count": inferences,
        "execution_count": executions,
        "avg_batch": inferences / executions if executions > 0 else None,
        "batch_histogram": histogram,
        "service_ms": service,
    }


def config_summary(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the server's model configuration says about batching and instances, where it has one."""
    if not config:
        return None
    groups = config.get("instance_group") or []
    batching = config.get("dynamic_batching")
    return {
        "max_batch_size": int(config.get("max_batch_size", 0) or 0),
        "instances": sum(int(g.get("count", 1) or 1) for g in groups) or 1,
        "dynamic_batching": batching is not None,
        "max_queue_delay_us": int((batching or {}).get("max_queue_delay_microseconds", 0) or 0),
        "preferred_batch_size": [int(v) for v in (batching or {}).get("preferred_batch_size", []) or []],
    }
