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


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion, in percent."""
    if n == 0:
        return 0.0, 100.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)
