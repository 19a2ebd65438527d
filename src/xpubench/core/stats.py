"""Latency statistics computed from raw samples, after the measurement is over.

Every metric is defined here, once:

- median, p90, p99: order statistics of the per-call times (linear interpolation, numpy's default);
- mean, stdev (sample, ddof=1), min, max;
- ci95_low / ci95_high: the 95 % bootstrap percentile interval of the median. It is computed in
  closed form (the distribution of a resample's median is binomial over the order statistics),
  which equals a bootstrap with infinitely many resamples: exact, deterministic and O(n). It is
  never narrower than the clock's step seen in the samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import betainc


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one cell's call times, in milliseconds."""

    median: float
    p90: float
    p99: float
    mean: float
    stdev: float
    min: float
    max: float
    ci95_low: float
    ci95_high: float

    @classmethod
    def from_samples_ns(cls, samples_ns) -> LatencyStats:
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        if ms.size == 0:
            raise ValueError("no samples to summarise")
        low, high = median_ci(ms)
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            median=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=float(ms.mean()),
            stdev=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            min=float(ms.min()),
            max=float(ms.max()),
            ci95_low=low,
            ci95_high=high,
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def median_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap percentile interval of the median, in closed form.

    A resample of size n draws each sorted sample x_(j) with probability 1/n. Its median m (the
    k-th smallest value, k = ceil(n/2)) satisfies m <= x_(j) exactly when at least k of the n draws
    fall at or below x_(j): P = P(Binomial(n, j/n) >= k). The interval is read off that CDF, and widened
    to at least half the smallest step between distinct samples on each side of the median (the resolution
    of the clock that read them).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return float(x[0]), float(x[0])
    k = math.ceil(n / 2)
    j = np.arange(1, n + 1)
    cdf = betainc(k, n - k + 1, j / n)  # P(Binomial(n, j/n) >= k): a resample's median <= x_(j)
    alpha = (1.0 - confidence) / 2.0
    lo_index = int(np.searchsorted(cdf, alpha, side="left"))
    hi_index = int(np.searchsorted(cdf, 1.0 - alpha, side="left"))
    low, high = float(x[min(lo_index, n - 1)]), float(x[min(hi_index, n - 1)])
    # A clock reads in steps: when hundreds of calls read the same value, the order statistics give a zero
    # width the clock cannot support. The interval is never narrower than the samples' smallest step.
    steps = np.diff(x)
    steps = steps[steps > 0]
    if steps.size:
        median, half_step = float(np.median(x)), float(steps.min()) / 2.0
        low, high = min(low, median - half_step), max(high, median + half_step)
    return low, high


def median_ci_halfwidth(samples) -> float:
    """Half the width of the median's 95 % interval, relative to the median (0.01 = +-1 %)."""
    low, high = median_ci(samples)
    median = float(np.median(samples))
    return (high - low) / 2.0 / median if median > 0 else math.inf


# Two-sided 95 % quantiles of Student's t by degrees of freedom (scipy.stats.t.ppf(0.975, df)).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)


def t_975(df: int) -> float:
    """Student's t quantile for a two-sided 95 % interval with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("a t interval needs at least 2 values")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # within 0.2 % of the exact value past 20


@dataclass(frozen=True)
class RepeatInterval:
    """Where the median of a rerun of the cell falls, from R repeats (each a worker session of its own), in ms.

    `center` is the mean of the repeats' medians: the cell's median. With two or more repeats the interval is
    Student's t prediction interval for the mean of R new repeats' medians (df = R - 1): center +- t x s x
    sqrt(1/R + 1/R), s the standard deviation of the repeats' medians. Each repeat's median carries both the
    spread within its process and the spread between processes, so the interval covers both, and it is about
    what a rerun reports, not only about the mean of this run. It is never narrower than the within-process
    interval of the pooled samples, nor wider than the fastest and the slowest call. With one repeat only the
    within-process interval exists, and `method` says so.

    Repeats of one run share its hour: a machine that drifts between runs (a VM's neighbours, its clock
    speed) moves every repeat alike, so their spread cannot show it. Given the medians of two or more earlier
    runs of the cell on the same machine, the interval is at least center +- t x s_runs x sqrt(2) (df = the
    earlier runs), s_runs the standard deviation of those medians and this one: what a rerun's median has
    been seen to do here.
    """

    center: float
    low: float
    high: float
    repeats: int
    method: str
    earlier_runs: int = 0  # the earlier runs whose medians' spread set the width; 0: the repeats' own

    @property
    def halfwidth(self) -> float:
        """Half the interval's width relative to its center (0.01 = +-1 %)."""
        return (self.high - self.low) / 2.0 / self.center if self.center > 0 else math.inf

    @classmethod
    def from_repeats(cls, repeats_ns, earlier_medians: Sequence[float] = ()) -> RepeatInterval:
        ms = [np.asarray(r, dtype=np.float64) / 1e6 for r in repeats_ns if np.size(r)]
        if not ms:
            raise ValueError("no samples to summarise")
        pooled_low, pooled_high = median_ci(np.concatenate(ms))
        if len(ms) == 1:
            center = float(np.median(ms[0]))
            return cls(center, pooled_low, pooled_high, 1,
                       "one repeat: the within-process bootstrap interval of the median (a rerun may fall outside)")
        count = len(ms)
        medians = np.array([np.median(m) for m in ms])
        center = float(medians.mean())
        half = t_975(count - 1) * float(medians.std(ddof=1)) * math.sqrt(2.0 / count)
        half = max(half, (pooled_high - pooled_low) / 2.0)
        method = (f"t prediction interval (df {count - 1}) of a rerun's mean of {count} repeat medians, each repeat "
                  "a worker session of its own")
        earlier = [float(m) for m in earlier_medians]
        widened_by = 0
        if len(earlier) >= 2:
            between = t_975(len(earlier)) * float(np.std([*earlier, center], ddof=1)) * math.sqrt(2.0)
            if between > half:
                half, widened_by = between, len(earlier)
                method = (f"t prediction interval (df {len(earlier)}) of a rerun's median from the medians of "
                          f"{len(earlier)} earlier runs of the cell on this machine and this one: wider than its "
                          f"{count} repeats' own")
        # No median lies outside the fastest and the slowest call measured.
        fastest, slowest = min(float(m.min()) for m in ms), max(float(m.max()) for m in ms)
        low, high = max(center - half, fastest), min(center + half, slowest)
        return cls(center, low, high, count, method, widened_by)
