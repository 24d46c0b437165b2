"""The gate's power: the smallest drop a run would flag (gate.detectable_drop), checked against
the gate's own verdicts count by count (brute force over every measurable top1), against
an independent Wilson interval (scipy's), and the weak-gate status built on it."""

from __future__ import annotations

import math

import pytest

from pytest_vaccbench.baselines import Tolerance
from pytest_vaccbench.gate import (Expectation, Images, WeakLimit, detectable_drop, images_needed,
                                   judge, weakness)
from pytest_vaccbench.metrics import Accuracy

TOL = Tolerance(0.5, 0.5)


def flagged_drops(want: float, expected: Expectation, images: Images, near: float | None,
                  window: float = 4.0) -> list[tuple[float, bool]]:
    """(drop, whether judge fails it) for every count a run of images.n could measure below
    `want` (within `window` points of `near`, when given): the gate's decisions themselves."""
    found = []
    for correct in range(images.n + 1):
        drop = want - 100.0 * correct / images.n
        if drop <= 0 or (near is not None and abs(drop - near) > window):
            continue
        verdict = judge(Accuracy(images.n, correct, correct), expected, images, "update",
                        weak_limit=None)
        found.append((drop, not verdict.passed))
    return found


CASES = {
    # the story: a baseline of 50 of the 650 images, a run of all 650
    "baseline-subset": (92.0, Expectation(92.0, None, TOL, "b", n=50, fingerprint="sub"),
                        Images("val", 650, 650, "all")),
    # --limit n of the 50,000 val images against a baseline of all of them (the docs' table)
    "run-subset-50": (75.0, Expectation(75.0, None, TOL, "b", n=50_000, fingerprint="all"),
                      Images("val", 50, 50_000, "sub")),
    "run-subset-650": (75.0, Expectation(75.0, None, TOL, "b", n=50_000, fingerprint="all"),
                       Images("val", 650, 50_000, "sub")),
    "run-subset-5000": (75.0, Expectation(75.0, None, TOL, "b", n=50_000, fingerprint="all"),
                        Images("val", 5000, 50_000, "sub")),
    # both sides samples of one set
    "both-samples": (70.0, Expectation(70.0, None, TOL, "b", n=2000, fingerprint="b"),
                     Images("val", 1000, 10_000, "r")),
    # the README's full-val figures held against a whole small dataset
    "published": (75.1, Expectation(75.1, None, TOL, "b", n=50_000), Images("subset", 650, 650, "s")),
    # the baseline's own images: exact, the tolerance
    "same-images": (80.0, Expectation(80.0, None, TOL, "b", n=650, fingerprint="s"),
                    Images("subset", 650, 650, "s")),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_detectable_drop_separates_the_gates_own_verdicts(case: str) -> None:
    """Every measurable drop beyond the detectable one fails, every one within it passes."""
    want, expected, images = CASES[case]
    drop = detectable_drop(want, TOL.top1, expected, images, 0.95)
    assert drop is not None and drop >= TOL.top1
    decisions = flagged_drops(want, expected, images, near=drop)
    assert any(f for _, f in decisions) and any(not f for _, f in decisions)  # both sides seen
    wrong = [(d, f) for d, f in decisions if abs(d - drop) > 1e-6 and f != (d > drop)]
    assert not wrong, (drop, wrong[:5])


def test_the_story_numbers() -> None:
    want, expected, images = CASES["baseline-subset"]
    # the allowance the issue reports: +-10.8 points, the drop of 9.2 it let through
    assert detectable_drop(want, 0.5, expected, images, 0.95) == pytest.approx(10.807, abs=1e-3)
    verdict = judge(Accuracy(650, 538, 620), expected, images, "update")  # 82.769
    assert verdict.passed and verdict.details["detectable_top1"] == pytest.approx(10.807, abs=1e-3)
    assert verdict.details["weak"].startswith("cannot see a top-1 drop under 10.8 points; "
                                              "measure at least ")
    assert verdict.details["weak"].endswith(" images (this run measured 650, the baseline 50)")
    assert "; but the gate is weak: cannot see a top-1 drop under 10.8 points" in verdict.message


def test_detectable_drop_agrees_with_scipys_wilson_interval() -> None:
    """A run of n images of a set so large that the finite-population correction vanishes,
    against an exact baseline: the gate flags a drop d when d > tolerance + (upper end of
    Wilson(p, n) - p) at p = want - d (the end facing the baseline). scipy's Wilson interval,
    scanned count by count, brackets the detectable drop between the largest drop it passes
    and the smallest it flags."""
    stats = pytest.importorskip("scipy.stats")
    for n, want in ((200, 75.0), (1000, 82.0), (5000, 60.0)):
        expected = Expectation(want, None, TOL, "b", n=10**9, fingerprint="all")
        drop = detectable_drop(want, 0.5, expected, Images("big", n, 10**9, "sub"), 0.95)
        passed, flagged = [], []
        for correct in range(n + 1):
            p = 100.0 * correct / n
            if abs(want - p - drop) > 1.0:  # near the boundary: scipy's test is slow
                continue
            high = 100.0 * stats.binomtest(correct, n).proportion_ci(0.95, method="wilson").high
            (flagged if want - p > 0.5 + (high - p) else passed).append(want - p)
        assert passed and flagged
        assert max(passed) <= drop + 1e-4 and min(flagged) >= drop - 1e-4, (n, drop)


def test_too_few_images_see_no_drop_at_all() -> None:
    # one image of 50,000 against a baseline of 10%: even 0% is within the sampling error
    expected = Expectation(10.0, None, TOL, "b", n=50_000, fingerprint="all")
    images = Images("val", 1, 50_000, "one")
    assert detectable_drop(10.0, 0.5, expected, images, 0.95) is None
    assert not any(f for _, f in flagged_drops(10.0, expected, images, near=None))
    text = weakness(expected, images, {"top1": None}, WeakLimit(2.0), 0.95)
    assert text.startswith("cannot see any top-1 drop; measure at least ")


@pytest.mark.parametrize("case", ["baseline-subset", "run-subset-650", "both-samples", "published"])
def test_images_needed_is_the_fewest_that_see_the_limit(case: str) -> None:
    want, expected, images = CASES[case]
    population = max(images.total, expected.n or 0, images.n)

    def drop_at(m: int) -> float:
        """Both sides raised to m images (at most the whole set)."""
        run = Images(images.dataset, min(population, max(images.n, m)), images.total, images.fingerprint)
        base = Expectation(want, None, TOL, "b", n=min(population, max(expected.n, m)),
                           fingerprint=expected.fingerprint)
        found = detectable_drop(want, 0.5, base, run, 0.95)
        return math.inf if found is None else found

    needed = images_needed(want, 0.5, 1.0, expected, images, 0.95)
    assert drop_at(needed) <= 1.0 < drop_at(needed - 1)


def test_a_tolerance_above_the_limit_needs_no_count_it_is_named() -> None:
    expected = Expectation(70.0, None, Tolerance(3.5, 2.5), "b", n=50_000, fingerprint="all")
    images = Images("val", 50_000, 50_000, "all")
    assert images_needed(70.0, 3.5, 1.0, expected, images, 0.95) is None
    assert weakness(expected, images, {"top1": 3.5}, WeakLimit(1.0, relative=False), 0.95) == (
        "cannot see a top-1 drop under 3.5 points; the top-1 tolerance alone, 3.5, is more than "
        "--max-allowed 1 allows")
    assert weakness(expected, images, {"top1": 3.5}, WeakLimit(2.0), 0.95) is None  # 2x: 7 points


def test_weak_limit_reads_points_or_a_multiple_of_the_tolerance() -> None:
    assert WeakLimit.parse("2x") == WeakLimit(2.0, True) and WeakLimit.parse("2x").points(0.5) == 1.0
    assert WeakLimit.parse(" 1.5 ") == WeakLimit(1.5, False) and WeakLimit.parse("1.5").points(0.5) == 1.5
    assert str(WeakLimit.parse("3X")) == "3x" and str(WeakLimit.parse("0.75")) == "0.75"
    for bad in ("", "x", "-1", "0", "nan", "inf", "two"):
        with pytest.raises(ValueError):
            WeakLimit.parse(bad)


def test_a_gate_on_its_own_images_is_never_weak() -> None:
    # 5 photos measured as the baseline was: exact, the tolerance is what it can see
    expected = Expectation(80.0, 100.0, TOL, "b", n=5, fingerprint="f")
    verdict = judge(Accuracy(5, 4, 5), expected, Images("photos", 5, 5, "f"), "update")
    assert verdict.details["detectable_top1"] == verdict.details["detectable_top5"] == 0.5
    assert verdict.details["weak"] is None and "weak" not in verdict.message
