"""Report: the results of a session as people and machines read them.

`Results` turns pytest test reports (on the controller, under xdist too) into one `Row` per
accuracy test; the rest are plain functions of those rows: the terminal table, the JSON file
with its per-image predictions beside it, the one-file HTML report, and the JUnit properties.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from . import __version__
from .compare import Pair, Record, classes_table, paired
from .errors import VaccbenchError
from .gate import STALE
from .metrics import per_class
from .run import Result
from .safefiles import atomic_write, write_atomic
from .waterfall import LADDER_STYLE, ladder_sections

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
    reason: str = ""  # why it was skipped, errored, crashed or failed: the report's text
    gate: dict[str, Any] | None = None  # the gate's details (verdict, allowance, paired ...)
    explain: dict[str, Any] | None = None  # a failing test's loss ladder (ladder.Ladder.to_dict)

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
        return "passed" if self.expected else "no baseline"

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

    def delta(self, metric: str) -> float | None:
        want = self.expected_value(metric)
        if self.result is None or want is None:
            return None
        return getattr(self.result, metric) - want


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
                                        gate=payload.get("gate"), explain=payload.get("explain"))
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
    return "-" if value is None else format(round(value, 3) + 0.0, spec)


COLUMNS = (("top1", 7), ("expect", 7), ("delta", 7), ("tol", 5), ("top5", 7), ("delta5", 7),
           ("n", 6))


def _numbers(row: Row) -> list[str]:
    r = row.result
    if r is None:
        return ["-"] * len(COLUMNS)
    return [f"{r.top1:.3f}", _num(row.expected_value("top1"), ".3f"),
            _num(row.delta("top1"), "+.3f"), _num(row.tolerance("top1"), ".2f"),
            f"{r.top5:.3f}", _num(row.delta("top5"), "+.3f"), str(r.n)]


def summary_lines(rows: Iterable[Row], width: int = 80) -> list[str]:
    """The terminal table in `width` columns: per model family a heading line, then per test
    the model key, backend/precision, top1 measured/expected/delta/tolerance, top5 and its
    delta, n and status. Names are never shortened: a key too long for its column takes a
    line of its own; when not even the run fits beside the numbers (80 columns), every test
    takes two lines, its key and run, then the numbers."""
    by_family: dict[str, list[Row]] = {}
    for row in rows:
        by_family.setdefault(row.model.partition("/")[0], []).append(row)
    every = [row for group in by_family.values() for row in group]
    status_w = max([len("status"), *(len(row.status) for row in every)])
    numbers_w = sum(w + 1 for _, w in COLUMNS) + 1 + status_w  # "top1 ... n  status"
    run_w = max([len("run"), *(len(row.run) for row in every)])
    longest = max([len("model"), *(len(row.model.partition("/")[2]) + 2 for row in every)])
    room = width - 2 - run_w - numbers_w  # for the model key column
    key_w, narrow = min(longest, room), room < 16
    numbers_head = " ".join(f"{name:>{w}}" for name, w in COLUMNS) + "  status"
    if narrow:
        indent = max(0, width - numbers_w - 1)  # then a space, then the numbers
        lines = ["model  run", f"{'':<{indent}} {numbers_head}"]
    else:
        lines = [f"{'model':<{key_w}} {'run':<{run_w}} {numbers_head}"]
    lines.append("-" * min(width, max(map(len, lines))))
    for family, group in by_family.items():
        lines.append(family)
        for row in group:
            key = "  " + row.model.partition("/")[2]
            numbers = " ".join(f"{v:>{w}}" for v, (_, w) in zip(_numbers(row), COLUMNS))
            numbers += f"  {row.status}"
            if narrow:
                label = f"{key}  {row.run}"
                lines += [label] if len(label) <= width else [key, f"    {row.run}"]
                lines.append(f"{'':<{indent}} {numbers}")
            elif len(key) > key_w:
                lines += [key, f"{'':<{key_w}} {row.run:<{run_w}} {numbers}"]
            else:
                lines.append(f"{key:<{key_w}} {row.run:<{run_w}} {numbers}")
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
                                  **({"explain": row.explain} if row.explain else {})}
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


def write_html(rows: Sequence[Row], path: Path, session: dict[str, Any]) -> Path:
    """The HTML report at `path`, replaced whole (a full disk leaves the old one)."""
    atomic_write(path, html_report(rows, session))
    return path


def class_counts(predictions: Path) -> dict[str, list[int]]:
    """Per true class index: [images, top-1 correct, top-5 correct] of a predictions file."""
    with np.load(predictions) as saved:
        counts = per_class(saved["top5"], saved["labels"])
    return {str(label): list(c) for label, c in counts.items()}


# -- HTML -------------------------------------------------------------------------------

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px}.meta{color:#666;margin:0 0 16px}h2{font-size:15px;margin:20px 0 4px}
table{border-collapse:collapse;margin:16px 0}
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.FAILED td,tr.stale td,tr.error td,tr.crashed td{background:#fde8e8}
td.s{font-weight:600}tr.FAILED td.s,tr.stale td.s,tr.error td.s,tr.crashed td.s{color:#c62828}
td.reason{white-space:normal;max-width:40em}
.neg{color:#c62828}.pos{color:#2e7d32}
svg text{font:12px system-ui,sans-serif}
"""


def _ticks(limit: float) -> list[float]:
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50):
        if limit / step <= 4:
            break
    n = int(limit / step)
    return [step * i for i in range(-n, n + 1)]


def delta_plot(rows: Sequence[Row]) -> str:
    """SVG: top1 delta per test as a dot on the band the gate allowed it (tolerance, dark,
    plus sampling allowance, light), red where the test fails.

    The axis spans a few allowances; a delta beyond it is an arrow in the margin with its
    value, so that one broken build does not squash every other row.
    """
    label_w, gutter, plot_w, row_h, top = 430, 64, 480, 24, 66
    tols = [t for row in rows if (t := row.allowed("top1"))]
    limit = max([1.0, *(4 * t for t in tols)])
    inside = [abs(d) for row in rows if (d := row.delta("top1")) is not None and abs(d) <= limit * 2]
    limit = max([limit, *inside]) * 1.1
    left = label_w + gutter

    def x(value: float) -> float:
        return left + plot_w * (0.5 + max(-limit, min(limit, value)) / (2 * limit))

    width, height = left + plot_w + gutter, top + row_h * len(rows) + 10
    out = [f'<svg id="delta-plot" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'role="img">',
           f'<text x="{left}" y="16">top1 delta (measured - expected, points); band: the '
           'allowed difference</text>',
           f'<text x="{left}" y="32">(dark: tolerance, light: + sampling allowance); '
           'red: failing</text>']
    for tick in _ticks(limit):
        out.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 8}" y2="{height - 10}" '
                   f'stroke="{"#888" if tick == 0 else "#e4e4e4"}"/>'
                   f'<text x="{x(tick):.1f}" y="{top - 12}" text-anchor="middle">'
                   f'{"0" if tick == 0 else format(tick, "+g")}</text>')
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        colour = "#c62828" if row.status in FAILING else "#2e7d32"
        status = html.escape(row.status)
        label = f"{row.model} {row.run}"  # never shortened: squeezed to the margin if need be
        squeeze = (f' textLength="{label_w - 16}" lengthAdjust="spacingAndGlyphs"'
                   if len(label) > 64 else "")
        out.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end"{squeeze}>'
                   f'{html.escape(label)}</text>')
        tol, allowed, delta = row.tolerance("top1"), row.allowed("top1"), row.delta("top1")
        if allowed is not None:
            out.append(f'<rect class="band" x="{x(-allowed):.1f}" y="{y - 7:.1f}" '
                       f'width="{x(allowed) - x(-allowed):.1f}" height="14" fill="#cfe8d0">'
                       f'<title>allowed ±{allowed:.3f}</title></rect>')
        if tol is not None and allowed is not None and allowed > tol:
            out.append(f'<rect class="tolerance" x="{x(-tol):.1f}" y="{y - 7:.1f}" '
                       f'width="{x(tol) - x(-tol):.1f}" height="14" fill="#a5d6a7"/>')
        if delta is None:
            text = f"{row.status}: no result" if row.result is None else "no baseline"
            out.append(f'<text class="{status}" x="{x(0) + 8:.1f}" y="{y + 4:.1f}" '
                       f'style="fill:{colour}">{text}</text>')
        elif abs(delta) <= limit:
            out.append(f'<circle class="delta {status}" cx="{x(delta):.1f}" cy="{y:.1f}" r="6" '
                       f'fill="{colour}"><title>{delta:+.3f}</title></circle>')
        else:  # off the axis: an arrow in the margin, and the value
            sign = 1 if delta > 0 else -1
            tip = x(delta) + sign * 14
            out.append(f'<path class="delta {status}" d="M{tip:.1f},{y:.1f} l{-10 * sign},-7 v14 z" '
                       f'fill="{colour}"/><text x="{tip + 4 * sign:.1f}" y="{y + 4:.1f}" '
                       f'text-anchor="{"start" if sign > 0 else "end"}" style="fill:{colour}">'
                       f'{delta:+.2f}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _record(row: Row) -> Record:
    r = row.result
    assert r is not None
    predictions = Path(r.predictions)
    return Record(r.family, r.model, r.backend, r.precision, r.dataset, r.fingerprint, r.n,
                  r.top1, r.top5, row.status, predictions if predictions.is_file() else None)


def fp32_pairs(rows: Sequence[Row]) -> list[Pair]:
    """Each run of another precision against the fp32 run of the same model on the same
    dataset in this session (the same backend's when there is one), image by image."""
    measured = [row for row in rows if row.result is not None]
    fp32 = {(r.family, r.model, r.dataset, r.backend): row for row in measured
            if (r := row.result) and r.precision == "fp32"}
    pairs = []
    for row in measured:
        r = row.result
        assert r is not None
        if r.precision == "fp32":
            continue
        same = fp32.get((r.family, r.model, r.dataset, r.backend)) or next(
            (v for (f, m, d, _), v in sorted(fp32.items()) if (f, m, d) == (r.family, r.model, r.dataset)),
            None)
        if same is not None:
            a, b = _record(same), _record(row)
            try:
                pairs.append(paired(a, b))
            except VaccbenchError as exc:  # a predictions file went missing or bad meanwhile
                pairs.append(Pair(a, b, note=str(exc)))
    return pairs


def _class_losses(rows: Sequence[Row], limit: int = 10) -> str:
    sections = []
    for pair in fp32_pairs(rows):
        losers = [c for c in pair.classes if c.change < 0][:limit]
        if losers:
            sections.append(f"<h2>{html.escape(pair.b.name)} {html.escape(pair.b.run)}: classes that "
                            f"lost most against {html.escape(pair.a.run)} (top-1 correct, same "
                            f"images)</h2>{classes_table(losers)}")
    return f'<div id="class-losses">{"".join(sections)}</div>' if sections else ""


def html_report(rows: Sequence[Row], session: dict[str, Any]) -> str:
    """One self-contained HTML page (inline CSS and SVG, nothing fetched): the table and the plot."""
    head = ["model", "run", "dataset", "top1", "expected", "delta", "tolerance", "allowed", "top5",
            "expected", "delta", "n", "seconds", "status", "reason"]
    body = []
    for row in rows:
        r = row.result
        cells = [row.model, row.run, r.dataset if r else ""]
        if r:
            cells += [f"{r.top1:.3f}", _num(row.expected_value("top1"), ".3f"),
                      _num(row.delta("top1"), "+.3f"), _num(row.tolerance("top1"), ".2f"),
                      _num(row.allowed("top1"), ".3f"), f"{r.top5:.3f}",
                      _num(row.expected_value("top5"), ".3f"),
                      _num(row.delta("top5"), "+.3f"), str(r.n), f"{r.seconds:.1f}"]
        else:
            cells += ["-"] * 10
        tds = "".join(f'<td class="l">{html.escape(c)}</td>' if i < 3 else f"<td>{html.escape(c)}</td>"
                      for i, c in enumerate(cells))
        reason = row.reason.strip().splitlines()[0] if row.reason.strip() else ""
        body.append(f'<tr class="{html.escape(row.status.replace(" ", "-"))}">{tds}'
                    f'<td class="s l">{html.escape(row.status)}</td>'
                    f'<td class="l reason" title="{html.escape(row.reason)}">'
                    f'{html.escape(reason[:100])}</td></tr>')
    ths = "".join(f'<th class="l">{h}</th>' if i < 3 or h in ("status", "reason") else f"<th>{h}</th>"
                  for i, h in enumerate(head))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    meta = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    when = html.escape(str(session.get("finished", "")))
    command = html.escape(str(session.get("command", "")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vaccbench accuracy report</title>
<style>{STYLE}{LADDER_STYLE}</style></head><body>
<h1>vaccbench accuracy report</h1>
<p class="meta">{when} &middot; {len(rows)} tests: {html.escape(meta)} &middot; pytest-vaccbench {__version__}<br><code>{command}</code></p>
{delta_plot(rows)}
<table id="results"><thead><tr>{ths}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
{_class_losses(rows)}
{ladder_sections((f"{row.model} {row.run}", row.explain) for row in rows if row.explain)}
</body></html>
"""


def session_info(args: Sequence[str], exitstatus: int, started: _dt.datetime) -> dict[str, Any]:
    """What the reports say about the session as a whole."""
    return {"command": " ".join(["pytest", *args]), "exitstatus": int(exitstatus),
            "started": started.isoformat(timespec="seconds"),
            "finished": _dt.datetime.now().isoformat(timespec="seconds")}


# -- what was not measured ------------------------------------------------------------------

def _clause(row: Row) -> str:
    """A skip reason without what is particular to its test: the model, the run, the details
    after the first colon; tests skipped for the same cause share it."""
    family, _, key = row.model.partition("/")
    text = row.reason.split("): ", 1)[-1] if row.reason.startswith(STRICT) else row.reason
    text = text.replace(row.model, "<model>").replace(key, "<model>") if key else text
    text = text.replace(row.run, "<run>")
    return re.split(r"[:;(]", text, maxsplit=1)[0].strip()


def skip_groups(rows: Iterable[Row]) -> list[tuple[str, list[str]]]:
    """Skipped tests grouped by cause: (the first test's full reason, the tests' model/run
    names), largest group first; each cause is shown once, not once per test."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.outcome == "skipped":
            groups.setdefault(_clause(row), []).append(row)
    ordered = sorted(groups.values(), key=len, reverse=True)
    return [(rows[0].reason, [f"{r.model} {r.run}" for r in rows]) for rows in ordered]


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
