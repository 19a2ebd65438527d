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


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        LatencyStats.from_samples_ns([])
