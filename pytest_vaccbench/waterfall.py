"""The loss ladder as a waterfall chart: an inline SVG, and the HTML that holds it.

Works on the ladder's JSON data (ladder.Ladder.to_dict: what `vaccbench explain --json`
prints and a failing test carries in its report payload), so a report draws it without
running anything. Self-contained: inline SVG and CSS, nothing fetched.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .pages import breakable, esc, page, signed_class

LOSS, GAIN, BASE, CONTEXT, MUTED = "#c62828", "#2e7d32", "#1565c0", "#9e9e9e", "#757575"
SLOT, PLOT_H, LEFT, TOP, BOTTOM = 132, 220, 52, 44, 64  # pixels




def _range(values: Sequence[float]) -> tuple[float, float]:
    """The top1 axis: the values with some room, on whole points; the bars of the first
    steps rise from its floor, which is rarely 0 (the differences are a few points)."""
    lo, hi = min(values), max(values)
    pad = max(0.5, 0.15 * (hi - lo))
    return max(0.0, math.floor(lo - pad)), min(100.0, math.ceil(hi + pad))


def _ticks(lo: float, hi: float) -> list[float]:
    for step in (0.5, 1, 2, 2.5, 5, 10, 20, 25):
        if (hi - lo) / step <= 6:
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def waterfall_svg(ladder: Mapping[str, Any]) -> str:
    """SVG: one slot per step. The published figure is a grey bar (other images), the first
    measured step a blue bar, every later step a bar from the step before it to its own top1,
    red for a loss, green for a gain, pale when McNemar does not call it significant; a step
    that did not run is an empty slot saying so."""
    steps = ladder["steps"]
    values = [s["top1"] for s in steps if s.get("top1") is not None]
    lo, hi = _range(values) if values else (0.0, 100.0)
    width, height = LEFT + SLOT * len(steps) + 16, TOP + PLOT_H + BOTTOM

    def y(value: float) -> float:
        return TOP + PLOT_H * (hi - value) / (hi - lo)

    out = [f'<svg class="waterfall" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'role="img" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{LEFT}" y="16">top1 (%) per step, {ladder["n"]} images the same in every '
           'step; red: lost, green: won,</text>',
           f'<text x="{LEFT}" y="31">pale: not significant (exact McNemar p &gt;= 0.05); grey: '
           f'published, other images; the axis starts at {lo:g}</text>']
    for tick in _ticks(lo, hi):
        out.append(f'<line x1="{LEFT}" x2="{width - 16}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                   f'stroke="#e4e4e4"/><text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" '
                   f'text-anchor="end">{tick:g}</text>')
    level: float | None = None  # the previous measured step's top1
    for i, s in enumerate(steps):
        x0 = LEFT + SLOT * i + 14
        bar_w, mid = SLOT - 28, LEFT + SLOT * i + SLOT / 2
        tip = esc(f"{s['number']} {s['name']}: {s['run']}"
                          + (f" - not run: {s['reason']}" if s["status"] == "not run" else ""))
        out.append(f'<text x="{mid:.1f}" y="{TOP + PLOT_H + 18}" text-anchor="middle">'
                   f'{s["number"]} {esc(s["name"])}<title>{tip}</title></text>')
        for line, part in enumerate(s["run"].split("+")[0].split("/")):  # variants: in the table
            out.append(f'<text x="{mid:.1f}" y="{TOP + PLOT_H + 33 + 14 * line}" text-anchor="middle" '
                       f'style="fill:{MUTED}">{esc(part)}<title>{tip}</title></text>')
        top1 = s.get("top1")
        if s["status"] == "not run" or top1 is None:
            out.append(f'<text class="not-run" x="{mid:.1f}" y="{TOP + PLOT_H / 2:.1f}" '
                       f'text-anchor="middle" style="fill:{MUTED}">not run<title>{tip}</title></text>')
            continue
        if s["status"] == "context":
            out.append(f'<rect class="context" x="{x0}" y="{y(top1):.1f}" width="{bar_w}" '
                       f'height="{y(lo) - y(top1):.1f}" fill="{CONTEXT}" opacity="0.5">'
                       f'<title>{tip}: {top1:.2f}</title></rect>'
                       f'<text x="{mid:.1f}" y="{y(top1) - 6:.1f}" text-anchor="middle">{top1:.2f}</text>')
            continue
        delta = s.get("delta_previous")
        if level is None or delta is None:
            out.append(f'<rect class="base" x="{x0}" y="{y(top1):.1f}" width="{bar_w}" '
                       f'height="{y(lo) - y(top1):.1f}" fill="{BASE}"><title>{tip}: {top1:.2f}'
                       f'</title></rect><text x="{mid:.1f}" y="{y(top1) - 6:.1f}" '
                       f'text-anchor="middle">{top1:.2f}</text>')
        else:
            colour = LOSS if delta < 0 else GAIN if delta > 0 else MUTED
            top, bottom = y(max(level, top1)), y(min(level, top1))
            opacity = 1.0 if s.get("significant") or (delta > 0 and (s.get("mcnemar_p") or 1) < 0.05) else 0.4
            kind = "loss" if delta < 0 else "gain" if delta > 0 else "same"
            p = s.get("mcnemar_p")
            label = f"{delta:+.2f}" + (f" p={p:.2g}" if p is not None else "")
            out.append(f'<line x1="{x0 - 28}" x2="{x0}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
                       f'stroke="{MUTED}" stroke-dasharray="3,3"/>'
                       f'<rect class="{kind}" x="{x0}" y="{top:.1f}" width="{bar_w}" '
                       f'height="{max(1.5, bottom - top):.1f}" fill="{colour}" opacity="{opacity}">'
                       f'<title>{tip}: {top1:.2f} ({label})</title></rect>'
                       f'<text x="{mid:.1f}" y="{top - 20:.1f}" text-anchor="middle">{top1:.2f}</text>'
                       f'<text x="{mid:.1f}" y="{top - 6:.1f}" text-anchor="middle" '
                       f'style="fill:{colour}">{esc(label)}</text>')
        level = top1
    out.append("</svg>")
    return "\n".join(out)


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ladder_table(ladder: Mapping[str, Any]) -> str:
    """The ladder's rows as an HTML table: the step and its run, the numbers, then the
    classes that lost most (or why the step did not run)."""
    head = ["step", "run", "top1", "top5", "vs prev", "vs 2", "lost", "won", "McNemar p",
            "classes that lost most"]
    ths = "".join(f'<th class="num">{esc(h)}</th>' if 2 <= i < 9 else f"<th>{esc(h)}</th>"
                  for i, h in enumerate(head))
    body = []
    for s in ladder["steps"]:
        numbers = ([] if s["status"] == "not run" else
                   [_cell(s["top1"], ".2f"), _cell(s["top5"], ".2f"), _cell(s["delta_previous"], "+.2f"),
                    _cell(s["delta_step2"], "+.2f"), _cell(s["lost"], "d"), _cell(s["gained"], "d"),
                    _cell(s["mcnemar_p"], ".3g")])
        tds = "".join(f'<td class="num {signed_class(n)}">{esc(n)}</td>' for n in numbers)
        if s["status"] == "not run":
            note = f'<td colspan="8">not run: {breakable(s["reason"])}</td>'
        else:
            note = "<td>" + breakable(s["what"] if s["status"] == "context" else ", ".join(
                f"{c['change']:+d} {c['name']}" for c in s["classes"])) + "</td>"
        body.append(f"<tr><td>{s['number']} {esc(s['name'])}</td><td>{breakable(s['run'])}</td>"
                    f"{tds}{note}</tr>")
    return f'<table class="ladder"><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def ladder_body(ladder: Mapping[str, Any]) -> str:
    """One ladder: the chart, the closing sentence, the two preprocessings and the table."""
    preprocessing = "".join(f"<li>{esc(k)} preprocessing: {breakable(v)}</li>"
                            for k, v in ladder.get("preprocessing", {}).items())
    rerun = (f'<p>the whole ladder:</p><pre class="cmd">{esc(ladder["rerun"])}</pre>'
             if ladder.get("rerun") else "")
    return (f'{waterfall_svg(ladder)}<p class="conclusion">{esc(ladder["conclusion"])}</p>'
            f"<ul>{preprocessing}</ul>{ladder_table(ladder)}{rerun}")


def ladder_page(ladder: Mapping[str, Any]) -> str:
    """One self-contained page for `vaccbench explain --html`."""
    title = f"loss ladder: {ladder['model']} {ladder['precision']} on {ladder['dataset']}"
    return page("vaccbench explain", f"<h1>vaccbench explain</h1><h2>{esc(title)}</h2>"
                f"<p>{ladder['n']} images, the same in every step</p>{ladder_body(ladder)}")
