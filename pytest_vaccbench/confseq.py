"""Anytime-valid bounds on a paired accuracy difference, from a stratified sample in rounds.

The quantity is the mean difference Delta = (1/N) sum_i d_i over a finite set of N images,
d_i = (run correct) - (stored run correct) in {-1, 0, 1}. Images are drawn without
replacement in rounds: each round takes one image from every stratum that has images left,
uniformly among that stratum's remaining images (`sequential.stratified_order`). After every
round, `PairedBounds` gives a lower and an upper bound that hold, with probability at least
1 - alpha each, at every round at once: a confidence sequence, so a decision may be taken at
any round without the repeated looks inflating the error.

The method is the empirical-Bernstein supermartingale of Howard, Ramdas, McAuliffe & Sekhon
(2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.),
in the predictable-plug-in form of Waudby-Smith & Ramdas (2023, "Estimating means of bounded
random variables by betting", JRSS-B), with their sampling-without-replacement mean
correction (Waudby-Smith & Ramdas 2020, "Confidence sequences for sampling without
replacement", NeurIPS), taken per round so that it holds for a stratified sample:

- Per image (Fan, Grama & Liu 2015, as used by Howard et al.): for xi >= -1 and
  gamma in [0, 1), exp(gamma xi - psi(gamma) xi^2) <= 1 + gamma xi, psi(g) = -log(1-g) - g.
  With xi = (d - c) / (1 + c) for a predictable centre c > -1, and mu = E[d | past], this
  gives E[exp(kappa (d - mu) - psi(gamma) xi^2) | past] <= 1 with kappa = gamma / (1 + c).
- Within a round the images come from different strata, drawn independently given the
  previous rounds, so the product over the round keeps expectation <= 1. The terms' means
  mu_j (the remaining mean of each stratum) are unknown, but with kappa_j proportional to
  w_j, the number of images the stratum has left, sum_j w_j mu_j is the sum of d over all
  images not yet seen: N Delta - S, S the sum seen so far. The round's factor is then a
  known function of Delta, linear in the exponent.
- The product over rounds is a nonnegative supermartingale under the true Delta; Ville's
  inequality bounds the chance that it ever exceeds 1/alpha. Its logarithm is A - B Delta,
  so the values of Delta it has not rejected form a half-line: the lower bound
  (A - log(1/alpha)) / B. The upper bound is the same construction on -d.

The bets (kappa per round) are chosen from the rounds before (predictable), so any rule
keeps the guarantee; the rule here aims at the decision. Per image the exponent grows on
average by kappa * gap - psi(kappa) * variance, where gap is the distance from the estimated
Delta to the decision boundary the side has to clear; kappa = gap / (gap + variance)
maximises it, capped at CAP. Before the first round the variance is PRIOR_VARIANCE.

Everything is vectorised over a leading batch axis: the plugin runs one sequence, the
simulation in benchmarks/sequential.py and the tests thousands at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CAP = 0.9  # largest gamma: one image against the bet costs at most log(1 - CAP) = -2.3
PRIOR_VARIANCE = 0.03  # variance of d assumed before the first round (3% discordant images)
PRIOR_WEIGHT = 1.0  # in images: the prior's weight against the data


def psi(gamma: np.ndarray) -> np.ndarray:
    """psi_E(gamma) = -log(1 - gamma) - gamma: the empirical-Bernstein penalty."""
    return -np.log1p(-gamma) - gamma


@dataclass
class _Side:
    """One one-sided sequence: log of its supermartingale is a - b * Delta (on d, or on -d)."""

    a: np.ndarray
    b: np.ndarray
    bound: np.ndarray  # the running best bound (max of the lower bounds so far)


class PairedBounds:
    """Lower and upper anytime-valid bounds on Delta, updated one round at a time.

    `population`: N, the number of images the mean is over. `alpha`: the error allowed to
    each side (the lower bound fails with probability <= alpha, the upper one too).
    `boundaries`: the values of Delta the decision compares with (the tolerance's ends): the
    bets aim at clearing the nearest of them. `batch`: the shape of independent sequences run
    at once (() for one).
    """

    def __init__(self, population: int, alpha: float, boundaries: tuple[float, float],
                 batch: tuple[int, ...] = ()) -> None:
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        self.population = population
        self.alpha = alpha
        self.boundaries = (min(boundaries), max(boundaries))
        self.seen = 0
        self.total = np.zeros(batch)  # S: sum of d over the images seen
        self.squares = np.zeros(batch)  # sum of d^2 over the images seen
        self._sides = [_Side(np.zeros(batch), np.zeros(batch), np.full(batch, -1.0)) for _ in range(2)]

    @property
    def lower(self) -> np.ndarray:
        """The largest lower bound so far, within what the images seen already fix."""
        return np.maximum(self._sides[0].bound, (self.total - (self.population - self.seen)) / self.population)

    @property
    def upper(self) -> np.ndarray:
        return np.minimum(-self._sides[1].bound, (self.total + (self.population - self.seen)) / self.population)

    def log_evidence(self, delta: float) -> tuple[np.ndarray, np.ndarray]:
        """The logarithms of the two supermartingales at Delta = `delta`: evidence that Delta
        is larger (lower side) and smaller (upper side). Each is below log(1/alpha) at every
        round with probability >= 1 - alpha when `delta` is the true Delta."""
        lower, upper = self._sides
        return lower.a - lower.b * delta, upper.a + upper.b * delta

    def _estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of d from the rounds so far, shrunk towards the prior."""
        n = self.seen + PRIOR_WEIGHT
        mean = self.total / n
        spread = np.maximum(self.squares - self.total * mean, 0.0)
        return mean, (spread + PRIOR_VARIANCE * PRIOR_WEIGHT) / n

    def _kappa(self, mean: np.ndarray, variance: np.ndarray, centre: np.ndarray,
               sign: float) -> np.ndarray:
        """The bet of one side: the growth-optimal one for clearing the boundary it must clear,
        d(kappa gap - psi(kappa) variance)/d kappa = 0 (in units of the centred range)."""
        lo, hi = (b * sign for b in self.boundaries)
        lo, hi = min(lo, hi), max(lo, hi)
        m = mean * sign
        # the lower side (on sign * d) must show Delta above a boundary: the highest one below m
        target = np.where(m > hi, hi, lo)
        gap = np.maximum(m - target, (hi - lo) / 4 if hi > lo else 1e-3)
        return np.minimum(gap / (gap + variance), CAP) / (1 + centre)

    def update(self, d: np.ndarray, remaining: np.ndarray) -> None:
        """One round: `d` (batch + (k,)) the differences of its k images, `remaining` (k,) the
        number of images each one's stratum had left when the round began (itself included)."""
        d = np.asarray(d, dtype=np.float64)
        remaining = np.asarray(remaining, dtype=np.float64)
        if d.shape[-1] == 0:
            return
        top = remaining.max()
        # kappa_j = kappa * share_j, so that sum_j share_j mu_j = (N Delta - S) / top; images
        # of equal share are summed together (a round has few distinct shares)
        shares, group, count = np.unique(remaining / top, return_inverse=True, return_counts=True)
        by_share = d[..., np.argsort(group, kind="stable")]
        starts = np.concatenate([[0], np.cumsum(count)[:-1]])
        sums = np.add.reduceat(by_share, starts, axis=-1)
        squares = np.add.reduceat(by_share * by_share, starts, axis=-1)
        mean, variance = self._estimates()
        for sign, side in zip((1.0, -1.0), self._sides):
            centre = np.clip(sign * mean, -0.5, 0.5)
            kappa = self._kappa(mean, variance, centre, sign)
            c, k, t = centre[..., None], kappa[..., None], sign * sums
            spread = (squares - 2 * c * t + count * c ** 2) / (1 + c) ** 2  # sum of xi^2 per share
            gain = (k * shares * t - psi(k * shares * (1 + c)) * spread).sum(axis=-1)
            side.a = side.a + gain + kappa / top * sign * self.total
            side.b = side.b + kappa * self.population / top
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = np.where(side.b > 0, (side.a - math.log(1 / self.alpha)) / side.b, -1.0)
            side.bound = np.maximum(side.bound, bound)
        self.seen += d.shape[-1]
        self.total = self.total + d.sum(axis=-1)
        self.squares = self.squares + (d ** 2).sum(axis=-1)
