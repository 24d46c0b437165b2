"""Merge: K shard reports (`pytest ... --splits K --group i --vaccbench-json shard-i.json`) into
the one result a single-machine session would have written.

Each JSON report's `session` says what the session was about and which tests it ran:
`suites` (suite files and their sha256), `baselines_digest`, `dataset` and `fingerprint`,
`session_tests` (the tests selected before pytest-split took its group) and `ran` (each test
this session ran: outcome, seconds, message). Shards that disagree on suite, baselines or
dataset are refused; a test two shards ran is refused; tests no shard ran make the merge red.
The merged report has the same shape, so it can be merged again or fed to later stages.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import __version__
from .errors import VaccbenchError
from .safefiles import atomic_write
from .report import FAILING, Row, junit_properties
from .report_schema import has_result, read_report
from .run import Result

# session keys that every shard of one nightly run must share
AGREE = ("suites", "baselines_digest", "dataset", "fingerprint", "splits")
GREEN_EXIT = (0, 5)  # pytest: all passed; no tests collected (a group with nothing in it)


# -- what a session records (the plugin calls this; plain data in, plain data out) -------

def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def describe_selection(tests: Sequence[tuple[str, Path, Path]], root: Path) -> dict[str, Any]:
    """From (nodeid, suite file, baseline file) of every selected accuracy test: the suite
    files with their digests, one digest over the baseline files, and the test ids.

    Paths are relative to pytest's rootdir, so shards on machines that check the project out
    in different places still agree."""
    suites = {_relative(p, root): _sha256(p) for p in sorted({s for _, s, _ in tests})}
    h = hashlib.sha256()
    baselines = sorted({(_relative(b, root), b) for _, _, b in tests})
    for name, path in baselines:
        h.update(f"{name}\t{_sha256(path)}\n".encode())
    return {"suites": suites, "baselines": [name for name, _ in baselines],
            "baselines_digest": h.hexdigest()[:16], "session_tests": [t[0] for t in tests]}


UNFINISHED = "error"  # a test whose setup passed and that never reported a call: its worker died
UNFINISHED_MESSAGE = "started, but no result came back (did its process crash?)"


def outcome_of(current: dict[str, Any] | None, when: str, outcome: str, seconds: float,
               message: str) -> dict[str, Any]:
    """Fold one pytest phase report into a test's record: an error outside the call (setup,
    teardown, xdist's report of a crashed worker) wins, else the call's outcome or setup's
    skip; until then the test counts as unfinished. Seconds add up over the phases."""
    record = dict(current or {"outcome": UNFINISHED, "seconds": 0.0, "message": UNFINISHED_MESSAGE})
    record["seconds"] = round(record["seconds"] + seconds, 3)
    if outcome == "failed" and when != "call":
        record.update(outcome="error", message=message)
    elif when == "call" or (when == "setup" and outcome == "skipped"):
        record.update(outcome=outcome, message=message if outcome != "passed" else "")
    return record


# -- reading shard reports --------------------------------------------------------------

@dataclass
class Shard:
    path: Path
    session: dict[str, Any]
    records: list[dict[str, Any]]
    predictions: dict[int, Path] = field(default_factory=dict)  # record index -> its file

    @property
    def ran(self) -> dict[str, dict[str, Any]]:
        return self.session["ran"]

    @property
    def label(self) -> str:
        group = self.session.get("group")
        return f"{self.path} (group {group} of {self.session.get('splits')})" if group else str(self.path)


def load_shard(path: Path) -> Shard:
    """A JSON report written by --vaccbench-json (or by merge), validated (report_schema),
    with what merging needs; its predictions files are those inside its folder."""
    report = read_report(path)
    session = report.session
    if session is None:
        raise VaccbenchError("not a pytest-vaccbench JSON report of a session (no `session`); "
                             "write shard reports with pytest ... --vaccbench-json PATH", path)
    missing = [k for k in (*AGREE, "session_tests", "ran") if k not in session]
    if missing:
        raise VaccbenchError(f"this report lacks {', '.join(missing)} in its `session`: it was "
                             "written by an older pytest-vaccbench; rerun the shard with this one",
                             path)
    files = {i: found for i, _ in report.measured() if (found := report.predictions(i)) is not None}
    return Shard(path, dict(session), report.tests, files)


def row_from_record(record: dict[str, Any], predictions: Path | None) -> Row:
    """The report's Row back from its (validated) JSON record; predictions point at the
    shard's copy."""
    names = {f.name for f in fields(Result)}
    result = None
    if has_result(record):
        values = {k: v for k, v in record.items() if k in names}
        values["predictions"] = str(predictions) if predictions else ""
        result = Result(**values)
    status, gate = record.get("status"), record.get("gate")
    return Row(record["nodeid"], record["outcome"], result, record.get("expected"),
               stale=status == "stale", updated=status == "updated",
               unchanged=status == "unchanged", reason=str(record.get("reason") or ""),
               gate=gate if isinstance(gate, dict) else None,
               command=str(record.get("command") or ""),
               explain=record["explain"] if isinstance(record.get("explain"), dict) else None)


# -- merging ----------------------------------------------------------------------------

@dataclass
class Merged:
    rows: list[Row]  # for the HTML report, the history and the JUnit properties
    records: list[tuple[Path | None, dict[str, Any]]]  # each JSON record, and its predictions file
    session: dict[str, Any]
    missing: list[str] = field(default_factory=list)  # selected, but no shard ran them
    problems: list[str] = field(default_factory=list)  # what makes the merge red

    @property
    def green(self) -> bool:
        return not self.problems


def _disagreement(shards: Sequence[Shard], key: str) -> str | None:
    values = {json.dumps(s.session.get(key), sort_keys=True) for s in shards}
    if len(values) == 1:
        return None
    listed = "\n".join(f"  {s.path}: {json.dumps(s.session.get(key), sort_keys=True)[:200]}"
                       for s in shards)
    return f"the shards disagree on `{key}`:\n{listed}"


def merge(shards: Sequence[Shard], command: str) -> Merged:
    """One session from K shards; refuses (VaccbenchError) shards that are not one run."""
    if not shards:
        raise VaccbenchError("no shard reports given")
    for key in (*AGREE, "session_tests"):
        problem = _disagreement(shards, key)
        if problem:
            raise VaccbenchError(f"{problem}\nrefusing to merge: every shard must run the same "
                                 "suite files, baselines and dataset, split the same way")
    seen: dict[str, Shard] = {}
    for shard in shards:
        for nodeid in shard.ran:
            if nodeid in seen:
                raise VaccbenchError(f"{nodeid} was run by two shards: {seen[nodeid].label} and "
                                     f"{shard.label}; give each --group once, with the same "
                                     "--splits and durations file on every shard")
            seen[nodeid] = shard
    first = shards[0].session
    order = {nodeid: i for i, nodeid in enumerate(first["session_tests"])}
    records = sorted(((s.predictions.get(i), r) for s in shards for i, r in enumerate(s.records)),
                     key=lambda item: (order.get(item[1]["nodeid"], len(order)), item[1]["nodeid"]))
    rows = [row_from_record(record, predictions) for predictions, record in records]
    missing = [t for t in first["session_tests"] if t not in seen]
    problems = []
    splits = first.get("splits")
    groups = {s.session.get("group") for s in shards}
    if splits:
        absent = [g for g in range(1, int(splits) + 1) if g not in groups]
        if absent:
            problems.append(f"no report of group(s) {', '.join(map(str, absent))} of {splits}")
    if missing:
        problems.append(f"{len(missing)} test(s) no shard ran: " + ", ".join(missing[:10])
                        + (" ..." if len(missing) > 10 else ""))
    ran = {nodeid: record for shard in shards for nodeid, record in shard.ran.items()}
    failing = sorted({row.nodeid for row in rows if row.status in FAILING}  # crashed tests
                     | {t for t, record in ran.items() if record["outcome"] in ("failed", "error")},
                     key=lambda t: (order.get(t, len(order)), t))
    if failing:
        problems.append(f"{len(failing)} test(s) failed: " + ", ".join(failing[:10])
                        + (" ..." if len(failing) > 10 else ""))
    for shard in shards:  # beyond its accuracy tests: an internal error, a report not written
        status = shard.session.get("exitstatus")
        failed = any(record["outcome"] in ("failed", "error") for record in shard.ran.values())
        if status not in GREEN_EXIT and not (status == 1 and failed):
            problems.append(f"{shard.label} ended with pytest exit status {status}")
    session = {
        "command": command, "exitstatus": 0 if not problems else 1,
        "started": min(str(s.session.get("started", "")) for s in shards),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
        **{key: first.get(key) for key in (*AGREE, "baselines")},
        "splits": None, "group": None,  # one whole session now
        "session_tests": first["session_tests"],
        "ran": {t: ran[t] for t in sorted(ran, key=lambda t: (order.get(t, len(order)), t))},
        "missing": missing,
        "shards": [{"report": str(s.path), **{k: s.session.get(k) for k in
                    ("group", "command", "exitstatus", "started", "finished")}} for s in shards]}
    return Merged(rows, records, session, missing, problems)


def write_merged_json(merged: Merged, path: Path) -> list[str]:
    """The shards' records as they wrote them (every field the plugin's report has), in
    collection order, with each test's predictions copied beside `path` as write_json does.
    Returns the tests whose predictions file was not beside its shard's report."""
    folder = path.with_name(path.stem + ".predictions")
    records, lost = [], []
    for source, record in merged.records:
        record = dict(record)
        if record.get("predictions"):
            record["predictions"] = None
            if source is not None:
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, folder / source.name)
                record["predictions"] = (folder / source.name).relative_to(path.parent).as_posix()
            else:
                lost.append(record["nodeid"])
        records.append(record)
    document = {"tool": f"pytest-vaccbench {__version__}", "session": merged.session,
                "tests": records}
    atomic_write(path, json.dumps(document, indent=2) + "\n")
    return lost


# -- JUnit XML --------------------------------------------------------------------------

def _junit_names(nodeid: str) -> tuple[str, str]:
    """classname and name as pytest's junitxml plugin writes them."""
    parts = nodeid.split("::")
    parts[0] = parts[0].replace("/", ".").removesuffix(".py")
    return ".".join(parts[:-1]), parts[-1]


def junit_xml(merged: Merged, path: Path) -> Path:
    """One JUnit file: a testcase per test any shard ran (with the properties the plugin adds)
    and an error testcase per test no shard ran."""
    rows = {row.nodeid: row for row in merged.rows}
    cases, counts = [], {"failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for nodeid, record in [*merged.session["ran"].items(),
                           *((t, {"outcome": "missing", "seconds": 0.0,
                                  "message": "no shard ran this test"}) for t in merged.missing)]:
        classname, name = _junit_names(nodeid)
        case = ET.Element("testcase", classname=classname, name=name,
                          time=f"{record['seconds']:.3f}")
        total += record["seconds"]
        row = rows.get(nodeid)
        if row is not None and row.result is not None:
            props = ET.SubElement(case, "properties")
            payload = {"result": asdict(row.result), "expected": row.expected}
            for key, value in junit_properties(payload):
                ET.SubElement(props, "property", name=key, value=value)
        outcome, message = record["outcome"], record.get("message") or ""
        tag = {"failed": "failure", "error": "error", "missing": "error", "skipped": "skipped"}.get(outcome)
        if tag:
            counts["failures" if tag == "failure" else "errors" if tag == "error" else "skipped"] += 1
            child = ET.SubElement(case, tag, message=message.splitlines()[0][:300] if message else outcome)
            child.text = message
        cases.append(case)
    suite = ET.Element("testsuite", name="pytest", errors=str(counts["errors"]),
                       failures=str(counts["failures"]), skipped=str(counts["skipped"]),
                       tests=str(len(cases)), time=f"{total:.3f}",
                       timestamp=str(merged.session["started"]), hostname=platform.node())
    suite.extend(cases)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    atomic_write(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
    return path


# -- durations for pytest-split ---------------------------------------------------------

def durations_from_report(path: Path) -> dict[str, float]:
    """Seconds per test id: the measured inference `seconds` of each test with a result, the
    session's recorded time for tests without one (skipped tests, errors)."""
    shard = load_shard(path)
    found = {nodeid: float(r["seconds"]) for nodeid, r in shard.ran.items()}
    found.update({r["nodeid"]: float(r["seconds"]) for r in shard.records if has_result(r)})
    return dict(sorted(found.items()))


def durations_from_history(path: Path) -> dict[str, float]:
    """Seconds per test id from a --vaccbench-history database: each test's latest run."""
    if not path.is_file():
        raise VaccbenchError("history database does not exist", path)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT nodeid, seconds FROM results WHERE seconds IS NOT NULL "
                              "ORDER BY run_id").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise VaccbenchError(f"not a usable history database: {exc}", path) from None
    found = {}
    for nodeid, seconds in rows:
        if not isinstance(nodeid, str) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise VaccbenchError(f"not a usable history database: the results row of {nodeid!r} "
                                 f"has seconds {seconds!r}, not a number of seconds", path)
        found[nodeid] = float(seconds)
    return dict(sorted(found.items()))


def durations(path: Path) -> dict[str, float]:
    """The `.test_durations` mapping pytest-split reads, from a JSON report or a history DB."""
    if path.suffix == ".json":
        return durations_from_report(path)
    return durations_from_history(path)


def summary(merged: Merged, shards: Iterable[Shard]) -> list[str]:
    """What merge prints: the shards, the counts, and each problem."""
    lines = [f"merged {len(list(shards))} shard report(s): {len(merged.session['ran'])} tests run of "
             f"{len(merged.session['session_tests'])} selected"]
    counts: dict[str, int] = {}
    for record in merged.session["ran"].values():
        counts[record["outcome"]] = counts.get(record["outcome"], 0) + 1
    lines.append("outcomes: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"))
    lines += [f"RED: {p}" for p in merged.problems]
    return lines
