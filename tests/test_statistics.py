"""The statistics of the gates against values computed by hand (and scipy as a second check).

The literal expected numbers below come from the textbook formulas worked out separately
(Wilson: Newcombe 1998's example 8/10 -> 0.4902-0.9433; binomial tails as fractions).
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_vaccbench.metrics import Agreement, agreement, mcnemar_exact, wilson_interval


def test_wilson_interval_matches_the_textbook_example() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(49.0162, abs=1e-3)
    assert hi == pytest.approx(94.3318, abs=1e-3)


def test_wilson_interval_of_a_sample_from_a_finite_set_uses_the_effective_size() -> None:
    # 10 of 20 items: effective n = 10 * 19 / 10 = 19, p = 0.8 -> Wilson(0.8, 19)
    lo, hi = wilson_interval(8, 10, population=20)
    assert (lo, hi) == (pytest.approx(57.7924, abs=1e-3), pytest.approx(92.1169, abs=1e-3))
    # the whole set has no sampling error; a sample bigger than its set is an error
    assert wilson_interval(13, 20, population=20) == (pytest.approx(65.0), pytest.approx(65.0))
    with pytest.raises(ValueError, match="population of 20"):
        wilson_interval(5, 21, population=20)


def test_wilson_interval_narrows_with_lower_confidence() -> None:
    # z(0.5) = 0.67449: Wilson(0.85, n = 20 * 99 / 80) = 79.530 .. 89.207
    lo, hi = wilson_interval(17, 20, confidence=0.5, population=100)
    assert (lo, hi) == (pytest.approx(79.5297, abs=1e-3), pytest.approx(89.2069, abs=1e-3))
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=95)


@pytest.mark.parametrize("b, c, p", [
    (1, 5, 14 / 64),        # 2 * (C(6,0) + C(6,1)) / 2^6
    (5, 1, 14 / 64),        # symmetric
    (0, 10, 2 / 1024),      # 2 * C(10,0) / 2^10
    (2, 8, 2 * 56 / 1024),  # 2 * (1 + 10 + 45) / 2^10
    (3, 3, 1.0),            # 2 * P(X <= 3 | n=6) = 2 * 42/64 > 1: capped
    (0, 0, 1.0),            # no discordant pairs: no evidence of a difference
])
def test_mcnemar_exact_hand_computed(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("b, c", [(7, 19), (40, 41), (130, 95), (700, 820), (1500, 1380)])
def test_mcnemar_exact_agrees_with_scipy_binomtest(b: int, c: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_exact_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_agreement_counts_a_hand_built_example() -> None:
    labels = [0, 1, 2, 3, 4, 5]
    reference = np.array([0, 1, 2, 9, 9, 5])  # right on images 0, 1, 2, 5
    run = np.array([0, 1, 9, 3, 9, 7])        # right on images 0, 1, 3
    a = agreement(run, reference, labels)
    # same prediction on images 0, 1 and 4 (both wrong there, but alike)
    assert a == Agreement(n=6, agree=3, reference_only=2, run_only=1)
    assert a.percent == pytest.approx(50.0)
    assert a.mcnemar_p == pytest.approx(1.0)  # 2 * (1 + 3) / 8 > 1


def test_agreement_refuses_runs_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        agreement(np.zeros(3), np.zeros(4), [0, 0, 0])
