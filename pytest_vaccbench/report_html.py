"""The HTML report of a session: one self-contained page that says at a glance whether the
run is green and why not, and per test everything the gate and the session know.

From the top: the verdict banner (`id="verdict"`: GREEN or RED, the exit code and its
meaning, the counts, one line per reason tests did not pass); those tests grouped by reason,
each group expandable to its tests; then the results table: per model family a heading that
collapses it, columns that sort (report.COLUMNS, as in the terminal), per test the band the
gate allowed with the measured difference on it and a trend sparkline from the history.
A click on a test opens its detail panel, whose sections are the entries of SECTIONS: each a
function of the row and the page's context that reads what the test sent in its payload
(`row.gate`) and returns HTML, or "" when it has nothing to say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import __version__
from .compare import Pair, Record, classes_table, paired
from .dataset import class_name
from .errors import VaccbenchError
from .history import Point, SeriesKey, series_key
from .pages import breakable, esc, page, signed_class, table
from .report import COLUMNS, EXIT_MEANINGS, FAILING, Group, Row, headline, reason_groups, title
from .safefiles import atomic_write
from .sequential import Decision, points, stop_line, stop_reason, stored_line
from .thumbnails import PER_TEST, Thumbnails

SHOWN_FLIPS = 50  # flipped images listed by name in a test's panel (compare --html lists all)
SHOWN_CLASSES = 10
TREND_POINTS = 30  # sessions drawn in a sparkline, the latest
HTML_COLUMNS = [c for c in COLUMNS if c.html]
STATUS_ORDER = ("FAILED", "stale", "error", "crashed", "not run", "no baseline", "updated",
                "passed", "skipped")


@dataclass
class Context:
    """What the detail sections know beyond the row itself."""

    pairs: dict[str, Pair] = field(default_factory=dict)  # nodeid -> vs the session's fp32 run
    trends: Mapping[SeriesKey, Sequence[Point]] = field(default_factory=dict)
    thumbnails: Thumbnails = field(default_factory=Thumbnails)
    limit: float = 1.0  # half-width of the gate plots' axis, top1 points

    def trend(self, row: Row) -> Sequence[Point]:
        return self.trends.get(series_key(row.result), ()) if row.result else ()


def write_html(rows: Sequence[Row], path: Path, session: dict[str, Any],
               trends: Mapping[SeriesKey, Sequence[Point]] | None = None,
               images: Mapping[str, Path] | None = None) -> Path:
    """The HTML report at `path`, replaced whole (a full disk leaves the old one)."""
    atomic_write(path, html_report(rows, session, trends, images))
    return path


def html_report(rows: Sequence[Row], session: dict[str, Any],
                trends: Mapping[SeriesKey, Sequence[Point]] | None = None,
                images: Mapping[str, Path] | None = None) -> str:
    """The page. `trends`: history series (history.series) for the sparklines; `images`: the
    dataset's image files by name, for thumbnails of the images a run flipped."""
    rows = list(rows)
    context = Context(fp32_pairs(rows), trends or {}, Thumbnails(images), _axis_limit(rows))
    heading = title(rows)
    when = esc(str(session.get("finished", "")).replace("T", " "))
    command = session.get("command")
    meta = (f'<p class="meta">{when} &middot; pytest-vaccbench {esc(__version__)}'
            + (f"<br><code>{esc(command)}</code>" if command else "") + "</p>")
    body = [f"<h1>{esc(heading)}</h1>", meta, verdict_banner(rows, session),
            groups_section(rows), sequential_section(rows), results_table(rows, context)]
    return page(heading, "\n".join(body), STYLE, SCRIPT)


# -- the verdict --------------------------------------------------------------------------

def exit_status(rows: Sequence[Row], session: Mapping[str, Any]) -> int:
    """The session's exit code; for a page made of rows alone, the one the plugin gives them."""
    status = session.get("exitstatus")
    if status is not None:
        return int(status)
    if any(row.status in FAILING for row in rows):
        return 1
    return 0 if any(row.result for row in rows) else 5


def _counts(rows: Sequence[Row]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return sorted(counts.items(), key=lambda item: _rank(item[0]))


def _rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _tone(status: str) -> str:
    """The colour family of a status: bad (red), good (green), grey (not measured), neutral."""
    if status in FAILING:
        return "bad"
    if status in ("passed", "updated", "unchanged"):
        return "good"
    return "grey" if status == "skipped" else "neutral"


def verdict_banner(rows: Sequence[Row], session: Mapping[str, Any]) -> str:
    """GREEN or RED, the exit code and what it means, the counts, one line per reason."""
    status = exit_status(rows, session)
    green = status == 0
    meaning = EXIT_MEANINGS.get(status, "see pytest's exit codes")
    counts = " &middot; ".join(f'<span class="{_tone(s)}">{n} {esc(s)}</span>' for s, n in _counts(rows))
    lines = [f'<li><a href="#g{i}">{len(g.rows)} {esc(g.status)}</a>: {esc(g.reason)}</li>'
             for i, g in enumerate(reason_groups(rows))]
    lines += [f'<li class="grey"><a href="#s{i}">{len(g.rows)} skipped</a>: {esc(g.reason)}</li>'
              for i, g in enumerate(reason_groups(rows, ("skipped",)))]
    lines += [f'<li class="neutral">{len(g.rows)} {esc(g.reason)}</li>'  # passed, but blind
              for g in reason_groups(rows, ("weak",))]
    reasons = f'<ul class="reasons">{"".join(lines)}</ul>' if lines else ""
    return (f'<section id="verdict" class="verdict {"green" if green else "red"}">'
            f'<p class="light"><span class="badge">{"GREEN" if green else "RED"}</span>'
            f'exit {status}: {esc(meaning)}</p>'
            f'<p class="counts">{len(rows)} selected accuracy tests: {counts or "none"}</p>'
            f"{reasons}</section>")


def _group_rows(groups: Sequence[Group], prefix: str, ids: Mapping[str, str]) -> str:
    out = []
    for i, g in enumerate(groups):
        tests = "".join(
            f'<li><a href="#{ids[row.nodeid]}">{esc(row.model)} {esc(row.run)}</a>'
            + ("" if headline(row) == g.reason else f": {esc(headline(row))}") + "</li>"
            for row in g.rows)
        out.append(f'<tr id="{prefix}{i}" class="{_tone(g.status)}"><td class="num">{len(g.rows)}</td>'
                   f'<td class="status">{esc(g.status)}</td><td><details><summary>{esc(g.reason)}'
                   f"</summary><ul>{tests}</ul></details></td></tr>")
    return "".join(out)


def groups_section(rows: Sequence[Row]) -> str:
    """Tests that did not pass, then those skipped: one row per reason, its tests expandable."""
    ids = _ids(rows)
    failed, skipped = reason_groups(rows), reason_groups(rows, ("skipped",))
    if not failed and not skipped:
        return ""
    head = '<thead><tr><th class="num">tests</th><th>status</th><th>reason (click for its tests)</th></tr></thead>'
    return (f'<section id="reasons"><h2>Why tests did not pass</h2><table class="groups">{head}<tbody>'
            f'{_group_rows(failed, "g", ids)}{_group_rows(skipped, "s", ids)}</tbody></table></section>')


def sequential_section(rows: Sequence[Row]) -> str:
    """The tests run with --vaccbench-sequential: the images each used, and where and why it
    stopped (each test's panel has its bounds)."""
    ids = _ids(rows)
    runs = [(row, Decision.from_json(info)) for row in rows if (info := (row.gate or {}).get("sequential"))]
    if not runs:
        return ""
    used, total = sum(d.images for _, d in runs), sum(d.total for _, d in runs)
    early = sum(d.early for _, d in runs)
    listed = table(["test", "stopped", "why", "images", "of", "share"],
                   [(f'<a href="#{ids[row.nodeid]}">{breakable(f"{row.model} {row.run}")}</a>',
                     f"early: {d.kind}" if d.early else "after every image", stop_reason(d),
                     d.images, d.total, f"{100 * d.images / max(1, d.total):.1f}%") for row, d in runs],
                   text_columns=3, raw=(0,))
    return (f'<section id="sequential"><h2>Sequential runs</h2><p>{_count(len(runs), "test")} '
            f"used {used} of {total} images ({100 * used / max(1, total):.1f}%): {early} stopped "
            f"early, {len(runs) - early} ran every image.</p>{listed}</section>")


def _ids(rows: Sequence[Row]) -> dict[str, str]:
    return {row.nodeid: f"t{i}" for i, row in enumerate(rows)}


# -- the table ----------------------------------------------------------------------------

def results_table(rows: Sequence[Row], context: Context) -> str:
    """Per family a body that collapses; per test its row and its (hidden) panel. A dataset
    column only when the session measured several; the drawings only when there is one."""
    datasets = len({row.result.dataset for row in rows if row.result}) > 1
    trends = any(context.trend(row) for row in rows)
    head = ['<th data-col="0" data-sort="text">model</th>', '<th data-col="1" data-sort="text">run</th>']
    if datasets:
        head.append(f'<th data-col="{len(head)}" data-sort="text">dataset</th>')
    head += [f'<th class="num" data-col="{len(head) + i}" data-sort="num">{esc(c.heading)}</th>'
             for i, c in enumerate(HTML_COLUMNS)]
    head.append(f'<th data-col="{len(head)}" data-sort="num">status</th>')
    plots = any(row.delta("top1") is not None for row in rows)
    if plots:
        head.append(f'<th class="plot">Δ top1 in the allowed band (axis ±{context.limit:g} points)</th>')
    if trends:
        head.append('<th class="plot">top1 over time (dashed: baseline)</th>')
    width = len(head)
    ids = _ids(rows)
    families: dict[str, list[Row]] = {}
    for row in rows:
        families.setdefault(row.model.partition("/")[0], []).append(row)
    bodies = []
    for family, group in families.items():
        counts = ", ".join(f"{n} {s}" for s, n in _counts(group))
        out = [f'<tr class="family"><th colspan="{width}"><button type="button" class="fam" '
               f'aria-expanded="true">{esc(family)}</button> <span class="counts">{esc(counts)}'
               "</span></th></tr>"]
        for row in group:
            out.append(_test_row(row, ids[row.nodeid], context, datasets, plots, trends))
            out.append(f'<tr class="detail" id="d{ids[row.nodeid][1:]}"><td colspan="{width}">'
                       f'<div class="panel">{detail_panel(row, context)}</div></td></tr>')
        bodies.append(f'<tbody class="family">{"".join(out)}</tbody>')
    controls = ('<p class="controls"><button type="button" data-all="open">open every test</button> '
                '<button type="button" data-all="close">close every test</button> '
                "Click a test for its details, a column heading to sort within each family.</p>")
    return (f'<section id="tests"><h2>Tests</h2>{controls}<table id="results">'
            f'<thead><tr>{"".join(head)}</tr></thead>{"".join(bodies)}</table></section>')


def _test_row(row: Row, row_id: str, context: Context, datasets: bool, plots: bool,
              trends: bool) -> str:
    key = row.model.partition("/")[2]
    cells = [f'<td class="name" title="{esc(row.nodeid)}">{breakable(key)}</td>',
             f'<td class="name">{breakable(row.run)}</td>']
    if datasets:
        cells.append(f'<td class="name">{breakable(row.result.dataset if row.result else "")}</td>')
    for column in HTML_COLUMNS:
        value, text = column.value(row), column.text(row)
        sign = signed_class(text) if "+" in column.spec else ""
        cells.append(f'<td class="num {sign}" data-v="{"" if value is None else value}">{esc(text)}</td>')
    cells.append(f'<td class="status" data-v="{_rank(row.status)}">{esc(row.status)}</td>')
    if plots:
        cells.append(f'<td class="plot">{gate_plot(row, context.limit)}</td>')
    if trends:
        points = context.trend(row)
        cells.append(f'<td class="plot">{sparkline(points, row) if points else ""}</td>')
    status = row.status.replace(" ", "-")
    return (f'<tr class="test {esc(status)} {_tone(row.status)}" id="{row_id}" data-d="d{row_id[1:]}" '
            f'tabindex="0" aria-expanded="false">{"".join(cells)}</tr>')


def _axis_limit(rows: Sequence[Row]) -> float:
    """Half-width of the gate plots' axis: a few allowances, and the differences near them;
    a difference beyond it is an arrow with its value, so that one broken build does not
    squash every other row."""
    allowed = [a for row in rows if row.result and (a := row.allowed("top1"))]
    limit = max([1.0, *(4 * a for a in allowed)])
    near = [abs(d) for row in rows if (d := row.delta("top1")) is not None and abs(d) <= 2 * limit]
    return round(max([limit, *near]) * 1.1, 2)


def gate_plot(row: Row, limit: float, width: int = 150, height: int = 18, axis: bool = False) -> str:
    """SVG: the band the gate allowed this test (tolerance dark, plus the sampling allowance
    light) and the measured top1 difference on it, red when the test failed; `axis` adds
    the axis's ends and zero below it."""
    delta, tol, allowed = row.delta("top1"), row.tolerance("top1"), row.allowed("top1")
    if delta is None or allowed is None:
        return ""
    half = width / 2 - 10

    def x(value: float) -> float:
        return width / 2 + half * max(-limit, min(limit, value)) / limit

    colour = "#c62828" if row.status in FAILING else "#2e7d32"
    status = esc(row.status)
    full = height + (14 if axis else 0)
    out = [f'<svg class="gate" width="{width}" height="{full}" viewBox="0 0 {width} {full}" '
           f'role="img"><title>Δ top1 {delta:+.3f}, allowed ±{allowed:.3f}</title>',
           f'<rect class="band" x="{x(-allowed):.2f}" y="2" width="{x(allowed) - x(-allowed):.2f}" '
           f'height="{height - 4}" fill="#cfe8d0"/>']
    if tol is not None and allowed > tol:
        out.append(f'<rect class="tolerance" x="{x(-tol):.2f}" y="2" width="{x(tol) - x(-tol):.2f}" '
                   f'height="{height - 4}" fill="#a5d6a7"/>')
    out.append(f'<line x1="{x(0):.2f}" x2="{x(0):.2f}" y1="0" y2="{height}" stroke="#888"/>')
    y = height / 2
    if abs(delta) <= limit:
        out.append(f'<circle class="delta {status}" cx="{x(delta):.2f}" cy="{y}" r="5" fill="{colour}"/>')
    else:  # off the axis: an arrow at its end
        sign = 1 if delta > 0 else -1
        tip = x(delta) + sign * 9
        out.append(f'<path class="delta {status}" d="M{tip:.2f},{y} l{-9 * sign},-6 v12 z" fill="{colour}"/>')
    if axis:
        out += [f'<text x="{x(v):.2f}" y="{full - 2}" text-anchor="{anchor}">{v:+g}</text>'
                for v, anchor in ((-limit, "start"), (0.0, "middle"), (limit, "end"))]
    out.append("</svg>")
    return "".join(out)


def sparkline(points: Sequence[Point], row: Row, width: int = 110, height: int = 24) -> str:
    """SVG: top1 of the latest sessions of this test's series, the baseline's top1 dashed,
    the last point coloured by this session's status."""
    points = list(points)[-TREND_POINTS:]
    baseline = row.expected_value("top1")
    values = [p.top1 for p in points] + ([baseline] if baseline is not None else [])
    low, high = min(values), max(values)
    pad = max((high - low) * 0.15, 0.05)
    low, high = low - pad, high + pad

    def xy(i: int, value: float) -> tuple[float, float]:
        x = 4 + (width - 8) * (i / (len(points) - 1) if len(points) > 1 else 0.5)
        return x, 2 + (height - 4) * (high - value) / (high - low)

    tip = "; ".join(f"{p.started.replace('T', ' ')} {p.top1:.3f}" for p in points[-5:])
    out = [f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img"><title>top1, last sessions: {esc(tip)}'
           + (f"; baseline {baseline:.3f}" if baseline is not None else "") + "</title>"]
    if baseline is not None:
        _, y = xy(0, baseline)
        out.append(f'<line class="baseline" x1="2" x2="{width - 2}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#555" stroke-dasharray="3,2"/>')
    coords = [xy(i, p.top1) for i, p in enumerate(points)]
    if len(coords) > 1:
        out.append('<polyline class="series" fill="none" stroke="#1565c0" stroke-width="1.5" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
    x, y = coords[-1]
    colour = "#c62828" if points[-1].status in FAILING else "#1565c0"
    out.append(f'<circle class="last" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/></svg>')
    return "".join(out)


# -- the detail panel ------------------------------------------------------------------------

Section = Callable[[Row, Context], str]


def _gate_message(row: Row, context: Context) -> str:
    text = (row.gate or {}).get("message") or row.reason
    return f"<pre>{esc(text.strip())}</pre>" if text.strip() else ""


def _allowance(row: Row, context: Context) -> str:
    if row.result is None or not row.expected:
        return ""
    gate = row.gate or {}
    items = []
    for metric in ("top1", "top5"):
        tol, allowed = row.tolerance(metric), row.allowed(metric)
        if tol is None or allowed is None:
            continue
        sampling = allowed - tol
        items.append(f"<li>{metric}: allowed ±{allowed:.3f} points = tolerance {tol:.3f}"
                     + (f" + sampling {sampling:.3f}" if sampling > 5e-4 else "") + "</li>")
    sampling = gate.get("sampling")
    if sampling:
        items.append(f"<li>measured {sampling.get('n')} of the {sampling.get('dataset_images')} images; "
                     f"the baseline was measured on {sampling.get('baseline_n') or 'the whole dataset'}"
                     + (f" (fingerprint {esc(sampling['baseline_fingerprint'])})"
                        if sampling.get("baseline_fingerprint") else "") + "</li>")
    interval = gate.get("top1_interval")
    if interval:
        items.append(f"<li>top1 {gate.get('confidence', 0.95):.0%} interval: {interval[0]:.3f} "
                     f"to {interval[1]:.3f}</li>")
    origin = row.expected.get("origin")
    if origin:
        items.append(f"<li>baseline: {esc(origin)}</li>")
    band = gate_plot(row, context.limit, 300, 24, axis=True)
    return f"{band}<ul>{''.join(items)}</ul>" if items else ""


def _paired(row: Row, context: Context) -> str:
    found = (row.gate or {}).get("paired")
    if not found:
        return ""
    if "missing" in found:
        return f"<p>no paired comparison: {esc(found['missing'])}</p>"
    lo, hi = found.get("agreement_interval") or (None, None)
    floor = found.get("min_agreement")
    return (f"<p>with {esc(found.get('reference'))} on the same {found.get('n')} images: top-1 "
            f"agreement {found.get('agreement'):.3f}% ({found.get('agree')}/{found.get('n')}"
            + (f", interval {lo:.3f} to {hi:.3f}" if lo is not None and lo != hi else "")
            + (f"; min_agreement {floor:g}%" if floor is not None else "")
            + f"); fp32 right and this run wrong {found.get('reference_only_correct')}, fp32 wrong "
            f"and this run right {found.get('run_only_correct')}: exact McNemar "
            f"p={found.get('mcnemar_p'):.3g}</p>")


def _sequential(row: Row, context: Context) -> str:
    info = (row.gate or {}).get("sequential")
    if not info:
        return ""
    decision = Decision.from_json(info)
    bounds = table(["metric", "estimate for the whole set",
                    f"{decision.confidence:.0%} anytime bound on the difference", "allowed"],
                   [(metric, f"{decision.estimate[metric]:.3f}", points(*bound),
                     f"±{decision.allowed[metric]:.3f}") for metric, bound in decision.bounds.items()])
    return f"<p>{esc(stop_line(decision).removeprefix('sequential: '))}</p>" + (bounds if decision.bounds else "")


def _stored(row: Row, context: Context) -> str:
    found = (row.gate or {}).get("stored")
    if not found:
        return ""
    if "missing" in found:
        return f"<p>not paired with the stored run: {esc(found['missing'])}</p>"
    classes = found["classes"]
    listed = table(["class", "before", "now", "lost", "gained", "p", "BH-adjusted"],
                   [(c["name"], f"{c['before']}/{c['images']}", f"{c['after']}/{c['images']}",
                     c["lost"], c["gained"], f"{c['p']:.3g}", f"{c['adjusted']:.3g}") for c in classes])
    figures = []
    for c, flip in ((c, flip) for c in classes for flip in c["flipped"]):
        what = "lost" if flip["lost"] else "gained"
        img = context.thumbnails.img(flip["file"], flip["file"]) if len(figures) < PER_TEST else ""
        if img:
            figures.append(f'<figure class="{what}">{img}<figcaption>{what}: {esc(c["name"])}'
                           "</figcaption></figure>")
    thumbs = f'<div class="thumbs">{"".join(figures)}</div>' if figures else ""
    return f"<p>{esc(stored_line(found).strip())}</p>" + (listed + thumbs if classes else "")


def flip_figures(pair: Pair, thumbnails: Thumbnails, limit: int = PER_TEST) -> str:
    """Thumbnails of the first flipped images of a pair (lost first), those found locally."""
    figures = []
    for flip in pair.flips:
        if len(figures) >= limit:
            break
        what = "lost" if flip.lost else "gained"
        img = thumbnails.img(flip.file, flip.file)
        if img:
            figures.append(f'<figure class="{what}">{img}<figcaption>{what}: '
                           f"{esc(class_name(flip.label))}, B {esc(class_name(flip.top1_b))}"
                           "</figcaption></figure>")
    return f'<div class="thumbs">{"".join(figures)}</div>' if figures else ""


def _flips(row: Row, context: Context) -> str:
    pair = context.pairs.get(row.nodeid)
    if pair is None:
        return ""
    if pair.agreement is None:
        return f"<p>against {esc(pair.a.run)}: {esc(pair.note)}</p>"
    if not pair.flips:
        return f"<p>none against {esc(pair.a.run)} on the {pair.agreement.n} images both measured</p>"
    shown = pair.flips[:SHOWN_FLIPS]
    listed = table(["", "file", "label", f"A {pair.a.run}", f"B {pair.b.run}"],
                   [("lost" if f.lost else "gained", f.file, class_name(f.label),
                     class_name(f.top1_a), class_name(f.top1_b)) for f in shown], text_columns=5)
    more = (f"<p>... {len(pair.flips) - len(shown)} more: vaccbench compare --html lists all</p>"
            if len(pair.flips) > len(shown) else "")
    return (f"<p>{_count(len(pair.flips), 'image')} flipped against {esc(pair.a.run)} (A) on the "
            f"{pair.agreement.n} images both measured, lost first</p>"
            f"{flip_figures(pair, context.thumbnails)}{listed}{more}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _classes(row: Row, context: Context) -> str:
    pair = context.pairs.get(row.nodeid)
    losers = [c for c in pair.classes if c.change < 0][:SHOWN_CLASSES] if pair else []
    if not losers:
        return ""
    return (f"<p>top-1 correct against {esc(pair.a.run)} (A), same images</p>"
            + classes_table(losers))


def _after_gate(row: Row, context: Context) -> str:
    """What the failure message says after the gate's message: a layer triage (or the
    command that runs one), a refused update."""
    message = ((row.gate or {}).get("message") or "").strip()
    if not message or message not in row.reason:
        return ""
    tail = row.reason.split(message, 1)[1].strip()
    return f"<pre>{esc(tail)}</pre>" if tail else ""


def _trend(row: Row, context: Context) -> str:
    points = context.trend(row)
    if not points:
        return ""
    listed = table(["session", "top1", "top5", "status"],
                   [(p.started.replace("T", " "), f"{p.top1:.3f}", f"{p.top5:.3f}", p.status)
                    for p in reversed(list(points)[-10:])])
    return (f"<p>{_count(len(points), 'session')} of this model and run on these images "
            f"({esc(row.result.dataset if row.result else '')}, n={row.result.n if row.result else ''})"
            f"</p>{sparkline(points, row, 320, 64)}{listed}")


def _record(row: Row, context: Context) -> str:
    return (f"<p>Run this test alone and record what it measures in its baseline:</p>"
            f'<pre class="cmd">{esc(row.command)}</pre>') if row.command else ""


def _provenance(row: Row, context: Context) -> str:
    r = row.result
    if r is None:
        return f"<p><code>{esc(row.nodeid)}</code></p>"
    items = [("test", row.nodeid), ("dataset", f"{r.dataset} (fingerprint {r.fingerprint})"),
             ("images", f"{r.n}" + (f" ({r.excluded} calibration images left out)" if r.excluded else "")),
             ("seconds", f"{r.seconds:.1f}"), ("device", r.device), ("machine", r.machine),
             ("versions", r.versions), ("baseline file", r.baseline)]
    return "<ul>" + "".join(f"<li>{k}: {esc(v)}</li>" for k, v in items if v not in (None, "")) + "</ul>"


# The detail panel, in order: (name, heading, section). A section reads the row (and what
# its test sent in row.gate) and returns HTML, or "" to be left out.
SECTIONS: list[tuple[str, str, Section]] = [
    ("message", "message", _gate_message),
    ("allowance", "allowed difference", _allowance),
    ("paired", "paired with fp32, image by image", _paired),
    ("sequential", "sequential run: where and why it stopped", _sequential),
    ("stored", "paired with the stored run of the baseline", _stored),
    ("flips", "flipped images", _flips),
    ("classes", "classes that lost most", _classes),
    ("more", "after the gate's message", _after_gate),
    ("trend", "trend", _trend),
    ("record", "record or update", _record),
    ("run", "run", _provenance),
]


def detail_panel(row: Row, context: Context) -> str:
    parts = []
    for name, heading, section in SECTIONS:
        try:
            body = section(row, context)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a report's odd payload
            body = f"<p>cannot be shown: {esc(type(exc).__name__)}: {esc(exc)}</p>"
        if body:
            parts.append(f'<section class="s-{name}"><h3>{esc(heading)}</h3>{body}</section>')
    return "".join(parts)


# -- image-by-image pairs within the session --------------------------------------------

def _record_of(row: Row) -> Record:
    r = row.result
    assert r is not None
    predictions = Path(r.predictions)
    return Record(r.family, r.model, r.backend, r.precision, r.dataset, r.fingerprint, r.n,
                  r.top1, r.top5, row.status, predictions if predictions.is_file() else None)


def fp32_pairs(rows: Sequence[Row]) -> dict[str, Pair]:
    """Each run of another precision (by test id) against the fp32 run of the same model on
    the same dataset in this session (the same backend's when there is one), image by image."""
    measured = [row for row in rows if row.result is not None]
    fp32 = {(r.family, r.model, r.dataset, r.backend): row for row in measured
            if (r := row.result) and r.precision == "fp32"}
    pairs = {}
    for row in measured:
        r = row.result
        assert r is not None
        if r.precision == "fp32":
            continue
        same = fp32.get((r.family, r.model, r.dataset, r.backend)) or next(
            (v for (f, m, d, _), v in sorted(fp32.items()) if (f, m, d) == (r.family, r.model, r.dataset)),
            None)
        if same is not None:
            a, b = _record_of(same), _record_of(row)
            try:
                pairs[row.nodeid] = paired(a, b)
            except VaccbenchError as exc:  # a predictions file went missing or bad meanwhile
                pairs[row.nodeid] = Pair(a, b, note=str(exc))
    return pairs


STYLE = """
.meta{color:#555;margin:0 0 8px}
.verdict{border:2px solid;border-radius:6px;padding:10px 14px;margin:10px 0 16px}
.verdict.green{background:#edf7ee;border-color:#2e7d32}.verdict.red{background:#fdeeee;border-color:#c62828}
.verdict p{margin:0 0 4px}.verdict .light{font-size:16px}
.badge{display:inline-block;font-weight:700;color:#fff;padding:1px 10px;border-radius:4px;margin-right:8px}
.green .badge{background:#2e7d32}.red .badge{background:#c62828}
.verdict ul{margin:4px 0 0;padding-left:20px}
span.bad,li.bad{color:#c62828;font-weight:600}span.good{color:#2e7d32;font-weight:600}
.grey,span.grey{color:#777}span.neutral,li.neutral{color:#8a6d00}
table.groups td:last-child{min-width:12em}
details summary{cursor:pointer}details ul{margin:4px 0;padding-left:20px}
td.status{font-weight:600;white-space:nowrap}
tr.bad td.status{color:#c62828}tr.good td.status{color:#2e7d32}tr.neutral td.status{color:#8a6d00}
tr.bad>td{background:#fdf3f3}
tr.grey td,tr.grey td.status{color:#888;font-weight:400}
td.name{overflow-wrap:break-word;min-width:5em}
td.plot,th.plot{width:1%}th.plot{font-weight:400;font-size:11px;min-width:8em;white-space:normal}
tr.test{cursor:pointer}tr.test:hover>td{background:#eef4fc}tr.test:focus{outline:2px solid #90caf9}
tr.family th{background:#fff;border-bottom:2px solid #bbb;padding-top:12px;text-align:left}
tr.family .counts{font-weight:400;color:#555}
button.fam{font:inherit;font-weight:700;border:0;background:none;cursor:pointer;padding:0}
button.fam::before{content:"\\25BE  "}button.fam[aria-expanded=false]::before{content:"\\25B8  "}
th[data-col]{cursor:pointer}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
.js tbody.collapsed tr.test,.js tbody.collapsed tr.detail{display:none}
.js tr.detail{display:none}.js tr.detail.open{display:table-row}
tr.detail>td{background:#fafafa;padding:8px 12px 4px;border-bottom:2px solid #ddd}
.panel section{margin:0 0 10px}.panel h3{font-size:13px;margin:6px 0 2px}.panel ul{margin:2px 0;padding-left:20px}
.panel p{margin:2px 0}
.controls button{font:inherit}
td.plot svg{max-width:none}
@media (max-width:1000px){th.plot,td.plot{display:none}}
"""

SCRIPT = r"""
(function () {
  document.documentElement.classList.add('js');
  function detail(tr) { return document.getElementById(tr.dataset.d); }
  function setOpen(tr, open) {
    var d = detail(tr);
    if (!d) return;
    d.classList.toggle('open', open);
    tr.setAttribute('aria-expanded', open ? 'true' : 'false');
  }
  function family(body, open) {
    body.classList.toggle('collapsed', !open);
    body.querySelector('button.fam').setAttribute('aria-expanded', open ? 'true' : 'false');
  }
  function show(id) {
    var tr = document.getElementById(id);
    if (!tr || !tr.classList.contains('test')) return;
    family(tr.parentNode, true);
    setOpen(tr, true);
    tr.scrollIntoView();
  }
  function value(tr, col, numeric) {
    var cell = tr.children[col], v = cell.getAttribute('data-v');
    if (!numeric) return (v === null ? cell.textContent : v).toLowerCase();
    return v === null || v === '' ? null : parseFloat(v);
  }
  function sort(th) {
    var col = +th.dataset.col, numeric = th.dataset.sort === 'num';
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    document.querySelectorAll('#results th[data-col]').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
    document.querySelectorAll('#results tbody.family').forEach(function (body) {
      var rows = Array.prototype.slice.call(body.querySelectorAll('tr.test'));
      rows.sort(function (a, b) {
        var x = value(a, col, numeric), y = value(b, col, numeric);
        if (x === y) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * dir;
      });
      rows.forEach(function (tr) { body.appendChild(tr); var d = detail(tr); if (d) body.appendChild(d); });
    });
  }
  document.addEventListener('click', function (e) {
    var t = e.target, b = t.closest('button.fam');
    if (b) { family(b.closest('tbody'), b.getAttribute('aria-expanded') !== 'true'); return; }
    var all = t.closest('button[data-all]');
    if (all) {
      var open = all.dataset.all === 'open';
      document.querySelectorAll('#results tbody.family').forEach(function (body) { family(body, true); });
      document.querySelectorAll('#results tr.test').forEach(function (tr) { setOpen(tr, open); });
      return;
    }
    var th = t.closest('th[data-col]');
    if (th) { sort(th); return; }
    var a = t.closest('a[href^="#t"]');
    if (a) { show(a.getAttribute('href').slice(1)); return; }
    var tr = t.closest('tr.test');
    if (tr && !t.closest('a,button,summary')) setOpen(tr, tr.getAttribute('aria-expanded') !== 'true');
  });
  document.addEventListener('keydown', function (e) {
    var tr = e.target.closest && e.target.closest('tr.test');
    if (tr && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      setOpen(tr, tr.getAttribute('aria-expanded') !== 'true');
    }
  });
  if (location.hash) show(location.hash.slice(1));
  window.addEventListener('hashchange', function () { show(location.hash.slice(1)); });
})();
"""
