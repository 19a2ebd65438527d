"""The load levels one after the other: the server's statistics read, the client processes started through a
launcher at one shared start time, their records merged, the statistics read again, the level measured again while
its windows disagree, then stored."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xpubench.core.cell import CellResult
from xpubench.errors import UsageError
from xpubench.hardware.host import allowed_cpus
from xpubench.loadgen.client import LoadClientTask
from xpubench.loadgen.profile import LevelSettings, level_result, unsettled
from xpubench.loadgen.schedule import LoadLevel, schedule, shares
from xpubench.loadgen.transport import Endpoint, connect
from xpubench.run.limits import LOAD_TRIALS, MAX_LOAD_TRIALS

if TYPE_CHECKING:
    from xpubench.run.launcher import Launcher
    from xpubench.store import ResultStore

Say = Callable[[str], None]
MAX_LEVEL_S = 600.0  # the longest a level may be asked to run
DRAIN_S = 10.0  # after a level's end, how long its last requests may take before they count as unanswered
# A level starts this far ahead: its client processes start and import meanwhile (fresh processes each level: a
# warm worker dies with the launcher thread that started it). One that starts late loses part of its warm-up.
LEAD_S = 2.0
SENDERS_PER_CLIENT = 8  # closed loop: one client process per this many requests in flight (by default)
RATE_PER_CLIENT = 1000.0  # open loop: one client process per this many requests/s (by default)
UNREACHABLE_WAIT_S = 3.0  # how long a server that does not answer at all is waited for
DATATYPE_PRECISION = {"FP32": "fp32", "FP16": "fp16", "BF16": "bf16", "INT8": "int8", "UINT8": "uint8-io"}


@dataclass(frozen=True)
class LoadRequest:
    """What `xpubench load` was asked to do."""

    endpoint: Endpoint
    model: str
    levels: tuple[LoadLevel, ...]
    duration_s: float = 5.0
    batch: int = 1
    clients: int | None = None  # None: enough for the level (see clients_for)
    seed: int = 20260501
    warmup_s: float | None = None  # None: a fifth of the duration, at most 1 s
    drain_s: float = DRAIN_S
    cpus: tuple[int, ...] | None = None  # the CPUs the client processes run on (None: this process's)
    trials: int = LOAD_TRIALS  # measure an unstable level again, up to this many times in all

    def __post_init__(self) -> None:
        if not self.levels:
            raise UsageError("give at least one load level (--concurrency or --rate)")
        if not 0 < self.duration_s <= MAX_LEVEL_S:
            raise UsageError(f"--duration must be between 0 and {MAX_LEVEL_S:g} s, got {self.duration_s:g}")
        if self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.clients is not None and self.clients < 1:
            raise UsageError(f"--clients must be >= 1, got {self.clients}")
        if not 0 <= self.drain_s <= MAX_LEVEL_S:
            raise UsageError(f"--drain must be between 0 and {MAX_LEVEL_S:g} s, got {self.drain_s:g}")
        if not 1 <= self.trials <= MAX_LOAD_TRIALS:
            raise UsageError(f"--max-trials must be between 1 and {MAX_LOAD_TRIALS}, got {self.trials}")
        if self.warmup_s is not None and not 0 <= self.warmup_s < self.duration_s:
            raise UsageError(f"--warmup must be shorter than --duration ({self.duration_s:g} s)")

    @property
    def warmup(self) -> float:
        return self.warmup_s if self.warmup_s is not None else min(1.0, self.duration_s / 5)

    def clients_for(self, level: LoadLevel) -> int:
        if self.clients is not None:
            return self.clients
        cpus = len(self.cpus or allowed_cpus())
        if level.concurrency is not None:
            return max(1, min(level.concurrency, math.ceil(level.concurrency / SENDERS_PER_CLIENT), cpus))
        assert level.rate is not None
        return max(1, min(cpus, math.ceil(level.rate / RATE_PER_CLIENT)))


@dataclass(frozen=True)
class Target:
    """What the server says of the model: its tensors, whether it batches, its configuration."""

    inputs: tuple[Any, ...]
    outputs: tuple[str, ...]
    batching: bool
    config: dict[str, Any] | None
    precision: str


def probe(request: LoadRequest, wait_s: float = 30.0) -> Target:
    """The model's metadata and configuration; a one-line error when the server cannot be reached or lacks it."""
    client = connect(request.endpoint)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            answered = False
            try:
                if client.ready(request.model):
                    break
                answered, problem = True, f"model {request.model!r} is not ready"
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            # A server that answers may still be loading its model; one that does not answer is given less time.
            if time.monotonic() > (deadline if answered else deadline - wait_s + UNREACHABLE_WAIT_S):
                raise UsageError(f"no ready server at {request.endpoint.url()} ({problem}): start one, or check "
                                 "the address, --protocol and --model")
            time.sleep(0.2)
        inputs, outputs = client.inputs(request.model)
        config = client.config(request.model)
    finally:
        client.close()
    if not inputs:
        raise UsageError(f"model {request.model!r} states no inputs in its metadata")
    max_batch = int((config or {}).get("max_batch_size", 1) or 0)
    batching = max_batch > 0 and all(s.shape[:1] == (-1,) for s in inputs)
    if batching and max_batch and request.batch > max_batch:
        raise UsageError(f"--batch {request.batch} is more than the server's max batch size {max_batch}")
    return Target(tuple(inputs), tuple(o.name for o in outputs), batching, config,
                  DATATYPE_PRECISION.get(inputs[0].datatype, inputs[0].datatype.lower()))


def run_levels(request: LoadRequest, launcher: Launcher, store: ResultStore | None, run_id: str | None,
               say: Say = print, target: Target | None = None) -> list[CellResult]:
    """Measure each level in order and store it as it comes (when a store is given). A level whose last windows
    disagree is measured again, up to `request.trials` times (perf_analyzer's rule: measure until stable); the
    stored level is its last trial, and says how many it took."""
    target = target or probe(request)
    stats_client = connect(request.endpoint)
    results = []
    try:
        for number, level in enumerate(request.levels):
            for trial in range(1, request.trials + 1):
                result = _measure_level(request, level, number, trial, target, launcher, stats_client, say)
                say(describe(result))
                if trial == request.trials or not unsettled(result):
                    break
                say(f"  measuring {level.label} again ({trial + 1} of at most {request.trials} trials)")
            if store is not None and run_id is not None:
                store.add_cell(run_id, result, {"affinity": None, "worker": None})
            results.append(result)
    finally:
        stats_client.close()
    return results


def _measure_level(request: LoadRequest, level: LoadLevel, number: int, trial: int, target: Target,
                   launcher: Launcher, stats_client: Any, say: Say) -> CellResult:
    """One trial of one level: the server's statistics read, the client processes started through the launcher
    at one shared start time, their records merged, the statistics read again."""
    clients = request.clients_for(level)
    settings = LevelSettings(request.endpoint.url(), request.endpoint.protocol, request.model, request.batch,
                             clients, request.duration_s, request.warmup, request.seed, target.precision,
                             request.cpus, trial)
    say(f"{request.model}: {level.label}, {clients} client process{'es' if clients > 1 else ''}, "
        f"{request.duration_s:g} s")
    offsets = schedule(level, request.duration_s, request.seed + number) if level.rate else None
    before = stats_client.statistics(request.model)
    start_at = time.time() + LEAD_S
    running = []
    for index, (senders, part) in enumerate(shares(level, clients, offsets)):
        task = LoadClientTask(request.endpoint, request.model, target.inputs, target.outputs, request.batch,
                              target.batching, senders, start_at, request.duration_s, request.drain_s,
                              request.seed, index, part)
        running.append(launcher.start(task, say))
    parts, failures = [], []
    limit = LEAD_S + request.duration_s + request.drain_s + 60
    for handle in running:
        outcome = handle.wait(max(1.0, start_at - time.time() + limit))
        if outcome is None:
            outcome = handle.stop(10)
        if outcome is not None and outcome.ok:
            parts.append(outcome.value)
        else:
            failures.append(str(outcome.value) if outcome is not None else "a client process did not stop")
    after = stats_client.statistics(request.model)
    return level_result(level, settings, parts, before, after, target.config, failures)


def describe(result: CellResult) -> str:
    """One line per level for the console."""
    if result.status != "ok":
        return f"  {result.status}: {result.reason}"
    r = result.scenario_result or {}
    line = (f"  {r['throughput_rps']:.4g} req/s, p50 {r['p50_ms']:.3g} ms, p90 {r['p90_ms']:.3g} ms, "
            f"p99 {r['p99_ms']:.3g} ms; {r['verdict']}")
    server = r.get("server")
    if server and server.get("avg_batch"):
        line += (f"; server: avg batch {server['avg_batch']:.3g}, queue {_ms(server['queue_ms'])}, "
                 f"infer {_ms(server['compute_infer_ms'])} ms")
    return line


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def levels_from(concurrency: Sequence[int] | None, rates: Sequence[float] | None,
                arrivals: str) -> tuple[LoadLevel, ...]:
    if concurrency:
        return tuple(LoadLevel(concurrency=c) for c in concurrency)
    return tuple(LoadLevel(rate=r, arrivals=arrivals) for r in rates or ())
