"""Task metrics: a model's outputs against the truth, one number each."""

from __future__ import annotations

import numpy as np

# Whether a larger value is better, per metric: what a sweep's accuracy delta and a report's ranking read.
HIGHER_IS_BETTER = {"top1": True, "auc": True, "resolution": False}


def evaluate(metric: str, outputs: np.ndarray, y: np.ndarray) -> float:
    """`metric` of `outputs` (the model's first output, samples on axis 0) against labels or targets `y`.

    top1: the fraction whose highest score is the label. auc: the area under the ROC curve of the
    positive (last) class's score, for binary labels. resolution: the spread of the response
    r = prediction / truth relative to its mean, std(r) / mean(r), lower is better; for a calibrated
    regression (mean r = 1) that is std((pred - true) / true). A prediction with several values per
    sample (a generated shower) is summed first, so a generator's figure is its energy resolution
    whatever the calorimeter's sampling fraction.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(y)
    n = len(y)
    if len(outputs) != n:
        raise ValueError(f"{len(outputs)} outputs for {n} labels")
    if metric == "top1":
        return float(np.mean(np.argmax(outputs.reshape(n, -1), axis=-1) == y))
    if metric == "auc":
        scores = outputs.reshape(n, -1)[:, -1]
        return roc_auc(scores, y.astype(np.int64))
    if metric == "resolution":
        predicted = outputs.reshape(n, -1).sum(axis=-1)
        response = predicted / y.astype(np.float64)
        mean = float(np.mean(response))
        return float(np.std(response) / mean) if mean > 0 else float("inf")
    raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(HIGHER_IS_BETTER)}")


def confusion(outputs: np.ndarray, y: np.ndarray) -> list[list[int]]:
    """Counts of (true class, predicted class) for class scores: rows true, columns predicted."""
    n = len(y)
    scores = np.asarray(outputs).reshape(n, -1)
    # One score per sample is a binary classifier's probability of the positive class.
    predicted = (scores[:, 0] > 0.5).astype(np.int64) if scores.shape[1] == 1 else np.argmax(scores, axis=-1)
    classes = max(scores.shape[1], 2, int(np.max(y)) + 1 if n else 0)
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y, dtype=np.int64), predicted), 1)
    return counts.tolist()


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count half):
    the Mann-Whitney statistic from mid-ranks, exact and O(n log n)."""
    positives = int(np.sum(labels == 1))
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both classes among the labels")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + ends + 1) / 2.0)[inverse]  # mid-ranks over runs of equal scores
    rank_sum = float(ranks[labels == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
