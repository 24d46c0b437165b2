"""Sequential gating as plain functions: the order, the confidence sequence (checked by exact
enumeration and by a seeded 10,000-trial simulation of false alarms), the decision rule, the
predictions store and per-class significance."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.confseq import PairedBounds, psi
from pytest_vaccbench.dataset import Sample
from pytest_vaccbench.sequential import (PASSED, REGRESSION, STALE, UNDECIDED, combine, decide,
                                         side_alpha, stratified_order)
from pytest_vaccbench.significance import benjamini_hochberg, class_changes, significant
from pytest_vaccbench.store import ABSENT, PredictionsStore, StoreError, decode, digest_of, encode

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def samples(per_class: dict[int, int]) -> list[Sample]:
    return [Sample(Path(f"/data/c{label}_{i:03d}.JPEG"), label)
            for label, count in sorted(per_class.items()) for i in range(count)]


# -- the order ----------------------------------------------------------------------------

def test_order_on_imagenet_val_shape_takes_one_image_of_every_class_per_round() -> None:
    listed = samples({label: 50 for label in range(40)})
    order = stratified_order(listed)
    assert order.strata == 40 and len(order.rounds) == 50
    for r, (positions, remaining) in enumerate(zip(order.rounds, order.remaining)):
        assert sorted(listed[i].label for i in positions) == list(range(40))
        assert (remaining == 50 - r).all()
    every = np.concatenate(order.rounds)
    assert sorted(every.tolist()) == list(range(len(listed)))  # each image once
    assert order.total == len(listed)


def test_order_is_fixed_by_its_seed_and_not_the_file_order() -> None:
    listed = samples({label: 7 for label in range(9)})
    first = [r.tolist() for r in stratified_order(listed).rounds]
    shuffled = list(reversed(listed))
    again = [sorted(shuffled[i].path.name for i in r) for r in stratified_order(shuffled).rounds]
    assert again == [sorted(listed[i].path.name for i in r) for r in first]
    other = [r.tolist() for r in stratified_order(listed, seed="another").rounds]
    assert other != first
    within = [listed[r[0]].path.name for r in first]  # not simply the first files of a class
    assert within != sorted(within)


def test_order_groups_small_classes_into_strata_of_equal_size() -> None:
    listed = samples({label: 1 + label % 4 for label in range(400)})  # 1000 images, 1-4 a class
    order = stratified_order(listed)
    assert order.strata == 20 and len(order.rounds) == 50
    assert all(len(r) == 20 for r in order.rounds)  # 1000 = 20 strata of 50
    first = {listed[i].label for i in order.rounds[0]}
    assert len(first) == 20  # the first round spreads over the strata, one image each


# -- the confidence sequence ----------------------------------------------------------------

def test_fan_inequality_behind_each_image() -> None:
    """exp(g xi - psi(g) xi^2) <= 1 + g xi for xi >= -1, g in [0, 1): the per-image bound."""
    g = np.linspace(0, 0.99, 100)[:, None]
    xi = np.linspace(-1, 5, 601)[None, :]
    assert (np.exp(g * xi - psi(g) * xi ** 2) <= 1 + g * xi + 1e-12).all()


def test_supermartingale_by_exact_enumeration_of_every_order() -> None:
    """Over all 2! x 3! x 4! orders of three strata (one image of each per round), the mean of
    each side's supermartingale at the true Delta never exceeds 1: the stratified,
    without-replacement construction is exact, not an approximation."""
    strata = [np.array([-1, 0]), np.array([1, 0, -1]), np.array([0, 0, 1, -1])]
    truth = sum(s.sum() for s in strata) / sum(s.size for s in strata)
    orders = list(itertools.product(*(itertools.permutations(range(s.size)) for s in strata)))
    cs = PairedBounds(9, 0.05, (-0.2, 0.2), (len(orders),))
    for r in range(4):
        present = [k for k, s in enumerate(strata) if s.size > r]
        d = np.array([[strata[k][order[k][r]] for k in present] for order in orders])
        cs.update(d, np.array([strata[k].size - r for k in present]))
        lower, upper = cs.log_evidence(truth)
        assert np.exp(lower).mean() <= 1 + 1e-9 and np.exp(upper).mean() <= 1 + 1e-9
        assert (cs.lower <= truth + 1e-12).mean() >= 0.95 and (cs.upper >= truth - 1e-12).mean() >= 0.95
    assert np.allclose(cs.lower, truth) and np.allclose(cs.upper, truth)  # every image seen


def test_identical_predictions_close_in_on_zero() -> None:
    cs = PairedBounds(50_000, 0.0125, (-0.005, 0.005))
    for r in range(3):
        cs.update(np.zeros(1000), np.full(1000, 50 - r))
    assert -0.005 < float(cs.lower) < 0 < float(cs.upper) < 0.005
    lower, upper = cs.log_evidence(-0.005)  # Delta = -0.5 point is rejected ...
    assert float(lower) >= math.log(1 / 0.0125)
    assert float(cs.log_evidence(0.0)[0]) == pytest.approx(0.0)  # ... the truth is not


def test_false_alarms_under_sequential_looks_stay_below_the_nominal_level() -> None:
    """The benchmark's simulation, small: 10,000 seeded trials of builds at the very edge of
    the tolerance (the full run passes them), strata of unequal sizes, a look after every
    round. The gate may fail at most 5% of them; it fails none. The same harness with a
    fixed 95% interval at every look fails far more: it can tell a broken method."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    from sequential import population, simulate

    sizes = 4 + np.arange(100) % 13  # 982 images in 100 strata of 4 to 16
    n = int(sizes.sum())
    tolerance = 10 / n  # 10 images: ~1 point
    edges = [(10, 0), (25, 15), (40, 30), (15, 25)]  # net -10, -10, -10, +10 images
    wrong = naive_wrong = naive_trials = 0
    for i, (lost, gained) in enumerate(edges):
        pop = population("edge", lost, gained, 5, 5, sizes=sizes, seed=i)
        assert pop.verdict(tolerance) == PASSED
        out = simulate(pop, 2500, tolerance=tolerance, seed=100 + i, batch=2500)
        wrong += int((out.verdicts != PASSED).sum())
        naive = simulate(pop, 500, tolerance=tolerance, seed=200 + i, naive=True, batch=500)
        naive_wrong, naive_trials = naive_wrong + int((naive.verdicts != PASSED).sum()), naive_trials + 500
    assert wrong / 10_000 <= 0.05
    assert naive_wrong / naive_trials > 0.05


# -- the decision ---------------------------------------------------------------------------

def test_decide_and_combine() -> None:
    ends = (-0.005, 0.005)
    lower = np.array([-0.004, -0.02, -0.02, 0.006, -0.006])
    upper = np.array([0.004, -0.006, 0.02, 0.02, 0.004])
    assert decide(lower, upper, ends).tolist() == [PASSED, REGRESSION, UNDECIDED, STALE, UNDECIDED]
    assert decide(lower, upper, ends, allow_improvement=True).tolist() == \
        [PASSED, REGRESSION, UNDECIDED, PASSED, UNDECIDED]
    codes = [np.array([PASSED, PASSED, STALE, REGRESSION]), np.array([PASSED, UNDECIDED, REGRESSION, STALE])]
    assert combine(codes).tolist() == [PASSED, UNDECIDED, REGRESSION, REGRESSION]
    assert side_alpha(0.95, 2) == pytest.approx(0.0125)


# -- the store --------------------------------------------------------------------------------

def test_store_keeps_what_a_pairing_needs(tmp_path: Path) -> None:
    labels = [3, 7, 9, 1]
    top5 = np.array([[3, 1, 2, 4, 5], [1, 7, 2, 4, 5], [0, 1, 2, 4, 5], [998, 2, 3, 4, 1]])
    store = PredictionsStore(tmp_path)
    digest = store.put(top5, labels, "abc")
    assert store.put(top5, labels, "abc") == digest  # content-addressed: one entry
    assert len(list(tmp_path.rglob("*"))) == 2  # the folder and the file
    run = store.get(digest)
    assert (run.fingerprint, run.n) == ("abc", 4)
    assert run.correct1.tolist() == [True, False, False, False]
    assert run.correct5.tolist() == [True, True, False, True]
    assert run.top1(labels).tolist() == [3, 1, 0, 998]
    assert run.rank.tolist() == [0, 1, ABSENT, 4]


def test_a_damaged_or_missing_store_entry_is_refused_with_its_file(tmp_path: Path) -> None:
    store = PredictionsStore(tmp_path)
    digest = store.put(np.zeros((3, 5), int), [0, 0, 1], "f")
    path = store.path(digest)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(StoreError, match=f"{path}: damaged store entry"):
        store.get(digest)
    path.unlink()
    with pytest.raises(StoreError, match="no store entry"):
        store.get(digest)
    with pytest.raises(StoreError, match="not a predictions digest"):
        store.get("../../etc/passwd")


def test_an_entry_whose_header_lies_is_refused(tmp_path: Path) -> None:
    data = encode(np.zeros((3, 5), int), [0, 0, 1], "f").replace(b'"n": 3', b'"n": 30')
    with pytest.raises(StoreError, match="bytes of predictions for 30 images"):
        decode(data, digest_of(data), tmp_path / "x")


def test_a_50000_image_run_takes_under_a_byte_per_image() -> None:
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    from sequential import store_bytes

    assert store_bytes() < 50_000


# -- per-class significance -------------------------------------------------------------------

def test_benjamini_hochberg_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    p = np.random.default_rng(3).random(200) ** 3
    assert np.allclose(benjamini_hochberg(p), stats.false_discovery_control(p))


def test_a_class_the_build_broke_is_found_and_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(100), 50)
    before = rng.random(labels.size) < 0.8
    after = before.copy()
    noise = rng.choice(labels.size, 100, replace=False)  # 2% flips anywhere, both ways
    after[noise] = ~after[noise]
    broken = (labels == 42) & before
    after[broken] = False  # class 42 loses every image it got right
    found = significant(class_changes(before, after, labels), 0.05)
    assert [c.label for c in found] == [42]
    assert (found[0].lost, found[0].gained, found[0].before) == (int(broken.sum()), 0, int(broken.sum()))
    assert found[0].to_json()["name"] == "agama"  # class 42
