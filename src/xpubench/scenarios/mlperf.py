"""MLPerf LoadGen drives the backend: SingleStream, MultiStream, Server and Offline, sized to run in seconds."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.core import metrics
from xpubench.core.measure import MeasureConfig, Samples, measure
from xpubench.scenarios import Outcome, ScenarioRun
from xpubench.scenarios.loops import step_config, sweep

MULTISTREAM_SAMPLES = 8  # MLPerf's samples per query in MultiStream
MIN_QUERIES_P99 = 662  # what LoadGen's early stopping needs to vouch for a p99 (MultiStream, Server)
OFFLINE_MARGIN = 2.0  # Offline sends samples for this many times the minimum duration at the probed rate
SERVER_LOAD = 0.3  # without --qps: this fraction of the rate a short LoadGen SingleStream run sustains
PROBE_MS = 300
SERVER_RETRIES = 2  # a calibrated server rate that LoadGen finds INVALID is halved at most this often
NOTE = (
    "a short run (minimum duration and query count set to seconds, not LoadGen's submission settings "
    "of minutes): its verdict is LoadGen's on these settings, not a submission-valid MLPerf result"
)


def singlestream(run: ScenarioRun) -> Outcome:
    return _run(run, "SingleStream")


def multistream(run: ScenarioRun) -> Outcome:
    return _run(run, "MultiStream")


def server(run: ScenarioRun) -> Outcome:
    return _run(run, "Server")


def offline(run: ScenarioRun) -> Outcome:
    return _run(run, "Offline")


class _SystemUnderTest:
    """Answers LoadGen's queries with the backend, one infer call per query or per batch of samples."""

    def __init__(self, run: ScenarioRun, batch: int) -> None:
        import mlperf_loadgen as lg

        self.lg = lg
        self.backend = run.backend
        self.arrays = run.arrays()
        self.count = len(self.arrays[0])
        self.batch = batch
        fixed = run.backend.inputs[0].fixed_batch if run.backend.inputs else None
        self.pad_to = fixed
        self.single = [run.backend.prepare([a[i : i + 1] for a in self.arrays]) for i in range(self.count)] if (
            batch == 1 and fixed in (None, 1)
        ) else None
        self.service_ns: list[int] = []

    def run_indices(self, indices: list[int]) -> None:
        """The work of one call: gather the samples, prepare, infer. Host arrays in, host arrays out."""
        if self.single is not None and len(indices) == 1:
            self.backend.infer(self.single[indices[0]])
            return
        if self.pad_to is not None and len(indices) < self.pad_to:
            indices = indices + [indices[-1]] * (self.pad_to - len(indices))
        self.backend.infer(self.backend.prepare([a[indices] for a in self.arrays]))

    def issue(self, queries: list[Any]) -> None:
        lg, clock = self.lg, self.backend.clock
        response = lg.QuerySampleResponse
        step = self.batch if len(queries) > 1 else 1
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            t0 = clock()
            self.run_indices([q.index for q in chunk])
            self.service_ns.append(clock() - t0)
            lg.QuerySamplesComplete([response(q.id, 0, 0) for q in chunk])

    def probe(self, size: int, config: MeasureConfig, answers: bool = False) -> Samples:
        """Times the SUT's work on random queries of `size` samples; with `answers`, building the
        responses too (what Offline pays per sample besides inference)."""
        rng = np.random.default_rng(7)
        pool = [rng.integers(0, self.count, size).tolist() for _ in range(16)]
        response = self.lg.QuerySampleResponse

        def work(indices: list[int]) -> None:
            self.run_indices(indices)
            if answers:
                [response(i, 0, 0) for i in indices]

        return measure(work, pool, config, clock=self.backend.clock)


def _run(run: ScenarioRun, scenario: str) -> Outcome:
    import mlperf_loadgen as lg

    config, settings = run.measure, run.settings
    probe_config = step_config(config, 10)
    found: dict[str, Any] = {"loadgen": _version(), "scenario": scenario, "note": NOTE}
    batch = 1
    if scenario == "MultiStream":
        batch = MULTISTREAM_SAMPLES
    elif scenario == "Offline":
        points, _ = sweep(run, probe_config)
        best = max(points, key=lambda p: p.throughput_sps)
        batch = best.batch
        found["batch_curve"] = [p.as_dict() for p in points]
    sut = _SystemUnderTest(run, batch)

    test = lg.TestSettings()
    test.mode = lg.TestMode.PerformanceOnly
    test.scenario = getattr(lg.TestScenario, scenario)
    test.min_duration_ms = max(100, int(config.min_time_s * 1000))
    test.max_duration_ms = int(config.max_time_s * 1000)
    test.min_query_count = config.min_runs
    test.performance_sample_count_override = sut.count
    test.qsl_rng_seed = test.sample_index_rng_seed = test.schedule_rng_seed = settings.seed
    applied: dict[str, Any] = {}
    if scenario == "SingleStream":
        # The SUT's own time without LoadGen: optimistic, and LoadGen stops at the minimum duration
        # anyway; a pessimistic guess would schedule too few queries and end INVALID.
        test.single_stream_expected_latency_ns = applied["single_stream_expected_latency_ns"] = max(
            1000, int(np.median(sut.probe(1, probe_config).samples_ns))
        )
    elif scenario == "MultiStream":
        test.multi_stream_samples_per_query = MULTISTREAM_SAMPLES
        test.min_query_count = max(config.min_runs, MIN_QUERIES_P99)
        test.multi_stream_expected_latency_ns = applied["multi_stream_expected_latency_ns"] = max(
            1000, int(np.median(sut.probe(MULTISTREAM_SAMPLES, probe_config).samples_ns))
        )
    elif scenario == "Offline":
        test.min_query_count = 1
        # The rate of the SUT's whole path at the best batch (gather, infer, answer): LoadGen sends
        # duration x this many samples, so a guess too high only lengthens the run, too low ends it
        # INVALID before the minimum duration; a busy machine makes the probe low, hence the margin.
        probe = sut.probe(batch, probe_config, answers=True)
        throughput = OFFLINE_MARGIN * (metrics.busy_throughput_sps(probe.samples_ns, batch) or 0.0)
        test.offline_expected_qps = applied["offline_expected_qps"] = float(throughput)
    else:
        qps, source = settings.qps, "given"
        if qps is None:
            capacity = _loadgen_capacity(lg, sut, settings.seed)
            qps, source = SERVER_LOAD * capacity, f"{SERVER_LOAD:.0%} of a {PROBE_MS} ms LoadGen SingleStream rate"
            found["capacity_qps"] = capacity
        test.min_query_count = max(config.min_runs, MIN_QUERIES_P99)
        test.server_target_qps = applied["server_target_qps"] = float(qps)
        test.server_target_latency_ns = applied["server_target_latency_ns"] = int(settings.bound_ms * 1e6)
        found.update(qps=qps, qps_source=source, bound_ms=settings.bound_ms)
    invalid: list[dict[str, Any]] = []
    while True:
        sut.service_ns.clear()
        summary, problems, wall_s = _start(lg, sut, test)
        figures = parse_summary(summary)
        if scenario != "Server" or settings.qps is not None or figures.get("verdict") == "VALID":
            break
        if len(invalid) == SERVER_RETRIES:
            break
        # As a submitter searches for the highest valid rate: a calibrated rate LoadGen found too high
        # (the p99 over the bound) is halved and run again; the invalid tries are kept.
        invalid.append({key: figures.get(key) for key in ("verdict", "p99_ms", "latency_constraint_met")}
                       | {"qps": test.server_target_qps})
        test.server_target_qps = applied["server_target_qps"] = qps = test.server_target_qps / 2
        found.update(qps=qps, qps_source=f"{source}, halved after {len(invalid)} INVALID run(s)")
    if invalid:
        found["invalid_runs"] = invalid

    found.update(figures)
    found["settings"] = {
        "mode": "PerformanceOnly",
        "min_duration_ms": test.min_duration_ms,
        "max_duration_ms": test.max_duration_ms,
        "min_query_count": test.min_query_count,
        "performance_sample_count": sut.count,
        **applied,
    }
    found["batch"] = batch
    found["wall_s"] = wall_s
    if problems:
        found["log_messages"] = problems
    service = np.asarray(sut.service_ns, dtype=np.int64)
    if service.size == 0:
        raise RuntimeError(f"LoadGen issued no query ({found.get('verdict', 'no summary')})")
    found["cell_latency"] = "each infer call's service time inside the SUT; LoadGen's figures are the *_ms ones"
    throughput = figures.get("samples_per_second")
    return Outcome(
        samples=Samples(
            first_ns=int(service[0]),
            warmup_runs=0,
            samples_ns=service,
            duration_s=wall_s,
            stop_reason=f"LoadGen {scenario}: {found.get('verdict', '?')}",
        ),
        batch=batch,
        throughput_sps=throughput,
        result=found,
        warnings=() if found.get("verdict") == "VALID" else (f"LoadGen {scenario} result is INVALID",),
    )


def _start(lg: Any, sut: _SystemUnderTest, test: Any) -> tuple[str, list[str], float]:
    """One LoadGen test; its logs go to a temporary folder, read, then removed."""
    handle = lg.ConstructSUT(sut.issue, lambda: None)
    qsl = lg.ConstructQSL(sut.count, sut.count, lambda _s: None, lambda _s: None)  # samples are in memory
    folder = Path(tempfile.mkdtemp(prefix="xpubench-loadgen-"))
    try:
        log = lg.LogSettings()
        log.log_output.outdir = str(folder)
        log.log_output.copy_summary_to_stdout = False
        log.log_output.copy_detail_to_stdout = False
        log.enable_trace = False
        began = time.perf_counter()
        lg.StartTestWithLogSettings(handle, qsl, test, log, "")  # "": no audit.config read from the cwd
        wall_s = time.perf_counter() - began
        summary = (folder / "mlperf_log_summary.txt").read_text()
        return summary, _problems(folder / "mlperf_log_detail.txt"), wall_s
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(handle)
        shutil.rmtree(folder, ignore_errors=True)


def _loadgen_capacity(lg: Any, sut: _SystemUnderTest, seed: int) -> float:
    """Queries per second through LoadGen and this SUT, one at a time: the server's calibration."""
    test = lg.TestSettings()
    test.mode = lg.TestMode.PerformanceOnly
    test.scenario = lg.TestScenario.SingleStream
    test.min_duration_ms = PROBE_MS
    test.max_duration_ms = PROBE_MS * 10
    test.min_query_count = 50
    test.performance_sample_count_override = sut.count
    test.qsl_rng_seed = test.sample_index_rng_seed = test.schedule_rng_seed = seed
    test.single_stream_expected_latency_ns = max(1000, int(np.median(sut.probe(1, step_config(
        MeasureConfig(), 20)).samples_ns)))
    summary, _, _ = _start(lg, sut, test)
    figures = parse_summary(summary)
    qps = figures.get("samples_per_second")
    if not qps:
        raise RuntimeError("the LoadGen calibration run reported no rate")
    return float(qps)


_LINE = re.compile(r"^\s*(?P<key>[^:*][^:]*?)\s*:\s*(?P<value>\S.*?)\s*$")
_PERCENTILE = re.compile(r"^(?P<p>[\d.]+) percentile latency \(ns\)$")
_HEADLINE = re.compile(r"^(?P<p>[\d.]+)th percentile latency \(ns\)$")
_EARLY = re.compile(r"Early stopping (?P<p>[\d.]+)th percentile estimate: (?P<v>\d+)")
_CHECKS = {
    "Min duration satisfied": "min_duration_met",
    "Min queries satisfied": "min_queries_met",
    "Early stopping satisfied": "early_stopping_met",
    "Performance constraints satisfied": "latency_constraint_met",
}
_RATES = {
    "QPS w/ loadgen overhead": "qps_with_loadgen_overhead",
    "QPS w/o loadgen overhead": "qps_without_loadgen_overhead",
    "Samples per second": "offline_samples_per_second",
    "Completed samples per second": "completed_samples_per_second",
    "Scheduled samples per second": "scheduled_samples_per_second",
}


def parse_summary(text: str) -> dict[str, Any]:
    """The figures of mlperf_log_summary.txt: verdict, checks, latency percentiles (ms), rates, parameters."""
    found: dict[str, Any] = {}
    percentiles: dict[str, float] = {}
    parameters: dict[str, Any] = {}
    early: dict[str, float] = {}
    in_parameters = False
    for line in text.splitlines():
        if "Test Parameters Used" in line:
            in_parameters = True
        match = _EARLY.search(line)
        if match:
            early[_pct(match["p"])] = int(match["v"]) / 1e6
            continue
        match = _LINE.match(line)
        if not match:
            continue
        key, value = match["key"], match["value"]
        if in_parameters:
            parameters[key.replace(" (ms)", "_ms").replace(" (ns)", "_ns").replace(" ", "_")] = _number(value)
        elif key == "Result is":
            found["verdict"] = value
        elif key in _CHECKS:
            found[_CHECKS[key]] = value.lower().startswith("yes")
        elif key in _RATES:
            found[_RATES[key]] = float(value)
        elif key in ("Min latency (ns)", "Max latency (ns)", "Mean latency (ns)"):
            found[key.split()[0].lower() + "_ms"] = int(value) / 1e6
        elif _PERCENTILE.match(key):
            percentiles[_pct(_PERCENTILE.match(key)["p"])] = int(value) / 1e6  # type: ignore[index]
        elif _HEADLINE.match(key):
            found["target_percentile"] = _pct(_HEADLINE.match(key)["p"])  # type: ignore[index]
            found["target_percentile_latency_ms"] = int(value) / 1e6
    if percentiles:
        found["percentiles_ms"] = percentiles
        for p in ("50", "90", "99"):
            if p in percentiles:
                found[f"p{p}_ms"] = percentiles[p]
    if early:
        found["early_stopping_estimates_ms"] = early
    found["parameters"] = parameters
    # One rate per scenario, as samples per second.
    spq = parameters.get("samples_per_query") or 1
    if "offline_samples_per_second" in found:
        found["samples_per_second"] = found["offline_samples_per_second"]
    elif "completed_samples_per_second" in found:
        found["samples_per_second"] = found["completed_samples_per_second"]
    elif "qps_with_loadgen_overhead" in found:
        found["samples_per_second"] = found["qps_with_loadgen_overhead"] * spq
    elif found.get("mean_ms"):  # MultiStream reports no rate: its queries run one after another
        found["samples_per_second"] = spq * 1e3 / found["mean_ms"]
    found["samples_per_query"] = spq
    return found


def _problems(detail: Path) -> list[str]:
    """LoadGen's errors and warnings from mlperf_log_detail.txt (the reasons behind an INVALID)."""
    out: list[str] = []
    if not detail.exists():
        return out
    for line in detail.read_text(errors="replace").splitlines():
        _, marker, body = line.partition(":::MLLOG")
        if not marker:
            continue
        try:
            entry = json.loads(body)
        except ValueError:
            continue
        key = str(entry.get("key", ""))
        if key.startswith(("error", "warning")):
            out.append(f"{key}: {entry.get('value')}")
    return out[:10]


def _pct(text: str) -> str:
    return f"{float(text):g}"


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("mlcommons-loadgen")
    except importlib.metadata.PackageNotFoundError:
        return None

