"""Sequential gating (`--vaccbench-sequential`): stop evaluating as soon as the verdict is known.

A test whose baseline entry names stored predictions (`store`) is paired image by image with
the run that baseline was recorded from: d_i = (correct now) - (correct then). The gate's
verdict on the whole set depends only on the mean of d (Delta): the test passes when the
stored accuracy plus Delta is within the tolerance of the expected figure. So the images are
evaluated in a fixed, seeded, class-stratified order (`stratified_order`), one round at a
time (a chunk: one call of the backend's `scorer`, a vamp datalist), and after each round an
anytime-valid confidence sequence on Delta for top-1 and top-5 (`confseq.PairedBounds`)
decides: pass when every bound lies within the tolerance, fail when one lies outside it,
otherwise the next round, up to the full set, where Delta is known exactly. The chance that an
early verdict differs from the full run's is at most 1 - confidence (split over the two
metrics and the two sides of each bound).

Without stored predictions for the run (none recorded, store entry missing or damaged, other
images) the test runs in full and says why.
"""

from __future__ import annotations

import hashlib
import math
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np

from . import progress
from .backends import RunOptions, get_backend
from .baselines import Tolerance
from .confseq import PairedBounds
from .dataset import Dataset, Sample
from .errors import VaccbenchError
from .gate import WEAK_LIMIT, Expectation, Images, Verdict, WeakLimit, judge, power, run_key, weakness
from .metrics import Accuracy, agreement, topk
from .run import Case, Judged, Result, check_finite, evaluate as evaluate_all, keep_result
from .significance import class_changes, significant
from .store import PredictionsStore, StoredRun, StoreError

SEED = "vaccbench-sequential-1"  # salt of the hash that orders the images: the order is fixed
STRATUM = 50  # images per stratum (an ImageNet val class): about 50 rounds, a look every 2%
METRICS = ("top1", "top5")
PASSED, UNDECIDED, REGRESSION, STALE = 1, 0, -1, -2
KINDS = {PASSED: "passed", REGRESSION: "regression", STALE: "stale"}
FLIPPED = 8  # images named per significant class (the HTML report shows them where they are local)


# -- the order --------------------------------------------------------------------------

def _keyed(salt: str, sample: Sample) -> str:
    return hashlib.sha1(f"{salt}/{sample.path.name}".encode()).hexdigest()


@dataclass(frozen=True)
class Order:
    """Rounds of positions in a list of samples: round r holds one image of every stratum
    with images left, and `remaining[r]` how many that stratum had left (itself included)."""

    rounds: tuple[np.ndarray, ...]
    remaining: tuple[np.ndarray, ...]
    strata: int

    @property
    def total(self) -> int:
        return sum(len(r) for r in self.rounds)


def stratified_order(samples: Sequence[Sample], seed: str = SEED, stratum: int = STRATUM) -> Order:
    """The seeded class-stratified order of `samples`.

    Samples are listed class by class (class index order; within a class in the order of a
    hash of `seed` and the file name), then cut into ceil(N / stratum) consecutive strata of
    equal size (to one image): on ImageNet val (50 per class) each stratum is one class; on a
    set with fewer images per class, a few whole neighbouring classes. Each stratum is put in
    its own hash order (a pseudo-random permutation, fixed by the seed), and round r takes
    the r-th image of every stratum: every round covers every class (or group of classes)
    once, and each stratum is a uniformly drawn sample without replacement, which is what
    the confidence sequence's guarantee needs.
    """
    by_class: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_class.setdefault(s.label, []).append(i)
    listed = [i for label in sorted(by_class)
              for i in sorted(by_class[label], key=lambda i: _keyed(seed, samples[i]))]
    count = max(1, math.ceil(len(listed) / stratum))
    strata = [sorted(part.tolist(), key=lambda i: _keyed(seed + "/stratum", samples[i]))
              for part in np.array_split(np.asarray(listed, dtype=np.int64), count)]
    depth = max((len(s) for s in strata), default=0)
    rounds, remaining = [], []
    for r in range(depth):
        members = [(s[r], len(s) - r) for s in strata if len(s) > r]
        members.sort()  # dataset order within the round
        rounds.append(np.array([m[0] for m in members], dtype=np.int64))
        remaining.append(np.array([m[1] for m in members], dtype=np.int64))
    return Order(tuple(rounds), tuple(remaining), count)


# -- the decision -----------------------------------------------------------------------

def decide(lower: np.ndarray, upper: np.ndarray, ends: tuple[float, float],
           allow_improvement: bool = False) -> np.ndarray:
    """PASSED, REGRESSION, STALE or UNDECIDED for bounds on Delta, given the interval of
    Delta that passes (`ends`): pass when the bounds lie within it (only the lower end
    matters with `allow_improvement`), fail when they lie wholly outside it."""
    lo, hi = ends
    code = np.full(np.shape(lower), UNDECIDED, dtype=np.int8)
    code[(lower >= lo) & (allow_improvement | (upper <= hi))] = PASSED
    if not allow_improvement:
        code[lower > hi] = STALE
    code[upper < lo] = REGRESSION
    return code


def combine(codes: Sequence[np.ndarray]) -> np.ndarray:
    """One verdict over the metrics: a regression in any, else stale in any, else passed
    when all passed, else undecided (the full run's verdict follows the same order)."""
    stacked = np.stack(codes)
    out = np.where((stacked == PASSED).all(axis=0), PASSED, UNDECIDED).astype(np.int8)
    out[(stacked == STALE).any(axis=0)] = STALE
    out[(stacked == REGRESSION).any(axis=0)] = REGRESSION
    return out


def side_alpha(confidence: float, metrics: int) -> float:
    """The error each one-sided bound may make: 1 - confidence split over the metrics gated
    and the two sides (Bonferroni), so that the verdict is wrong with at most 1 - confidence."""
    return (1 - confidence) / (2 * metrics)


# -- what the run is paired with --------------------------------------------------------

@dataclass(frozen=True)
class Pairing:
    """The images a run counts and the stored predictions of its baseline's run on them;
    `stored` is None when there are none, and `why` says why."""

    counted: Dataset
    stored: StoredRun | None = None
    why: str = ""
    where: str = ""  # the store entry's path
    named: bool = False  # the baseline entry names stored predictions (usable or not)


def counted_images(case: Case, dataset: Dataset, options: RunOptions) -> Dataset:
    """The images a run counts: the dataset less those its backend built the model from."""
    excluded = set(get_backend(case.backend).excluded_samples(case.entry, case.precision, dataset, options))
    if not excluded:
        return dataset
    return replace(dataset, samples=tuple(s for s in dataset.samples if s not in excluded))


def pairing_for(case: Case, dataset: Dataset, options: RunOptions,
                store: PredictionsStore | None, scored: bool = False) -> Pairing:
    """The stored predictions of the run the test's own baseline entry was recorded from.
    `scored`: the run is result files scored (`--results`), which count every image they hold."""
    counted = dataset if scored else counted_images(case, dataset, options)
    key = run_key(case.backend, case.run_precision)
    raw = (case.entry.expected.get(dataset.name) or {}).get(key) or {}
    where = f"{case.entry.baseline_path.name}: {case.entry.key}.expected.{dataset.name}.{key}"
    if store is None:
        return Pairing(counted, why="no --vaccbench-store given")
    if not raw or raw.get("broken"):
        return Pairing(counted, why=f"no measured baseline entry {where} to pair with")
    digest = raw.get("predictions")
    if not digest:
        return Pairing(counted, why=f"{where} records no stored predictions (record them with "
                                    "--update-baselines --vaccbench-store DIR)")
    try:
        stored = store.get(str(digest))
    except StoreError as exc:
        return Pairing(counted, why=f"stored predictions of {where}: {exc}", named=True)
    fingerprint = counted.fingerprint()
    if stored.fingerprint != fingerprint or stored.n != len(counted.samples):
        return Pairing(counted, why=f"the stored predictions of {where} are of other images "
                                    f"(fingerprint {stored.fingerprint}, n={stored.n}; this run "
                                    f"counts {len(counted.samples)} images, fingerprint {fingerprint})",
                       named=True)
    return Pairing(counted, stored, where=str(store.path(stored.digest)), named=True)


# -- evaluating in rounds ---------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """Where and why a sequential run stopped.

    `kind`: passed | regression | stale (decided early), or full (it ran every image:
    undecided until the end, or nothing to pair with: `why`). Bounds and estimates are in
    points, on measured - expected over the whole set."""

    kind: str
    images: int
    total: int
    looks: int = 0
    rounds: int = 0
    why: str = ""
    confidence: float = 0.95
    bounds: dict[str, list[float]] = field(default_factory=dict)
    estimate: dict[str, float] = field(default_factory=dict)  # the full-set top1/top5 estimate
    allowed: dict[str, float] = field(default_factory=dict)
    stored: str = ""  # the store entry compared with
    fingerprint: str = ""  # of the `total` images counted (the stored run's)

    @property
    def early(self) -> bool:
        return self.kind != "full"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Decision":
        """A decision as a report holds it (keys this version does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "early": self.early}


@dataclass
class _Metric:
    """One gated metric: the stored run's per-image correctness, the expected figure and the
    tolerance, and the confidence sequence of the difference."""

    name: str
    stored: np.ndarray  # bool (N,)
    expected: float  # percent
    tolerance: float  # points
    alpha: float  # of each side of the bounds

    @cached_property
    def bounds(self) -> PairedBounds:
        return PairedBounds(len(self.stored), self.alpha, self.ends)

    @property
    def offset(self) -> float:
        """Points the stored run's accuracy differs from the expected figure (rounding)."""
        return 100.0 * float(self.stored.mean()) - self.expected

    @property
    def ends(self) -> tuple[float, float]:
        """The values of Delta (a fraction) for which the full run passes."""
        return ((-self.tolerance - self.offset) / 100.0, (self.tolerance - self.offset) / 100.0)


def _metrics(stored: StoredRun, expected: Expectation, confidence: float) -> list[_Metric]:
    """The metrics the baseline gates (top1, top5, or one of them), each with its bounds."""
    gated = [(name, correct, float(getattr(expected, name)), float(tolerance))
             for name, correct, tolerance in (("top1", stored.correct1, expected.tolerance.top1),
                                              ("top5", stored.correct5, expected.tolerance.top5))
             if getattr(expected, name) is not None]
    alpha = side_alpha(confidence, max(1, len(gated)))
    return [_Metric(*metric, alpha) for metric in gated]


def run_rounds(case: Case, pairing: Pairing, dataset: Dataset, options: RunOptions,
               expected: Expectation, confidence: float,
               allow_improvement: bool) -> tuple[Result, Decision]:
    """Evaluate `pairing.counted` in the stratified order, a round per backend call, until
    the confidence sequences decide or every image is in."""
    stored = pairing.stored
    assert stored is not None
    counted = pairing.counted
    total = len(counted.samples)
    metrics = _metrics(stored, expected, confidence)
    order = stratified_order(counted.samples)
    backend = get_backend(case.backend)
    labels = np.asarray(counted.labels)
    top5 = np.zeros((total, 5), dtype=np.int64)
    seen = np.zeros(total, dtype=bool)
    code = np.int8(UNDECIDED)
    looks = 0
    start = time.perf_counter()
    with progress.task(total, case.id):
        score = backend.scorer(case.entry, case.precision, dataset, options)
        for positions, remaining in zip(order.rounds, order.remaining):
            chunk = [counted.samples[i] for i in positions]
            scores = score(chunk)
            if scores.shape[0] != len(chunk):
                raise VaccbenchError(f"backend {case.backend} returned {scores.shape[0]} score "
                                     f"rows for {len(chunk)} images")
            check_finite(scores, replace(counted, samples=tuple(chunk)), case.id)
            top5[positions] = topk(scores, 5)
            seen[positions] = True
            looks += 1
            for m in metrics:
                now = (top5[positions, 0] == labels[positions]) if m.name == "top1" else \
                    (top5[positions] == labels[positions, None]).any(axis=1)
                m.bounds.update(now.astype(np.int8) - m.stored[positions], remaining)
            code = combine([decide(m.bounds.lower, m.bounds.upper, m.ends, allow_improvement)
                            for m in metrics]) if metrics else np.int8(UNDECIDED)
            if code != UNDECIDED and not seen.all():
                break
    seconds = time.perf_counter() - start
    measured = replace(counted, samples=tuple(s for s, on in zip(counted.samples, seen) if on))
    result = keep_result(case, measured, top5[seen], seconds, options, backend,
                         len(dataset.samples) - total)
    early = not seen.all()
    decision = Decision(
        KINDS[int(code)] if early else "full", int(seen.sum()), total, looks, len(order.rounds),
        "" if early else "the anytime bounds did not decide earlier",
        confidence,
        bounds={m.name: [round(100 * float(m.bounds.lower) + m.offset, 3),
                         round(100 * float(m.bounds.upper) + m.offset, 3)] for m in metrics},
        estimate={m.name: round(m.expected + m.offset + 100 * float(m.bounds.total) / int(seen.sum()), 3)
                  for m in metrics},
        allowed={m.name: m.tolerance for m in metrics}, stored=pairing.where,
        fingerprint=stored.fingerprint)
    return result, decision


def evaluate(case: Case, dataset: Dataset, options: RunOptions, pairing: Pairing,
             expected: Expectation | None, confidence: float,
             allow_improvement: bool) -> tuple[Result, Decision]:
    """A sequential run when there are stored predictions to pair with, else the full run
    (the decision says why)."""
    if pairing.stored is not None and expected is not None and expected.known_broken is None:
        return run_rounds(case, pairing, dataset, options, expected, confidence, allow_improvement)
    result = evaluate_all(case, dataset, options)
    return result, Decision("full", result.n, result.n, why=pairing.why or "no baseline to pair with",
                            confidence=confidence)


# -- the verdict ------------------------------------------------------------------------

WIDE = Tolerance(100.0, 100.0)  # a tolerance nothing exceeds: judge's other checks only
_TOLERANCE_LINES = ("  top1:", "  top5:", "  sampling:", "  images:")


def points(lo: float, hi: float) -> str:
    """A bound on a difference, in points."""
    return f"[{lo:+.3f}, {hi:+.3f}]"


def _rows(decision: Decision, expected: Expectation) -> list[str]:
    rows = []
    for metric, (lo, hi) in decision.bounds.items():
        tol = decision.allowed[metric]
        inside = lo >= -tol and hi <= tol
        state = "ok" if inside else "FAIL" if hi < -tol or lo > tol else "undecided"
        rows.append(f"  {metric}: expected {getattr(expected, metric):7.3f}  estimate "
                    f"{decision.estimate[metric]:7.3f}  {decision.confidence:.0%} anytime bound on "
                    f"the difference {points(lo, hi)}  tolerance ±{tol:.3f}  {state}")
    return rows


def stop_reason(decision: Decision) -> str:
    """Why a sequential run stopped where it did (or ran every image)."""
    if not decision.early:
        return decision.why
    return {"passed": "every bound lies within the tolerance",
            "regression": "a bound lies wholly below the tolerance",
            "stale": "a bound lies wholly above the tolerance"}[decision.kind]


def stop_line(decision: Decision) -> str:
    """Where and why a sequential run stopped (or why it ran every image)."""
    if not decision.early:
        return f"sequential: ran all {decision.total} images: {stop_reason(decision)}"
    share = 100.0 * decision.images / decision.total if decision.total else 100.0
    return (f"sequential: stopped after {decision.images} of {decision.total} images "
            f"({share:.1f}%, round {decision.looks} of {decision.rounds}): {decision.kind}, "
            f"{stop_reason(decision)}")


def judge_run(decision: Decision, done: Judged, case: Case, dataset: Dataset, result: Result,
              update_command: str, confidence: float,
              weak_limit: WeakLimit | None = WEAK_LIMIT) -> Verdict:
    """The verdict of a sequential run, from the gate's (`run.judged`) on the images it measured.

    Every image ran: the gate's own verdict (exact), with the reason it ran them all. Stopped
    early: the confidence sequences decide the tolerance check; the gate's other checks
    (BROKEN BUILD, min_agreement with fp32) are made on the images measured, as judge makes
    them, and win when they fail. The gate's power (`detectable_top1/top5`, and whether it is
    weak against `weak_limit`) is that of the whole set counted (`sequential_power`)."""
    expected = done.expected
    if not decision.early or expected is None:
        verdict = done.verdict
        return replace(verdict, message="\n".join(filter(None, [verdict.message, f"  {stop_line(decision)}"])),
                       details={**verdict.details, "sequential": decision.to_json()})
    build = f"{case.backend}/{case.run_precision}"
    checks = judge(Accuracy(result.n, result.correct1, result.correct5), replace(expected, tolerance=WIDE),
                   Images(dataset.name, result.n, dataset.total, result.fingerprint), update_command,
                   paired=done.paired, build=build, confidence=confidence, allow_improvement=True,
                   weak_limit=None)
    headline, *rest = checks.message.splitlines()
    kept = [line for line in rest if not line.startswith(_TOLERANCE_LINES)]
    gate_power = sequential_power(decision, expected, dataset, confidence, weak_limit)
    if checks.kind in ("broken", "regression"):  # a collapse, or the agreement with fp32
        kind = checks.kind
    else:
        kind = decision.kind  # kept: the paired line, the baseline, the target
        share = f"{decision.images} of {decision.total} images"
        if kind == "passed":
            headline = (f"{build} build within the allowed difference ({share}, sequential: the "
                        f"{decision.confidence:.0%} anytime bounds lie within the tolerance)")
            if gate_power["weak"]:
                headline += f"; but the gate is weak: {gate_power['weak']}"
        else:
            metric, (lo, hi) = next((m, b) for m, b in decision.bounds.items()
                                    if _outside(b, decision.allowed[m]))
            side = "below" if hi < -decision.allowed[metric] else "above"
            headline = (f"{metric} is at least {min(abs(lo), abs(hi)):.3f} points {side} the baseline "
                        f"({decision.confidence:.0%} anytime bound {points(lo, hi)}, allowed "
                        f"±{decision.allowed[metric]:.3f}, after {share}, sequential)")
            if kind == "stale":
                headline = f"baseline is stale, update with: {update_command}; {headline}"
            else:
                kept += ["If the change is intended, record the new numbers:", f"  {update_command}"]
    details = {**checks.details, **gate_power, "verdict": kind, "allowed": dict(decision.allowed), "sampling": None,
               "sequential": decision.to_json()}
    message = [headline, *_rows(decision, expected), f"  {stop_line(decision)}", *kept]
    return Verdict(kind == "passed", "\n".join(message), kind, details)


def sequential_power(decision: Decision, expected: Expectation, dataset: Dataset, confidence: float,
                     weak_limit: WeakLimit | None) -> dict[str, Any]:
    """The smallest drops a sequential run that stopped early flags (`detectable_top1`,
    `detectable_top5`) and why its gate is weak (`weak`, or None), as `gate.judge` reports them.

    Not those of the images it measured: it stops only when a bound decides, and a bound
    that does not runs on, up to the whole set counted, where the difference from the stored
    run is exact. So a drop beyond the tolerance is flagged (but for the 1 - confidence the
    bounds may err): the power is that of the whole set against the baseline, the tolerance
    itself when the baseline was measured on those images (the stored run's)."""
    whole = Images(dataset.name, decision.total, dataset.total, decision.fingerprint)
    detectable = power(expected, whole, confidence)
    return {"detectable_top1": detectable["top1"], "detectable_top5": detectable["top5"],
            "weak": weakness(expected, whole, detectable, weak_limit, confidence) if weak_limit else None}


def _outside(bound: Sequence[float], tolerance: float) -> bool:
    lo, hi = bound
    return hi < -tolerance or lo > tolerance


# -- the comparison with the stored run -------------------------------------------------

def _rows_of(result: Result, counted: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The run's saved top-5, and the positions of its images among the counted ones
    (matched by file name and label, which identify an image within a dataset)."""
    try:
        with np.load(result.predictions) as saved:
            top5, files, labels = saved["top5"], saved["files"].tolist(), saved["labels"].tolist()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise VaccbenchError(f"cannot read the run's predictions ({exc})", result.predictions) from None
    where = {(s.path.name, s.label): i for i, s in enumerate(counted.samples)}
    positions = [where.get((f, int(label)), -1) for f, label in zip(files, labels)]
    if -1 in positions:
        raise VaccbenchError("the run's predictions name images the stored run did not see",
                             result.predictions)
    return top5, np.asarray(positions, dtype=np.int64)


def stored_comparison(pairing: Pairing, result: Result, fdr: float) -> dict[str, Any]:
    """The run against the stored run on the images both saw: top-1 agreement, the images
    each got right alone, McNemar, and the classes whose top-1 changed significantly
    (Benjamini-Hochberg at `fdr`), with the files of their flipped images."""
    stored = pairing.stored
    assert stored is not None
    top5, positions = _rows_of(result, pairing.counted)
    every = np.asarray(pairing.counted.labels)
    labels = every[positions]
    before = stored.correct1[positions]
    after = top5[:, 0] == labels
    a = agreement(top5[:, 0], stored.top1(every)[positions], labels)
    changes = class_changes(before, after, labels)
    found = significant(changes, fdr)
    classes = []
    for change in found:
        flipped = np.flatnonzero((labels == change.label) & (before != after))[:FLIPPED]
        classes.append({**change.to_json(), "flipped": [
            {"file": pairing.counted.samples[positions[i]].path.name, "lost": bool(before[i])}
            for i in flipped.tolist()]})
    return {"predictions": stored.digest, "store": pairing.where, "n": a.n, "agree": a.agree,
            "agreement": round(a.percent, 3), "lost": a.reference_only, "gained": a.run_only,
            "mcnemar_p": a.mcnemar_p, "fdr": fdr, "classes_tested": len(changes),
            "classes": classes}


def stored_line(found: Mapping[str, Any]) -> str:
    classes = found["classes"]
    if classes:
        listed = ", ".join(f"{c['name']} ({c['before']}/{c['images']} -> {c['after']}/{c['images']})"
                           for c in classes[:5])
        more = f" and {len(classes) - 5} more" if len(classes) > 5 else ""
        reading = (f"{len(classes)} class(es) changed significantly (Benjamini-Hochberg, FDR "
                   f"{found['fdr']:.0%}): {listed}{more}")
    else:
        reading = (f"no class changed significantly (Benjamini-Hochberg over "
                   f"{found['classes_tested']} classes, FDR {found['fdr']:.0%})")
    return (f"  paired with the stored run (predictions {found['predictions']}) on the same "
            f"{found['n']} images: top-1 agreement {found['agreement']:.3f}%, lost {found['lost']}, "
            f"gained {found['gained']}, exact McNemar p={found['mcnemar_p']:.3g}; {reading}")


def with_stored(verdict: Verdict, pairing: Pairing, result: Result, confidence: float) -> Verdict:
    """The verdict with the comparison against the stored run added, or why there is none
    when the baseline entry names stored predictions."""
    if pairing.stored is None and (not pairing.named or "sequential" in verdict.details):
        return verdict  # nothing to say, or the sequential line says it
    try:
        if pairing.stored is None:
            raise VaccbenchError(pairing.why)
        found = stored_comparison(pairing, result, 1 - confidence)
    except VaccbenchError as exc:
        found, line = {"missing": str(exc)}, f"  not paired with the stored run: {exc}"
    else:
        line = stored_line(found)
    lines = verdict.message.splitlines()
    at = next((i for i, text in enumerate(lines) if i and not text.startswith("  ")), len(lines))
    return replace(verdict, message="\n".join([*lines[:at], line, *lines[at:]]),
                   details={**verdict.details, "stored": found})


# -- reports ----------------------------------------------------------------------------

def summary_line(name: str, gate: Mapping[str, Any] | None) -> str | None:
    """The terminal summary's line for a test run with --vaccbench-sequential."""
    info = (gate or {}).get("sequential")
    if not info:
        return None
    decision = Decision.from_json(info)
    bounds = "; ".join(f"{m} difference {points(*b)}" for m, b in decision.bounds.items())
    tail = f" ({bounds}, {decision.confidence:.0%} anytime)" if bounds and decision.early else ""
    return f"{name}: {stop_line(decision).removeprefix('sequential: ')}{tail}"
