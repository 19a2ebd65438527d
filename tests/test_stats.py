"""Statistics checked against distributions whose answers are known."""

import math

import numpy as np
import pytest

from xpubench.core.stats import LatencyStats, median_ci, median_ci_halfwidth


def test_exponential_quantiles_match_theory():
    rng = np.random.default_rng(1)
    rate = 1 / 2e6  # mean 2 ms, in ns
    samples = rng.exponential(1 / rate, 200_000)
    stats = LatencyStats.from_samples_ns(samples)
    assert stats.median == pytest.approx(2 * math.log(2), rel=0.01)
    assert stats.p90 == pytest.approx(2 * math.log(10), rel=0.01)
    assert stats.p99 == pytest.approx(2 * math.log(100), rel=0.02)
    assert stats.mean == pytest.approx(2.0, rel=0.01)
    assert stats.stdev == pytest.approx(2.0, rel=0.02)
    assert stats.ci95_low < 2 * math.log(2) < stats.ci95_high
    assert stats.min == pytest.approx(samples.min() / 1e6)
    assert stats.max == pytest.approx(samples.max() / 1e6)


def test_closed_form_interval_equals_a_brute_force_bootstrap():
    rng = np.random.default_rng(7)
    x = rng.lognormal(0, 0.5, 201)
    resamples = rng.choice(x, size=(40_000, x.size), replace=True)
    medians = np.sort(np.median(resamples, axis=1))
    brute = np.quantile(medians, [0.025, 0.975])
    low, high = median_ci(x)
    spacing = np.diff(np.sort(x)).max()
    assert low == pytest.approx(brute[0], abs=spacing)
    assert high == pytest.approx(brute[1], abs=spacing)


def test_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    trials = 600
    hits = sum(median_ci_lo_hi_contains(rng.normal(10, 1, 101), 10.0) for _ in range(trials))
    assert 0.92 <= hits / trials <= 0.985


def median_ci_lo_hi_contains(x, truth):
    low, high = median_ci(x)
    return low <= truth <= high


def test_interval_narrows_with_more_samples():
    rng = np.random.default_rng(5)
    wide = median_ci_halfwidth(rng.normal(10, 1, 100))
    narrow = median_ci_halfwidth(rng.normal(10, 1, 10_000))
    assert narrow < wide / 5


def test_constant_samples_have_zero_spread():
    stats = LatencyStats.from_samples_ns([1_000_000] * 50)
    assert (stats.median, stats.stdev, stats.ci95_low, stats.ci95_high) == (1.0, 0.0, 1.0, 1.0)


def test_a_clock_that_reads_in_steps_never_gives_a_zero_width_interval():
    from xpubench.core.stats import RepeatInterval

    # 5 us calls read by a clock in 10 ns steps: most of them read the same value, and two repeats can
    # share their median to the nanosecond.
    rng = np.random.default_rng(8)
    repeats = [5000 + 10 * np.round(rng.normal(0, 0.3, 20_000)) for _ in range(2)]
    assert np.median(repeats[0]) == np.median(repeats[1]) == 5000
    assert median_ci(repeats[0]) == (4995.0, 5005.0)
    found = RepeatInterval.from_repeats(repeats)
    assert (found.low, found.high) == pytest.approx((4995e-6, 5005e-6))
    assert found.halfwidth == pytest.approx(0.001)


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        LatencyStats.from_samples_ns([])


def test_the_repeat_interval_predicts_a_reruns_median_from_the_repeats_medians():
    from xpubench.core.stats import RepeatInterval, t_975

    rng = np.random.default_rng(4)
    # Three processes whose medians differ by 0 %, +4 % and -2 %: the within-process interval of the pooled
    # samples is far narrower than that spread, the repeat interval is not.
    repeats = [rng.normal(m, 0.05e6, 5000) for m in (1.00e6, 1.04e6, 0.98e6)]
    found = RepeatInterval.from_repeats(repeats)
    medians = np.array([np.median(r) for r in repeats]) / 1e6
    half = t_975(2) * medians.std(ddof=1) * np.sqrt(2 / 3)  # a rerun's mean of 3 medians, not this run's
    assert found.center == pytest.approx(medians.mean())
    assert (found.low, found.high) == pytest.approx((medians.mean() - half, medians.mean() + half))
    pooled_low, pooled_high = median_ci(np.concatenate(repeats) / 1e6)
    assert found.high - found.low > 10 * (pooled_high - pooled_low)
    assert found.repeats == 3 and "t prediction interval (df 2)" in found.method


def test_earlier_runs_widen_the_interval_to_the_spread_between_runs_and_never_narrow_it():
    from xpubench.core.stats import RepeatInterval, t_975

    rng = np.random.default_rng(6)
    repeats = [rng.normal(m, 0.1e6, 5000) for m in (1.00e6, 1.01e6, 0.99e6)]  # one run's repeats agree
    own = RepeatInterval.from_repeats(repeats)
    earlier = [1.06, 0.95, 1.03]  # but the machine moved the median by up to 6 % between runs
    wider = RepeatInterval.from_repeats(repeats, earlier)
    half = t_975(3) * np.std([*earlier, own.center], ddof=1) * np.sqrt(2)
    assert wider.center == own.center
    assert (wider.low, wider.high) == pytest.approx((own.center - half, own.center + half))
    assert "3 earlier runs" in wider.method and wider.earlier_runs == 3 and own.earlier_runs == 0
    assert RepeatInterval.from_repeats(repeats, [1.0, 1.0]) == own  # runs that agree leave it as it was
    assert RepeatInterval.from_repeats(repeats, [1.3]) == own  # one earlier run gives no spread


def test_one_repeat_says_its_interval_is_the_within_process_one():
    from xpubench.core.stats import RepeatInterval

    x = np.random.default_rng(5).normal(1e6, 1e4, 2001)
    found = RepeatInterval.from_repeats([x])
    assert (found.low, found.high) == median_ci(x / 1e6) and found.method.startswith("one repeat")


def test_t_quantiles():
    from xpubench.core.stats import t_975

    assert t_975(1) == 12.706 and t_975(4) == 2.776 and t_975(20) == 2.086
    assert 1.96 < t_975(100) < 2.0 and abs(t_975(30) - 2.042) < 0.005
    with pytest.raises(ValueError):
        t_975(0)
