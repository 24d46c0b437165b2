"""The --vaccbench-json report as data, and its one reader: `read_report`.

Every command that reads a report (`merge`, `compare`, `durations`, `update-baselines --from`)
reads it here, so a hand-edited, truncated or hostile report is refused the same way
everywhere: one VaccbenchError naming the file and the first wrong field by its path in the
JSON (`tests[3].n: must be a count (an integer > 0), got 'abc'`), before any
number is used. Fields a newer version adds are let through. The specs are those of
baseline_schema, walked by the same `check`.

A predictions file a record names must lie inside the report's folder (`Report.predictions`):
a report cannot make a command read, or copy, a file from elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .baseline_schema import (Fields, ListOf, SchemaError, anything, boolean, check, integer, key_text,
                              name, non_negative, non_negative_int, number, one_of, optional,
                              percent, string)
from .errors import VaccbenchError

OUTCOMES = ("passed", "failed", "error", "skipped", "crashed", "not run")


def count(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else \
        "must be a count (an integer > 0)"


def run_name(v: Any) -> str | None:
    """A backend or precision name: a name without `/` (it is joined as backend/precision)."""
    return name(v) or (None if v and "/" not in v else "must be a non-empty name without `/`")


RAN = Fields({"outcome": one_of("passed", "failed", "error", "skipped"), "seconds": non_negative,
              "message": string}, required=("outcome", "seconds"), open=True,
             what="{outcome, seconds, message}")
SESSION = Fields({
    "command": string, "exitstatus": optional(integer), "started": string, "finished": string,
    "suites": Fields(values=string, what="suite file -> sha256"), "baselines": ListOf(string),
    "baselines_digest": optional(string), "session_tests": ListOf(string),
    "dataset": optional(name), "fingerprint": optional(string), "images": optional(string),
    "splits": optional(count), "group": optional(count),
    "ran": Fields(values=RAN, what="test id -> {outcome, seconds, message}"),
    "missing": ListOf(string), "shards": ListOf(Fields(open=True))}, open=True,
    what="mapping of what the session ran")
# What a record with a result holds (run.Result and the numbers the report adds).
RESULT_FIELDS = {
    "family": name, "model": name, "backend": run_name, "precision": run_name, "dataset": name,
    "fingerprint": string, "n": count, "correct1": non_negative_int, "correct5": non_negative_int,
    "seconds": non_negative, "predictions": optional(string), "baseline": string, "date": string,
    "versions": string, "machine": string, "options": Fields(values=anything),
    "excluded": non_negative_int, "device": optional(non_negative_int), "top1": percent,
    "top5": percent, "delta_top1": optional(number), "delta_top5": optional(number),
    "per_class": Fields(values=ListOf(non_negative_int, 3), what="class -> [images, top-1, top-5]"),
    "covers": Fields(values=count, what="fingerprint -> images"),
    "scored_from": optional(Fields(values=anything, what="mapping of the scored result files"))}
RESULT_REQUIRED = ("family", "model", "backend", "precision", "dataset", "fingerprint", "n",
                   "correct1", "correct5", "seconds", "baseline", "top1", "top5")
EXPECTED = Fields({"top1": optional(number), "top5": optional(number), "tol1": optional(number),
                   "tol5": optional(number), "origin": string}, open=True, what="{top1, top5, ...}")
METRICS = ("top1", "top5")
# where and why a sequential run stopped (sequential.Decision.to_json)
SEQUENTIAL = Fields({
    "kind": string, "images": non_negative_int, "total": non_negative_int, "looks": non_negative_int,
    "rounds": non_negative_int, "why": string, "confidence": number, "early": boolean,
    "bounds": Fields({m: ListOf(number, 2) for m in METRICS}, what="metric -> [lower, upper]"),
    "estimate": Fields({m: number for m in METRICS}, what="metric -> points"),
    "allowed": Fields({m: number for m in METRICS}, what="metric -> points"),
    "stored": string, "fingerprint": string},
    required=("kind", "images", "total"), open=True, what="mapping of the sequential decision")
GATE = Fields({"verdict": string, "message": string,
               "allowed": optional(Fields({"top1": optional(number), "top5": optional(number)},
                                          open=True)),
               "sequential": optional(SEQUENTIAL)}, open=True, what="mapping of the gate's details")
RECORD = Fields({"nodeid": string, "outcome": one_of(*OUTCOMES), "status": string, "reason": string,
                 "expected": optional(EXPECTED), "gate": optional(GATE), **RESULT_FIELDS},
                required=("nodeid", "outcome"), open=True, what="test record")
REPORT = Fields({"tool": string, "session": SESSION, "tests": ListOf(RECORD)}, required=("tests",),
                open=True, what="JSON object with `session` and `tests`")


def has_result(record: Mapping[str, Any]) -> bool:
    """Whether a test record holds a measurement (a test that raised first has none)."""
    return any(record.get(k) is not None for k in RESULT_REQUIRED)


def _check_record(record: Mapping[str, Any], where: str) -> None:
    """What the field specs cannot say: a result is whole, and its numbers agree."""
    decision = (record.get("gate") or {}).get("sequential") or {}
    for metric in decision.get("bounds") or {}:
        if not all(metric in (decision.get(k) or {}) for k in ("estimate", "allowed")):
            raise SchemaError(f"{where}.gate.sequential", f"has bounds of {metric} without its "
                                                          "estimate and allowed difference")
    if not has_result(record):
        return
    missing = [k for k in RESULT_REQUIRED if record.get(k) is None]
    if missing:
        raise SchemaError(where, f"has a result without {', '.join(missing)}")
    n, c1, c5 = record["n"], record["correct1"], record["correct5"]
    if not c1 <= c5 <= n:
        raise SchemaError(where, f"has impossible counts: correct1 {c1} <= correct5 {c5} <= n {n} "
                                 "does not hold")
    for metric, correct in (("top1", c1), ("top5", c5)):
        if abs(record[metric] - 100.0 * correct / n) > 1e-6:
            raise SchemaError(f"{where}.{metric}", f"{record[metric]!r} does not match "
                                                   f"correct{metric[-1]}/n = {100.0 * correct / n!r}")


@dataclass(frozen=True)
class Report:
    """A --vaccbench-json report that passed the schema."""

    path: Path
    session: Mapping[str, Any] | None
    tests: list[dict[str, Any]]

    @property
    def folder(self) -> Path:
        return self.path.resolve().parent

    def measured(self) -> list[tuple[int, dict[str, Any]]]:
        """(index, record) of every test with a result."""
        return [(i, t) for i, t in enumerate(self.tests) if has_result(t)]

    def predictions(self, index: int) -> Path | None:
        """The predictions file test `index` names, inside the report's folder (None when it
        names none, or the file is not there); a name that leaves the folder is refused."""
        named = self.tests[index].get("predictions")
        if not named:
            return None
        candidate = (self.folder / named).resolve()
        if not candidate.is_relative_to(self.folder):
            raise VaccbenchError(f"tests[{index}].predictions names predictions outside the report's "
                                 f"folder ({key_text(named)!r}); a report's predictions lie beside it "
                                 f"in <report>.predictions/", self.path)
        return candidate if candidate.is_file() else None


def parse_report(text: str | bytes, path: Path) -> Report:
    """A report from its text, validated (see the module doc)."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise VaccbenchError("not a --vaccbench-json report: its JSON is nested too deeply", path) from None
    except ValueError as exc:
        raise VaccbenchError(f"not a --vaccbench-json report: not JSON ({exc}); write one with "
                             "pytest ... --vaccbench-json PATH", path) from None
    try:
        check(document, REPORT)
        for i, record in enumerate(document["tests"]):
            _check_record(record, f"tests[{i}]")
    except SchemaError as exc:
        where = f"{exc.where}: " if exc.where else ""
        raise VaccbenchError(f"not a --vaccbench-json report as this version writes them: "
                             f"{where}{exc.problem}", path) from None
    return Report(path, document.get("session"), document["tests"])


def read_report(path: Path) -> Report:
    """The report at `path`, validated; unreadable files and wrong fields are VaccbenchErrors."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise VaccbenchError(f"cannot read this report: {exc.strerror}", path) from None
    return parse_report(text, path)

