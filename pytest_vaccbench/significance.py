"""Per-class significance on paired data: which classes' top-1 accuracy really changed.

Two runs over the same images (tonight's build and the stored run its baseline came from)
are compared class by class with the exact McNemar test on the images only one of them got
right, then the Benjamini-Hochberg procedure (1995) keeps the expected share of false
discoveries among the classes it reports at most `fdr`. With 1000 classes and a handful of
images each, a class is reported only when it changed a lot (about 15 of 50 images lost and
none gained, at FDR 5%): what a build that broke one class looks like, not noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .dataset import class_name
from .metrics import mcnemar_exact


@dataclass(frozen=True)
class ClassChange:
    """One class on the images both runs saw: how many, right before and after, the images
    each side alone got right, McNemar's p and its Benjamini-Hochberg adjusted value."""

    label: int
    images: int
    before: int
    after: int
    lost: int  # right before, wrong now
    gained: int  # wrong before, right now
    p: float
    adjusted: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "name": class_name(self.label)}


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Adjusted p-values of the BH step-up procedure: a hypothesis is rejected at FDR q when
    its adjusted value is <= q (independent or positively dependent tests)."""
    values = np.asarray(p, dtype=np.float64)
    m = values.size
    if m == 0:
        return values
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def class_changes(before: np.ndarray, after: np.ndarray, labels: Sequence[int]) -> list[ClassChange]:
    """Every class among `labels`, with McNemar's p and its BH adjustment over all of them,
    from per-image top-1 correctness before and after; most significant first."""
    truth = np.asarray(labels).ravel()
    before, after = np.asarray(before, bool).ravel(), np.asarray(after, bool).ravel()
    if not before.shape == after.shape == truth.shape:
        raise ValueError(f"{before.size} and {after.size} results for {truth.size} labels")
    classes, index = np.unique(truth, return_inverse=True)
    k = classes.size

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=mask, minlength=k).astype(np.int64)

    images, right_before, right_after = count(np.ones_like(before)), count(before), count(after)
    lost, gained = count(before & ~after), count(after & ~before)
    p = [mcnemar_exact(int(b), int(c)) for b, c in zip(lost, gained)]
    adjusted = benjamini_hochberg(p)
    found = [ClassChange(int(classes[i]), int(images[i]), int(right_before[i]), int(right_after[i]),
                         int(lost[i]), int(gained[i]), p[i], float(adjusted[i])) for i in range(k)]
    return sorted(found, key=lambda c: (c.adjusted, c.p, c.label))


def significant(changes: Sequence[ClassChange], fdr: float) -> list[ClassChange]:
    """The classes whose change is a discovery at false-discovery rate `fdr`."""
    return [c for c in changes if c.adjusted <= fdr and c.lost + c.gained]
