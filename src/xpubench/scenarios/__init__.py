"""Load scenarios: how queries reach a backend (single-stream, batch sweep, offline, server, MLPerf LoadGen)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xpubench.core.errors import InvalidSetting
from xpubench.core.measure import MeasureConfig, Samples, measure

if TYPE_CHECKING:
    import numpy as np

    from xpubench.backends.base import Backend
    from xpubench.core.cell import Cell

DEFAULT_BOUND_MS = 10.0
DEFAULT_MAX_BATCH = 1024

# name -> "module:function" inside this package; imported when a cell of that scenario runs, so
# LoadGen is loaded only by the cells that use it.
REGISTRY: dict[str, str] = {
    "single-stream": "loops:single_stream",
    "batch-sweep": "loops:batch_sweep",
    "offline": "loops:offline",
    "server": "server:server",
    "mlperf-singlestream": "mlperf:singlestream",
    "mlperf-multistream": "mlperf:multistream",
    "mlperf-server": "mlperf:server",
    "mlperf-offline": "mlperf:offline",
}
SCENARIOS = tuple(REGISTRY)
# Scenarios that choose their own batches (or whose queries are single samples): their cells
# carry batch size 1 and the batch they ran is in `scenario_result["batch"]`.
SELF_BATCHING = frozenset(REGISTRY) - {"single-stream"}


@dataclass(frozen=True)
class ScenarioConfig:
    """Load settings shared by the scenarios of a matrix. Checked when built; never changed during a run.

    `qps` is the arrival rate of `server` and the target of `mlperf-server` (None: calibrated by a
    short probe); `bound_ms` their latency bound; `max_batch` caps the batch sweeps.
    """

    qps: float | None = None
    bound_ms: float = DEFAULT_BOUND_MS
    max_batch: int = DEFAULT_MAX_BATCH
    seed: int = 20260501  # Poisson arrivals and LoadGen's schedules: the same load every run

    def __post_init__(self) -> None:
        if self.qps is not None and not self.qps > 0:
            raise InvalidSetting("qps", f"the arrival rate must be a positive number of queries per second, "
                                 f"got {self.qps:g}")
        if not self.bound_ms > 0:
            raise InvalidSetting("bound_ms", f"the latency bound must be a positive number of milliseconds, "
                                 f"got {self.bound_ms:g}")
        if self.max_batch < 1:
            raise InvalidSetting("max_batch", f"the largest batch of a sweep must be >= 1, got {self.max_batch}")


def check_scenarios(names: Sequence[str]) -> tuple[str, ...]:
    """The names, checked; raises ValueError with a one-line message for an unknown one."""
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown scenario {name!r}: choose from {', '.join(REGISTRY)}")
    if not names:
        raise ValueError("give at least one scenario")
    return tuple(dict.fromkeys(names))


# Scenarios that can time the model's compute alone (`--timing compute`): the closed loops, whose calls
# are the whole load. The others time queries as a client sees them, handover included.
COMPUTE_TIMED = frozenset({"single-stream", "batch-sweep", "offline"})


@dataclass
class ScenarioRun:
    """What a scenario gets: an open backend, its inputs, and the settings of the matrix. `pool(batch)`
    gives what `call` takes: prepared host batches, or (`--timing compute`) inputs already handed to the
    runtime."""

    cell: Cell
    backend: Backend
    pool: Callable[[int], list[Any]]  # prepared, distinct input batches of a given size
    arrays: Callable[[], list[np.ndarray]]  # every host sample, one array per input (MLPerf's QSL)
    measure: MeasureConfig
    settings: ScenarioConfig

    @property
    def call(self) -> Callable[[Any], Any]:
        """The timed call: the backend's end-to-end `infer`, or its `compute` alone."""
        return self.backend.compute if self.cell.timing == "compute" else self.backend.infer

    def timed(self, pool: Sequence[Any], config: MeasureConfig) -> Samples:
        """The timing loop over `pool` with the backend's clock. Compute alone is read from the runtime's
        own clock where it keeps one (`Backend.compute_ns`), as the vendor's tool reads it: the host clock
        would add the Python call into the runtime, a few microseconds that are no compute."""
        own_ns = self.backend.compute_ns if self.cell.timing == "compute" and self.backend.compute_clock else None
        return measure(self.call, pool, config, clock=self.backend.clock, own_ns=own_ns)


@dataclass
class Outcome:
    """What a scenario measured. `samples` are per-call times of `batch` samples each; for `server`
    and MLPerf they are per-query latencies as the scenario defines them (said in `result`)."""

    samples: Samples
    batch: int
    result: dict[str, Any] = field(default_factory=dict)
    throughput_sps: float | None = None  # None: batch x calls / busy time
    warnings: tuple[str, ...] = ()


def run_scenario(run: ScenarioRun) -> Outcome:
    module, _, function = REGISTRY[run.cell.scenario].partition(":")
    scenario: Callable[[ScenarioRun], Outcome] = getattr(
        importlib.import_module(f"{__name__}.{module}"), function
    )
    return scenario(run)


def summary(result: dict[str, Any] | None) -> str:
    """A scenario's figures in one short line, for the console table's notes."""
    if not result:
        return ""
    parts = []
    if "verdict" in result:
        parts.append(str(result["verdict"]))
    if "knee" in result:
        parts.append(f"knee b{result['knee']}")
    if "batch" in result and "knee" not in result:
        parts.append(f"b{result['batch']}")
    if result.get("qps") is not None:
        parts.append(f"{result['qps']:.4g} q/s")
    if result.get("p99_ms") is not None and result.get("bound_ms") is not None:
        parts.append(f"p99 {result['p99_ms']:.3g} ms vs bound {result['bound_ms']:g} ms")
    if result.get("growth") is not None:
        parts.append(f"late/early p50 x{result['growth']:.3g}")
    return ", ".join(parts)


def unavailable_reason(scenario: str, timing: str = "end-to-end") -> str | None:
    """None when the scenario can run in this environment with this timing; otherwise one line saying why not."""
    if timing == "compute" and scenario not in COMPUTE_TIMED:
        return f"{scenario} times queries as a client sees them: --timing compute applies to " + \
            ", ".join(sorted(COMPUTE_TIMED))
    if scenario.startswith("mlperf-"):
        try:  # imported, not only found: a broken or blocked install counts as missing
            importlib.import_module("mlperf_loadgen")
        except ImportError as exc:
            return f"MLPerf LoadGen cannot be imported ({exc}): pip install mlcommons-loadgen"
    return None
