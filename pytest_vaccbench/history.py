"""History: every session's results appended to a SQLite file, and `vaccbench trend` over it.

`--vaccbench-history PATH` appends one `runs` row per session and one `results` row per
accuracy test (from the controller only, in one transaction). `vaccbench trend PATH` prints
top1 over time per model and run, and with `--png` plots it (matplotlib: the `plot` extra).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import platform
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import __version__
from .baseline_schema import percent, positive_int, string
from .errors import VaccbenchError, printable
from .report import Row
from .run import Result

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT NOT NULL, host TEXT,
    tool TEXT, command TEXT, exitstatus INTEGER);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id), nodeid TEXT NOT NULL, family TEXT, model TEXT,
    backend TEXT, precision TEXT, dataset TEXT, fingerprint TEXT, n INTEGER, top1 REAL,
    top5 REAL, expected_top1 REAL, expected_top5 REAL, status TEXT NOT NULL, seconds REAL,
    machine TEXT, versions TEXT);
CREATE INDEX IF NOT EXISTS results_by_model ON results (family, model, backend, precision, dataset);
"""


LOCK_TIMEOUT = 30.0  # seconds to wait for another session writing the same database


def _database_error(exc: sqlite3.Error, path: Path) -> VaccbenchError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return VaccbenchError(f"history database is locked by another process (waited "
                              f"{LOCK_TIMEOUT:g} s); run again when it is done, or give another "
                              "--vaccbench-history file", path)
    return VaccbenchError(f"not a usable history database: {exc}", path)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT)
        db.executescript(SCHEMA)
    except sqlite3.Error as exc:
        raise _database_error(exc, path) from None
    return db


def append_run(path: Path, rows: Iterable[Row], session: dict[str, Any]) -> int:
    """Record one session and its rows, in one transaction (SQLite's journal makes it all or
    nothing); returns the run id. A database this call created and could not fill (a full
    disk) is removed, not left as an empty file."""
    new = not path.exists()
    try:
        return _append(path, list(rows), session)
    except (sqlite3.Error, VaccbenchError, OSError) as exc:
        if new and path.is_file() and not _has_runs(path):
            path.unlink()
        if isinstance(exc, sqlite3.Error):
            raise _database_error(exc, path) from None
        raise


def _has_runs(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return bool(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return False


def _append(path: Path, rows: list[Row], session: dict[str, Any]) -> int:
    db = _connect(path)
    try:
        with db:
            cur = db.execute(
                "INSERT INTO runs (started, finished, host, tool, command, exitstatus) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session["started"], session["finished"], platform.node(),
                 f"pytest-vaccbench {__version__}", session.get("command"), session.get("exitstatus")))
            run_id = int(cur.lastrowid)
            for row in rows:
                r = row.result
                db.execute(
                    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, row.nodeid, *(
                        (r.family, r.model, r.backend, r.precision, r.dataset, r.fingerprint, r.n,
                         r.top1, r.top5) if r else (None,) * 9),
                     row.expected_value("top1"), row.expected_value("top5"), row.status,
                     r.seconds if r else None, r.machine if r else None, r.versions if r else None))
    finally:
        db.close()
    return run_id


@dataclass(frozen=True)
class Point:
    started: str
    top1: float
    top5: float
    status: str


# (family/model, backend/precision, dataset, fingerprint, n): runs on other images (another
# --limit, a changed dataset) are another series, never a jump in this one
SeriesKey = tuple[str, str, str, str, int]


def _key(family: str, model: str, backend: str, precision: str, dataset: str,
         fingerprint: str | None, n: int) -> SeriesKey:
    return f"{family}/{model}", f"{backend}/{precision}", dataset, fingerprint or "-", n


def series_key(result: Result) -> SeriesKey:
    """The series a result belongs to."""
    return _key(result.family, result.model, result.backend, result.precision, result.dataset,
                result.fingerprint, result.n)


def series(path: Path, model: str | None = None, backend: str | None = None,
           dataset: str | None = None) -> dict[SeriesKey, list[Point]]:
    """Measured points per (model, run, dataset, fingerprint, n), oldest first; `model` is a
    glob matched against the model key and against family/key."""
    if not path.is_file():
        raise VaccbenchError("history database does not exist (write one with "
                             "pytest ... --vaccbench-history PATH)", path)
    db = _connect(path)
    try:
        rows = db.execute(
            "SELECT r.family, r.model, r.backend, r.precision, r.dataset, r.fingerprint, runs.started, "
            "r.top1, r.top5, r.n, r.status FROM results r JOIN runs ON runs.id = r.run_id "
            "WHERE r.top1 IS NOT NULL ORDER BY runs.started, runs.id").fetchall()
    finally:
        db.close()
    found: dict[SeriesKey, list[Point]] = defaultdict(list)
    for number, row in enumerate(rows, 1):
        problem = _bad_row(row)
        if problem:
            raise VaccbenchError(f"not a usable history database: results row {number} "
                                 f"({printable(str(row[0]))}/{printable(str(row[1]))}): {problem}", path)
    for family, key, back, precision, data, fingerprint, started, top1, top5, n, status in rows:
        if model and not (fnmatch.fnmatchcase(key, model) or fnmatch.fnmatchcase(f"{family}/{key}", model)):
            continue
        if (backend and back != backend) or (dataset and data != dataset):
            continue
        found[_key(family, key, back, precision, data, fingerprint, n)].append(
            Point(started, top1, top5, status))
    return dict(sorted(found.items(), key=lambda item: (item[0][:3], item[0][4], item[0][3])))


def _bad_row(row: tuple[Any, ...]) -> str | None:
    """What makes a results row unusable for a trend (a database written by hand, or by
    another tool), with the schema's leaf checks; None when it is fine."""
    *names, started, top1, top5, n, status = row
    checks = [*((what, value, string) for what, value in
                zip(("family", "model", "backend", "precision", "dataset"), names[:5])),
              ("fingerprint", names[5], optional_string), ("started", started, string),
              ("top1", top1, percent), ("top5", top5, percent), ("n", n, positive_int),
              ("status", status, string)]
    for what, value, check in checks:
        problem = check(value)
        if problem:
            return f"{what} {problem}, got {value!r}"[:200]
    try:
        _dt.datetime.fromisoformat(started)
    except ValueError:
        return f"started {started!r} is not an ISO date and time"
    return None


def optional_string(value: Any) -> str | None:
    return None if value is None else string(value)


def series_label(key: SeriesKey) -> str:
    """How a series is named in the text and in the plot's legend."""
    model, run, data, fingerprint, n = key
    return f"{model}  {run}  on {data} (n={n}, fingerprint {fingerprint})"


def trend_lines(found: dict[SeriesKey, list[Point]]) -> list[str]:
    """Per series a heading, then one line per run: when, top1, change since the run before
    (on the same images)."""
    lines: list[str] = []
    for key, points in found.items():
        lines.append(series_label(key))
        previous = None
        for p in points:
            change = "" if previous is None else f"{p.top1 - previous:+8.3f}"
            lines.append(f"  {p.started.replace('T', ' ')}  top1 {p.top1:7.3f}  top5 {p.top5:7.3f}  "
                         f"{p.status:<8}{change}".rstrip())
            previous = p.top1
    return lines


def plot_png(found: dict[SeriesKey, list[Point]], out: Path) -> Path:
    """top1 over time, one line per series, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VaccbenchError("plotting needs matplotlib: pip install 'pytest-vaccbench[plot]'") from None
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    for key, points in found.items():
        when = [_dt.datetime.fromisoformat(p.started) for p in points]
        ax.plot(when, [p.top1 for p in points], marker="o", label=series_label(key))
    ax.set_ylabel("top1 (%)")
    ax.set_title("top1 over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
