"""`xpubench compare RUN_A RUN_B`: per matching cell, the ratio of medians and whether it is significant."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from xpubench.cli.options import add_results_option
from xpubench.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from xpubench.store import ResultStore

EXIT_REGRESSION = 1


@dataclass(frozen=True)
class Comparison:
    """B against A for one cell key: `ratio` = median(B) / median(A) (> 1: B is slower)."""

    key: str
    median_a_ms: float | None
    median_b_ms: float | None
    ratio: float | None
    p_value: float | None
    significant: bool
    verdict: str  # regression | improvement | same | within threshold | only in A | only in B | not comparable
    test: str = ""  # which test gave the p-value


def compare_samples(
    a_ns: np.ndarray, b_ns: np.ndarray, threshold: float = 0.05, alpha: float = 0.01, key: str = ""
) -> Comparison:
    """Mann-Whitney U (two-sided) on the raw call times of A and B, and the verdict.

    A regression: B slower, the difference significant at `alpha`, and the ratio of medians beyond
    1 + `threshold`; an improvement mirrors it (ratio below 1 / (1 + threshold)). Calls that follow
    one another are not independent, so the p-value is optimistic: the threshold guards against
    flagging a tiny but "significant" shift.
    """
    import numpy as np
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a_ns, dtype=np.float64), np.asarray(b_ns, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("each side needs at least 2 samples")
    median_a, median_b = float(np.median(a)), float(np.median(b))
    ratio = median_b / median_a if median_a > 0 else math.inf
    p_value = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    significant = p_value < alpha
    return Comparison(key, median_a / 1e6, median_b / 1e6, ratio, p_value, significant,
                      _verdict(significant, ratio, threshold), "Mann-Whitney U on the raw call times")


def compare_repeats(
    a_ms: list[float], b_ms: list[float], threshold: float = 0.05, alpha: float = 0.01, key: str = ""
) -> Comparison:
    """Welch's t test on the repeats' medians of A and B (each repeat a worker session of its own), the
    ratio of their means (the cells' medians), and the verdict as in `compare_samples`. Repeats are the
    independent measurements; the calls within one are not."""
    import numpy as np
    from scipy.stats import ttest_ind

    a, b = np.asarray(a_ms, dtype=np.float64), np.asarray(b_ms, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("each side needs at least 2 repeats")
    mean_a, mean_b = float(a.mean()), float(b.mean())
    ratio = mean_b / mean_a if mean_a > 0 else math.inf
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: the t statistic is undefined
        p_value = 0.0 if mean_a != mean_b else 1.0
    else:
        p_value = float(ttest_ind(a, b, equal_var=False).pvalue)
    significant = p_value < alpha
    return Comparison(key, mean_a, mean_b, ratio, p_value, significant, _verdict(significant, ratio, threshold),
                      f"Welch t on {a.size} + {b.size} repeat medians")


def _verdict(significant: bool, ratio: float, threshold: float) -> str:
    if significant and ratio > 1 + threshold:
        return "regression"
    if significant and ratio < 1 / (1 + threshold):
        return "improvement"
    return "within threshold" if significant else "same"


def compare_runs(store: ResultStore, run_a: str, run_b: str, threshold: float, alpha: float) -> list[Comparison]:
    """Every cell key of either run: compared on the repeats' medians where both runs measured it in two
    repeats or more, else on the raw call times."""
    records_a = {r["key"]: r for r in store.cells(run_a)}
    records_b = {r["key"]: r for r in store.cells(run_b)}
    found = []
    for key in [*records_a, *(k for k in records_b if k not in records_a)]:
        if key not in records_b or key not in records_a:
            side = "A" if key in records_a else "B"
            found.append(Comparison(key, None, None, None, None, False, f"only in {side}"))
            continue
        repeats_a = (records_a[key].get("repeats") or {}).get("medians_ms") or []
        repeats_b = (records_b[key].get("repeats") or {}).get("medians_ms") or []
        if len(repeats_a) >= 2 and len(repeats_b) >= 2:
            found.append(compare_repeats(repeats_a, repeats_b, threshold, alpha, key))
            continue
        a = store.samples(run_a, key)
        b = store.samples(run_b, key)
        if a.size < 2 or b.size < 2:
            statuses = f"{records_a[key]['status']}/{records_b[key]['status']}"
            found.append(Comparison(key, None, None, None, None, False, f"not comparable ({statuses})"))
            continue
        found.append(compare_samples(a, b, threshold, alpha, key))
    return found


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two stored runs cell by cell; exit 1 when B regresses",
        description="For each cell key in both runs: median of B / median of A and a test of the difference: "
        "Welch's t test on the repeats' medians where both cells have two repeats or more (each repeat a worker "
        "session: the independent measurements), else a Mann-Whitney U test on the raw call times. A regression "
        "is B slower, significant at --alpha, and beyond --threshold. "
        "Exit status: 0 no regression, 1 at least one regression, 2 a usage error (e.g. an unknown run id).",
    )
    p.add_argument("run_a", metavar="RUN_A", help="the baseline run id (xpubench show --list)")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    p.add_argument("--threshold", type=float, default=0.05, metavar="F",
                   help="a significant slow-down is a regression when B/A exceeds 1 + F (default: 0.05)")
    p.add_argument("--alpha", type=float, default=0.01, metavar="P",
                   help="significance level of the test (default: 0.01)")
    p.add_argument("--json", action="store_true", help="print the comparisons as JSON")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.store import ResultStore

    if not args.threshold >= 0:
        raise UsageError(f"--threshold must be >= 0, got {args.threshold}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    with ResultStore(args.results, create=False, readonly=True) as store:
        store.run(args.run_a)  # an unknown id is a one-line UsageError
        store.run(args.run_b)
        comparisons = compare_runs(store, args.run_a, args.run_b, args.threshold, args.alpha)
    regressions = [c for c in comparisons if c.verdict == "regression"]
    if args.json:
        print(json.dumps({"run_a": args.run_a, "run_b": args.run_b, "threshold": args.threshold,
                          "alpha": args.alpha, "cells": [asdict(c) for c in comparisons]}, indent=2))
    else:
        print(render(comparisons, args.run_a, args.run_b))
        print(f"{len(regressions)} regression(s) of {sum(c.ratio is not None for c in comparisons)} compared cells "
              f"(threshold {args.threshold:g}, alpha {args.alpha:g})")
    return EXIT_REGRESSION if regressions else 0


def render(comparisons: list[Comparison], run_a: str, run_b: str) -> str:
    width = max([len("cell"), *(len(c.key) for c in comparisons)])
    lines = [
        f"A = {run_a}, B = {run_b}",
        f"{'cell':<{width}}  {'A median ms':>11}  {'B median ms':>11}  {'B/A':>7}  {'p':>8}  verdict",
    ]
    for c in comparisons:
        if c.ratio is None:
            lines.append(f"{c.key:<{width}}  {'':>11}  {'':>11}  {'':>7}  {'':>8}  {c.verdict}")
            continue
        flag = "  <-- REGRESSION" if c.verdict == "regression" else ""
        lines.append(
            f"{c.key:<{width}}  {c.median_a_ms:>11.4g}  {c.median_b_ms:>11.4g}  {c.ratio:>7.3f}  "
            f"{c.p_value:>8.2g}  {c.verdict}{flag}"
        )
    return "\n".join(lines)
