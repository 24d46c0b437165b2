"""Gate: measured accuracy vs the baseline -> pass, a regression, or a broken build.

Three checks, in plain functions:
- tolerance: |measured - expected| within the baseline's tolerance, widened by the sampling
  error when the images measured are not the images the baseline was measured on
  (`sampling_allowance`);
- paired: a quantized or accelerator run against the fp32 run of the same network on the
  same images (top-1 agreement with its interval, exact McNemar), held to the baseline's
  `min_agreement`;
- collapse: a top1 below half of the expected one, or an agreement below half of
  `min_agreement`, is a BROKEN BUILD, reported as such and never as a small regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .baselines import ModelEntry, Tolerance
from .dataset import Dataset
from .metrics import Accuracy, Agreement, wilson_interval

# Collapse: a build is broken, not regressed, when even the top of its accuracy interval is
# below COLLAPSE_FRACTION of the expected top1 (or of min_agreement). Honest int8 builds lose
# far less: the accelerator's documented drops are 0.1 to 2.9 points top1 (ghostnet, the
# worst, keeps 96% of its fp16 top1), and int8 saturation on CPUs without VNNI keeps 89%
# (MobileNetV2 65.8 -> 58.6); the broken RepVGG-A0 build kept 0.9% (70.628 -> 0.602).
# Half sits far from both. It applies only to targets of at least MIN_COLLAPSE_TARGET
# (ten times chance over 1000 classes): below that, "half" is indistinguishable from chance.
COLLAPSE_FRACTION = 0.5
CHANCE = 100.0 / 1000
MIN_COLLAPSE_TARGET = 10 * CHANCE
# Added to the tolerance when an int8 run is held to the same model's fp16/fp32 figures
# (its own recorded entry is marked broken): it covers every int8 drop the accelerator's
# zoo documents for a healthy build (largest: ghostnet_100 kl_divergence, 2.882 top1 and
# 1.538 top5; see shared notes "Measured on the accelerator").
INT8_ALLOWANCE = Tolerance(top1=3.0, top5=2.0)
FLOAT_FALLBACKS = {"int8": ("fp16", "fp32"), "fp16": ("fp32",)}


@dataclass(frozen=True)
class Expectation:
    top1: float | None
    top5: float | None
    tolerance: Tolerance
    origin: str  # where the numbers come from, for the message
    n: int | None = None  # images the baseline was measured on, when known
    fingerprint: str | None = None  # dataset fingerprint of those images, when recorded
    min_agreement: float | None = None  # % top-1 agreement with fp32 (non-fp32 runs)
    note: str | None = None  # why this target, when it is not the run's own entry
    known_broken: tuple[float | None, float | None] | None = None  # recorded bad top1/top5
    run: str | None = None  # the `backend/precision` entry the numbers were read from


@dataclass(frozen=True)
class Images:
    """The images a run measured: n of the dataset's `total`, identified by `fingerprint`."""

    dataset: str
    n: int
    total: int
    fingerprint: str


@dataclass(frozen=True)
class Paired:
    """A run compared with the fp32 run of the same network on the same images.

    `agreement` is None when there was nothing to compare with; `note` then says why.
    """

    agreement: Agreement | None
    reference: str | None = None  # e.g. "reference/fp32"
    note: str = ""  # the predictions file compared with, or why no comparison was made


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str
    # passed | regression | stale | broken | other-images | no-baseline
    kind: str = "passed"
    details: dict[str, Any] = field(default_factory=dict)  # JSON numbers for reports


def run_key(backend: str, precision: str) -> str:
    return f"{backend}/{precision}"


def needs_paired(backend: str, precision: str) -> bool:
    """Quantized, half-precision and accelerator runs are compared with fp32 image by image."""
    return precision != "fp32" or backend in ("vamp", "vsx")


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _with_override(base: Tolerance, raw: Mapping[str, Any] | None) -> Tolerance:
    return Tolerance(**{**vars(base), **raw}) if raw else base


def _float_fallback(entry: ModelEntry, dataset: Dataset, backend: str, precision: str,
                    broken: Mapping[str, Any]) -> Expectation | None:
    """The target of a run whose own entry records a known-broken build.

    A broken figure is never a target, and skipping would let the next broken build through
    unnoticed. What a healthy build must reach is known: the same model at a higher precision
    on the same dataset, preferably on the same backend (same preprocessing and runtime, so
    only the precision differs), then the model's own code (reference/fp32), then the README's
    full-val figures. int8 runs get INT8_ALLOWANCE on top of the tolerance; the broken entry
    may set its own `tolerance` instead.
    """
    per_dataset = entry.expected.get(dataset.name) or {}
    family = precision.split("-")[0]
    keys = [run_key(backend, p) for p in FLOAT_FALLBACKS.get(family, ("fp32",))]
    allowance = INT8_ALLOWANCE if family == "int8" else Tolerance(0.0, 0.0)
    widened = Tolerance(entry.tolerance.top1 + allowance.top1, entry.tolerance.top5 + allowance.top5)
    tolerance = _with_override(widened, broken.get("tolerance"))
    bad = (_number(broken.get("top1")), _number(broken.get("top5")))
    for fallback in dict.fromkeys([*keys, run_key("reference", "fp32")]):
        target = per_dataset.get(fallback)
        if target and not target.get("broken"):
            origin = f"{entry.baseline_path.name}: {entry.key}.expected.{dataset.name}.{fallback}"
            source = fallback
            top1, top5 = _number(target.get("top1")), _number(target.get("top5"))
            n, fingerprint = target.get("n"), target.get("fingerprint")
            break
    else:
        if not (entry.published and dataset.is_full_val):
            return None
        origin = f"{entry.baseline_path.name}: {entry.key}.published (README table, full ImageNet val)"
        source, n, fingerprint = "published fp32", 50_000, None
        top1, top5 = _number(entry.published.get("top1")), _number(entry.published.get("top5"))
    if broken.get("tolerance"):
        plus = "the broken entry's own tolerance"
    elif family == "int8":
        plus = f"the int8 allowance (+{allowance.top1:g} top1, +{allowance.top5:g} top5 points)"
    else:
        plus = "the model's tolerance"
    note = (f"{run_key(backend, precision)} is marked `broken: true` in {entry.baseline_path.name} "
            f"(a known-bad build recorded at {_pair(*bad)}): held instead to the model's {source} "
            f"figures with {plus}")
    return Expectation(top1, top5, tolerance, origin + " + allowance", n, fingerprint,
                       entry.min_agreement, note, bad, source if "/" in source else None)


def expectation_for(entry: ModelEntry, dataset: Dataset, backend: str,
                    precision: str) -> Expectation | None:
    """The baseline for (dataset, backend, precision).

    A measured entry under `expected.<dataset>.<backend>/<precision>` wins. An entry marked
    `broken: true` records a known-bad build and is never a target: the run is held to the
    same model's higher-precision figures instead (see `_float_fallback`). On the full 50k
    val set a run in the model's own precision (fp32, or int8 for a model stored quantized)
    falls back to the README's `published` figures.
    """
    key = run_key(backend, precision)
    measured: Mapping[str, Any] | None = (entry.expected.get(dataset.name) or {}).get(key)
    if measured and measured.get("broken"):
        return _float_fallback(entry, dataset, backend, precision, measured)
    if measured:
        return Expectation(_number(measured.get("top1")), _number(measured.get("top5")),
                           _with_override(entry.tolerance, measured.get("tolerance")),
                           f"{entry.baseline_path.name}: {entry.key}.expected.{dataset.name}.{key}",
                           measured.get("n"), measured.get("fingerprint"), entry.min_agreement,
                           run=key)
    if entry.published and dataset.is_full_val and precision == entry.precision:
        return Expectation(_number(entry.published.get("top1")), _number(entry.published.get("top5")),
                           entry.tolerance, f"{entry.baseline_path.name}: {entry.key}.published "
                           "(README table, full ImageNet val)", 50_000, None, entry.min_agreement)
    return None


BROKEN_KINDS = ("broken",)  # verdicts --update-baselines refuses to record


def recording_target(entry: ModelEntry, dataset: Dataset, backend: str, precision: str,
                     measured: Accuracy, paired: Paired | None) -> Expectation | None:
    """What a result about to be recorded is checked against for a BROKEN BUILD.

    The first that exists: the run's own (not broken) baseline entry; the fp32 run of the same
    network on the same images (from the paired comparison: its top1 follows from the
    discordant counts); the model's higher-precision figures (as for a known-broken entry);
    the README's published figures, which a healthy build of the model is near on any
    ImageNet sample.
    """
    own = expectation_for(entry, dataset, backend, precision)
    if own is not None and own.known_broken is None:
        return own
    if paired is not None and paired.agreement is not None and paired.agreement.n == measured.n:
        a = paired.agreement
        top1 = 100.0 * (measured.correct1 + a.reference_only - a.run_only) / a.n
        return Expectation(top1, None, entry.tolerance, f"{paired.reference} on the same {a.n} "
                           f"images ({paired.note})", a.n, None, entry.min_agreement)
    fallback = _float_fallback(entry, dataset, backend, precision, {})
    if fallback is not None:
        return replace(fallback, note=None, known_broken=None)
    if entry.published and entry.published.get("top1") is not None:
        return Expectation(_number(entry.published.get("top1")), _number(entry.published.get("top5")),
                           entry.tolerance, f"{entry.baseline_path.name}: {entry.key}.published "
                           "(README table, full ImageNet val)", 50_000, None, entry.min_agreement)
    return own


def other_images(expected: Expectation, images: Images) -> bool:
    """A whole dataset whose fingerprint is not the one the baseline was measured on."""
    return (bool(expected.fingerprint) and str(expected.fingerprint) != images.fingerprint
            and images.n == images.total and expected.n in (None, images.total))


def same_images(expected: Expectation, images: Images) -> bool:
    """Whether the baseline was measured on exactly these images.

    By fingerprint when the baseline recorded one; otherwise a baseline is taken to cover
    the whole dataset, so a run of the whole dataset (no --limit) with the same n matches.
    """
    if expected.fingerprint:
        return str(expected.fingerprint) == images.fingerprint
    return expected.n in (None, images.n) and images.n == images.total


def sampling_allowance(correct: int, want: float, expected: Expectation, images: Images,
                       confidence: float) -> float:
    """Points of |measured - expected| that sampling alone explains, at `confidence`.

    Zero when the baseline was measured on the same images. Otherwise the quantity both
    numbers estimate is the accuracy over the larger image set (the dataset, or the
    baseline's images when it had more), and whichever side measured fewer images is a
    sample of it. Each side's error is the distance from its value to the end of its Wilson
    interval facing the other value, finite-population corrected (a whole set has none);
    the two combine as in Newcombe's score interval for a difference: sqrt(m^2 + b^2).
    """
    if same_images(expected, images):
        return 0.0
    return _sampling(100.0 * correct / images.n, want, expected, images, confidence)


def _sampling(got: float, want: float, expected: Expectation, images: Images,
              confidence: float) -> float:
    """`sampling_allowance` of a measured value `got` in percent: any value, not only those
    a count of `images.n` gives (what-ifs: the smallest drop the gate can see)."""
    population = max(images.total, expected.n or 0, images.n)
    measured_side = baseline_side = 0.0
    if images.n < population:
        lo, hi = wilson_interval(got * images.n / 100.0, images.n, confidence, population)
        measured_side = hi - got if want > got else got - lo
    if expected.n and expected.n < population:
        base_lo, base_hi = wilson_interval(round(want * expected.n / 100), expected.n,
                                           confidence, population)
        baseline_side = want - base_lo if want > got else base_hi - want
    return math.hypot(measured_side, baseline_side)


# -- the gate's power: the smallest drop it can see ------------------------------------------

def detectable_drop(want: float | None, tolerance: float, expected: Expectation, images: Images,
                    confidence: float) -> float | None:
    """The smallest drop below `want`, in points, that the gate flags on these images: a
    measured value further below fails, one nearer passes.

    On the images the baseline was measured on, the difference is exact and this is the
    tolerance. Otherwise it is the tolerance plus the sampling allowance at that measured
    value (`sampling_allowance`), found by bisection: the drop minus the allowance grows
    with the drop (the allowance changes by at most one point per point of drop). None when
    not even 0% would be flagged: too few images to see any drop.
    """
    if want is None:
        return None
    if same_images(expected, images):
        return tolerance

    def flagged(drop: float) -> bool:
        return drop > tolerance + _sampling(want - drop, want, expected, images, confidence)

    if not flagged(want):
        return None
    lo, hi = 0.0, want
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if flagged(mid) else (mid, hi)
    return hi


def images_needed(want: float, tolerance: float, limit: float, expected: Expectation,
                  images: Images, confidence: float) -> int | None:
    """The fewest images the run and the baseline must each have measured for the gate to see
    a drop of `limit` points (each side with fewer raised to it, at most the whole set both
    describe); None when not even the whole set does (the tolerance alone exceeds `limit`)."""
    population = max(images.total, expected.n or 0, images.n)

    def sees(m: int) -> bool:
        run = Images(images.dataset, max(images.n, m) if images.n < population else images.n,
                     images.total, images.fingerprint)
        base = expected.n if not expected.n or expected.n >= population else max(expected.n, m)
        drop = detectable_drop(want, tolerance, replace(expected, n=base), run, confidence)
        return drop is not None and drop <= limit + 1e-9

    if not sees(population):
        return None
    lo, hi = 1, population  # sees(hi); the answer is the smallest m in [lo, hi] that sees
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if sees(mid) else (mid + 1, hi)
    return lo


@dataclass(frozen=True)
class WeakLimit:
    """When a gate is weak (--max-allowed): the smallest drop it can flag is more than `value`
    points, or more than `value` times the tolerance when `relative` (written `2x`)."""

    value: float
    relative: bool = True

    @classmethod
    def parse(cls, text: str | float) -> "WeakLimit":
        raw = str(text).strip().lower()
        relative = raw.endswith("x")
        try:
            value = float(raw[:-1] if relative else raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{text!r} is not a positive number of points (1.0) or multiple of "
                             "the tolerance (2x)")
        return cls(value, relative)

    def points(self, tolerance: float) -> float:
        return self.value * tolerance if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}"


WEAK_LIMIT = WeakLimit(2.0)  # a gate that cannot see twice its tolerance is weak
METRIC_WORDS = {"top1": "top-1", "top5": "top-5"}


def weakness(expected: Expectation, images: Images, detectable: Mapping[str, float | None],
             limit: WeakLimit, confidence: float) -> str | None:
    """Why the gate is weak, in words a user acts on, or None: "cannot see a top-1 drop under
    10.8 points; measure at least N images (this run measured 650, the baseline 50)"."""
    blind, needed = [], []
    for metric in ("top1", "top5"):
        want, tol = getattr(expected, metric), getattr(expected.tolerance, metric)
        drop = detectable.get(metric)
        if want is None or (drop is not None and drop <= limit.points(tol) + 1e-9):
            continue
        word = METRIC_WORDS[metric]
        blind.append(f"any {word} drop" if drop is None else f"a {word} drop under {drop:.3g} points")
        needed.append((metric, images_needed(want, tol, limit.points(tol), expected, images,
                                             confidence)))
    if not blind:
        return None
    text = "cannot see " + " or ".join(blind)
    counts = [n for _, n in needed if n is not None]
    if counts:
        sides = f"this run measured {images.n:,}"
        sides += f", the baseline {expected.n:,}" if expected.n else ""
        text += f"; measure at least {max(counts):,} images ({sides})"
    for metric, n in needed:
        if n is None:
            tol = getattr(expected.tolerance, metric)
            text += (f"; the {METRIC_WORDS[metric]} tolerance alone, {tol:g}, is more than "
                     f"--max-allowed {limit} allows")
    return text


def power(expected: Expectation, images: Images, confidence: float) -> dict[str, float | None]:
    """Per metric, the smallest drop this run would have flagged (`detectable_drop`), rounded."""
    found = {}
    for metric in ("top1", "top5"):
        drop = detectable_drop(getattr(expected, metric), getattr(expected.tolerance, metric),
                               expected, images, confidence)
        found[metric] = None if drop is None else round(drop, 3)
    return found


def _pair(top1: float | None, top5: float | None) -> str:
    return " / ".join("-" if v is None else f"{v:.3f}" for v in (top1, top5))


def _interval(successes: int, n: int, confidence: float, population: int | None = None) -> list[float]:
    return [round(v, 3) for v in wilson_interval(successes, n, confidence, population)]


def paired_details(paired: Paired | None, images: Images, min_agreement: float | None,
                   confidence: float) -> dict[str, Any] | None:
    """The paired comparison as JSON numbers (None when the run needs none)."""
    if paired is None:
        return None
    if paired.agreement is None:
        return {"missing": paired.note}
    a = paired.agreement
    return {"reference": paired.reference, "predictions": paired.note, "n": a.n,
            "agree": a.agree, "agreement": round(a.percent, 3),
            "agreement_interval": _interval(a.agree, a.n, confidence, max(images.total, a.n)),
            "reference_only_correct": a.reference_only, "run_only_correct": a.run_only,
            "mcnemar_p": a.mcnemar_p, "min_agreement": min_agreement}


def _paired_line(paired: Paired, details: Mapping[str, Any], confidence: float) -> str:
    if paired.agreement is None:
        return f"  paired: {paired.note}"
    a, (lo, hi) = paired.agreement, details["agreement_interval"]
    interval = ("exact: the whole dataset" if lo == hi else
                f"{confidence:.0%} interval {lo:.3f}-{hi:.3f}")
    p = a.mcnemar_p
    reading = ("no significant accuracy difference" if p >= 1 - confidence else
               "run significantly " + ("worse" if a.reference_only > a.run_only else "better"))
    floor = "" if details["min_agreement"] is None else f"; min_agreement {details['min_agreement']:g}%"
    return (f"  paired with {paired.reference} on the same {a.n} images: top-1 agreement "
            f"{a.percent:.3f}% ({a.agree}/{a.n}, {interval}{floor}); "
            f"fp32 right & run wrong {a.reference_only}, fp32 wrong & run right {a.run_only}: "
            f"exact McNemar p={p:.3g} ({reading})")


def _metric_rows(measured: Accuracy, expected: Expectation, images: Images, exact: bool,
                 confidence: float, allow_improvement: bool) -> tuple[list[str], list[tuple[str, float]], list[str],
                                             dict[str, float]]:
    """Per metric: the message row; which failed (with delta); which passed only thanks to
    the sampling allowance (or --allow-improvement); and the allowed difference."""
    rows, failed, rescued, allowed = [], [], [], {}
    for metric, correct in (("top1", measured.correct1), ("top5", measured.correct5)):
        want, got = getattr(expected, metric), getattr(measured, metric)
        tol = getattr(expected.tolerance, metric)
        if want is None:
            rows.append(f"  {metric}: measured {got:7.3f}   (no expected value)")
            continue
        sampling = 0.0 if exact else sampling_allowance(correct, want, expected, images, confidence)
        delta = got - want
        within = abs(delta) <= tol + sampling + 1e-9
        ok = within or (allow_improvement and delta > 0)
        allowed[metric] = round(tol + sampling, 3)
        if not ok:
            failed.append((metric, delta))
        elif within and abs(delta) > tol + 1e-9:
            rescued.append(metric)
        allow = (f"allowed ±{tol + sampling:.3f} (tolerance {tol:.3f} + sampling {sampling:.3f})"
                 if sampling else f"tolerance ±{tol:.3f}")
        rows.append(f"  {metric}: measured {got:7.3f}  expected {want:7.3f}  delta {delta:+7.3f}  "
                    f"{allow}  {'ok' if within else 'improved' if ok else 'FAIL'}")
    return rows, failed, rescued, allowed


def _sampling_note(expected: Expectation, images: Images, confidence: float) -> str:
    base = f"n={expected.n}" if expected.n else "the whole dataset"
    if expected.fingerprint:
        base += f", fingerprint {expected.fingerprint}"
    if images.n == images.total and expected.n in (None, images.total):
        return (f"  images: the {images.n} images of {images.dataset or 'the dataset'} (fingerprint "
                f"{images.fingerprint}) are not those the baseline was measured on ({base}); "
                "no sampling allowance applies to a whole dataset. Run on the images the baseline "
                "was measured on; numbers of other images belong under their own --dataset-name")
    return (f"  sampling: measured n={images.n} of the {images.total} images of "
            f"{images.dataset or 'the dataset'} (fingerprint {images.fingerprint}); the baseline "
            f"was measured on {base}. The allowed difference adds the {confidence:.0%} sampling "
            "error (Wilson interval, finite-population corrected; --confidence sets the level)")


def _agreement_failure(expected: Expectation, paired: Paired | None, details: Mapping[str, Any],
                       confidence: float, n_note: str) -> str | None:
    """Why the agreement with fp32 fails `min_agreement`: even the top of its interval is below."""
    floor = expected.min_agreement
    if floor is None or paired is None or paired.agreement is None:
        return None
    lo, hi = details["paired"]["agreement_interval"]
    if hi >= floor:
        return None
    interval = "" if lo == hi else f" ({confidence:.0%} interval {lo:.3f}-{hi:.3f})"
    return (f"top-1 agreement with {paired.reference} is {paired.agreement.percent:.3f}%{interval}, "
            f"below the baseline's min_agreement {floor:g}% ({n_note})")


STALE = "baseline is stale"


def judge(measured: Accuracy, expected: Expectation | None, images: Images, update_command: str,
          *, paired: Paired | None = None, build: str = "this",
          confidence: float = 0.95, allow_improvement: bool = False,
          weak_limit: WeakLimit | None = WEAK_LIMIT) -> Verdict:
    """Pass, regression, stale baseline or broken build, with a message that says what was
    compared and why.

    A result better than the baseline beyond the allowed difference fails as a stale
    baseline (whatever improved it should be recorded), unless `allow_improvement`.
    `images` decides the sampling allowance; `paired` (None when the run needs no paired
    comparison) adds the agreement check; `build` names the run in messages (e.g.
    "vamp/int8-percentile"). `details` carries every number, for reports, among them the
    smallest drop this run would have flagged (`detectable_top1`, `detectable_top5`) and,
    when that exceeds `weak_limit`, why the gate is weak (`weak`; a pass says so). With no
    expectation (recording a baseline) the verdict is `no-baseline` and only details count.
    """
    details: dict[str, Any] = {
        "confidence": confidence,
        "top1_interval": _interval(measured.correct1, measured.n, confidence),
        "top5_interval": _interval(measured.correct5, measured.n, confidence),
        "paired": paired_details(paired, images, expected.min_agreement if expected else None,
                                 confidence)}
    paired_line = [] if paired is None else [_paired_line(paired, details["paired"], confidence)]
    if expected is None:
        details["verdict"] = "no-baseline"
        return Verdict(True, "\n".join(paired_line), "no-baseline", details)

    exact = same_images(expected, images)
    rows, failed, rescued, allowed = _metric_rows(measured, expected, images, exact, confidence,
                                                  allow_improvement)
    details["allowed"] = allowed
    detectable = power(expected, images, confidence)
    details["detectable_top1"], details["detectable_top5"] = detectable["top1"], detectable["top5"]
    weak = weakness(expected, images, detectable, weak_limit, confidence) if weak_limit else None
    details["weak"] = weak
    details["sampling"] = None if exact else {
        "n": images.n, "dataset_images": images.total, "baseline_n": expected.n,
        "baseline_fingerprint": expected.fingerprint, "fingerprint": images.fingerprint}
    notes = [f"  baseline: {expected.origin}"]
    notes += [f"  target: {expected.note}"] if expected.note else []
    notes += [] if exact else [_sampling_note(expected, images, confidence)]
    n_note = f"n={measured.n}" + ("" if exact or not expected.n else f", baseline n={expected.n}")

    collapse = _collapse(measured, expected, images, paired, details, build, confidence)
    agree_fail = _agreement_failure(expected, paired, details, confidence, n_note)
    if collapse:
        kind, headline = "broken", collapse
    elif (failed or agree_fail) and other_images(expected, images):
        kind = "other-images"
        headline = (f"measured on other images than the baseline: {images.dataset or 'the dataset'} "
                    f"has fingerprint {images.fingerprint}, the baseline was measured on "
                    f"{expected.fingerprint}; the numbers are not comparable (see `images:` below)")
    elif failed and not agree_fail and all(delta > 0 for _, delta in failed):
        kind, headline = "stale", f"{STALE}, update with: {update_command}"
        rows = [*rows, "  (or pass --allow-improvement to accept results above the baseline)"]
    elif failed or agree_fail:
        kind, headlines = "regression", []
        if failed:
            metric, delta = max(failed, key=lambda f: abs(f[1]))
            headlines.append(f"{metric} is {abs(delta):.3f} points "
                             f"{'below' if delta < 0 else 'above'} the baseline "
                             f"(allowed ±{allowed[metric]:.3f}, {n_note})")
        headline = "; ".join([*headlines, *([agree_fail] if agree_fail else [])])
    else:
        kind = "passed"
        headline = f"{build} build within the allowed difference ({n_note})"
        if rescued:
            headline += (f"; {' and '.join(rescued)} passed thanks to the sampling allowance: the "
                         f"difference exceeds the tolerance alone, but measuring {images.n} images "
                         f"instead of the baseline's explains it at {confidence:.0%} confidence")
        if weak:
            headline += f"; but the gate is weak: {weak}"
    details["verdict"] = kind
    details["collapse"] = collapse
    lines = [headline, *rows, *paired_line, *notes]
    if kind == "broken":
        lines += ["This is not a number to record. Look for the fault in the build: calibration "
                  "(mode, images and their preprocessing), per-layer scales (compare activations "
                  "with fp32 layer by layer), input preprocessing, label offset."]
    elif kind == "regression":
        lines += ["If the change is intended, record the new numbers:", f"  {update_command}"]
    return Verdict(kind == "passed", "\n".join(lines), kind, details)


def _collapse(measured: Accuracy, expected: Expectation, images: Images, paired: Paired | None,
              details: Mapping[str, Any], build: str, confidence: float) -> str | None:
    """The BROKEN BUILD headline, or None when the run is at worst a regression."""
    def below(lo: float, hi: float, what: str) -> str:
        top = "it is" if lo == hi else f"even the top of its {confidence:.0%} interval, {hi:.3f}%, is"
        return f"{top} below {COLLAPSE_FRACTION:.0%} of {what}"

    why = None
    if expected.top1 is not None and expected.top1 >= MIN_COLLAPSE_TARGET:
        # the population the target describes: a baseline of more images than this dataset
        # has (the README's 50k) makes even a whole small dataset a sample
        lo, hi = wilson_interval(measured.correct1, measured.n, confidence,
                                 max(images.total, images.n, expected.n or 0))
        if hi < COLLAPSE_FRACTION * expected.top1:
            why = (f"top1 {measured.top1:.3f}% vs {expected.top1:.3f}% expected",
                   f"{below(lo, hi, 'the expected top1')}; chance is {CHANCE:.3f}%")
    floor = expected.min_agreement
    if why is None and floor is not None and paired is not None and paired.agreement is not None:
        lo, hi = details["paired"]["agreement_interval"]
        if hi < COLLAPSE_FRACTION * floor:
            why = (f"top-1 agreement with {paired.reference} {paired.agreement.percent:.3f}% vs "
                   f"min_agreement {floor:g}%", below(lo, hi, "the minimum"))
    if why is None:
        return None
    text = (f"BROKEN BUILD: {why[0]} — the {build} build is broken, not a small regression "
            f"({why[1]})")
    bad1, bad5 = expected.known_broken or (None, None)
    if bad1 is not None and abs(measured.top1 - bad1) <= max(expected.tolerance.top1, 1.0):
        text += f". It reproduces the known-broken build recorded in the baseline ({_pair(bad1, bad5)})"
    return text
