"""Metrics: class scores -> per-image top-5 predictions -> top1/top5 counts and intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Accuracy:
    """Counts, so that percentages and intervals are derived, never re-rounded."""

    n: int
    correct1: int
    correct5: int

    @property
    def top1(self) -> float:
        return 100.0 * self.correct1 / self.n if self.n else float("nan")

    @property
    def top5(self) -> float:
        return 100.0 * self.correct5 / self.n if self.n else float("nan")


def topk(scores: np.ndarray, k: int = 5) -> np.ndarray:
    """(N, C) scores -> (N, k) class indices, best first; ties go to the lower index."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, classes), got shape {scores.shape}")
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    result = np.take_along_axis(part, order, axis=1)
    # argpartition picks arbitrary members of a tie at the k-th place: redo those rows stably
    tied = (scores >= part_scores.min(axis=1, keepdims=True)).sum(axis=1) > k
    if tied.any():
        result[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    return result.astype(np.int32)

def accuracy(predictions: np.ndarray, labels: Sequence[int]) -> Accuracy:
    """Top-1 and top-5 counts from (N, >=5) predictions and N labels."""
    labels_arr = np.asarray(labels).reshape(-1, 1)
    if predictions.shape[0] != labels_arr.shape[0]:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels_arr.shape[0]} labels")
    hits = predictions[:, :5] == labels_arr
    return Accuracy(int(labels_arr.shape[0]), int(hits[:, 0].sum()), int(hits.any(axis=1).sum()))


def wilson_interval(successes: int, n: int, confidence: float = 0.95,
                    population: int | None = None) -> tuple[float, float]:
    """Wilson score interval for a proportion, in percent.

    `population`: the n items were drawn without replacement from a finite set of that many
    (a `--limit` subset of a dataset), and the interval is for the proportion over the whole
    set. The finite-population correction replaces n by the effective size n(N-1)/(N-n), so
    the interval narrows as the sample approaches the set and is a point when n == N.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n == 0:
        return 0.0, 100.0
    p = successes / n
    if population is not None:
        if n > population:
            raise ValueError(f"sample of {n} drawn from a population of {population}")
        if n == population:
            return 100.0 * p, 100.0 * p
        n = n * (population - 1) / (population - n)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs.

    Under "both classifiers are equally accurate" each discordant image is a fair coin, so
    min(b, c) ~ Binomial(b + c, 1/2); p = 2 P(X <= min(b, c)), capped at 1. Computed with
    exact integers (no overflow or underflow for 50,000 images).
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n, k = b + c, min(b, c)
    term = tail = 1  # C(n, 0)
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class Agreement:
    """Image-by-image comparison of a run's top-1 with a reference run's on the same images.

    `reference_only` (b) counts images the reference gets right and the run gets wrong;
    `run_only` (c) the reverse. Accuracy changes by (c - b) / n; McNemar tests c vs b.
    """

    n: int
    agree: int
    reference_only: int
    run_only: int

    @property
    def percent(self) -> float:
        return 100.0 * self.agree / self.n if self.n else float("nan")

    @property
    def mcnemar_p(self) -> float:
        return mcnemar_exact(self.reference_only, self.run_only)


def agreement(run_top1: np.ndarray, reference_top1: np.ndarray, labels: Sequence[int]) -> Agreement:
    """Top-1 agreement and discordant-correct counts of two runs over the same labelled images."""
    run, ref = np.asarray(run_top1).ravel(), np.asarray(reference_top1).ravel()
    truth = np.asarray(labels).ravel()
    if not run.shape == ref.shape == truth.shape:
        raise ValueError(f"runs differ in length: {run.shape[0]} vs {ref.shape[0]} predictions, "
                         f"{truth.shape[0]} labels")
    run_ok, ref_ok = run == truth, ref == truth
    return Agreement(int(run.shape[0]), int((run == ref).sum()), int((ref_ok & ~run_ok).sum()),
                     int((run_ok & ~ref_ok).sum()))


def per_class(predictions: np.ndarray, labels: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """Per true class: (images, top-1 correct, top-5 correct), from (N, >=5) predictions."""
    truth = np.asarray(labels).ravel()
    hits = predictions[:, :5] == truth.reshape(-1, 1)
    counts: dict[int, tuple[int, int, int]] = {}
    for label in np.unique(truth).tolist():
        mine = truth == label
        counts[int(label)] = (int(mine.sum()), int(hits[mine, 0].sum()),
                              int(hits[mine].any(axis=1).sum()))
    return counts
