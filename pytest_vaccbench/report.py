"""Report: the results of a session as a table people can read at a glance."""

from __future__ import annotations

from typing import Any, Iterable


def _fmt(value: float | None, spec: str = "7.3f") -> str:
    return "-".rjust(len(format(0.0, spec))) if value is None else format(value, spec)


def summary_lines(reported: Iterable[Any]) -> list[str]:
    """One row per test: model, backend/precision, top1 measured/expected/delta, top5, n, status."""
    header = (f"{'model':<44} {'run':<24} {'top1':>7} {'expect':>7} {'delta':>7} "
              f"{'top5':>7} {'expect':>7} {'n':>6}  status")
    lines = [header, "-" * len(header)]
    for rep in reported:
        r, e = rep.result, rep.expected or {}
        exp1, exp5 = e.get("top1"), e.get("top5")
        delta = None if exp1 is None else r.top1 - exp1
        status = rep.outcome if rep.expected else "recorded"
        lines.append(f"{r.family + '/' + r.model:<44} {r.backend + '/' + r.precision:<24} "
                     f"{r.top1:7.3f} {_fmt(exp1)} {_fmt(delta, '+7.3f')} {r.top5:7.3f} "
                     f"{_fmt(exp5)} {r.n:>6}  {status}")
    return lines
