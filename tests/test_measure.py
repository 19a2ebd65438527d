"""The timing loop's stop rules and the stability verdict, on the null backend's virtual clock."""

import numpy as np
import pytest

from xpubench.backends.null import NullBackend
from xpubench.core.cell import Cell, CellResult
from xpubench.core.measure import MeasureConfig, measure, stability

POOL = [np.zeros((1, 28, 28, 1), np.float32)] * 4


def run(script, **config):
    backend = NullBackend(script=script)
    samples = measure(backend.infer, POOL, MeasureConfig(**config), clock=backend.clock)
    return backend, samples


def test_first_inference_is_timed_on_its_own_then_warm_up_by_count_and_time():
    backend, samples = run([5e-3] + [1e-3] * 10_000, warmup_runs=10, warmup_time_s=0.05, min_runs=5, min_time_s=0)
    assert samples.first_ns == 5_000_000
    assert samples.warmup_runs == 50  # 0.05 s of 1 ms calls outlasts 10 runs
    assert np.all(samples.samples_ns == 1_000_000)
    assert backend.calls == 1 + 50 + samples.samples_ns.size


def test_warm_up_count_wins_when_it_is_longer_than_the_time():
    _, samples = run([1e-3], warmup_runs=30, warmup_time_s=0.001, min_runs=5, min_time_s=0)
    assert samples.warmup_runs == 30


def test_needs_both_min_runs_and_min_time():
    _, fast = run([1e-3], warmup_runs=0, warmup_time_s=0, min_runs=100, min_time_s=2.0)
    assert fast.samples_ns.size == 2000  # 2 s of 1 ms calls: time decides
    _, slow = run([0.1], warmup_runs=0, warmup_time_s=0, min_runs=100, min_time_s=2.0)
    assert slow.samples_ns.size == 100  # 100 calls of 0.1 s: the count decides
    assert "100 runs" in slow.stop_reason


def test_max_time_caps_the_measurement():
    _, samples = run([1.0], warmup_runs=0, warmup_time_s=0, min_runs=100, min_time_s=1, max_time_s=5)
    assert samples.samples_ns.size == 5
    assert "maximum time" in samples.stop_reason


def test_early_stop_once_the_median_is_pinned():
    _, samples = run([1e-3], warmup_runs=0, warmup_time_s=0, min_runs=100, min_time_s=60, ci_target=0.01)
    assert samples.samples_ns.size == 100
    assert "CI of the median" in samples.stop_reason


def test_no_early_stop_while_the_median_is_uncertain():
    rng = np.random.default_rng(0)
    noisy = list(rng.uniform(0.5e-3, 1.5e-3, 5000))
    _, samples = run(noisy, warmup_runs=0, warmup_time_s=0, min_runs=100, min_time_s=3, ci_target=0.001)
    assert "CI" not in samples.stop_reason


def test_inputs_rotate_through_the_pool():
    seen = []
    pool = [np.full(1, i) for i in range(3)]
    backend = NullBackend(script=[1e-3])

    def infer(x):
        seen.append(int(x[0]))
        return backend.infer(x)

    measure(infer, pool, MeasureConfig(warmup_runs=2, warmup_time_s=0, min_runs=4, min_time_s=0), backend.clock)
    assert seen[:7] == [0, 1, 2, 0, 1, 2, 0]


def test_the_runtime_own_clock_gives_the_samples_and_the_host_clock_the_stop_rules():
    """`own_ns` (OpenVINO's InferRequest.latency) is each call's sample; the run still stops on the clock."""
    backend = NullBackend(script=[1e-3])
    pool = [np.full(1, i) for i in range(3)]
    config = MeasureConfig(warmup_runs=0, warmup_time_s=0, min_runs=5, min_time_s=0.01)
    samples = measure(backend.infer, pool, config, backend.clock, own_ns=lambda x: 1000 + int(x[0]))
    assert set(samples.samples_ns.tolist()) == {1000, 1001, 1002}
    assert samples.samples_ns.size >= 9  # 1 ms a call on the host clock, 10 ms at least: the clock stopped it


@pytest.mark.parametrize(
    "field, value",
    [("min_runs", 0), ("min_time_s", -1), ("max_time_s", 0), ("ci_target", 2.0), ("warmup_runs", -1)],
)
def test_bad_config_is_rejected_when_built(field, value):
    with pytest.raises(ValueError):
        MeasureConfig(**{field: value})


def test_steady_samples_are_stable():
    verdict = stability([np.full(1000, 1_000_000)] * 3, 0.1, 0.2, interval_halfwidth=0.01)
    assert verdict.stable and verdict.warnings == () and verdict.tolerance == 0.05


def test_drifting_samples_are_flagged():
    drifting = np.linspace(1_000_000, 1_300_000, 1000)
    verdict = stability([drifting], None, None)
    assert not verdict.stable
    assert any("drift" in w for w in verdict.warnings) and verdict.window_drift > 0.1


def test_a_heavy_tail_is_a_figure_not_a_doubt():
    rng = np.random.default_rng(2)
    tail = np.concatenate([np.full(950, 1e6), rng.uniform(5e6, 20e6, 50)])  # 5 % of calls 5-20x slower
    rng.shuffle(tail)
    verdict = stability([tail, tail[::-1]], None, None, interval_halfwidth=0.0)
    assert verdict.stable and verdict.warnings == ()
    assert verdict.tail_ratio > 4


def test_repeats_that_disagree_are_flagged_with_the_tolerance():
    verdict = stability([np.full(100, 1e6), np.full(100, 1.2e6)], None, None, interval_halfwidth=0.6)
    assert not verdict.stable
    assert any("repeats' medians disagree" in w and "(> +-5%)" in w for w in verdict.warnings)


def test_an_interval_widened_by_earlier_runs_says_so_not_that_the_repeats_disagree():
    agreeing = [np.full(100, 1e6), np.full(100, 1.001e6)]
    verdict = stability(agreeing, None, None, interval_halfwidth=0.12, earlier_runs=4)
    assert not verdict.stable
    assert verdict.warnings[0].startswith("the cell's medians in 4 earlier runs here and this one spread")
    assert not any("disagree" in w for w in verdict.warnings)


def test_rising_load_is_noted_but_no_doubt():
    verdict = stability([np.full(100, 1e6)], 0.2, 1.5)
    assert any("load average rose" in w for w in verdict.warnings) and verdict.stable


def test_cell_result_derives_per_sample_time_throughput_and_energy():
    backend = NullBackend(script=[4e-3])
    config = MeasureConfig(warmup_runs=0, warmup_time_s=0, min_runs=10, min_time_s=0)
    samples = measure(backend.infer, POOL, config, backend.clock)
    cell = Cell(model="m", backend="null", batch_size=8)
    result = CellResult.from_samples(cell, samples, stability([samples.samples_ns], None, None), tdp_w=15.0)
    record = result.as_dict()
    assert record["latency_ms"]["median"] == pytest.approx(4.0)
    assert record["per_sample_ms"] == pytest.approx(0.5)
    assert record["throughput_sps"] == pytest.approx(2000.0)
    assert record["energy"] == {"k_w_ms": pytest.approx(7.5), "tdp_w": 15.0, "source": "modelled"}
    unknown = CellResult.from_samples(cell, samples, stability([samples.samples_ns], None, None), tdp_w=None)
    assert unknown.as_dict()["energy"] == {"k_w_ms": None, "tdp_w": None, "source": "unknown"}
