"""Metrics against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_vaccbench.metrics import accuracy, topk, wilson_interval


def test_topk_and_accuracy_hand_example() -> None:
    scores = np.zeros((4, 10), dtype=np.float32)
    scores[0, [3, 1, 7, 0, 2, 9]] = [9, 8, 7, 6, 5, 4]  # label 3: top1 hit
    scores[1, [5, 4, 3, 2, 1]] = [5, 4, 3, 2, 1]  # label 1: 5th -> top5 hit only
    scores[2, [8]] = 1  # label 0: ties among zeros -> lowest indices: 0 is 2nd -> top5 hit
    scores[3, [2, 4, 6, 8, 9]] = [1, 2, 3, 4, 5]  # label 0: miss
    preds = topk(scores)
    assert preds.tolist() == [[3, 1, 7, 0, 2], [5, 4, 3, 2, 1], [8, 0, 1, 2, 3], [9, 8, 6, 4, 2]]
    acc = accuracy(preds, [3, 1, 0, 0])
    assert (acc.n, acc.correct1, acc.correct5) == (4, 1, 3)
    assert acc.top1 == 25.0 and acc.top5 == 75.0


def test_topk_matches_a_full_sort_on_random_scores() -> None:
    scores = np.random.default_rng(1).normal(size=(64, 1000)).astype(np.float32)
    assert np.array_equal(topk(scores), np.argsort(-scores, axis=1, kind="stable")[:, :5])


def test_wilson_interval_hand_values() -> None:
    # p = 0.5, n = 100, z = 1.959964: centre 0.5, half = z*sqrt(.25/100 + z^2/40000)/(1+z^2/100)
    lo, hi = wilson_interval(50, 100, 0.95)
    assert lo == pytest.approx(40.383, abs=1e-3) and hi == pytest.approx(59.617, abs=1e-3)
    lo, hi = wilson_interval(0, 10, 0.95)
    assert lo == pytest.approx(0.0, abs=1e-9) and hi == pytest.approx(27.754, abs=1e-3)


def test_per_class_counts_by_hand():
    from pytest_vaccbench.metrics import per_class

    # class 3: two images, first right at top-1, second in the top-5 only; class 7: one miss
    predictions = np.array([[3, 1, 2, 4, 5], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4]])
    assert per_class(predictions, [3, 3, 7]) == {3: (2, 1, 2), 7: (1, 0, 0)}
