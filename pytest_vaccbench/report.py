"""Report: the results of a session as people and machines read them.

`Results` turns pytest test reports (on the controller, under xdist too) into one `Row` per
accuracy test; the rest are plain functions of those rows: the terminal table (its columns
are the HTML report's too), the JSON file with its per-image predictions beside it, the JUnit
properties, and why tests did not pass, grouped by reason. The HTML report is report_html.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import __version__
from .baselines import unread_entries
from .gate import STALE
from .metrics import per_class
from .run import Result
from .safefiles import atomic_write, write_atomic

PROPERTY = "vaccbench"  # the user_properties key of a test's JSON payload
MARKER = "vaccbench"  # the keyword every accuracy test carries
FAILING = ("FAILED", "stale", "error", "crashed", "not run")
STRICT = "strict mode"  # how a skip that --vaccbench-strict turned into a failure begins
CRASH_PHASE = "???"  # pytest-xdist's `when` of the report of a test whose worker died


@dataclass
class Row:
    """One accuracy test: what it measured (None when it raised first) and how it ended."""

    nodeid: str
    # passed | failed | error (setup or teardown failed) | skipped | crashed (its process died)
    # | not run (selected, but the session ended first)
    outcome: str
    result: Result | None = None
    expected: dict[str, Any] | None = None  # the payload's: top1, top5, tol1, tol5, origin
    stale: bool = False
    updated: bool = False  # its baseline entry was written by --update-baselines
    unchanged: bool = False  # --update-baselines left its entry as it was (same numbers, images)
    reason: str = ""  # why it was skipped, errored, crashed or failed: the report's text
    gate: dict[str, Any] | None = None  # the gate's details (verdict, allowance, paired ...)
    command: str = ""  # the command that runs this test alone and records its result

    @property
    def name(self) -> str:
        return self.nodeid.split("::", 1)[-1]

    @property
    def model(self) -> str:
        """family/key, from the result or else from the test id (run.Case.id)."""
        r = self.result
        return f"{r.family}/{r.model}" if r else self.name.partition("[")[0]

    @property
    def run(self) -> str:
        """backend/precision; backend names have no "-", precisions may (int8-max)."""
        r = self.result
        return f"{r.backend}/{r.precision}" if r else \
            self.name.partition("[")[2].rstrip("]").replace("-", "/", 1)

    @property
    def status(self) -> str:
        if self.outcome in ("crashed", "skipped", "not run"):
            return self.outcome
        if self.result is None and self.reason.startswith(STRICT):
            return "FAILED"
        if self.result is None or self.outcome == "error":
            return "error"
        if self.outcome == "failed":
            return "stale" if self.stale else "FAILED"
        if self.updated:
            return "updated"
        if self.unchanged:
            return "unchanged"
        if self.weak:
            return "weak"
        return "passed" if self.expected else "no baseline"

    @property
    def weak(self) -> str | None:
        """Why the gate could not see a drop of --max-allowed points (gate.weakness), or None."""
        return (self.gate or {}).get("weak")

    def expected_value(self, metric: str) -> float | None:
        value = (self.expected or {}).get(metric)
        return None if value is None else float(value)

    def tolerance(self, metric: str) -> float | None:
        value = (self.expected or {}).get("tol1" if metric == "top1" else "tol5")
        return None if value is None else float(value)

    def allowed(self, metric: str) -> float | None:
        """The difference the gate allowed: tolerance plus sampling allowance (gate.judge);
        the tolerance alone for a payload without it."""
        value = ((self.gate or {}).get("allowed") or {}).get(metric)
        return self.tolerance(metric) if value is None else float(value)

    def value(self, metric: str) -> float | None:
        """The measured top1/top5; for a sequential run that stopped early, its estimate over
        the whole set (the stored run's figure plus the paired difference measured)."""
        estimate = (((self.gate or {}).get("sequential") or {}).get("estimate") or {}).get(metric)
        if estimate is not None and (self.gate or {})["sequential"].get("early"):
            return float(estimate)
        return None if self.result is None else float(getattr(self.result, metric))

    def delta(self, metric: str) -> float | None:
        want, got = self.expected_value(metric), self.value(metric)
        if got is None or want is None:
            return None
        return got - want


class Results:
    """Rows by test id, fed with every test report of the session.

    `select` lists the selected tests first (as "not run"), so that every one of them has a
    row in the end: a test whose process died, or that the session never reached, included.
    """

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def select(self, nodeids: Iterable[str]) -> None:
        for nodeid in nodeids:
            self.rows.setdefault(nodeid, Row(nodeid, "not run"))

    def add(self, nodeid: str, when: str, outcome: str, keywords: Iterable[str],
            user_properties: Sequence[Sequence[Any]], reason: str) -> None:
        """One test report; `reason` is its text (the skip reason for a skip)."""
        if when == CRASH_PHASE:  # pytest-xdist: the worker process died during the test
            if nodeid in self.rows or MARKER in keywords:
                self.rows[nodeid] = Row(nodeid, "crashed", reason=reason)
            return
        if MARKER not in keywords:
            return
        if outcome == "skipped":
            self.rows[nodeid] = Row(nodeid, "skipped", reason=reason)
        elif when == "call":
            payload = find_payload(user_properties)
            if payload is not None:
                self.rows[nodeid] = Row(nodeid, outcome, Result(**payload["result"]),
                                        payload.get("expected"), STALE in reason,
                                        reason=reason if outcome == "failed" else "",
                                        gate=payload.get("gate"))
            elif outcome == "failed":  # raised before measuring: no result
                self.rows[nodeid] = Row(nodeid, "failed", reason=reason)
            else:
                self.rows[nodeid] = Row(nodeid, outcome)
        elif outcome == "failed":  # setup or teardown error: whatever was measured is void
            row = self.rows.get(nodeid)
            if row is None or row.outcome == "not run":
                row = self.rows[nodeid] = Row(nodeid, "error")
            row.outcome = "error"
            row.reason = row.reason or reason

    def measured(self) -> list[Row]:
        return [row for row in self.rows.values() if row.result is not None]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows.values())

    def __len__(self) -> int:
        return len(self.rows)


def find_payload(user_properties: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    for name, value in user_properties:
        if name == PROPERTY:
            return json.loads(value)
    return None


def junit_properties(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Plain `name value` properties for JUnit XML: measured and expected numbers."""
    r = Result(**payload["result"])
    props = {"model": f"{r.family}/{r.model}", "backend": r.backend, "precision": r.precision,
             "dataset": r.dataset, "n": r.n, "top1": round(r.top1, 3), "top5": round(r.top5, 3)}
    e = payload.get("expected") or {}
    for metric, tol in (("top1", "tol1"), ("top5", "tol5")):
        if e.get(metric) is not None:
            props[f"expected_{metric}"] = e[metric]
            props[f"delta_{metric}"] = round(getattr(r, metric) - e[metric], 3)
        if e.get(tol) is not None:
            props[f"tolerance_{metric}"] = e[tol]
    return [(k, str(v)) for k, v in props.items()]


# -- terminal ---------------------------------------------------------------------------

def _num(value: float | None, spec: str) -> str:
    """A number, or "-"; a difference that rounds to zero shows as +0.000, never -0.000."""
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, int) else format(round(value, 3) + 0.0, spec)


@dataclass(frozen=True)
class Column:
    """A number column of the results table, in the terminal and in the HTML report.

    `terminal` says where the terminal shows it: "compact" (in both layouts), "wide" (only
    when the terminal is wide enough for one line per test with every column) or "" (not
    at all); `html`, whether the HTML report's table does."""

    name: str  # the terminal's header
    width: int  # characters in the terminal
    spec: str  # format of the value
    value: Callable[[Row], float | None]
    title: str = ""  # the HTML report's header, when not `name`
    terminal: str = "wide"
    html: bool = True

    def text(self, row: Row) -> str:
        return _num(self.value(row), self.spec)

    @property
    def heading(self) -> str:
        return self.title or self.name


COLUMNS = (
    Column("top1", 7, ".3f", lambda row: row.value("top1"), terminal="compact"),
    Column("expect", 7, ".3f", lambda row: row.expected_value("top1"), "expected"),
    Column("delta", 7, "+.3f", lambda row: row.delta("top1"), "Δ top1", "compact"),
    # the difference the gate allowed: the tolerance, plus the sampling allowance when the run
    # measured other images than the baseline (the detail panel of the HTML report splits it)
    Column("allowed", 7, ".3f", lambda row: row.allowed("top1") if row.delta("top1") is not None
           else None, terminal="compact"),
    Column("top5", 7, ".3f", lambda row: row.value("top5")),
    Column("delta5", 7, "+.3f", lambda row: row.delta("top5"), "Δ top5"),
    Column("n", 6, "d", lambda row: row.result.n if row.result else None, terminal="compact"),
)


def title(rows: Iterable[Row]) -> str:
    """The session's title: the datasets measured, or that nothing was."""
    datasets = sorted({row.result.dataset for row in rows if row.result})
    return (f"vaccbench accuracy on {', '.join(datasets)}" if datasets else
            "vaccbench accuracy: nothing measured")


def summary_lines(rows: Iterable[Row], width: int = 80) -> list[str]:
    """The terminal table in `width` columns, one line per test and no line wider.

    Wide: per model family a heading, then per test its model key, backend/precision, every
    number column and the status. When that does not fit (an 80-column CI log), compact:
    a heading per family and run, then per test its key, the compact columns and the
    status. A model name is never shortened: only a key too long for even the compact
    layout takes a line of its own, its numbers on the next."""
    rows = list(rows)
    status_w = max([len("status"), *(len(row.status) for row in rows)])
    longest = max([len("model"), *(len(row.model.partition("/")[2]) + 2 for row in rows)])
    run_w = max([len("run"), *(len(row.run) for row in rows)])

    def numbers_width(columns: Sequence[Column]) -> int:
        return sum(c.width + 1 for c in columns) + 1 + status_w

    wide = [c for c in COLUMNS if c.terminal in ("compact", "wide")]
    if longest + 1 + run_w + 1 + numbers_width(wide) <= width:
        return _table(rows, wide, longest, run_w)
    compact = [c for c in COLUMNS if c.terminal == "compact"]
    key_w = max(len("model"), min(longest, width - 1 - numbers_width(compact)))
    return _table(rows, compact, key_w, 0)


def _table(rows: Sequence[Row], columns: Sequence[Column], key_w: int, run_w: int) -> list[str]:
    """Headings and rows; `run_w` 0 puts the run in the heading instead of a column."""
    head = " ".join(f"{c.name:>{c.width}}" for c in columns) + "  status"
    lines = [f"{'model':<{key_w}} {'run':<{run_w}} {head}" if run_w else f"{'model':<{key_w}} {head}"]
    lines.append("-" * len(lines[0]))
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        family = row.model.partition("/")[0]
        groups.setdefault((family, "" if run_w else row.run), []).append(row)
    for (family, run), group in groups.items():
        lines.append(f"{family}  {run}" if run else family)
        for row in group:
            key = "  " + row.model.partition("/")[2]
            numbers = " ".join(f"{c.text(row):>{c.width}}" for c in columns) + f"  {row.status}"
            if run_w:
                lines.append(f"{key:<{key_w}} {row.run:<{run_w}} {numbers}")
            elif len(key) > key_w:
                lines += [key, f"{'':<{key_w}} {numbers}"]
            else:
                lines.append(f"{key:<{key_w}} {numbers}")
    return lines


# -- JSON -------------------------------------------------------------------------------

def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def write_json(rows: Iterable[Row], path: Path, session: dict[str, Any]) -> Path:
    """`path` with one record per test; each test's per-image top-5 predictions are copied to
    `<path stem>.predictions/<test>.npz` (arrays top5, labels, files) and named in its record."""
    folder = path.with_name(path.stem + ".predictions")
    records = []
    for row in rows:
        record: dict[str, Any] = {"nodeid": row.nodeid, "outcome": row.outcome,
                                  "status": row.status, "reason": row.reason,
                                  "expected": row.expected, "gate": row.gate,
                                  "command": row.command}
        r = row.result
        if r is not None:
            record.update(asdict(r))
            record.update({"top1": r.top1, "top5": r.top5, "delta_top1": row.delta("top1"),
                           "delta_top5": row.delta("top5"), "predictions": None})
            source = Path(r.predictions)
            if source.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{_file_name(row.name)}.npz"
                try:
                    write_atomic(target, lambda handle: handle.write(source.read_bytes()))
                except OSError:
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # made just now, and still empty: not left behind
                    raise
                record["predictions"] = str(target.relative_to(path.parent))
                record["per_class"] = class_counts(target)
        records.append(record)
    document = {"tool": f"pytest-vaccbench {__version__}", "session": session, "tests": records}
    atomic_write(path, json.dumps(document, indent=2) + "\n")
    return path


def class_counts(predictions: Path) -> dict[str, list[int]]:
    """Per true class index: [images, top-1 correct, top-5 correct] of a predictions file."""
    with np.load(predictions) as saved:
        counts = per_class(saved["top5"], saved["labels"])
    return {str(label): list(c) for label, c in counts.items()}


def session_info(args: Sequence[str], exitstatus: int, started: _dt.datetime) -> dict[str, Any]:
    """What the reports say about the session as a whole."""
    return {"command": " ".join(["pytest", *args]), "exitstatus": int(exitstatus),
            "started": started.isoformat(timespec="seconds"),
            "finished": _dt.datetime.now().isoformat(timespec="seconds")}


# -- what the session's gates could not see, and entries no test read ----------------------

def weak_lines(rows: Iterable[Row]) -> list[str]:
    """One line per weak gate: which test, and what it cannot see and how many images it needs."""
    return [f"weak: {row.model} {row.run}: {row.weak}" for row in rows if row.result and row.weak]


def unread_lines(rows: Iterable[Row]) -> list[str]:
    """The baseline entries of the measured models, on the session's datasets, that no
    selected test read (an entry nothing reads gates nothing: a dead or deselected run)."""
    read = set()
    for row in rows:
        r = row.result
        if r is not None:
            read.add((r.baseline, r.model, r.dataset, f"{r.backend}/{r.precision}"))
            if (row.expected or {}).get("run"):
                read.add((r.baseline, r.model, r.dataset, row.expected["run"]))
    found = unread_entries(read)
    if not found:
        return []
    return [f"baseline entries no selected test read ({sum(len(runs) for _, _, runs in found)}):",
            *(f"  {entry.test_name} on {dataset}: {', '.join(runs)}" for entry, dataset, runs in found)]


# -- why tests did not pass ------------------------------------------------------------

# pytest's exit codes as this plugin uses them
EXIT_MEANINGS = {
    0: "every accuracy test that was measured is within tolerance (a skip fails only with "
       "--vaccbench-strict)",
    1: "a gate failed, a test errored, crashed, was skipped or passed a weak gate in strict "
       "mode, an update was refused (a BROKEN BUILD, fewer or other images than the entry), or "
       "an update or a report could not be written",
    2: "interrupted (with --update-baselines no file is changed), or a collection error (a "
       "bad baseline file, named with its line; a misspelt key or run name gets the closest)",
    3: "internal error",
    4: "usage error: an option or ini value that cannot work, a missing path (with the closest "
       "existing name), a dataset that cannot be read, an int8 calibration set that would take "
       "every image, a -k that selects no test (with the closest model keys)",
    5: "accuracy tests were selected and none was measured, or no test was selected",
}

# A measured test that failed its gate, by the gate's verdict: what every such failure shares
VERDICTS = {
    "broken": "BROKEN BUILD: accuracy collapsed; the build is broken, not a small regression",
    "regression": "regression: outside the allowed difference from the baseline",
    "stale": "baseline is stale: better than the baseline beyond the allowed difference; "
             "record the new numbers",
    "other-images": "measured on other images than the baseline's: the numbers are not comparable",
}


def headline(row: Row) -> str:
    """One line that says why a test did not pass: its message's first line, or for an
    exception the line pytest marks with `E`."""
    marked = [line[1:].strip() for line in row.reason.splitlines() if line.startswith("E   ")]
    lines = [line.strip() for line in row.reason.splitlines() if line.strip()]
    if marked or lines:
        return marked[0] if marked else lines[0]
    return f"weak: {row.weak}" if row.weak else row.status  # a pass the gate could not vouch for


def _generic(row: Row, text: str) -> str:
    """`text` without what is particular to its test: its model and run."""
    key = row.model.partition("/")[2]
    text = text.replace(row.model, "<model>").replace(key, "<model>") if key else text
    return text.replace(row.run, "<run>")


def _clause(row: Row) -> str:
    """A reason without what is particular to its test: the model, the run, the details
    after the first colon; tests that did not pass for the same cause share it."""
    text = headline(row)
    text = text.split("): ", 1)[-1] if text.startswith(STRICT) else text
    return re.split(r"[:;(]", _generic(row, text), maxsplit=1)[0].strip()


@dataclass
class Group:
    """Tests that did not pass for one reason."""

    status: str  # the first test's status
    reason: str  # one line: what the tests share
    rows: list[Row]


def reason_groups(rows: Iterable[Row], statuses: Sequence[str] = FAILING) -> list[Group]:
    """The tests whose status is in `statuses`, grouped by reason, largest group first (then
    FAILED before stale, error, crashed, not run): a measured test that failed its gate by
    the gate's verdict, any other by the cause its message names."""
    groups: dict[str, Group] = {}
    for row in rows:
        if row.status not in statuses:
            continue
        verdict = (row.gate or {}).get("verdict")
        if row.result is not None and row.outcome == "failed" and verdict in VERDICTS \
                and not row.reason.startswith("not recorded"):
            key = reason = VERDICTS[verdict]
        else:
            key, reason = f"{row.status} {_clause(row)}", headline(row)
        group = groups.setdefault(key, Group(row.status, reason, []))
        group.rows.append(row)
    for group in groups.values():  # shared by several tests: said of none in particular
        if len(group.rows) > 1 and group.reason not in VERDICTS.values():
            group.reason = _generic(group.rows[0], group.reason)
    return sorted(groups.values(), key=lambda g: (-len(g.rows), FAILING.index(g.status) if g.status in FAILING else len(FAILING)))


def skip_groups(rows: Iterable[Row]) -> list[tuple[str, list[str]]]:
    """Skipped tests grouped by cause: (the first test's full reason, the tests' model/run
    names), largest group first; each cause is shown once, not once per test."""
    return [(g.rows[0].reason, [f"{r.model} {r.run}" for r in g.rows])
            for g in reason_groups(rows, ("skipped",))]


def not_measured_line(rows: Results) -> str | None:
    """The one line that says a session with accuracy tests selected measured none of them:
    "0 of 43 selected accuracy tests measured: 35 weights not found, 8 no compiled model"."""
    selected = list(rows)
    if not selected or rows.measured():
        return None
    causes: dict[str, int] = {}
    for row in selected:
        cause = (f"skipped ({_clause(row)})" if row.outcome == "skipped" else
                 f"{row.status} ({_clause(row)})" if row.reason.startswith(STRICT) else row.status)
        causes[cause] = causes.get(cause, 0) + 1
    parts = ", ".join(f"{n} {cause}" for cause, n in sorted(causes.items(), key=lambda c: -c[1]))
    return f"0 of {len(selected)} selected accuracy tests measured: {parts}"
