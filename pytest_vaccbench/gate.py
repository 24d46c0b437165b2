"""Gate: measured accuracy vs the baseline -> pass, or a failure message that says what to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .baselines import ModelEntry, Tolerance
from .dataset import Dataset
from .metrics import Accuracy


@dataclass(frozen=True)
class Expectation:
    top1: float | None
    top5: float | None
    tolerance: Tolerance
    origin: str  # where the numbers come from, for the message
    n: int | None = None  # images the baseline was measured on, when known


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str


def run_key(backend: str, precision: str) -> str:
    return f"{backend}/{precision}"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def expectation_for(entry: ModelEntry, dataset: Dataset, backend: str,
                    precision: str) -> Expectation | None:
    """The baseline for (dataset, backend, precision).

    A measured entry under `expected.<dataset>.<backend>/<precision>` wins; an entry marked
    `broken: true` records a known-bad build and is never a target. On the full 50k val set
    an fp32 run falls back to the README's `published` figures.
    """
    key = run_key(backend, precision)
    measured: Mapping[str, Any] | None = (entry.expected.get(dataset.name) or {}).get(key)
    if measured and not measured.get("broken"):
        tolerance = entry.tolerance
        if measured.get("tolerance"):
            tolerance = Tolerance(**{**vars(entry.tolerance), **measured["tolerance"]})
        return Expectation(_number(measured.get("top1")), _number(measured.get("top5")), tolerance,
                           f"{entry.baseline_path.name}: {entry.key}.expected.{dataset.name}.{key}",
                           measured.get("n"))
    if entry.published and dataset.is_full_val and precision == "fp32":
        return Expectation(_number(entry.published.get("top1")), _number(entry.published.get("top5")),
                           entry.tolerance, f"{entry.baseline_path.name}: {entry.key}.published "
                           "(README table, full ImageNet val)", 50_000)
    return None


STALE = "baseline is stale"


def judge(measured: Accuracy, expected: Expectation, update_command: str,
          allow_improvement: bool = False) -> Verdict:
    """Pass when every expected metric is within tolerance; otherwise a full explanation.

    A result better than the baseline beyond tolerance fails too, as a stale baseline
    (whatever improved it should be recorded), unless `allow_improvement`.
    """
    rows, failed = [], []
    for metric in ("top1", "top5"):
        want = getattr(expected, metric)
        got = getattr(measured, metric)
        tol = getattr(expected.tolerance, metric)
        if want is None:
            rows.append(f"  {metric}: measured {got:7.3f}   (no expected value)")
            continue
        delta = got - want
        within = abs(delta) <= tol + 1e-9
        ok = within or (allow_improvement and delta > 0)
        if not ok:
            failed.append((metric, delta))
        rows.append(f"  {metric}: measured {got:7.3f}  expected {want:7.3f}  delta {delta:+7.3f}  "
                    f"tolerance ±{tol:.3f}  {'ok' if within else 'improved' if ok else 'FAIL'}")
    n_note = f"n={measured.n}"
    if expected.n and expected.n != measured.n:
        n_note += f" (baseline measured on n={expected.n})"
    if not failed:
        return Verdict(True, "\n".join(rows))
    metric, delta = max(failed, key=lambda f: abs(f[1]))
    direction = "below" if delta < 0 else "above"
    headline = (f"{metric} is {abs(delta):.3f} points {direction} the baseline "
                f"(tolerance ±{getattr(expected.tolerance, metric):.3f}, {n_note})")
    if all(d > 0 for _, d in failed):
        message = "\n".join([f"{STALE}, update with: {update_command}", headline, *rows,
                             f"  baseline: {expected.origin}",
                             "(or pass --allow-improvement to accept results above the baseline)"])
        return Verdict(False, message)
    message = "\n".join([headline, *rows, f"  baseline: {expected.origin}",
                         "If the change is intended, record the new numbers:",
                         f"  {update_command}"])
    return Verdict(False, message)
