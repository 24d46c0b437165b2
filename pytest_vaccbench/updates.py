"""Recording measured results in the baseline files: what may be written, and writing it.

One plain function, `apply_updates`, serves `pytest --update-baselines` (results from this
session's test reports) and `vaccbench update-baselines --from REPORT.json` (results kept in
a `--vaccbench-json` report, e.g. a nightly run merged from shards), so both refuse the same
things (`refusal`): results of tests that errored or crashed; BROKEN BUILDs unless accepted
deliberately (`--accept-broken`); and results that would weaken the entry they replace, one
measured on fewer images or on other images (`--accept-other-images`), judged on what the
file holds under its lock; and results of sequential runs that stopped early (not the whole
set's numbers). Files are written by `baselines.update_file` (locked, atomic; an entry whose
numbers, n and fingerprint are unchanged is left as it is, unless the update brings stored
predictions it does not name), or only diffed with `dry_run`. With a predictions store
(`store`), each recorded result's per-image predictions are kept there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from .baselines import Lookup, update_diff, update_file
from .dataset import Dataset, limit
from .errors import VaccbenchError
from .gate import BROKEN_KINDS
from .report_schema import read_report
from .run import Result
from .store import PredictionsStore, StoreError

RECORDABLE_OUTCOMES = ("passed", "failed")  # a failed gate still measured; errors did not
ACCEPT_OTHER_IMAGES = "--accept-other-images"


@dataclass(frozen=True)
class Recording:
    """One test's measured result, its outcome and the gate's verdict kind on it."""

    nodeid: str
    outcome: str  # passed | failed | error | crashed
    result: Result
    verdict: str  # gate.Verdict.kind: passed | regression | stale | broken | ...
    partial: bool = False  # a sequential run that stopped before the last image

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
    unchanged: set[str] = field(default_factory=set)  # nodeids: same numbers, n and images
    refused: list[str] = field(default_factory=list)  # nodeids
    failed_files: list[str] = field(default_factory=list)
    unstored: list[str] = field(default_factory=list)  # nodeids whose predictions were not kept

    @property
    def ok(self) -> bool:
        return not self.refused and not self.failed_files and not self.unstored


def weakening(old: Mapping[str, Any] | None, result: Result) -> str | None:
    """Why `result` must not replace the baseline entry `old` without --accept-other-images,
    or None: the entry was measured on more images (a baseline of fewer images makes every
    later run's sampling allowance wider: the gate would see only larger drops), or on
    other images (its numbers and the new ones describe different sets). Images that
    include the entry's (`Result.covers`: it was a --limit draw of them) are not other images.
    """
    if not old or not old.get("n"):
        return None
    old_n, old_fp = int(old["n"]), old.get("fingerprint")
    was = f"n={old_n}" + (f", fingerprint {old_fp}" if old_fp else "")
    now = f"n={result.n}, fingerprint {result.fingerprint}"
    if result.n < old_n:
        return (f"it would replace an entry measured on more images ({was}) with one measured "
                f"on fewer ({now}): every later run would be held to a baseline that cannot see "
                f"as small a drop. Measure at least {old_n} images, or pass {ACCEPT_OTHER_IMAGES} "
                "to record it deliberately")
    if old_fp and str(old_fp) != result.fingerprint and str(old_fp) not in result.covers:
        return (f"it was measured on other images than the entry it would replace (entry: "
                f"{was}; this result: {now}): the two numbers are not comparable. Run on the "
                "entry's images, record these under their own --dataset-name, or pass "
                f"{ACCEPT_OTHER_IMAGES} to replace it deliberately")
    return None


def covers(old: Mapping[str, Any] | None, measured: Dataset, fingerprint: str) -> dict[str, int]:
    """{fingerprint: n} of the entry `old` when its images are a `--limit` draw of the
    `measured` ones (a stratified subset is a prefix of every larger one), so that these
    images include it; else {}. Computed where the images are, kept in `Result.covers`."""
    if not old or not old.get("n") or not old.get("fingerprint"):
        return {}
    n, old_fp = int(old["n"]), str(old["fingerprint"])
    if old_fp == fingerprint or n >= len(measured.samples):
        return {}
    return {old_fp: n} if limit(measured, n).fingerprint() == old_fp else {}


def refusal(recording: Recording, accept_broken: bool, old: Mapping[str, Any] | None = None,
            accept_other_images: bool = False) -> str | None:
    """Why this result must not become a baseline (replacing the entry `old`), or None."""
    if recording.outcome not in RECORDABLE_OUTCOMES:
        return f"the test ended as {recording.outcome}: its numbers are void"
    if recording.partial:
        return (f"a sequential run measured {recording.result.n} images and stopped: its numbers "
                "are not the whole set's; record a full run (without --vaccbench-sequential)")
    if recording.verdict in BROKEN_KINDS and not accept_broken:
        return ("the gate classifies it as a BROKEN BUILD; recording it would make the gate pass "
                "this build from now on. Fix the build, or pass --accept-broken to record it "
                "deliberately")
    return None if accept_other_images else weakening(old, recording.result)


def apply_updates(recordings: Iterable[Recording], *, accept_broken: bool = False,
                  accept_other_images: bool = False, dry_run: bool = False,
                  baselines_dir: Path | None = None,
                  store: PredictionsStore | None = None) -> UpdateReport:
    """Write (or with `dry_run` diff) every recordable result, one locked write per file.

    What each result would replace is read under the file's lock (`refusal`); refused
    results are listed and leave their entries as they are. `baselines_dir` re-roots each
    result's baseline file by name (a report made on another machine, or in another checkout).
    With a `store`, each recorded result's per-image predictions are kept there and its entry
    names them (`predictions: <digest>`: a digest the entry does not name yet changes it, even
    when its numbers do not); one that cannot be kept is recorded without, and said so.
    """
    report = UpdateReport()
    by_file: dict[Path, list[Recording]] = defaultdict(list)
    for rec in recordings:
        if rec.outcome in RECORDABLE_OUTCOMES:  # errors are reported by pytest itself
            path = Path(rec.result.baseline)
            by_file[baselines_dir / path.name if baselines_dir else path].append(rec)
    for path in list(by_file):
        if path.suffix != ".yaml":
            report.failed_files.append(str(path))
            report.lines.append(f"ERROR: {path}: not a baseline file (*.yaml); nothing written")
            del by_file[path]
    for path, recs in sorted(by_file.items()):
        refused: list[tuple[Recording, str]] = []
        values: dict[str, dict[str, Any]] = {}  # by nodeid: predictions kept once

        def screen(current: Lookup, recs: list[Recording] = recs,
                   refused: list[tuple[Recording, str]] = refused,
                   values: dict[str, dict[str, Any]] = values) -> list[Any]:
            refused.clear()
            keep = []
            for r in recs:
                why = refusal(r, accept_broken, current(r.result.model, r.result.dataset, r.run),
                              accept_other_images)
                if why is None:
                    if r.nodeid not in values:
                        values[r.nodeid] = _values(r, store, dry_run, report)
                    keep.append((r.result.model, r.result.dataset, r.run, values[r.nodeid]))
                else:
                    refused.append((r, why))
            return keep

        entries = [(r.result.model, r.result.dataset, r.run, r.result.baseline_values()) for r in recs]
        try:
            if dry_run:
                diff, changed = update_diff(path, entries, screen)
            else:
                changed = update_file(path, entries, screen)
        except (OSError, VaccbenchError) as exc:
            report.failed_files.append(str(path))
            report.lines.append(f"ERROR: {exc} (this file was left as it was)")
            continue
        for r, why in refused:
            report.refused.append(r.nodeid)
            report.lines.append(f"REFUSED {r.label}: {why}")
        kept = [r for r in recs if all(r is not q for q, _ in refused)]
        if dry_run:
            report.lines.append(f"would update {path.name}:" if diff else f"{path.name}: no change")
            report.lines.extend(diff.splitlines())
        for r in kept:
            if r.label not in changed:
                report.unchanged.add(r.nodeid)
                same = ("top1, top5, n, fingerprint and predictions"
                        if "predictions" in values.get(r.nodeid, {}) else "top1, top5, n and fingerprint")
                report.lines.append(f"unchanged {path.name}: {r.label} (same {same})")
            elif not dry_run:
                report.written.add(r.nodeid)
                report.lines.append(f"updated {path.name}: {r.label}" + _accepted(r))
    if dry_run:
        report.lines.append("dry run: no baseline file was changed")
    return report


def _values(rec: Recording, store: PredictionsStore | None, dry_run: bool,
            report: UpdateReport) -> dict[str, Any]:
    """The entry to write: the result's numbers, and the digest of its kept predictions."""
    values = rec.result.baseline_values()
    if store is None:
        return values
    try:
        if not rec.result.predictions:
            raise StoreError("the result names no predictions file")
        values["predictions"] = store.put_file(Path(rec.result.predictions), rec.result.fingerprint,
                                               dry_run)
    except StoreError as exc:
        report.unstored.append(rec.nodeid)
        report.lines.append(f"ERROR: predictions of {rec.label} not kept in the store: {exc}; "
                            "its entry is recorded without them")
    return values


def _accepted(rec: Recording) -> str:
    return " (a BROKEN BUILD, recorded with --accept-broken)" if rec.verdict in BROKEN_KINDS else ""


def recordings_from_json(path: Path) -> list[Recording]:
    """The results of a `--vaccbench-json` report (validated by report_schema), with each
    test's outcome and verdict."""
    names = [f.name for f in fields(Result)]
    found = []
    report = read_report(path)
    for i, test in report.measured():
        result = Result(**{**{k: test[k] for k in names if k in test},
                           "predictions": str(report.predictions(i) or "")})
        gate = test.get("gate") or {}
        found.append(Recording(test["nodeid"], test["outcome"], result, str(gate.get("verdict", "")),
                               _partial(gate)))
    return found


def recording_of(nodeid: str, outcome: str, result: Result | None,
                 gate: dict[str, Any] | None) -> Recording | None:
    """A report row as a Recording (None when it measured nothing)."""
    if result is None:
        return None
    return Recording(nodeid, outcome, result, str((gate or {}).get("verdict", "")), _partial(gate))


def _partial(gate: dict[str, Any] | None) -> bool:
    """Whether a gate's details are those of a sequential run that stopped early."""
    return bool(((gate or {}).get("sequential") or {}).get("early"))
