"""Sequential gating in numbers: images used, power and false alarms, in seeded simulations.

A build is paired image by image with the stored run its baseline came from; d = (right now)
- (right then) per image, for top-1 and for top-5. Each scenario below is a population of
d values on a 50,000-image set (1000 classes of 50, as ImageNet val), and each trial draws
the random part of the order: every class's images in a fresh random order (what the seeded
hash order of `sequential.stratified_order` is to one build), then runs the very bounds and
decision rule the plugin runs (`confseq.PairedBounds`, `sequential.decide`, `combine`), one
round of 1000 images at a time, up to the full set, where the verdict is exact.

Scenarios (tolerance 0.5 points on top-1 and top-5, confidence 0.95):
- unchanged: identical predictions;
- 2% discordant, no net change: 1% of the images lost, 1% gained (top-5: a quarter of that);
- 1-point regression: the above, plus 500 more images (1%) the stored run got right now wrong;
- at the edge: builds exactly at the tolerance (the full run passes them), the hardest case
  for false alarms: what fraction does the sequential gate fail? Also the naive way, a fixed
  95% interval recomputed after every round, for contrast.
It also measures the size of a predictions store entry for a 50,000-image run.

    python benchmarks/sequential.py               # the table in docs/sequential.md
    python benchmarks/sequential.py --trials 500  # quicker, rougher
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

import _common  # noqa: F401  (this checkout's pytest_vaccbench first on sys.path)
from pytest_vaccbench.confseq import PairedBounds
from pytest_vaccbench.sequential import PASSED, REGRESSION, STALE, UNDECIDED, combine, decide, side_alpha
from pytest_vaccbench.store import encode

CLASSES, PER_CLASS = 1000, 50


@dataclass(frozen=True)
class Population:
    """Per image d for top-1 and top-5, as (strata, images per stratum); padding is 0 and
    `sizes` says how many images each stratum really has."""

    name: str
    d1: np.ndarray
    d5: np.ndarray
    sizes: np.ndarray

    @property
    def n(self) -> int:
        return int(self.sizes.sum())

    def verdict(self, tolerance: float) -> int:
        """The full run's verdict (exact: every image)."""
        codes = [decide(np.array(d.sum() / self.n), np.array(d.sum() / self.n), (-tolerance, tolerance))
                 for d in (self.d1, self.d5)]
        return int(combine(codes))


def population(name: str, lost1: int, gained1: int, lost5: int = 0, gained5: int = 0,
               sizes: Sequence[int] = (PER_CLASS,) * CLASSES, seed: int = 0) -> Population:
    """Images lost and gained at random places; top-5 changes on images other than top-1's."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes)
    width = int(sizes.max())
    real = np.flatnonzero((np.arange(width)[None, :] < sizes[:, None]).ravel())
    spots = rng.permutation(real)
    d1, d5 = np.zeros(sizes.size * width, np.int8), np.zeros(sizes.size * width, np.int8)
    d1[spots[:lost1]], d1[spots[lost1:lost1 + gained1]] = -1, 1
    rest = spots[lost1 + gained1:]
    d5[rest[:lost5]], d5[rest[lost5:lost5 + gained5]] = -1, 1
    return Population(name, d1.reshape(sizes.size, width), d5.reshape(sizes.size, width), sizes)


@dataclass(frozen=True)
class Outcome:
    verdicts: np.ndarray  # per trial: PASSED, REGRESSION or STALE
    images: np.ndarray  # per trial: images evaluated when it stopped
    seconds: float


def _orders(pop: Population, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Per trial, each stratum's images in a random order (padding last)."""
    width = pop.d1.shape[1]
    if (pop.sizes == width).all():
        return rng.permuted(np.broadcast_to(np.arange(width), (trials, pop.sizes.size, width)), axis=-1)
    keys = rng.random((trials, pop.sizes.size, width))
    keys[:, np.arange(width)[None, :] >= pop.sizes[:, None]] = np.inf
    return keys.argsort(axis=-1)


def simulate(pop: Population, trials: int, tolerance: float = 0.005, confidence: float = 0.95,
             seed: int = 0, naive: bool = False, batch: int = 500) -> Outcome:
    """`trials` sequential runs of the gate on `pop`, each with its own random order.
    `naive`: instead of the confidence sequence, a fixed-sample 95% interval (normal, on the
    paired mean, finite-population corrected) after every round: what not to do."""
    rng = np.random.default_rng(seed)
    ends, alpha = (-tolerance, tolerance), side_alpha(confidence, 2)
    width, strata = pop.d1.shape[1], pop.sizes.size
    verdicts, images = np.empty(trials, np.int8), np.empty(trials, np.int64)
    start = time.perf_counter()
    for first in range(0, trials, batch):
        b = min(batch, trials - first)
        order = _orders(pop, b, rng)
        d = [np.take_along_axis(np.broadcast_to(x, (b, strata, width)), order, axis=-1)
             for x in (pop.d1, pop.d5)]
        bounds = [PairedBounds(pop.n, alpha, ends, (b,)) for _ in d]
        verdict, used = np.full(b, UNDECIDED, np.int8), np.full(b, pop.n)
        seen = 0
        for r in range(width):
            members = pop.sizes > r
            seen += int(members.sum())
            codes = []
            for x, cs in zip(d, bounds):
                cs.update(x[:, members, r], pop.sizes[members] - r)
                lower, upper = (_naive(cs, seen, pop.n, confidence) if naive else (cs.lower, cs.upper))
                codes.append(decide(lower, upper, ends))
            now = combine(codes)
            new = (verdict == UNDECIDED) & (now != UNDECIDED) & (seen < pop.n)
            verdict[new], used[new] = now[new], seen
            if (verdict != UNDECIDED).all():
                break
        verdict[verdict == UNDECIDED] = pop.verdict(tolerance)
        verdicts[first:first + b], images[first:first + b] = verdict, used
    return Outcome(verdicts, images, time.perf_counter() - start)


def _naive(cs: PairedBounds, seen: int, total: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    mean = cs.total / seen
    variance = np.maximum(cs.squares / seen - mean ** 2, 1e-12)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * np.sqrt(variance / seen * (total - seen) / max(1, total - 1))
    return mean - half, mean + half


def false_alarms(trials: int, seed: int, naive: bool = False, **population_args: object) -> tuple[int, int]:
    """(wrong verdicts, trials) over builds at the edge of the tolerance, which the full run
    passes: three at -0.5 points (losses only; 2% discordant; 4% discordant), one at +0.5."""
    edges = [population("edge -0.5, losses only", 250, 0, 60, 60, **population_args),
             population("edge -0.5, 2% discordant", 625, 375, 125, 125, **population_args),
             population("edge -0.5, 4% discordant", 1125, 875, 250, 250, **population_args),
             population("edge +0.5, 2% discordant", 375, 625, 125, 125, **population_args)]
    wrong = 0
    for i, pop in enumerate(edges):
        share = trials // len(edges) + (i < trials % len(edges))
        out = simulate(pop, share, seed=seed + i, naive=naive)
        wrong += int((out.verdicts != pop.verdict(0.005)).sum())
    return wrong, trials


def store_bytes(seed: int = 0) -> int:
    """Bytes of a store entry for a 50,000-image run: 77% top-1, 94% top-5, the wrong
    guesses mostly near the true class in index order (ImageNet's neighbours are alike)."""
    rng = np.random.default_rng(seed)
    n = CLASSES * PER_CLASS
    labels = rng.permutation(np.repeat(np.arange(CLASSES), PER_CLASS))
    near = (labels[:, None] + rng.integers(-20, 21, (n, 5))) % CLASSES
    top5 = np.where(rng.random((n, 5)) < 0.7, near, rng.integers(0, CLASSES, (n, 5)))
    right = rng.random(n)
    top5[right < 0.77, 0] = labels[right < 0.77]
    slot = rng.integers(1, 5, n)
    fifth = (right >= 0.77) & (right < 0.94)
    top5[fifth, slot[fifth]] = labels[fifth]
    return len(encode(top5, labels, "0" * 16))


def _share(images: np.ndarray, total: int) -> str:
    return f"{np.median(images) / total:.1%} / {np.percentile(images, 95) / total:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000, help="trials of the false-alarm simulation (default 10000)")
    parser.add_argument("--power-trials", type=int, default=1000, help="trials of the other scenarios (default 1000)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of every random draw (default 2024)")
    args = parser.parse_args()
    n = CLASSES * PER_CLASS
    print(f"{CLASSES} classes x {PER_CLASS} images = {n} images; tolerance 0.5 points (top-1 and top-5), "
          "confidence 0.95, one look per round of 1000 images")
    print(f"{'scenario':<44} {'full run':>10} {'sequential: same verdict':>25} {'images used: median / 95th pct':>32} {'seconds':>8}")
    scenarios = [(population("unchanged (identical predictions)", 0, 0), 1),
                 (population("2% discordant, no net change", 500, 500, 125, 125, seed=1), args.power_trials),
                 (population("1-point top-1 regression (+2% discordant)", 1000, 500, 125, 125, seed=2),
                  args.power_trials)]
    for pop, trials in scenarios:
        out = simulate(pop, trials, seed=args.seed)
        full = {PASSED: "pass", REGRESSION: "fail", STALE: "stale"}[pop.verdict(0.005)]
        same = float((out.verdicts == pop.verdict(0.005)).mean())
        print(f"{pop.name:<44} {full:>10} {same:>24.2%} {_share(out.images, n):>32} {out.seconds:>8.1f}")
    start = time.perf_counter()
    wrong, trials = false_alarms(args.trials, args.seed)
    naive_wrong, _ = false_alarms(args.trials, args.seed, naive=True)
    print(f"false alarms at the edge of the tolerance, {trials} trials: confidence sequence "
          f"{wrong / trials:.2%} ({wrong}), naive 95% interval at every look {naive_wrong / trials:.2%} "
          f"({naive_wrong}); nominal level 5.00%  [{time.perf_counter() - start:.0f} s]")
    size = store_bytes(args.seed)
    print(f"predictions store entry for a {n}-image run: {size} bytes ({size / n:.2f} bytes per image)")


if __name__ == "__main__":
    main()
