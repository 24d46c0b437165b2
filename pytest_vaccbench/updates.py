"""Recording measured results in the baseline files: what may be written, and writing it.

One plain function, `apply_updates`, serves `pytest --update-baselines` (results from this
session's test reports) and `vaccbench update-baselines --from REPORT.json` (results kept in
a `--vaccbench-json` report, e.g. a nightly run merged from shards), so both refuse the same
things: results of tests that errored or crashed, and BROKEN BUILDs unless accepted
deliberately (`--accept-broken`). Files are written by `baselines.update_file` (locked,
atomic), or only diffed with `dry_run`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .baselines import update_diff, update_file
from .errors import VaccbenchError
from .gate import BROKEN_KINDS
from .report_schema import read_report
from .run import Result

RECORDABLE_OUTCOMES = ("passed", "failed")  # a failed gate still measured; errors did not


@dataclass(frozen=True)
class Recording:
    """One test's measured result, its outcome and the gate's verdict kind on it."""

    nodeid: str
    outcome: str  # passed | failed | error | crashed
    result: Result
    verdict: str  # gate.Verdict.kind: passed | regression | stale | broken | ...

    @property
    def run(self) -> str:
        return f"{self.result.backend}/{self.result.precision}"

    @property
    def label(self) -> str:
        r = self.result
        return f"{r.model} {r.dataset} {self.run}"


@dataclass
class UpdateReport:
    """What an update did: lines to show, which tests were written, whether all went well."""

    lines: list[str] = field(default_factory=list)
    written: set[str] = field(default_factory=set)  # nodeids
    refused: list[str] = field(default_factory=list)  # nodeids
    failed_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.failed_files


def refusal(recording: Recording, accept_broken: bool) -> str | None:
    """Why this result must not become a baseline, or None."""
    if recording.outcome not in RECORDABLE_OUTCOMES:
        return f"the test ended as {recording.outcome}: its numbers are void"
    if recording.verdict in BROKEN_KINDS and not accept_broken:
        return ("the gate classifies it as a BROKEN BUILD; recording it would make the gate pass "
                "this build from now on. Fix the build, or pass --accept-broken to record it "
                "deliberately")
    return None


def apply_updates(recordings: Iterable[Recording], *, accept_broken: bool = False,
                  dry_run: bool = False, baselines_dir: Path | None = None) -> UpdateReport:
    """Write (or with `dry_run` diff) every recordable result, one locked write per file.

    `baselines_dir` re-roots each result's baseline file by name (a report made on another
    machine, or in another checkout).
    """
    report = UpdateReport()
    by_file: dict[Path, list[Recording]] = defaultdict(list)
    for rec in recordings:
        why = refusal(rec, accept_broken)
        if why is not None:
            if rec.outcome in RECORDABLE_OUTCOMES:  # errors are reported by pytest itself
                report.refused.append(rec.nodeid)
                report.lines.append(f"REFUSED {rec.label}: {why}")
            continue
        path = Path(rec.result.baseline)
        by_file[baselines_dir / path.name if baselines_dir else path].append(rec)
    for path in list(by_file):
        if path.suffix != ".yaml":
            report.failed_files.append(str(path))
            report.lines.append(f"ERROR: {path}: not a baseline file (*.yaml); nothing written")
            del by_file[path]
    for path, recs in sorted(by_file.items()):
        entries = [(r.result.model, r.result.dataset, r.run, r.result.baseline_values())
                   for r in recs]
        try:
            if dry_run:
                diff = update_diff(path, entries)
                report.lines.append(f"would update {path.name}:" if diff else
                                    f"{path.name}: no change")
                report.lines.extend(diff.splitlines())
                continue
            written = update_file(path, entries)
        except (OSError, VaccbenchError) as exc:
            report.failed_files.append(str(path))
            report.lines.append(f"ERROR: {exc} (this file was left as it was)")
            continue
        report.written.update(r.nodeid for r in recs)
        report.lines.extend(f"updated {path.name}: {line}" + _accepted(r)
                            for line, r in zip(written, recs))
    if dry_run:
        report.lines.append("dry run: no baseline file was changed")
    return report


def _accepted(rec: Recording) -> str:
    return " (a BROKEN BUILD, recorded with --accept-broken)" if rec.verdict in BROKEN_KINDS else ""


def recordings_from_json(path: Path) -> list[Recording]:
    """The results of a `--vaccbench-json` report (validated by report_schema), with each
    test's outcome and verdict."""
    names = [f.name for f in fields(Result)]
    found = []
    for _, test in read_report(path).measured():
        result = Result(**{**{k: test[k] for k in names if k in test},
                           "predictions": test.get("predictions") or ""})
        gate = test.get("gate") or {}
        found.append(Recording(test["nodeid"], test["outcome"], result, str(gate.get("verdict", ""))))
    return found


def recording_of(nodeid: str, outcome: str, result: Result | None,
                 gate: dict[str, Any] | None) -> Recording | None:
    """A report row as a Recording (None when it measured nothing)."""
    if result is None:
        return None
    return Recording(nodeid, outcome, result, str((gate or {}).get("verdict", "")))
